//! Helpers shared by the end-to-end tests of the `rh-agents` binary (`tests/cli.rs`,
//! `tests/cli_store.rs`, `tests/cli_process.rs`): the command, scratch directories, JSON
//! lines, a running process whose output is collected while it runs, and a FIFO that steps
//! write to when they reach a point the test waits for.
//!
//! Nothing here sleeps to let something happen: a test waits for a line (of the process's
//! output or of a FIFO), for the end of a stream, or for a thread to finish. Each wait has a
//! generous limit that only turns a hang into a failure; no test asserts how long anything
//! took.
//!
//! Only what several files use lives here; what one file alone needs stays in that file.
#![allow(dead_code)] // each test file uses its own part of these helpers

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
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

/// How long a test waits for something that should happen at once before it fails (only a
/// bound on a hang: generous, since the machine may be busy).
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

/// Whether the process `pid` is gone (a zombie waiting for its reaper counts as gone).
pub(crate) fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until `done` holds, checking it every millisecond, at most [`PATIENCE`]; for what no
/// event announces (a process that is not our child exiting). Fails the test with `what`.
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A named pipe that steps write lines to (`echo ready > "$FIFO"`), read line by line by the
/// test: waiting for a line waits for the step to reach that point, without polling.
pub(crate) struct Fifo {
    path: PathBuf,
    lines: Receiver<String>,
}

impl Fifo {
    /// Creates `<dir>/<name>` as a FIFO and starts reading it.
    pub(crate) fn new(dir: &Path, name: &str) -> Fifo {
        let path = dir.join(name);
        let made = Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success(), "mkfifo {}", path.display());
        // Opened for reading and writing: the open does not wait for a writer, a writer's open
        // does not wait for us, and the reader never sees end-of-file between two writers.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let (tx, lines) = mpsc::channel();
        // The thread ends with the test process (it holds a writer, so the read never ends).
        thread::spawn(move || {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Fifo { path, lines }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The next line written (waits at most [`PATIENCE`]).
    pub(crate) fn line(&self) -> String {
        self.lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no line in {}: {e}", self.path.display()))
    }

    /// The next line, as a pid.
    pub(crate) fn pid(&self) -> i32 {
        let line = self.line();
        line.trim()
            .parse()
            .unwrap_or_else(|e| panic!("not a pid: {line:?}: {e}"))
    }
}

/// One output stream of a running process: the text so far, and whether it ended.
#[derive(Default)]
struct Stream {
    text: Mutex<(String, bool)>,
    changed: Condvar,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, (String, bool)> {
        self.text.lock().unwrap()
    }

    /// Collects `source` line by line in a thread, waking waiters at each line and at the end.
    fn collect(source: impl Read + Send + 'static) -> (Arc<Stream>, JoinHandle<()>) {
        let stream = Arc::new(Stream::default());
        let sink = Arc::clone(&stream);
        let reader = thread::spawn(move || {
            for line in BufReader::new(source).lines().map_while(Result::ok) {
                let mut text = sink.lock();
                text.0.push_str(&line);
                text.0.push('\n');
                sink.changed.notify_all();
            }
            sink.lock().1 = true;
            sink.changed.notify_all();
        });
        (stream, reader)
    }

    /// Waits until `what` holds for the text or the stream ends, at most until `deadline`;
    /// returns whether `what` holds.
    fn wait(&self, deadline: Instant, what: impl Fn(&str) -> bool) -> bool {
        let mut text = self.lock();
        loop {
            if what(&text.0) {
                return true;
            }
            let now = Instant::now();
            if text.1 || now >= deadline {
                return false;
            }
            text = self.changed.wait_timeout(text, deadline - now).unwrap().0;
        }
    }
}

/// A running `rh-agents` whose stdout and stderr are collected by threads.
pub(crate) struct Running {
    pub(crate) child: Child,
    out: Arc<Stream>,
    err: Arc<Stream>,
    readers: Vec<JoinHandle<()>>,
}

impl Running {
    pub(crate) fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, out_reader) = Stream::collect(child.stdout.take().unwrap());
        let (err, err_reader) = Stream::collect(child.stderr.take().unwrap());
        Running {
            child,
            out,
            err,
            readers: vec![out_reader, err_reader],
        }
    }

    /// The stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.out.lock().0.clone()
    }

    fn output(&self) -> String {
        format!(
            "--- stdout:\n{}--- stderr:\n{}",
            self.out.lock().0,
            self.err.lock().0
        )
    }

    /// Waits until `what` holds for the stdout so far (woken at each line); fails the test (and
    /// kills the process) when the process closed its stdout first, or after [`PATIENCE`].
    pub(crate) fn wait_for(&mut self, what: impl Fn(&str) -> bool) {
        if !self.out.wait(Instant::now() + PATIENCE, what) {
            let _ = self.child.kill();
            panic!("waited in vain; output so far:\n{}", self.output());
        }
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, signal).unwrap();
    }

    /// Sends `signal` and waits for the exit; returns the code, stdout and stderr.
    pub(crate) fn stop(self, signal: Signal) -> (i32, String, String) {
        self.signal(signal);
        self.finish()
    }

    /// Waits for the exit (the end of both streams, then the status; fails the test after
    /// [`PATIENCE`]) and checks that nothing panicked; returns the code, stdout and stderr.
    pub(crate) fn finish(mut self) -> (i32, String, String) {
        let deadline = Instant::now() + PATIENCE;
        let ended = [&self.out, &self.err]
            .iter()
            .all(|stream| stream.wait(deadline, |_| false) || stream.lock().1);
        if !ended {
            let _ = self.child.kill();
            panic!(
                "still running after {PATIENCE:?}; output:\n{}",
                self.output()
            );
        }
        let status = self.child.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let out = self.out.lock().0.clone();
        let err = self.err.lock().0.clone();
        let all = format!("{out}{err}");
        assert!(!all.contains("panicked"), "{all}");
        (status.code().unwrap_or(-1), out, err)
    }
}
