#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! `export` and `import` end to end: an imported run is data (marked, shown, not resumed
//! without consent), run ids from a file are checked, and `export -o` never clobbers what it
//! should not (an existing file, a symbolic link, a FIFO, a device).

mod support;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{bin, text};

fn both(out: &Output) -> String {
    format!(
        "--- stdout:\n{}--- stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A fresh directory for one test; commands run in it, on `<dir>/state.db` unless told.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("rh-agents-transfer-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `rh-agents --store <dir>/<store> ARGS...` in the directory.
    fn on(&self, store: &str, args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.current_dir(&self.0)
            .arg("--store")
            .arg(self.path(store))
            .args(args);
        cmd
    }

    /// Runs on `store`, asserts the exit code and that nothing panicked.
    fn expect_on(&self, store: &str, code: i32, args: &[&str]) -> Output {
        let out = self.on(store, args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}\n{}", both(&out));
        assert!(!both(&out).contains("panicked"), "{}", both(&out));
        out
    }

    fn expect(&self, code: i32, args: &[&str]) -> Output {
        self.expect_on("state.db", code, args)
    }

    /// A run of a two-step pipeline whose second step fails (so it can be resumed), exported
    /// to `<dir>/run.json`; returns the id.
    fn exported_run(&self) -> String {
        let file = self.write("p.toml", &pipeline("echo a", "exit 1"));
        let out = self.expect(1, &["run", file.to_str().unwrap()]);
        let id = text(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("run id: "))
            .unwrap()
            .trim()
            .to_owned();
        self.expect(0, &["export", &id, "-o", "run.json"]);
        id
    }

    fn read_json(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path(name)).unwrap()).unwrap()
    }

    fn write_json(&self, name: &str, value: &Value) {
        std::fs::write(
            self.path(name),
            serde_json::to_string_pretty(value).unwrap(),
        )
        .unwrap();
    }
}

/// A pipeline "shared" of two command steps `a` and `b` (shell), run in the current
/// directory.
fn pipeline(a: &str, b: &str) -> String {
    format!(
        "name = \"shared\"\n\
         [[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"{a}\"]\nretry = false\n\
         [[steps]]\nname = \"b\"\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"{b}\"]\nretry = false\n"
    )
}

// Point 2: imported runs are data ──────────────────────────────────────────────────────────

#[test]
fn an_imported_run_is_marked_shown_and_not_resumed_without_consent() {
    let d = Dir::new("trust");
    let id = d.exported_run();
    // Someone edits the shared file: step b now runs their command, a comment tries to drive
    // the terminal, and the file claims it was never imported.
    let mut doc = d.read_json("run.json");
    let evil = format!("# \u{1b}[2J hidden\n{}", pipeline("echo a", "touch pwned"));
    doc["metadata"]["custom"]["pipeline_source"] = Value::from(evil);
    doc["metadata"]["custom"]["imported"] = Value::from(false);
    d.write_json("run.json", &doc);

    d.expect_on("other.db", 0, &["import", "run.json"]);

    // The mark: where from (the path as given) and when, whatever the file claimed.
    let runs = d.expect_on("other.db", 0, &["runs", "--json"]);
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let mark = &runs[0]["metadata"]["custom"]["imported"];
    assert_eq!(mark["from"], "run.json", "{runs}");
    assert!(mark["at"].as_str().unwrap().ends_with('Z'), "{runs}");
    let table = text(&d.expect_on("other.db", 0, &["runs"]).stdout);
    assert!(table.contains("failed (imported)"), "{table}");

    // `show` says so and prints the pipeline a resume would run, escaped.
    let shown = text(&d.expect_on("other.db", 0, &["show", &id]).stdout);
    assert!(shown.contains("imported: from run.json at "), "{shown}");
    assert!(shown.contains("touch pwned"), "{shown}");
    assert!(shown.contains("\\x1b[2J hidden"), "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown}");
    assert!(shown.contains(&format!("working directory: {}", d.0.display())));

    // `resume` refuses in one line, and nothing ran.
    let out = d.expect_on("other.db", 2, &["resume", &id]);
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("was imported") && err.contains("--trust-imported"));
    assert!(err.contains("--pipeline FILE"), "{err}");
    assert!(!d.path("pwned").exists());

    // With the user's own pipeline file, that file runs (not the imported one).
    let mine = d.write("mine.toml", &pipeline("echo a", "touch mine"));
    d.expect_on(
        "other.db",
        0,
        &["resume", &id, "--pipeline", mine.to_str().unwrap()],
    );
    assert!(d.path("mine").exists());
    assert!(!d.path("pwned").exists());

    // With explicit trust, the imported pipeline runs (a version that parses: TOML refuses
    // the raw escape character).
    doc["metadata"]["custom"]["pipeline_source"] = Value::from(pipeline("echo a", "touch pwned"));
    d.write_json("run.json", &doc);
    d.expect_on("third.db", 0, &["import", "run.json"]);
    d.expect_on("third.db", 0, &["resume", &id, "--trust-imported"]);
    assert!(d.path("pwned").exists());
}

#[test]
fn a_run_started_here_resumes_as_before_and_shows_its_pipeline() {
    let d = Dir::new("local");
    let id = d.exported_run();
    let shown = text(&d.expect(0, &["show", &id]).stdout);
    assert!(!shown.contains("imported"), "{shown}");
    assert!(
        shown.contains("pipeline source (what `resume` runs):"),
        "{shown}"
    );
    assert!(shown.contains("  | name = \"shared\""), "{shown}");
    // Still failing: step b runs again (exit 1), without any flag.
    d.expect(1, &["resume", &id]);
}

