#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The processes of command steps, end to end: what an interrupt sends to the commands of a
//! parallel step (each process group gets SIGTERM once, SIGKILL after its grace, and is gone
//! when `rh-agents` exits), and what a command's output records when it is cut or not UTF-8.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;
use serde_json::Value;
use support::{is_gone, json_lines, text, write, Fifo, Running};

fn bin(dir: &Path) -> Command {
    let mut cmd = support::bin();
    cmd.arg("--store").arg(dir.join("state.db"));
    cmd
}

fn scratch(test: &str) -> PathBuf {
    support::scratch_dir("rh-agents-cli-process", test)
}

/// How many times the interrupt scenario runs: the double SIGTERM it guards against showed in
/// about one run in five with two children; with [`CHILDREN`] children per run, each run
/// gives the race that many chances.
const ROUNDS: usize = 12;
const CHILDREN: usize = 4;

/// A parallel step of [`CHILDREN`] commands that each append a line to `<dir>/<name>.term`
/// in their TERM trap (which then lasts a moment, as a real clean-up does, so a second
/// SIGTERM would run it again), and write their name to `ready` once the trap is set.
fn trapping_pipeline(dir: &Path, ready: &Fifo) -> PathBuf {
    let mut file =
        String::from("name = \"traps\"\n[[steps]]\nname = \"fan\"\nkind = \"parallel\"\n");
    file.push_str(&format!("max_workers = {CHILDREN}\n"));
    for i in 0..CHILDREN {
        file.push_str(&format!(
            r#"[[steps.steps]]
name = "c{i}"
kind = "command"
program = "sh"
args = ["-c", 'trap "echo term >> \"$0/$1.term\"; sleep 0.2; exit 0" TERM; echo $1 > "$2"; sleep 30 & wait', "{dir}", "c{i}", "{ready}"]
"#,
            dir = dir.display(),
            ready = ready.path().display(),
        ));
    }
    write(dir, "p.toml", &file)
}

#[test]
fn an_interrupt_gives_each_command_of_a_parallel_step_exactly_one_sigterm() {
    for round in 0..ROUNDS {
        let dir = scratch(&format!("term-once-{round}"));
        let ready = Fifo::new(&dir, "ready");
        let file = trapping_pipeline(&dir, &ready);
        let mut cmd = bin(&dir);
        cmd.arg("run").arg(&file);
        let running = Running::start(cmd);
        for _ in 0..CHILDREN {
            ready.line();
        }
        let (code, out, err) = running.stop(Signal::SIGINT);
        assert_eq!(code, 3, "round {round}:\n{out}{err}");
        for i in 0..CHILDREN {
            let traps = std::fs::read_to_string(dir.join(format!("c{i}.term"))).unwrap_or_default();
            assert_eq!(
                traps.lines().count(),
                1,
                "round {round}: child c{i} ran its TERM trap {} times\n{out}",
                traps.lines().count()
            );
        }
    }
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_its_grace_and_gone_when_rh_agents_exits() {
    // `polite` stops on SIGTERM, saying so on stderr first (its output pipe must still be read
    // during the grace, or that write kills it with SIGPIPE); `stubborn` notes the SIGTERM
    // and goes on ticking until SIGKILL (the shell also reports its `sleep` killed by the
    // SIGTERM on stderr).
    // Each round gives the race between the interrupted attempt and its drop another chance.
    for round in 0..3 {
        let dir = scratch(&format!("grace-{round}"));
        let fifo = Fifo::new(&dir, "fifo");
        let file = write(
            &dir,
            "p.toml",
            &format!(
                r#"name = "x"
[[steps]]
name = "fan"
kind = "parallel"
max_workers = 2
[[steps.steps]]
name = "polite"
kind = "command"
program = "sh"
args = ["-c", 'trap "echo stopping >&2; echo term >> \"$0/polite.log\"; exit 0" TERM; echo polite > "$1"; sleep 30 & wait', "{dir}", "{fifo}"]
[[steps.steps]]
name = "stubborn"
kind = "command"
program = "sh"
args = ["-c", 'trap "echo term >> \"$0/stubborn.log\"" TERM; echo $$ > "$1"; while true; do sleep 0.05; echo tick >> "$0/stubborn.log"; done', "{dir}", "{fifo}"]
"#,
                dir = dir.display(),
                fifo = fifo.path().display(),
            ),
        );
        let mut cmd = bin(&dir);
        cmd.arg("run").arg(&file);
        let running = Running::start(cmd);
        let (first, second) = (fifo.line(), fifo.line());
        let stubborn: i32 = if first == "polite" { second } else { first }
            .parse()
            .unwrap();
        let (code, out, err) = running.stop(Signal::SIGINT);
        assert_eq!(code, 3, "round {round}: {out}{err}");
        let polite = std::fs::read_to_string(dir.join("polite.log"))
            .unwrap_or_else(|e| panic!("round {round}: no polite.log ({e}):\n{out}{err}"));
        assert_eq!(polite, "term\n", "asked to stop once, not killed");
        // The stubborn one took its SIGTERM once, lived on (its grace), then was killed: it was
        // gone before `rh-agents` exited.
        let log = std::fs::read_to_string(dir.join("stubborn.log"))
            .unwrap_or_else(|e| panic!("round {round}: no stubborn.log ({e}):\n{out}{err}"));
        let after_term: Vec<&str> = log.lines().skip_while(|l| *l != "term").collect();
        assert_eq!(log.matches("term").count(), 1, "{log}");
        assert!(after_term.len() > 1, "killed without its grace:\n{log}");
        assert!(after_term[1..].iter().all(|l| *l == "tick"), "{log}");
        assert!(is_gone(stubborn), "the stubborn command outlived rh-agents");
    }
}

/// Runs a pipeline whose first command is `script` (sh), with `--json`; returns the output
/// value of that step (`out`), and every event. With `echo`, a second step prints
/// `{{ steps.out.stdout }}`, which must be the text of the first step's output.
fn run_json(dir: &Path, script: &str, echo: bool) -> (Value, Vec<Value>) {
    let mut pipeline = format!(
        "name = \"x\"\n[[steps]]\nname = \"out\"\nkind = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", '{script}']\n"
    );
    if echo {
        pipeline.push_str("[[steps]]\nname = \"echo\"\nkind = \"command\"\nprogram = \"printf\"\nargs = [\"%s\", \"{{ steps.out.stdout }}\"]\n");
    }
    let file = write(dir, "p.toml", &pipeline);
    let out = bin(dir)
        .arg("run")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let events = json_lines(&text(&out.stdout));
    let value = completed(&events, "out#0");
    if echo {
        // (A template trims one trailing newline.)
        let text = value["stdout"].as_str().unwrap();
        assert_eq!(
            completed(&events, "echo#0")["stdout"],
            text.strip_suffix('\n').unwrap_or(text),
            "the template got other text"
        );
    }
    (value, events)
}

