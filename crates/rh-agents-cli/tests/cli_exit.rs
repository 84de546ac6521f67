#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Exit codes say what happened (docs/cli.md, "Exit codes"): a store that fails mid-run is
//! 74, a run held by another process is 75, a bad import file is 2, and a failure of a step
//! with `retry = false` says it was not retried.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{bin, text};

fn both(out: &Output) -> String {
    format!(
        "--- stdout:\n{}--- stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A fresh directory for one test, with its store at `<dir>/state.db`.
struct Dir(PathBuf);

impl Dir {
    fn new(test: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("rh-agents-exit-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.current_dir(&self.0)
            .arg("--store")
            .arg(self.path("state.db"))
            .args(args);
        cmd
    }

    fn expect(&self, code: i32, args: &[&str]) -> Output {
        expect(code, self.cmd(args))
    }
}

fn expect(code: i32, mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}\n{}", both(&out));
    assert!(!both(&out).contains("panicked"), "{}", both(&out));
    out
}

/// A command step running `script` (shell) with `$0` the test's directory.
fn step(d: &Dir, name: &str, script: &str) -> String {
    format!(
        "[[steps]]\nname = \"{name}\"\nkind = \"command\"\nprogram = \"sh\"\nargs = ['-c', '{script}', '{}']\nretry = false\n",
        d.0.display()
    )
}

fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("run id: "))
        .unwrap_or_else(|| panic!("no run id in\n{stdout}"))
        .trim()
        .to_owned()
}

#[test]
fn a_store_that_fails_mid_run_exits_74_and_says_so() {
    let d = Dir::new("store-fails");
    // The first step's output (3 MB) cannot be saved under a 1 MB file size limit: the store
    // fails, the run stops before the second step.
    let file = d.write(
        "p.toml",
        &format!(
            "name = \"big\"\n{}{}",
            step(&d, "big", "head -c 3000000 /dev/zero | tr \"\\\\0\" a"),
            step(&d, "after", "touch \"$0/after-ran\""),
        ),
    );
    let mut cmd = Command::new("sh");
    cmd.current_dir(&d.0)
        .env("NO_COLOR", "1")
        .env_remove("RH_AGENTS_STORE")
        .arg("-c")
        // SIGXFSZ ignored, so that a write past the limit fails (EFBIG) instead of killing.
        .arg("trap '' XFSZ; ulimit -f 2000; exec \"$0\" --store state.db run \"$1\"")
        .arg(env!("CARGO_BIN_EXE_rh-agents"))
        .arg(&file);
    let out = expect(74, cmd);
    let err = text(&out.stderr);
    assert!(err.contains("the state store failed"), "{}", both(&out));
    assert!(err.contains("exit 74"), "{}", both(&out));
    assert!(!d.path("after-ran").exists(), "a step ran unrecorded");
}

#[test]
fn a_run_held_by_another_process_is_a_temporary_failure_75() {
    let d = Dir::new("held");
    let ready = d.path("ready");
    let go = d.path("go");
    for fifo in [&ready, &go] {
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    // The step says it started through one FIFO and waits for the test on another.
    let file = d.write(
        "p.toml",
        &format!(
            "name = \"held\"\n{}",
            step(
                &d,
                "wait",
                "echo started > \"$0/ready\"; cat \"$0/go\" > /dev/null"
            )
        ),
    );
    let mut child = d
        .cmd(&["run", &file])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // The `run id: ` line comes before the first step starts.
    let mut first = String::new();
    while !first.starts_with("run id: ") {
        first.clear();
        assert!(stdout.read_line(&mut first).unwrap() > 0, "no run id");
    }
    let id = run_id(&first);
    // Blocks until the step has written and closed its end: the run is holding its lock.
    assert_eq!(std::fs::read_to_string(&ready).unwrap(), "started\n");

    // Released however the test ends, so the step never waits for ever.
    let release = Release(go);

    let out = d.expect(75, &["resume", &id]);
    assert!(
        text(&out.stderr).contains("another writer"),
        "{}",
        both(&out)
    );

    drop(release);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{rest}");
}

/// Lets the waiting step go on: opening the FIFO for writing waits for the step's reader.
struct Release(PathBuf);

impl Drop for Release {
    fn drop(&mut self) {
        if let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(&self.0) {
            let _ = fifo.write_all(b"go\n");
        }
    }
}

/// `import FILE` into a store of its own (the run is in `state.db` already).
fn import(d: &Dir, code: i32, file: &str) -> Output {
    let mut cmd = bin();
    cmd.current_dir(&d.0)
        .args(["import", file, "--store"])
        .arg(d.path("other.db"));
    expect(code, cmd)
}

/// An exported run of a one-step pipeline, as JSON.
fn exported(d: &Dir) -> Value {
    let file = d.write(
        "p.toml",
        &format!("name = \"e\"\n{}", step(d, "a", "echo a")),
    );
    let id = run_id(&text(&d.expect(0, &["run", &file]).stdout));
    d.expect(0, &["export", &id, "-o", "run.json"]);
    serde_json::from_str(&std::fs::read_to_string(d.path("run.json")).unwrap()).unwrap()
}

#[test]
fn an_import_file_with_misnumbered_records_is_bad_input() {
    let d = Dir::new("misnumbered");
    let mut doc = exported(&d);
    doc["events"][1]["id"] = Value::from(7);
    let file = d.write("bad.json", &doc.to_string());
    let out = import(&d, 2, &file);
    let err = text(&out.stderr);
    assert!(err.contains("was not imported"), "{err}");
    assert!(err.contains("numbered"), "{err}");
}

#[test]
fn an_import_file_whose_artifact_does_not_match_its_hash_is_bad_input() {
    let d = Dir::new("artifact");
    let mut doc = exported(&d);
    let reference = rh_agents::store::ArtifactRef::of(b"hello", None);
    doc["artifacts"]["greeting"] = serde_json::to_value(&reference).unwrap();
    // "hellx", not "hello".
    doc["blobs"][&reference.sha256] = Value::from("aGVsbHg=");
    let file = d.write("bad.json", &doc.to_string());
    let out = import(&d, 2, &file);
    assert!(text(&out.stderr).contains("corrupt"), "{}", both(&out));
    // And an artifact the file names without its bytes.
    doc["blobs"] = serde_json::json!({});
    let file = d.write("bad.json", &doc.to_string());
    let out = import(&d, 2, &file);
    assert!(
        text(&out.stderr).contains("not in the store"),
        "{}",
        both(&out)
    );
}

#[test]
fn a_step_with_retry_false_says_it_was_not_retried() {
    let d = Dir::new("not-retried");
    let file = d.write(
        "p.toml",
        &format!("name = \"n\"\n{}", step(&d, "a", "exit 1")),
    );
    let out = d.expect(1, &["run", &file]);
    let err = text(&out.stderr);
    assert!(
        err.contains("failed after 1 attempt (not retried)"),
        "{err}"
    );
    assert!(!err.contains("exhausted"), "{err}");

    // Also inside a parallel step, whose message carries its children's.
    let file = d.write(
        "q.toml",
        "name = \"q\"\n[[steps]]\nname = \"group\"\nkind = \"parallel\"\n\
         [[steps.steps]]\nname = \"x\"\nkind = \"command\"\nprogram = \"sh\"\n\
         args = [\"-c\", \"exit 3\"]\nretry = false\n",
    );
    let out = d.expect(1, &["run", &file]);
    let err = text(&out.stderr);
    assert!(err.contains("x: tool `x`"), "{err}");
    assert!(err.contains("(not retried)"), "{err}");
    assert!(!err.contains("exhausted"), "{err}");
}
