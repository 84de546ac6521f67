#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The commands that read the store (`runs`, `show`, `export`), end to end: they work on a
//! store the user may only read and change nothing in any store; rows damaged the way a disk
//! or another program might leave them are errors, never panics, and one bad row does not
//! hide the others; text from the store cannot drive the terminal; and what they print is
//! exact (limits, statuses, durations, the RECORDS column). Also: a run's lock file goes when
//! the run ends.
//!
//! Runs are made with the library (the store is the same file the binary reads), so that a
//! test can hold a run open as its live writer or change a row with plain SQL.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::store::{RunMetadata, SqliteStore, StateStore};
use rh_agents::{ExecutionState, Severity};
use support::{bin, text};

/// A scratch directory with its store at `<dir>/state.db`.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        Scratch {
            dir: support::scratch_dir("rh-agents-cli-read", test),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("state.db")
    }

    fn open(&self) -> Arc<dyn StateStore> {
        Arc::new(SqliteStore::open(self.store()).unwrap())
    }

    /// `rh-agents --store <dir>/state.db ARGS...`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.current_dir(&self.dir)
            .arg("--store")
            .arg(self.store())
            .args(args);
        cmd
    }

    /// A plain SQLite connection to the store, to change a row by hand.
    fn sql(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.store()).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }
}

/// A finished run of `pipeline` with `tags` and one log record; returns its id.
fn finished_run(store: &Arc<dyn StateStore>, pipeline: &str, tags: &[&str]) -> String {
    let state = started_run(store, pipeline, tags);
    state.finish_ok().unwrap();
    state.id().to_owned()
}

/// A run that is still running, written by this process for as long as it is held.
fn started_run(store: &Arc<dyn StateStore>, pipeline: &str, tags: &[&str]) -> ExecutionState {
    let mut metadata = RunMetadata::new().pipeline(pipeline);
    for tag in tags {
        metadata = metadata.tag(*tag);
    }
    // Started on a runtime of its own, gone once started: the state writes its records all
    // the same (only its mailbox is not watched, which these tests do not need).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = runtime
        .block_on(
            ExecutionState::builder()
                .metadata(metadata)
                .start(Arc::clone(store)),
        )
        .unwrap();
    state.log(Severity::Info, "hello");
    state
}

