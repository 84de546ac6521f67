#![cfg(target_os = "linux")] // the blocked write is seen through /proc/PID/task/*/wchan
#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Ctrl-C works while stdout is a full pipe nobody reads: the output thread stays blocked in
//! its write, and the run still stops at once and exits 3.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{scratch_dir, wait_until, write, Fifo};

/// Far more than the output a pipe holds (64 KiB by default): every step prints lines.
const STEPS: usize = 400;
/// How long the process may take to exit after SIGINT. Generous: the test asserts that it
/// exits (with 3), not how fast.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// A pipeline of [`STEPS`] quick steps, then one that says `started` on `fifo` and sleeps.
fn pipeline(dir: &Path, fifo: &Fifo) -> PathBuf {
    let mut file = String::from("name = \"chatty\"\n");
    for i in 0..STEPS {
        file.push_str(&format!(
            "[[steps]]\nname = \"s{i}\"\nkind = \"command\"\nprogram = \"echo\"\nargs = [\"{}\"]\n",
            "line ".repeat(20)
        ));
    }
    file.push_str(&format!(
        "[[steps]]\nname = \"last\"\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", 'echo started > \"$0\"; sleep 30', \"{}\"]\n",
        fifo.path().display()
    ));
    write(dir, "p.toml", &file)
}

/// Whether a thread of `pid` is blocked writing to a pipe.
fn blocked_in_a_pipe_write(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|task| {
        std::fs::read_to_string(task.path().join("wchan"))
            .is_ok_and(|wchan| wchan.contains("pipe_write"))
    })
}

/// Runs the pipeline with stdout into a pipe that is never read; once the output is stuck
/// and the last step runs, sends SIGINT; returns the exit code and stderr.
fn interrupted_with_a_full_stdout(test: &str, extra: &[&str]) -> (i32, String) {
    let dir = scratch_dir("rh-agents-cli-pipe", test);
    let fifo = Fifo::new(&dir, "fifo");
    let file = pipeline(&dir, &fifo);
    let mut child: Child = support::bin()
        .arg("--store")
        .arg(dir.join("state.db"))
        .arg("run")
        .args(extra)
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open and never read: the pipe fills up.
    let _stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    // The run goes on although its output cannot: the last step starts...
    assert_eq!(fifo.line(), "started");
    // ...while the output is stuck in a write to the full pipe.
    let pid = child.id();
    wait_until("stdout is a full pipe", || blocked_in_a_pipe_write(pid));

    let pid = Pid::from_raw(i32::try_from(pid).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    // Waited for on a thread of its own, so the test can give up on a process that hangs.
    let (done, exited) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done.send(());
        status
    });
    if exited.recv_timeout(EXIT_WITHIN).is_err() {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waiter.join();
        panic!("still running {EXIT_WITHIN:?} after SIGINT with a full stdout");
    }
    let status = waiter.join().unwrap().unwrap();
    let stderr = errors.join().unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn sigint_stops_a_run_whose_json_output_is_a_full_pipe() {
    let (code, stderr) = interrupted_with_a_full_stdout("json", &["--json"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
}

#[test]
fn sigint_stops_a_run_whose_printed_output_is_a_full_pipe() {
    let (code, stderr) = interrupted_with_a_full_stdout("printer", &[]);
    assert_eq!(code, 3, "{stderr}");
}

#[test]
fn the_pipe_check_sees_a_blocked_writer() {
    // The check the tests above rely on, on a process known to block: `yes` into a pipe
    // nobody reads.
    let mut yes = Command::new("yes").stdout(Stdio::piped()).spawn().unwrap();
    let pid = yes.id();
    wait_until("yes blocks", || blocked_in_a_pipe_write(pid));
    yes.kill().unwrap();
    yes.wait().unwrap();
}
