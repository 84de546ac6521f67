//! Helpers shared by the end-to-end tests of the `rh-agents` binary (`tests/cli.rs` and
//! `tests/cli_store.rs`): the command, scratch directories, JSON lines, and a running process
//! whose output is collected while it runs.
//!
//! Only what both files use lives here; what one file alone needs stays in that file.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// `rh-agents` without colours and without a store from the environment: each test file
/// chooses its store (`tests/cli.rs` through `RH_AGENTS_STORE`, `tests/cli_store.rs` with
/// `--store`).
pub(crate) fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rh-agents"));
    cmd.env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("RH_AGENTS_STORE");
    cmd
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory `<tmp>/<prefix>-<test>-<pid>` for one test. Each test file has its
/// own `prefix`, so tests of the same name in both files do not share a directory.
pub(crate) fn scratch_dir(prefix: &str, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `<dir>/<name>`; returns the path.
pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Every line of `stdout` as JSON (a line that is not JSON fails the test).
pub(crate) fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// How many `events` (JSON lines, or those of a `show --json` snapshot) are at `address` with
/// `status`.
pub(crate) fn count_events(events: &[Value], address: &str, status: &str) -> usize {
    events
        .iter()
        .filter(|e| e["address"] == address && e["status"] == status)
        .count()
}

/// Waits (at most `limit`) until the process `pid` is gone.
pub(crate) fn assert_gone_within(pid: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !is_gone(pid) {
        assert!(Instant::now() < deadline, "sleep (pid {pid}) still runs");
        thread::sleep(Duration::from_millis(20));
    }
}

fn is_gone(pid: i32) -> bool {
    // A zombie waiting for its reaper counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// A running `rh-agents` whose stdout and stderr are collected by threads.
pub(crate) struct Running {
    pub(crate) child: Child,
    /// The stdout so far.
    pub(crate) out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}

impl Running {
    pub(crate) fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(child.stdout.take().unwrap());
        let err = collect(child.stderr.take().unwrap());
        Running { child, out, err }
    }

    fn output(&self) -> String {
        format!(
            "--- stdout:\n{}--- stderr:\n{}",
            self.out.lock().unwrap(),
            self.err.lock().unwrap()
        )
    }

    /// Waits (at most 10 s) until `what` holds for the stdout so far; fails the test (and kills
    /// the process) when the time is up or the process exited first.
    pub(crate) fn wait_for(&mut self, what: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what(&self.out.lock().unwrap()) {
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                let _ = self.child.kill();
                panic!("waited in vain; output so far:\n{}", self.output());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a step has written its pid (a whole line) to `file`; returns the pid.
    pub(crate) fn wait_for_pid(&mut self, file: &Path) -> i32 {
        self.wait_for(|_| std::fs::read_to_string(file).is_ok_and(|s| s.ends_with('\n')));
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, signal).unwrap();
    }

    /// Sends `signal` and waits for the exit, which must come within `within` of it (the wait
    /// gives up 3 s later); returns the code, stdout and stderr.
    pub(crate) fn stop(self, signal: Signal, within: Duration) -> (i32, String, String) {
        let sent = Instant::now();
        self.signal(signal);
        let ended = self.finish(within + Duration::from_secs(3));
        assert!(sent.elapsed() < within, "{:?}", sent.elapsed());
        ended
    }

    /// Waits for the exit (at most `limit`) and checks that nothing panicked; returns the code,
    /// stdout and stderr.
    pub(crate) fn finish(mut self, limit: Duration) -> (i32, String, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running after {limit:?}; output:\n{}", self.output());
            }
            thread::sleep(Duration::from_millis(5));
        };
        // Let the reader threads take the last lines.
        thread::sleep(Duration::from_millis(50));
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        let all = format!("{out}{err}");
        assert!(!all.contains("panicked"), "{all}");
        (status.code().unwrap_or(-1), out, err)
    }
}