fn both(out: &Output) -> String {
    format!(
        "--- stdout:\n{}--- stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs `cmd`, asserts its exit code and that nothing panicked; returns the output.
fn expect(code: i32, mut cmd: Command) -> Output {
    // A binary copied a moment ago can be "busy" for as long as another test thread's child,
    // forked while the copy was open for writing, has not yet exec'd: an OS race, not ours.
    let mut tries = 0;
    let out = loop {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 10_000 => {
                tries += 1;
                std::thread::yield_now();
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(out.status.code(), Some(code), "{cmd:?}\n{}", both(&out));
    let all = both(&out);
    assert!(!all.contains("panicked"), "{all}");
    out
}

/// Each file in `dir` with its length, modification time and bytes.
fn contents(dir: &Path) -> Vec<(String, u64, std::time::SystemTime, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let meta = std::fs::metadata(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                meta.len(),
                meta.modified().unwrap(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn runs_show_and_export_read_a_store_the_user_may_only_read() {
    let s = Scratch::new("read_only");
    let id = finished_run(&s.open(), "nightly", &["t"]);
    let out_dir = s.dir.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let store_dir = s.dir.join("store");
    std::fs::create_dir(&store_dir).unwrap();
    // The store was closed: its write-ahead log is merged and gone, the file holds it all.
    std::fs::rename(s.store(), store_dir.join("state.db")).unwrap();
    let store = store_dir.join("state.db");
    chmod(&store, 0o444);
    chmod(&store_dir, 0o555);
    // Root may write anything whatever the modes say: run the reader as `nobody` then.
    let as_root = std::fs::metadata(&s.dir).unwrap().uid() == 0;
    // `nobody` may not be able to reach the built binary (a clone under `/root`, say): it
    // runs a copy from the scratch directory, which anyone may enter.
    let program = s.dir.join("rh-agents");
    if as_root {
        chmod(&out_dir, 0o777);
        chmod(&s.dir, 0o755);
        // A hard link (same file, no writer) when the scratch directory is on the same file
        // system; a copy otherwise, which `expect` may find briefly busy (below).
        if std::fs::hard_link(env!("CARGO_BIN_EXE_rh-agents"), &program).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_rh-agents"), &program).unwrap();
        }
        chmod(&program, 0o755);
    }
    let reader = |args: &[&str]| {
        let mut cmd = bin();
        if as_root {
            cmd = Command::new(&program);
            cmd.env("NO_COLOR", "1").env_remove("RH_AGENTS_STORE");
        }
        cmd.current_dir(&s.dir)
            .arg("--store")
            .arg(&store)
            .args(args);
        if as_root {
            cmd.uid(65_534).gid(65_534);
        }
        cmd
    };
    let before = contents(&store_dir);

    let out = expect(0, reader(&["runs"]));
    assert!(text(&out.stdout).contains(&id), "{}", both(&out));
    assert!(text(&out.stdout).contains("nightly"), "{}", both(&out));
    let out = expect(0, reader(&["show", &id]));
    assert!(
        text(&out.stdout).contains(&format!("run {id}")),
        "{}",
        both(&out)
    );
    let out = expect(0, reader(&["show", "--json", &id]));
    assert!(text(&out.stdout).contains(&id));
    let exported = out_dir.join("run.json");
    expect(
        0,
        reader(&["export", &id, "-o", exported.to_str().unwrap()]),
    );
    assert!(std::fs::read_to_string(&exported).unwrap().contains(&id));

    assert_eq!(contents(&store_dir), before, "nothing in the store changed");
    chmod(&store_dir, 0o755);
    chmod(&store, 0o644);
}

#[test]
fn reading_a_store_left_by_a_killed_writer_changes_nothing_in_it() {
    // The files of a store whose writer was killed: its last commits still in the log.
    let s = Scratch::new("crash_image");
    let live = s.open();
    let id = finished_run(&live, "p", &[]);
    let image = s.dir.join("image");
    std::fs::create_dir(&image).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("state.db{suffix}");
        std::fs::copy(s.dir.join(&name), image.join(&name)).unwrap();
    }
    drop(live);
    let before = contents(&image);
    assert!(before.iter().any(|f| f.0 == "state.db-wal" && f.1 > 0));

    let store = image.join("state.db");
    let reader = |args: &[&str]| {
        let mut cmd = bin();
        cmd.current_dir(&s.dir)
            .arg("--store")
            .arg(&store)
            .args(args);
        cmd
    };
    expect(0, reader(&["runs"]));
    expect(0, reader(&["runs", "--json"]));
    expect(0, reader(&["show", &id]));
    let exported = s.dir.join("run.json");
    expect(
        0,
        reader(&["export", &id, "-o", exported.to_str().unwrap()]),
    );
    // A writer closing last would have merged the log into the file and removed it; the
    // index file (-shm) may be rebuilt by a reader, but the data is untouched.
    let after = contents(&image);
    let data = |files: &[(String, u64, std::time::SystemTime, Vec<u8>)]| {
        files
            .iter()
            .filter(|f| f.0 != "state.db-shm")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(data(&after), data(&before));
    let names = |files: &[(String, u64, std::time::SystemTime, Vec<u8>)]| {
        files.iter().map(|f| f.0.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&after), names(&before), "no file made or removed");
    assert!(!image.join("state.db.locks").exists());
}

#[test]
fn an_impossible_time_in_a_row_is_an_error_naming_it_never_a_panic() {
    let s = Scratch::new("bad_time");
    let store = s.open();
    let good = finished_run(&store, "good", &[]);
    let bad = finished_run(&store, "bad", &[]);
    drop(store);
    for (column, value) in [
        ("created_us", -1_i64),
        ("updated_us", 253_402_300_800_000_000),
    ] {
        s.sql()
            .execute(
                &format!("UPDATE runs SET {column} = ?1 WHERE id = ?2"),
                rusqlite::params![value, bad],
            )
            .unwrap();
        let named = format!("run {bad:?}: column {column} cannot be read");

        // `runs` lists the good run and names the bad one.
        let out = s.cmd(&["runs"]).output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{}", both(&out));
        assert_ne!(out.status.code(), Some(101), "{}", both(&out));
        assert!(text(&out.stdout).contains(&good), "{}", both(&out));
        assert!(!text(&out.stdout).contains(&bad), "{}", both(&out));
        assert!(text(&out.stderr).contains(&named), "{}", both(&out));
        assert!(
            text(&out.stderr).contains("1 run left out"),
            "{}",
            both(&out)
        );
        let out = s.cmd(&["runs", "--json"]).output().unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{}", both(&out));
        assert_eq!(listed[0]["id"], good.as_str());

        for args in [
            vec!["show", bad.as_str()],
            vec!["show", "--json", bad.as_str()],
            vec!["export", bad.as_str(), "-o", "bad.json"],
        ] {
            let out = s.cmd(&args).output().unwrap();
            assert!(
                !matches!(out.status.code(), Some(0 | 101)),
                "{args:?}: {}",
                both(&out)
            );
            assert!(
                text(&out.stderr).contains(&named),
                "{args:?}: {}",
                both(&out)
            );
            assert!(!both(&out).contains("panicked"), "{}", both(&out));
        }
        s.sql()
            .execute(
                "UPDATE runs SET created_us = updated_us WHERE id = ?1",
                [&bad],
            )
            .unwrap();
        s.sql()
            .execute(
                "UPDATE runs SET updated_us = created_us WHERE id = ?1",
                [&bad],
            )
            .unwrap();
    }
}

#[test]
fn runs_limit_0_is_refused_instead_of_saying_no_runs() {
    let s = Scratch::new("limit_0");
    finished_run(&s.open(), "p", &[]);
    let out = expect(2, s.cmd(&["runs", "--limit", "0"]));
    assert!(!text(&out.stdout).contains("no runs"), "{}", both(&out));
    assert!(text(&out.stderr).contains("--limit 0"), "{}", both(&out));
    let out = expect(0, s.cmd(&["runs", "--limit", "1"]));
    assert_eq!(text(&out.stdout).lines().count(), 2, "{}", both(&out));
}

#[test]
fn runs_and_show_escape_control_characters_and_json_stays_exact() {
    let s = Scratch::new("escape");
    let pipeline = "evil\u{1b}]0;pwned\u{7}\nforged line";
    let tag = "t\u{1b}[31mred";
    let id = finished_run(&s.open(), pipeline, &[tag]);

    let out = expect(0, s.cmd(&["runs"]));
    let listed = text(&out.stdout);
    assert!(
        !listed.contains('\u{1b}') && !listed.contains('\u{7}'),
        "{listed:?}"
    );
    assert!(
        listed.contains(r"evil\x1b]0;pwned\x07\nforged line"),
        "{listed}"
    );
    assert!(listed.contains(r"t\x1b[31mred"), "{listed}");
    assert_eq!(listed.lines().count(), 2, "no forged line: {listed}");

    let out = expect(0, s.cmd(&["show", &id]));
    let shown = text(&out.stdout);
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(
        shown.contains(r"pipeline: evil\x1b]0;pwned\x07\nforged line"),
        "{shown}"
    );
    assert!(shown.contains(r"tags: t\x1b[31mred"), "{shown}");

    // The JSON outputs carry the text exactly.
    let out = expect(0, s.cmd(&["runs", "--json"]));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["metadata"]["pipeline"], pipeline);
    assert_eq!(runs[0]["metadata"]["tags"][0], tag);
    let out = expect(0, s.cmd(&["show", "--json", &id]));
    let snapshot: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snapshot["metadata"]["pipeline"], pipeline);
}

#[test]
fn the_runs_table_counts_records_and_shows_long_runs_in_hours_and_days() {
    let s = Scratch::new("table");
    let store = s.open();
    let hours = finished_run(&store, "hours", &[]);
    let days = finished_run(&store, "days", &[]);
    drop(store);
    let set_duration = |id: &str, secs: i64| {
        s.sql()
            .execute(
                "UPDATE runs SET created_us = updated_us - ?1 WHERE id = ?2",
                rusqlite::params![secs * 1_000_000, id],
            )
            .unwrap();
    };
    set_duration(&hours, 2 * 3_600 + 3 * 60);
    set_duration(&days, 3 * 86_400 + 4 * 3_600);
    let out = expect(0, s.cmd(&["runs"]));
    let listed = text(&out.stdout);
    let header = listed.lines().next().unwrap();
    assert!(
        header.contains("RECORDS") && !header.contains("EVENTS"),
        "{header}"
    );
    let line_of = |id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap()
            .to_owned()
    };
    assert!(line_of(&hours).contains("2h 03m"), "{listed}");
    assert!(line_of(&days).contains("3d 04h"), "{listed}");
}

#[test]
fn show_says_when_no_process_writes_a_running_run() {
    let s = Scratch::new("orphan");
    let store = s.open();
    let id = finished_run(&store, "p", &[]);
    drop(store);
    // As a killed writer leaves it: marked running, nobody holding it.
    s.sql()
        .execute("UPDATE runs SET status = 'running' WHERE id = ?1", [&id])
        .unwrap();
    let out = expect(0, s.cmd(&["show", &id]));
    assert!(
        text(&out.stdout).contains("status: running (no process: resume it)"),
        "{}",
        both(&out)
    );
    let out = expect(0, s.cmd(&["runs"]));
    assert!(text(&out.stdout).contains("running (no process: resume it)"));
}

#[test]
fn show_of_a_live_run_gives_its_time_up_to_now() {
    let s = Scratch::new("live");
    let store = s.open();
    // This process writes the run while `show` reads it.
    let state = started_run(&store, "p", &[]);
    let id = state.id().to_owned();
    // It began two hours ago (its records are recent: their span is not its time).
    s.sql()
        .execute(
            "UPDATE runs SET created_us = created_us - 7200000000 WHERE id = ?1",
            [&id],
        )
        .unwrap();
    let out = expect(0, s.cmd(&["show", &id]));
    let shown = text(&out.stdout);
    assert!(shown.contains("status: running\n"), "{shown}");
    let time = shown
        .lines()
        .find_map(|l| l.strip_prefix("time: "))
        .unwrap_or_else(|| panic!("no time line: {shown}"));
    assert!(time.starts_with("2h "), "{shown}");
    drop(state);
}

#[test]
fn a_run_s_lock_file_is_gone_when_the_run_ends() {
    let s = Scratch::new("lock_file");
    let pipeline = support::write(
        &s.dir,
        "p.toml",
        "name = \"p\"\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\n",
    );
    let mut cmd = s.cmd(&["run"]);
    cmd.arg(&pipeline);
    expect(0, cmd);
    let locks = s.dir.join("state.db.locks");
    let left: Vec<_> = std::fs::read_dir(&locks)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "lock files left behind: {left:?}");
}