/// The result of the completed call at `address`.
fn completed(events: &[Value], address: &str) -> Value {
    events
        .iter()
        .find(|e| e["address"] == address && e["status"] == "completed")
        .unwrap_or_else(|| panic!("no completed {address}"))["result"]
        .clone()
}

/// The messages of the log records at `address`.
fn logs(events: &[Value], address: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["address"] == address && e["status"] == "log")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn output_past_the_cap_is_cut_and_the_output_says_how_much_was_dropped() {
    let dir = scratch("cap");
    // 16 MiB + 5 bytes on stdout; the cap keeps 16 MiB.
    let (value, events) = run_json(
        &dir,
        "head -c 16777221 /dev/zero | tr \"\\\\000\" a; echo fine >&2",
        false,
    );
    assert_eq!(value["stdout"].as_str().unwrap().len(), 16 * 1024 * 1024);
    assert_eq!(value["stdout_truncated_bytes"], 5, "{}", value["stderr"]);
    assert_eq!(value["stderr"], "fine\n");
    assert!(value.get("stderr_truncated_bytes").is_none());
    assert!(value.get("stdout_base64").is_none());
    assert_eq!(
        logs(&events, "out#0"),
        ["stdout cut at 16777216 bytes: 5 more bytes dropped"]
    );
}

#[test]
fn output_that_is_not_utf8_keeps_its_exact_bytes_in_base64() {
    let dir = scratch("bytes");
    let (value, events) = run_json(&dir, "printf \"a\\\\377b\"", true);
    assert_eq!(value["stdout"], "a\u{fffd}b");
    assert_eq!(value["stdout_base64"], "Yf9i");
    assert!(value.get("stdout_truncated_bytes").is_none());
    assert_eq!(
        logs(&events, "out#0"),
        ["stdout is not UTF-8: its exact bytes are in `stdout_base64`"]
    );
    // Text output has neither field, and no warning.
    let (plain, events) = run_json(&scratch("text"), "echo héllo", true);
    assert_eq!(plain["stdout"], "héllo\n");
    assert!(plain.get("stdout_base64").is_none(), "{plain}");
    assert!(logs(&events, "out#0").is_empty());
}

/// Serves `body` (with a 200) to one connection, from a thread the caller joins.
fn serve_once(body: Vec<u8>) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
            line.clear();
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        // The client may hang up once it has read what it keeps.
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    });
    (port, server)
}

/// Runs one http step against `port` with `--json`; returns its output value.
fn http_output(dir: &Path, port: u16) -> Value {
    let file = write(
        dir,
        "p.toml",
        &format!("name = \"x\"\n[[steps]]\nname = \"get\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/\"\nretry = false\n"),
    );
    let out = bin(dir)
        .arg("run")
        .arg(&file)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    completed(&json_lines(&text(&out.stdout)), "get#0")
}

#[test]
fn an_http_body_past_the_cap_or_not_utf8_says_so_in_the_output() {
    let (port, server) = serve_once(vec![b'a'; 16 * 1024 * 1024 + 5]);
    let value = http_output(&scratch("http-cap"), port);
    server.join().unwrap();
    assert_eq!(value["body"].as_str().unwrap().len(), 16 * 1024 * 1024);
    assert_eq!(value["body_truncated"], true);
    assert!(value.get("body_base64").is_none());

    let (port, server) = serve_once(vec![b'a', 0xff, b'b']);
    let value = http_output(&scratch("http-bytes"), port);
    server.join().unwrap();
    assert_eq!(value["body"], "a\u{fffd}b");
    assert_eq!(value["body_base64"], "Yf9i");
    assert!(value.get("body_truncated").is_none());
}
