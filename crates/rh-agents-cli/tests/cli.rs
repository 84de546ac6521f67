#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The `rh-agents` binary driven end to end: exit codes, printed tree, JSON lines, signals,
//! HTTP retries against a local server, parallel groups.
//!
//! No test asserts how long something took: each checks the order and the outcome (a 30 s
//! backoff that was waited out would show as a retry in the output).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{count_events, is_gone, json_lines, text, write, Fifo, Running};

/// A pipeline whose one step sleeps for 30 s.
const SLEEP_30: &str = "name = \"x\"\n[[steps]]\nname = \"long\"\nkind = \"command\"\nprogram = \"sleep\"\nargs = [\"30\"]\n";

fn bin() -> Command {
    let mut cmd = support::bin();
    // One store for this test binary, outside the source tree: the tests' runs share it, as
    // concurrent runs share a real store.
    let store = std::env::temp_dir()
        .join(format!("rh-agents-cli-tests-{}", std::process::id()))
        .join("state.db");
    cmd.env("RH_AGENTS_STORE", store);
    cmd
}

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    support::scratch_dir("rh-agents-cli", test)
}

fn run(file: &Path, extra: &[&str]) -> Output {
    bin().arg("run").arg(file).args(extra).output().unwrap()
}

/// `rh-agents run FILE`, running.
fn start(file: &Path) -> Running {
    let mut cmd = bin();
    cmd.arg("run").arg(file);
    Running::start(cmd)
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipelines")
}

