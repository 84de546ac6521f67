#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The processes of command steps, end to end: what an interrupt sends to the commands of a
//! parallel step (each process group gets SIGTERM once, SIGKILL after its grace, and is gone
//! when `rh-agents` exits).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;
use support::{is_gone, write, Fifo, Running};

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