// Point 4: run ids from a file ──────────────────────────────────────────────────────────────

#[test]
fn import_refuses_run_ids_that_are_not_plain_names_and_makes_no_store() {
    let d = Dir::new("ids");
    d.exported_run();
    let long = "a".repeat(129);
    for bad in [
        "",
        "../..",
        "a/b",
        "..",
        ".hidden",
        "x\u{1b}[2Jy",
        "x\ny",
        &long,
    ] {
        let mut doc = d.read_json("run.json");
        doc["state_id"] = Value::from(bad);
        d.write_json("bad.json", &doc);
        let out = d.expect_on("fresh.db", 2, &["import", "bad.json"]);
        let err = text(&out.stderr);
        assert!(err.contains("not a valid run id"), "{bad:?}: {err}");
        assert!(!err.contains('\u{1b}'), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!d.path("fresh.db").exists(), "{bad:?} made a store");
    }
}

#[test]
fn export_builds_no_file_name_from_an_id_that_is_not_a_plain_name() {
    use rh_agents::store::{SqliteStore, StateStore};
    let d = Dir::new("export-id");
    // A run saved by a program with an id no import would accept.
    let store = SqliteStore::open(d.path("state.db")).unwrap();
    let mut snapshot = rh_agents::ExecutionState::new().snapshot();
    snapshot.state_id = "../escape".into();
    store.save(&snapshot).unwrap();
    drop(store);

    let out = d.expect(2, &["export", "../escape"]);
    assert!(text(&out.stderr).contains("-o FILE"), "{}", both(&out));
    assert!(!d.0.parent().unwrap().join("escape.json").exists());
    // A file the user names is fine.
    d.expect(0, &["export", "../escape", "-o", "escape.json"]);
    assert_eq!(d.read_json("escape.json")["state_id"], "../escape");
}

// Point 3: `export -o` never clobbers ───────────────────────────────────────────────────────

#[test]
fn export_to_dash_writes_the_file_to_standard_output() {
    let d = Dir::new("dash");
    let id = d.exported_run();
    let out = d.expect(0, &["export", &id, "-o", "-"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["state_id"], id.as_str());
    assert_eq!(doc, d.read_json("run.json"));
    assert!(text(&out.stderr).contains("to standard output"));
    assert!(!d.path("-").exists());
    // `/dev/stdout` (here a pipe) is written through, not replaced.
    let out = d.expect(0, &["export", &id, "-o", "/dev/stdout"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["state_id"], id.as_str());
    assert!(std::fs::symlink_metadata("/dev/stdout")
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn export_refuses_an_existing_file_unless_forced_then_replaces_it_whole() {
    let d = Dir::new("exists");
    let id = d.exported_run();
    d.write("keep.json", "precious\n");
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(d.path("keep.json"), private).unwrap();
    let out = d.expect(2, &["export", &id, "-o", "keep.json"]);
    assert!(text(&out.stderr).contains("--force"), "{}", both(&out));
    assert_eq!(
        std::fs::read_to_string(d.path("keep.json")).unwrap(),
        "precious\n"
    );
    // The default name too.
    d.write(&format!("{id}.json"), "mine\n");
    d.expect(2, &["export", &id]);
    assert_eq!(
        std::fs::read_to_string(d.path(&format!("{id}.json"))).unwrap(),
        "mine\n"
    );

    d.expect(0, &["export", &id, "-o", "keep.json", "--force"]);
    assert_eq!(d.read_json("keep.json")["state_id"], id.as_str());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.path("keep.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the replaced file kept its permissions"
    );
    // No temporary file left behind.
    let hidden: Vec<_> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.ends_with(".tmp"))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    // A directory is never a target.
    std::fs::create_dir(d.path("dir")).unwrap();
    d.expect(2, &["export", &id, "-o", "dir", "--force"]);
}

#[test]
fn export_writes_through_a_fifo_instead_of_replacing_it() {
    let d = Dir::new("fifo");
    let id = d.exported_run();
    let fifo = d.path("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let reader = {
        let fifo = fifo.clone();
        // Opening a FIFO for reading waits for the writer, and the read for its close.
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    d.expect(0, &["export", &id, "-o", "pipe"]);
    // Checked before joining: a replaced FIFO would leave the reader waiting for ever.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
    let read: Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    assert_eq!(read["state_id"], id.as_str());
}

#[test]
fn export_writes_to_a_device_and_through_a_link_to_one() {
    let d = Dir::new("device");
    let id = d.exported_run();
    d.expect(0, &["export", &id, "-o", "/dev/null"]);
    std::os::unix::fs::symlink("/dev/null", d.path("null")).unwrap();
    d.expect(0, &["export", &id, "-o", "null"]);
    assert!(std::fs::symlink_metadata(d.path("null"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn a_link_to_a_file_is_refused_unless_forced_then_the_file_it_points_to_is_written() {
    let d = Dir::new("link");
    let id = d.exported_run();
    let target = d.write("target.json", "precious\n");
    let link = d.path("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let out = d.expect(2, &["export", &id, "-o", "link.json"]);
    assert!(
        text(&out.stderr).contains("symbolic link"),
        "{}",
        both(&out)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");

    d.expect(0, &["export", &id, "-o", "link.json", "--force"]);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(d.read_json("target.json")["state_id"], id.as_str());

    // A link to nothing is refused, and nothing is created where it points.
    std::os::unix::fs::symlink(d.path("nowhere.json"), d.path("dangling.json")).unwrap();
    d.expect(2, &["export", &id, "-o", "dangling.json", "--force"]);
    assert!(!Path::new(&d.path("nowhere.json")).exists());
}