#[test]
fn quickstart_example_retries_then_completes_and_prints_the_run_id() {
    let out = run(&examples().join("quickstart.toml"), &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("↻ tool warm-up retrying: Attempt 2/4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("▶ tool warm-up started (attempt 3/4)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("attempt 2: service still warming up"),
        "{stdout}"
    );
    assert!(stdout.contains("✔ tool warm-up completed"), "{stdout}");
    assert!(stdout.contains("the service said: ready"), "{stdout}");
    assert!(
        stdout.contains("retries: 1 call retried, 2 retries"),
        "{stdout}"
    );
    assert!(stdout.contains("run completed"), "{stdout}");
    let id = stdout.lines().last().unwrap();
    assert!(
        id.starts_with("run id: ") && id.len() == "run id: ".len() + 36,
        "{id}"
    );
}

#[test]
fn parallel_example_completes_and_passes_child_outputs_on() {
    let out = run(&examples().join("parallel.toml"), &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("up to 2 at a time"), "{stdout}");
    assert!(
        stdout.contains(r#""stdout":"lint: 0 warnings\nunit: 42 passed\n""#),
        "{stdout}"
    );
}

#[test]
fn every_kind_of_bad_file_is_exit_2_with_file_line_and_column() {
    let dir = scratch("bad");
    let ok_step = "[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\n";
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "syntax",
            "name = \"x\"\n[[steps]\nname = \"a\"\n".to_owned(),
            ":2:8: ",
            "invalid table header",
        ),
        (
            "unknown-field",
            format!("name = \"x\"\n{ok_step}progam = \"x\"\n"),
            ":6:1: ",
            "unknown field `progam`",
        ),
        (
            "wrong-type",
            format!("name = \"x\"\n{ok_step}args = \"-c\"\n"),
            ":6:8: ",
            "invalid type: string \"-c\", expected a sequence",
        ),
        (
            "missing-field",
            "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"command\"\n".to_owned(),
            ":3:8: ",
            "command step \"a\" needs `program`",
        ),
        (
            "duplicate",
            format!("name = \"x\"\n{ok_step}{ok_step}"),
            ":7:8: ",
            "duplicate step name \"a\" (first defined at 3:8)",
        ),
        (
            "unknown-ref",
            format!("name = \"x\"\n{ok_step}stdin = \"{{{{ steps.nope.stdout }}}}\"\n"),
            ":6:9: ",
            "`{{ steps.nope.stdout }}`: there is no step named \"nope\"",
        ),
        (
            "forward-ref",
            format!(
                "name = \"x\"\n{ok_step}stdin = \"{{{{ steps.b.stdout }}}}\"\n[[steps]]\nname = \"b\"\nkind = \"command\"\nprogram = \"true\"\n"
            ),
            ":6:9: ",
            "`{{ steps.b.stdout }}`: step \"b\" runs later (defined at 8:8)",
        ),
        (
            "self-ref",
            format!("name = \"x\"\n{ok_step}stdin = \"{{{{ steps.a.stdout }}}}\"\n"),
            ":6:9: ",
            "`{{ steps.a.stdout }}`: step \"a\" refers to itself",
        ),
        (
            "bad-field",
            format!(
                "name = \"x\"\n{ok_step}[[steps]]\nname = \"b\"\nkind = \"command\"\nprogram = \"{{{{ steps.a.body }}}}\"\n"
            ),
            ":9:11: ",
            "`{{ steps.a.body }}`: a command step has no field `body`",
        ),
        (
            "bad-duration",
            format!("name = \"x\"\n{ok_step}timeout = \"5 parsecs\"\n"),
            ":6:11: ",
            "invalid duration \"5 parsecs\"",
        ),
        (
            "bad-kind-value",
            format!("name = \"x\"\n{ok_step}url = \"http://x\"\n"),
            ":6:7: ",
            "`url` is not a field of a command step",
        ),
        (
            "nul-in-argument",
            format!("name = \"x\"\n{ok_step}args = [\"a\\u0000b\"]\n"),
            ":6:9: ",
            "contains a NUL byte",
        ),
        (
            "impossible-exit-code",
            format!("name = \"x\"\n{ok_step}retryable_exit_codes = [1, 300]\n"),
            ":6:24: ",
            "exit code 300 cannot happen: exit codes are 1 to 255",
        ),
        (
            "bad-header-value",
            "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"http\"\nurl = \"http://x\"\nheaders = { x-a = \"one\\ntwo\" }\n"
                .to_owned(),
            ":6:19: ",
            "the value of header \"x-a\" is not valid",
        ),
    ];
    for (name, body, position, message) in cases {
        let file = write(&dir, &format!("{name}.toml"), body);
        let out = run(&file, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let expected = format!("error: {}{position}{message}", file.display());
        assert!(
            stderr.contains(&expected),
            "{name}: wanted {expected:?} in\n{stderr}"
        );
        assert!(out.stdout.is_empty(), "{name}: nothing runs");
    }
    let missing = run(&dir.join("nope.toml"), &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read"));
    let usage = bin().args(["run"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let bad_timeout = bin()
        .args(["run", "x.toml", "--timeout", "soon"])
        .output()
        .unwrap();
    assert_eq!(bad_timeout.status.code(), Some(2));
}

#[test]
fn sigint_during_a_long_backoff_stops_at_once_with_exit_3() {
    let dir = scratch("backoff");
    let file = write(
        &dir,
        "p.toml",
        "name = \"x\"\n[[steps]]\nname = \"down\"\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"exit 1\"]\nretry = { strategy = \"constant\", base = \"30s\", max_attempts = 3 }\n",
    );
    let mut running = start(&file);
    running.wait_for(|out| out.contains("retrying"));
    let (code, out, err) = running.stop(Signal::SIGINT);
    assert_eq!(code, 3, "{out}{err}");
    // Stopped in the backoff: the second attempt never started.
    assert!(!out.contains("(attempt 2/3)"), "{out}");
    assert!(out.contains("interrupt requested: user_cancelled"), "{out}");
    assert!(out.contains("tool down interrupted"), "{out}");
    assert!(out.contains("run interrupted (user_cancelled)"), "{out}");
    assert!(out.contains("run id: "), "{out}");
}

/// Runs a pipeline whose one step (`long`) sleeps 30 s; returns it once the step's shell
/// has written its pid (the pid of the `sleep` it becomes).
fn start_sleeper(dir: &Path) -> (Running, i32) {
    let fifo = Fifo::new(dir, "pid");
    let file = write(
        dir,
        "p.toml",
        &format!(
            "name = \"x\"\n[[steps]]\nname = \"long\"\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"echo $$ > '{}'; exec sleep 30\"]\n",
            fifo.path().display()
        ),
    );
    let running = start(&file);
    let pid = fifo.pid();
    (running, pid)
}

#[test]
fn sigint_during_a_command_terminates_the_child() {
    let dir = scratch("command");
    let (running, pid) = start_sleeper(&dir);
    let (code, out, err) = running.stop(Signal::SIGINT);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("tool long interrupted"), "{out}");
    assert!(is_gone(pid), "the command outlived rh-agents");
}

#[test]
fn sigterm_is_a_system_shutdown() {
    let dir = scratch("sigterm");
    let (running, pid) = start_sleeper(&dir);
    let (code, out, _) = running.stop(Signal::SIGTERM);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("run interrupted (system_shutdown)"), "{out}");
    assert!(is_gone(pid), "the command outlived rh-agents");
}

#[test]
fn sighup_is_a_system_shutdown_that_stops_the_command() {
    let dir = scratch("sighup");
    let (running, pid) = start_sleeper(&dir);
    let (code, out, err) = running.stop(Signal::SIGHUP);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("run interrupted (system_shutdown)"), "{out}");
    assert!(is_gone(pid), "the command outlived rh-agents");
}

#[test]
fn an_argument_the_system_refuses_is_not_retried() {
    // The first step prints a NUL byte; the second passes it on as an argument, which no
    // program can receive: the same failure every time, so no retry and no backoff.
    let dir = scratch("nul");
    let file = write(
        &dir,
        "p.toml",
        "name = \"x\"\n[defaults]\nretry = { strategy = \"constant\", base = \"30s\", max_attempts = 3 }\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"printf\"\nargs = [\"x\\\\000y\"]\n[[steps]]\nname = \"b\"\nkind = \"command\"\nprogram = \"echo\"\nargs = [\"{{ steps.a.stdout }}\"]\n",
    );
    let out = run(&file, &[]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("tool b failed"), "{all}");
    assert!(!all.contains("tool b retrying"), "{all}");
}

#[test]
fn json_lines_carry_every_event() {
    let out = run(
        &examples().join("quickstart.toml"),
        &["--json", "--tag", "ci"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let events = json_lines(&stdout);
    let count = |address: &str, status: &str| count_events(&events, address, status);
    assert_eq!(count("warm-up#0", "started"), 3);
    assert_eq!(count("warm-up#0", "failed"), 2);
    assert_eq!(count("warm-up#0", "retrying"), 2);
    assert_eq!(count("warm-up#0", "completed"), 1);
    assert_eq!(count("greet#0", "started"), 1);
    assert_eq!(count("greet#0", "completed"), 1);
    assert_eq!(events[0]["metadata"]["tags"], serde_json::json!(["ci"]));
    // The tree is not mixed in; the summary and run id go to stderr.
    assert!(!stdout.contains("Summary"));
    assert!(text(&out.stderr).contains("run id: "));
}

/// Serves one scripted response per connection; returns the port and the arrival times.
fn serve(responses: Vec<&'static str>) -> (u16, Arc<Mutex<Vec<Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&arrivals);
    thread::spawn(move || {
        for response in responses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            log.lock().unwrap().push(Instant::now());
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (port, arrivals)
}

#[test]
fn http_step_retries_a_503_after_retry_after_then_succeeds() {
    let (port, arrivals) = serve(vec![
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
        "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n",
    ]);
    let dir = scratch("http");
    let file = write(
        &dir,
        "p.toml",
        &format!(
            "name = \"x\"\n[defaults]\nretry = {{ strategy = \"constant\", base = \"10ms\", max_attempts = 3, jitter = false }}\n[[steps]]\nname = \"get\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/x\"\n[[steps]]\nname = \"show\"\nkind = \"command\"\nprogram = \"echo\"\nargs = [\"got {{{{ steps.get.body }}}} {{{{ steps.get.status }}}}\"]\n"
        ),
    );
    let out = run(&file, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("HTTP 503 Service Unavailable: busy"),
        "{stdout}"
    );
    assert!(stdout.contains("retrying: Attempt 2/3 in 1.0s"), "{stdout}");
    assert!(stdout.contains(r#""stdout":"got hello 200\n""#), "{stdout}");
    let times = arrivals.lock().unwrap();
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After ignored: {gap:?}"
    );
}

#[test]
fn http_404_is_permanent() {
    let (port, arrivals) = serve(vec![
        "HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\nConnection: close\r\n\r\nmissing",
    ]);
    let dir = scratch("http404");
    let file = write(
        &dir,
        "p.toml",
        &format!("name = \"x\"\n[[steps]]\nname = \"get\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nretry = {{ base = \"10ms\" }}\n"),
    );
    let out = run(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("attempt 1/3, not retried"), "{stdout}");
    assert!(text(&out.stderr).contains("HTTP 404 Not Found: missing"));
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

fn parallel_file(dir: &Path, fail_fast: bool) -> PathBuf {
    // Fail-fast must stop `slow` long before it would finish; fail-slow waits for it.
    let slow = if fail_fast { 10 } else { 1 };
    write(
        dir,
        "p.toml",
        &format!(
            r#"name = "x"
[[steps]]
name = "fan"
kind = "parallel"
max_workers = 3
fail_fast = {fail_fast}
steps = [
  {{ name = "slow", kind = "command", program = "sh", args = ["-c", "sleep {slow}; echo slow"] }},
  {{ name = "bad", kind = "command", program = "sh", args = ["-c", "echo broken >&2; exit 2"], retry = false }},
  {{ name = "fast", kind = "command", program = "echo", args = ["fast"] }},
]
[[steps]]
name = "after"
kind = "command"
program = "echo"
args = ["{{{{ steps.fan.slow.stdout }}}}"]
"#
        ),
    )
}

#[test]
fn parallel_fail_fast_stops_the_others() {
    let dir = scratch("fail-fast");
    let out = run(&parallel_file(&dir, true), &[]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // `slow` was stopped, not waited for.
    assert!(!stdout.contains("tool slow [task 0] completed"), "{stdout}");
    assert!(stdout.contains("fail-fast"), "{stdout}");
    assert!(
        stdout.contains("tool slow [task 0] interrupted") || stdout.contains("cancelled"),
        "{stdout}"
    );
    assert!(stderr.contains("error: step \"fan\" failed: "), "{stderr}");
    // `fast` may finish before `bad` fails, or be cancelled with `slow`.
    assert!(stderr.contains("1 of 3 steps failed, "), "{stderr}");
    assert!(stderr.contains(" cancelled: bad: "), "{stderr}");
    assert!(
        stderr.contains("`sh` exited with code 2: broken"),
        "{stderr}"
    );
    assert!(!stdout.contains("tool after"), "{stdout}");
}

#[test]
fn parallel_fail_slow_runs_every_step_and_reports_the_failures() {
    let dir = scratch("fail-slow");
    let out = run(&parallel_file(&dir, false), &[]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("✔ tool slow [task 0] completed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("✔ tool fast [task 2] completed"),
        "{stdout}"
    );
    assert!(stdout.contains("2/3 completed, 1 failed"), "{stdout}");
    assert!(stderr.contains("1 of 3 steps failed: bad:"), "{stderr}");
}

#[test]
fn run_timeout_interrupts_with_exit_3() {
    let dir = scratch("timeout");
    let file = write(&dir, "p.toml", SLEEP_30);
    let out = run(&file, &["--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("tool long interrupted"), "{stdout}");
    assert!(stdout.contains("run interrupted (timeout)"), "{stdout}");
}

#[test]
fn http_408_is_retried() {
    let (port, arrivals) = serve(vec![
        "HTTP/1.1 408 Request Timeout\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ]);
    let dir = scratch("http408");
    let file = write(
        &dir,
        "p.toml",
        &format!("name = \"x\"\n[[steps]]\nname = \"get\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nretry = {{ base = \"10ms\" }}\n"),
    );
    let out = run(&file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(arrivals.lock().unwrap().len(), 2);
}

#[test]
fn a_command_the_shell_cannot_find_is_not_retried() {
    let dir = scratch("127");
    let file = write(
        &dir,
        "p.toml",
        "name = \"x\"\n[[steps]]\nname = \"typo\"\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", \"no-such-command-rh-agents\"]\nretry = { strategy = \"constant\", base = \"30s\", max_attempts = 3 }\n",
    );
    let out = run(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("attempt 1/3, not retried"), "{stdout}");
    assert!(
        text(&out.stderr).contains("exited with code 127"),
        "{}",
        text(&out.stderr)
    );
}
