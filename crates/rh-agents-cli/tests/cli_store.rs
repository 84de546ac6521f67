#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Phase 2 of the `rh-agents` binary, end to end: the durable store (`--store`), `resume`,
//! `interrupt` from another process, `runs`, `show`, `export`/`import`, crash recovery after
//! SIGKILL, and the bad inputs of each.
//!
//! Steps count their executions by appending a line to `<scratch>/<step>.count`, so "a step
//! that completed before is not run again" is checked on the side effects, not only on the
//! output.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::sys::signal::Signal;
use serde_json::Value;
use support::{bin, count_events, is_gone, json_lines, text, wait_until, Fifo, Running};

fn both(out: &Output) -> String {
    format!(
        "--- stdout:\n{}--- stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn assert_no_panic(out: &Output) {
    let all = both(out);
    assert!(!all.contains("panicked"), "{all}");
    assert!(!all.contains("RUST_BACKTRACE"), "{all}");
}

/// Runs `cmd`, asserts its exit code and that nothing panicked; returns the output.
fn expect_exit(code: i32, mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{cmd:?}\n{}", both(&out));
    assert_no_panic(&out);
    out
}

/// A fresh directory for one test, with its store at `<dir>/state.db`.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        Scratch {
            dir: support::scratch_dir("rh-agents-cli-store", test),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn store(&self) -> PathBuf {
        self.path("state.db")
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        support::write(&self.dir, name, text)
    }

    /// A command step that appends a line to `<dir>/<name>.count`, then runs `then` (shell).
    fn step(&self, name: &str, then: &str) -> String {
        format!(
            "[[steps]]\nname = \"{name}\"\nkind = \"command\"\nprogram = \"sh\"\nargs = ['-c', 'echo x >> \"$0/{name}.count\"; {then}', '{}']\n",
            self.dir.display()
        )
    }

    /// `rh-agents ARGS...` in the scratch directory, naming no store (so the default one, or
    /// `RH_AGENTS_STORE` when the caller sets it).
    fn plain(&self, args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.current_dir(&self.dir).args(args);
        cmd
    }

    /// `rh-agents --store STORE ARGS...` in the scratch directory.
    fn cmd_on(&self, store: &Path, args: &[&str]) -> Command {
        let mut cmd = self.plain(&["--store"]);
        cmd.arg(store).args(args);
        cmd
    }

    /// `rh-agents --store <dir>/state.db ARGS...`, in the scratch directory.
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_on(&self.store(), args)
    }

    /// Runs on `store` and asserts the exit code; returns the output.
    fn expect_on(&self, store: &Path, code: i32, args: &[&str]) -> Output {
        expect_exit(code, self.cmd_on(store, args))
    }

    /// Runs (on `<dir>/state.db`) and asserts the exit code; returns the output.
    fn expect(&self, code: i32, args: &[&str]) -> Output {
        self.expect_on(&self.store(), code, args)
    }

    /// How many times the step `name` ran (lines in its count file; 0 when it never ran).
    fn count(&self, name: &str) -> usize {
        std::fs::read_to_string(self.path(&format!("{name}.count")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// `runs --json`, parsed.
    fn runs_json(&self, filters: &[&str]) -> Vec<Value> {
        let mut args = vec!["runs", "--json"];
        args.extend_from_slice(filters);
        let out = self.expect(0, &args);
        let value: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("runs --json: {e}\n{}", both(&out)));
        value.as_array().unwrap().clone()
    }

    /// The `runs --json` entry of `id`.
    fn run_entry(&self, id: &str) -> Value {
        self.runs_json(&[])
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed by `runs --json`"))
    }

    /// `show --json ID`, parsed.
    fn snapshot(&self, id: &str) -> Value {
        let out = self.expect(0, &["show", "--json", id]);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("show --json: {e}\n{}", both(&out)))
    }

    /// The run `id` is saved as interrupted, with the record of an interrupt for `reason`.
    fn assert_interrupted_by(&self, id: &str, reason: &str) {
        let snap = self.snapshot(id);
        assert_eq!(snap["status"], "interrupted");
        assert!(
            snap["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["interrupt"]["reason"] == reason),
            "{snap}"
        );
    }

    fn start(&self, args: &[&str]) -> Running {
        Running::start(self.cmd(args))
    }
}

/// A pipeline of `steps` with fast, jitter-free retries by default.
fn pipeline(name: &str, steps: &[String]) -> String {
    format!(
        "name = \"{name}\"\n[defaults]\nretry = {{ strategy = \"constant\", base = \"10ms\", max_attempts = 2, jitter = false }}\n{}",
        steps.concat()
    )
}

/// The id on the first `run id: ID` line.
fn run_id(output: &str) -> String {
    let id = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("run id: "))
        .unwrap_or_else(|| panic!("no `run id: ` line in\n{output}"))
        .trim()
        .to_owned();
    assert_eq!(id.len(), 36, "{id:?}");
    id
}

/// Waits for the `run id: ` line (stdout) of a running `rh-agents` and returns the id.
fn wait_for_id(running: &mut Running) -> String {
    running.wait_for(|out| out.lines().any(|l| l.starts_with("run id: ")));
    run_id(&running.stdout())
}

/// The children of the process `pid` (of all its threads).
fn children_of(pid: u32) -> Vec<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flat_map(|task| {
            let children = std::fs::read_to_string(task.unwrap().path().join("children"));
            children
                .unwrap_or_default()
                .split_whitespace()
                .map(|c| c.parse().unwrap())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// A line of `output` that contains every one of `parts`.
fn has_line(output: &str, parts: &[&str]) -> bool {
    output.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

// 1 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn a_run_is_recorded_and_listed_filtered_and_shown() {
    let s = Scratch::new("basic");
    let file = s.write(
        "ok.toml",
        &pipeline(
            "store-basic",
            &[
                s.step("a", "echo alpha"),
                s.step("b", "echo beta"),
                s.step("c", "echo gamma"),
            ],
        ),
    );
    let out = s.expect(0, &["run", file.to_str().unwrap(), "--tag", "nightly"]);
    let stdout = text(&out.stdout);
    let id = run_id(&stdout);
    // The id comes first (before any step), and again at the end.
    let first_id = stdout.find("run id: ").unwrap();
    let first_step = stdout.find("tool a started").unwrap();
    assert!(first_id < first_step, "{stdout}");
    assert_eq!(
        stdout.matches(&format!("run id: {id}")).count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with(&format!("run id: {id}")),
        "{stdout}"
    );
    assert!(stdout.contains("run completed"), "{stdout}");
    for name in ["a", "b", "c"] {
        assert_eq!(s.count(name), 1, "{name}");
    }

    // A second run, of another pipeline, that fails: exit 1, status `failed`.
    let bad = s.write(
        "bad.toml",
        &pipeline("store-bad", &[s.step("boom", "echo broken >&2; exit 1")]),
    );
    let out = s.expect(1, &["run", bad.to_str().unwrap(), "--tag", "adhoc"]);
    let bad_id = run_id(&text(&out.stdout));
    assert_ne!(bad_id, id);
    assert_eq!(s.count("boom"), 2, "max_attempts = 2");

    // `runs --json`: newest first, with status, metadata and events.
    let runs = s.runs_json(&[]);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["id"], bad_id.as_str());
    assert_eq!(runs[1]["id"], id.as_str());
    let entry = &runs[1];
    assert_eq!(entry["status"], "completed", "{entry}");
    assert_eq!(entry["metadata"]["pipeline"], "store-basic", "{entry}");
    assert_eq!(entry["metadata"]["tags"], serde_json::json!(["nightly"]));
    assert!(entry["created_at"].is_string(), "{entry}");
    assert!(entry["updated_at"].is_string(), "{entry}");
    // The number of records.
    let listed_events = entry["events"]
        .as_u64()
        .unwrap_or_else(|| panic!("{entry}"));
    assert!(listed_events >= 6, "{entry}");
    assert_eq!(runs[0]["status"], "failed", "{}", runs[0]);

    // Filters.
    let ids = |filters: &[&str]| -> Vec<String> {
        s.runs_json(filters)
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&["--status", "completed"]), [id.as_str()]);
    assert_eq!(ids(&["--status", "failed"]), [bad_id.as_str()]);
    assert!(ids(&["--status", "interrupted"]).is_empty());
    assert_eq!(ids(&["--tag", "nightly"]), [id.as_str()]);
    assert!(ids(&["--tag", "nightly", "--tag", "adhoc"]).is_empty());
    assert!(ids(&["--tag", "nope"]).is_empty());
    assert_eq!(ids(&["--pipeline", "store-bad"]), [bad_id.as_str()]);
    assert_eq!(ids(&["--limit", "1"]), [bad_id.as_str()]);
    s.expect(2, &["runs", "--status", "bogus"]);

    // The table: one row per run, newest first, with id, status, pipeline and tags.
    let table = text(&s.expect(0, &["runs"]).stdout);
    let row = |run: &str| {
        table
            .lines()
            .position(|l| l.contains(run))
            .unwrap_or_else(|| panic!("{run} not in\n{table}"))
    };
    assert!(row(&bad_id) < row(&id), "{table}");
    assert!(
        has_line(&table, &[&id, "completed", "store-basic", "nightly"]),
        "{table}"
    );
    assert!(
        has_line(&table, &[&bad_id, "failed", "store-bad", "adhoc"]),
        "{table}"
    );

    // `show`: the tree of every step and the summary.
    let shown = text(&s.expect(0, &["show", &id]).stdout);
    for name in ["a", "b", "c"] {
        assert!(shown.contains(&format!("tool {name} started")), "{shown}");
        assert!(shown.contains(&format!("tool {name} completed")), "{shown}");
    }
    assert!(shown.contains("Summary"), "{shown}");
    assert!(shown.contains("completed"), "{shown}");
    let shown_bad = text(&s.expect(0, &["show", &bad_id]).stdout);
    assert!(shown_bad.contains("tool boom failed"), "{shown_bad}");

    // `show --json`: the snapshot.
    let snap = s.snapshot(&id);
    assert_eq!(snap["state_id"], id.as_str());
    assert_eq!(snap["status"], "completed");
    assert_eq!(snap["metadata"]["tags"], serde_json::json!(["nightly"]));
    let events = snap["events"].as_array().unwrap();
    // The summary `show` printed counts exactly the stored records.
    assert!(
        shown.contains(&format!("records: {}", events.len())),
        "{shown}"
    );
    for name in ["a", "b", "c"] {
        let address = format!("{name}#0");
        assert_eq!(count_events(events, &address, "started"), 1, "{name}");
        assert_eq!(count_events(events, &address, "completed"), 1, "{name}");
    }
    let completed = events
        .iter()
        .find(|e| e["address"] == "b#0" && e["status"] == "completed")
        .unwrap();
    assert!(completed["retry"].is_object(), "{completed}");
    assert_eq!(completed["result"]["stdout"], "beta\n", "{completed}");
    assert_eq!(listed_events, events.len() as u64, "runs and show disagree");
}

// 2 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn ctrl_c_in_a_backoff_then_resume_does_not_run_completed_steps_again() {
    let s = Scratch::new("sigint");
    let flaky = format!(
        "[[steps]]\nname = \"flaky\"\nkind = \"command\"\nprogram = \"sh\"\nargs = ['-c', 'echo x >> \"$0/flaky.count\"; test -e \"$0/fixed\"', '{}']\nretry = {{ strategy = \"constant\", base = \"30s\", max_attempts = 3, jitter = false }}\n",
        s.dir.display()
    );
    // `last` gets the output of `first`, which must be the recorded one after a resume.
    let last = format!(
        "[[steps]]\nname = \"last\"\nkind = \"command\"\nprogram = \"sh\"\nargs = ['-c', 'echo x >> \"$0/last.count\"; echo \"got $1\"', '{}', '{{{{ steps.first.stdout }}}}']\n",
        s.dir.display()
    );
    let file = s.write(
        "p.toml",
        &pipeline(
            "store-sigint",
            &[s.step("first", "echo one-$$"), flaky, last],
        ),
    );
    let mut running = s.start(&["run", file.to_str().unwrap()]);
    let id = wait_for_id(&mut running);
    running.wait_for(|out| out.contains("retrying"));
    let (code, out, err) = running.stop(Signal::SIGINT);
    assert_eq!(code, 3, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(all.contains("user_cancelled"), "{all}");
    assert!(all.contains(&format!("rh-agents resume {id}")), "{all}");
    assert_eq!(s.run_entry(&id)["status"], "interrupted");
    assert_eq!(s.count("first"), 1);
    assert_eq!(s.count("flaky"), 1);
    assert_eq!(s.count("last"), 0);
    let first_output = out
        .split("\"stdout\":\"")
        .nth(1)
        .and_then(|rest| rest.split("\\n").next())
        .unwrap_or_else(|| panic!("no output of `first` in\n{out}"))
        .to_owned();
    assert!(first_output.starts_with("one-"), "{out}");

    // Fix the condition, resume: `first` is replayed, not run.
    std::fs::write(s.path("fixed"), "").unwrap();
    let resumed = s.expect(0, &["resume", &id]);
    let stdout = text(&resumed.stdout);
    assert_eq!(s.count("first"), 1, "first ran again:\n{stdout}");
    assert_eq!(s.count("flaky"), 2, "{stdout}");
    assert_eq!(s.count("last"), 1, "{stdout}");
    assert!(has_line(&stdout, &["first", "recovered"]), "{stdout}");
    assert!(!has_line(&stdout, &["tool first started"]), "{stdout}");
    assert!(stdout.contains("tool flaky completed"), "{stdout}");
    assert!(
        stdout.contains(&format!("got {first_output}")),
        "`last` did not get the recorded output {first_output:?}:\n{stdout}"
    );
    assert!(stdout.contains(&format!("run id: {id}")), "{stdout}");
    assert_eq!(s.run_entry(&id)["status"], "completed");
    let snap = s.snapshot(&id);
    let events = snap["events"].as_array().unwrap();
    assert_eq!(count_events(events, "first#0", "started"), 1);
    assert_eq!(count_events(events, "first#0", "recovered"), 1);
    assert_eq!(count_events(events, "last#0", "completed"), 1);
}

#[test]
fn a_failed_run_resumes_after_the_fix_with_the_pipeline_it_started_with() {
    let s = Scratch::new("failed");
    let file = s.write(
        "p.toml",
        &pipeline(
            "store-failed",
            &[
                s.step("pre", "echo ready"),
                s.step("check", "test -e \"$0/ok\""),
                s.step("post", "echo done"),
            ],
        ),
    );
    let out = s.expect(1, &["run", file.to_str().unwrap()]);
    let id = run_id(&text(&out.stdout));
    assert!(
        both(&out).contains(&format!("rh-agents resume {id}")),
        "{}",
        both(&out)
    );
    assert_eq!(s.run_entry(&id)["status"], "failed");
    assert_eq!(
        (s.count("pre"), s.count("check"), s.count("post")),
        (1, 2, 0)
    );

    // The run keeps the text it ran: a file changed (here: broken) since does not matter.
    std::fs::write(&file, "this is not a pipeline").unwrap();
    std::fs::write(s.path("ok"), "").unwrap();
    let out = s.expect(0, &["resume", &id]);
    let stdout = text(&out.stdout);
    assert!(has_line(&stdout, &["pre", "recovered"]), "{stdout}");
    assert!(stdout.contains("tool post completed"), "{stdout}");
    assert_eq!(
        (s.count("pre"), s.count("check"), s.count("post")),
        (1, 3, 1)
    );
    assert_eq!(s.run_entry(&id)["status"], "completed");
}

// 3 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn interrupt_from_another_process_stops_a_running_command_at_once() {
    let s = Scratch::new("interrupt");
    let fifo = Fifo::new(&s.dir, "pid");
    let file = s.write(
        "p.toml",
        &pipeline(
            "store-interrupt",
            &[
                s.step("first", "echo one"),
                s.step("long", "echo $$ > \"$0/pid\"; exec sleep 30"),
            ],
        ),
    );
    let mut running = s.start(&["run", file.to_str().unwrap()]);
    let id = wait_for_id(&mut running);
    let pid = fifo.pid();

    let asked = s.expect(
        0,
        &[
            "interrupt",
            &id,
            "--reason",
            "custom",
            "--message",
            "stop now",
        ],
    );
    let (code, out, err) = running.finish();
    assert_eq!(code, 3, "{out}{err}\n{}", both(&asked));
    let all = format!("{out}{err}");
    assert!(all.contains("custom"), "{all}");
    assert!(all.contains("stop now"), "{all}");
    assert!(all.contains("tool long interrupted"), "{all}");
    assert!(all.contains(&format!("rh-agents resume {id}")), "{all}");
    assert!(is_gone(pid), "the command outlived rh-agents");

    assert_eq!(s.run_entry(&id)["status"], "interrupted");
    let snap = s.snapshot(&id);
    let events = snap["events"].as_array().unwrap();
    let notice = events
        .iter()
        .find(|e| e["interrupt"]["reason"] == "custom")
        .unwrap_or_else(|| panic!("no interrupt record: {snap}"));
    assert_eq!(notice["interrupt"]["message"], "stop now", "{notice}");
    assert_eq!(count_events(events, "long#0", "interrupted"), 1);

    // It is no longer running: interrupting it again is bad input.
    let again = s.expect(2, &["interrupt", &id]);
    assert!(text(&again.stderr).contains(&id), "{}", both(&again));

    // A resume with a time limit runs `long` again (it never completed), not `first`.
    let resumed = s.expect(3, &["resume", &id, "--timeout", "300ms"]);
    let stdout = text(&resumed.stdout);
    assert!(stdout.contains("run interrupted (timeout)"), "{stdout}");
    assert_eq!(s.count("first"), 1, "{stdout}");
    assert_eq!(s.count("long"), 2, "{stdout}");
    assert_eq!(s.run_entry(&id)["status"], "interrupted");
}

// 4 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn a_killed_run_resumes_where_it_stopped() {
    let s = Scratch::new("sigkill");
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    let steps: Vec<String> = names.iter().map(|n| s.step(n, "sleep 0.2")).collect();
    let file = s.write("p.toml", &pipeline("store-kill", &steps));
    let mut running = s.start(&["run", file.to_str().unwrap()]);
    let id = wait_for_id(&mut running);
    running.wait_for(|out| out.contains("tool s2 completed"));
    // Frozen first, so that the steps it started can be listed before it dies and none starts
    // after: they survive it (each leads its own process group).
    running.signal(Signal::SIGSTOP);
    let pid = running.child.id();
    wait_until("rh-agents to stop", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('T'))
        })
    });
    let orphans = children_of(pid);
    running.child.kill().unwrap();
    let shown = running.stdout();
    let (code, _, _) = running.finish();
    assert_eq!(code, -1, "killed by a signal");
    let done_before: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| shown.contains(&format!("tool {n} completed")))
        .collect();
    assert!(done_before.len() >= 2, "{shown}");
    assert!(done_before.len() < names.len(), "killed too late:\n{shown}");
    // The step running at the kill may still be writing its count.
    for pid in orphans {
        wait_until(&format!("the orphaned step {pid} to exit"), || is_gone(pid));
    }

    // The store still says `running`, but nothing runs it any more.
    assert_eq!(s.run_entry(&id)["status"], "running");
    let table = text(&s.expect(0, &["runs"]).stdout);
    assert!(has_line(&table, &[&id, "running", "no process"]), "{table}");
    let out = s.expect(2, &["interrupt", &id]);
    assert!(text(&out.stderr).contains(&id), "{}", both(&out));

    let resumed = s.expect(0, &["resume", &id]);
    let stdout = text(&resumed.stdout);
    for name in names {
        let count = s.count(name);
        if done_before.contains(&name) {
            assert_eq!(count, 1, "{name} ran again:\n{stdout}");
            assert!(has_line(&stdout, &[name, "recovered"]), "{stdout}");
        } else {
            assert!((1..=2).contains(&count), "{name} ran {count} times");
        }
    }
    let twice = names.iter().filter(|n| s.count(n) == 2).count();
    assert!(
        twice <= 1,
        "only the step running at the kill may run twice"
    );
    assert!(stdout.contains("tool s6 completed"), "{stdout}");
    assert_eq!(s.run_entry(&id)["status"], "completed");
    let table = text(&s.expect(0, &["runs"]).stdout);
    assert!(has_line(&table, &[&id, "completed"]), "{table}");
}

// 5 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn export_then_import_into_another_store() {
    let s = Scratch::new("export");
    let file = s.write(
        "p.toml",
        &pipeline(
            "store-export",
            &[s.step("a", "echo alpha"), s.step("b", "echo beta")],
        ),
    );
    let out = s.expect(0, &["run", file.to_str().unwrap(), "--tag", "ship"]);
    let id = run_id(&text(&out.stdout));
    let original = s.snapshot(&id);
    let event_count = original["events"].as_array().unwrap().len();

    // To a named file, and to `<ID>.json` in the working directory.
    let exported = s.path("run.json");
    s.expect(0, &["export", &id, "-o", exported.to_str().unwrap()]);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(json["state_id"], id.as_str());
    assert_eq!(json["events"].as_array().unwrap().len(), event_count);
    s.expect(0, &["export", &id]);
    assert!(s.path(&format!("{id}.json")).is_file());

    // `--store` after the subcommand, into a second store.
    let other = s.path("other.db");
    let import = |code: i32| {
        let mut cmd = s.plain(&["import", exported.to_str().unwrap(), "--store"]);
        cmd.arg(&other);
        expect_exit(code, cmd)
    };
    let out = import(0);
    assert!(text(&out.stdout).contains(&id), "{}", both(&out));
    let in_other = |args: &[&str]| s.expect_on(&other, 0, args);
    let snap: Value = serde_json::from_slice(&in_other(&["show", "--json", &id]).stdout).unwrap();
    assert_eq!(snap["events"].as_array().unwrap().len(), event_count);
    assert_eq!(snap["status"], "completed");
    assert_eq!(snap["events"], original["events"]);
    let shown = text(&in_other(&["show", &id]).stdout);
    assert!(shown.contains("tool b completed"), "{shown}");
    let runs: Value = serde_json::from_slice(&in_other(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["metadata"]["tags"], serde_json::json!(["ship"]));

    // The id exists now.
    let again = import(2);
    assert!(text(&again.stderr).contains(&id), "{}", both(&again));
    // So it does in the store it came from.
    s.expect(2, &["import", exported.to_str().unwrap()]);
    // A file that is not an export.
    let junk = s.write("junk.json", "{\"hello\": 1}");
    s.expect(2, &["import", junk.to_str().unwrap()]);
    s.expect(2, &["import", s.path("missing.json").to_str().unwrap()]);
}

// 6 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn unknown_ids_and_a_store_that_is_not_a_database_are_bad_input() {
    let s = Scratch::new("bad");
    let file = s.write(
        "p.toml",
        &pipeline("store-bad-input", &[s.step("a", "true")]),
    );
    let out = s.expect(0, &["run", file.to_str().unwrap()]);
    let id = run_id(&text(&out.stdout));

    let unknown = "11111111-2222-3333-4444-555555555555";
    for args in [
        vec!["show", unknown],
        vec!["show", "--json", unknown],
        vec!["resume", unknown],
        vec!["interrupt", unknown],
        vec!["export", unknown],
    ] {
        let out = s.expect(2, &args);
        assert!(
            text(&out.stderr).contains(unknown),
            "{args:?}\n{}",
            both(&out)
        );
    }
    s.expect(2, &["interrupt", &id, "--reason", "because"]);

    // Resuming a completed run changes nothing.
    let out = s.expect(0, &["resume", &id]);
    assert!(both(&out).contains("already completed"), "{}", both(&out));
    assert_eq!(s.count("a"), 1);
    // Interrupting it is bad input: it is not running.
    let out = s.expect(2, &["interrupt", &id]);
    assert!(text(&out.stderr).contains(&id), "{}", both(&out));

    // A store that is not a database.
    let garbage = s.write("garbage.db", &"this is not a database\n".repeat(400));
    for args in [
        vec!["runs"],
        vec!["show", id.as_str()],
        vec!["run", file.to_str().unwrap()],
    ] {
        let out = s.expect_on(&garbage, 2, &args);
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}\n{stderr}");
        assert!(stderr.contains("garbage.db"), "{args:?}\n{stderr}");
    }
    assert_eq!(s.count("a"), 1, "nothing runs without a store");
}

#[test]
fn a_live_run_cannot_be_resumed_elsewhere_and_interrupt_defaults_to_user_cancelled() {
    let s = Scratch::new("live");
    let started = Fifo::new(&s.dir, "started");
    let file = s.write(
        "p.toml",
        &pipeline(
            "store-live",
            &[s.step("long", "echo go > \"$0/started\"; exec sleep 30")],
        ),
    );
    let mut running = s.start(&["run", file.to_str().unwrap()]);
    let id = wait_for_id(&mut running);
    started.line();

    let out = s.expect(75, &["resume", &id]);
    assert!(text(&out.stderr).contains("writer"), "{}", both(&out));
    assert_eq!(s.count("long"), 1, "the second process ran the step");
    // Listing and showing a live run is fine.
    assert_eq!(s.run_entry(&id)["status"], "running");
    s.expect(0, &["show", &id]);

    s.expect(0, &["interrupt", &id]);
    let (code, out, err) = running.finish();
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("user_cancelled"),
        "{out}{err}"
    );
    s.assert_interrupted_by(&id, "user_cancelled");
}

// 7 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn json_run_writes_only_events_to_stdout_and_the_id_to_stderr() {
    let s = Scratch::new("json");
    let file = s.write(
        "p.toml",
        &pipeline(
            "store-json",
            &[s.step("a", "echo alpha"), s.step("b", "echo beta")],
        ),
    );
    let out = s.expect(0, &["run", file.to_str().unwrap(), "--json", "--tag", "ci"]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let events = json_lines(&stdout);
    for address in ["a#0", "b#0"] {
        assert_eq!(count_events(&events, address, "started"), 1, "{stdout}");
        assert_eq!(count_events(&events, address, "completed"), 1, "{stdout}");
    }
    assert!(!stdout.contains("run id"), "{stdout}");
    let id = run_id(&stderr);
    assert_eq!(
        stderr.matches(&format!("run id: {id}")).count(),
        2,
        "{stderr}"
    );

    // The lines are the records the store holds.
    let snap = s.snapshot(&id);
    let stored = snap["events"].as_array().unwrap();
    let ids = |events: &[Value]| -> Vec<u64> {
        events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
    };
    assert_eq!(ids(&events), ids(stored), "{stdout}");
    assert_eq!(snap["metadata"]["tags"], serde_json::json!(["ci"]));
}

#[test]
fn json_resume_of_a_completed_run_keeps_stdout_to_json_lines() {
    // With `--json`, stdout is JSON lines only (scripts pipe it into a JSON reader); the
    // outcome goes to stderr, as `run --json` does with "run completed".
    let s = Scratch::new("json-resume");
    let file = s.write(
        "p.toml",
        &pipeline("store-json-resume", &[s.step("a", "true")]),
    );
    let out = s.expect(0, &["run", file.to_str().unwrap(), "--json"]);
    let id = run_id(&text(&out.stderr));
    let out = s.expect(0, &["resume", &id, "--json"]);
    assert!(
        text(&out.stdout)
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "stdout is not JSON lines:\n{}",
        both(&out)
    );
    assert!(
        text(&out.stderr).contains("already completed"),
        "{}",
        both(&out)
    );
    assert_eq!(s.count("a"), 1);
}

// 8 ───────────────────────────────────────────────────────────────────────────────────────

#[test]
fn the_default_store_is_under_the_working_directory() {
    let s = Scratch::new("default");
    let file = s.write("p.toml", &pipeline("store-default", &[s.step("a", "true")]));
    let here = |args: &[&str]| expect_exit(0, s.plain(args));
    let out = here(&["run", "p.toml"]);
    let id = run_id(&text(&out.stdout));
    assert!(file.is_file());
    assert!(s.path(".rh-agents/state.db").is_file());
    assert!(!s.store().exists());
    let runs: Value = serde_json::from_slice(&here(&["runs", "--json"]).stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["id"], id.as_str());
    assert_eq!(runs[0]["status"], "completed");
    // An explicit path in the same directory is another store.
    assert!(s.runs_json(&[]).is_empty());

    // `RH_AGENTS_STORE` names the store too.
    let out = s
        .plain(&["runs", "--json"])
        .env("RH_AGENTS_STORE", s.store())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "[]", "{}", both(&out));
    let mut cmd = s.plain(&["run", "p.toml"]);
    cmd.env("RH_AGENTS_STORE", s.path("env.db"));
    expect_exit(0, cmd);
    assert!(s.path("env.db").is_file());
}

// SIGTERM ─────────────────────────────────────────────────────────────────────────────────

#[test]
fn sigterm_is_a_system_shutdown_saved_as_interrupted() {
    let s = Scratch::new("sigterm");
    let started = Fifo::new(&s.dir, "started");
    let file = s.write(
        "p.toml",
        &pipeline(
            "store-sigterm",
            &[s.step("long", "echo go > \"$0/started\"; exec sleep 30")],
        ),
    );
    let mut running = s.start(&["run", file.to_str().unwrap()]);
    let id = wait_for_id(&mut running);
    started.line();
    let (code, out, err) = running.stop(Signal::SIGTERM);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("run interrupted (system_shutdown)"), "{out}");
    assert!(out.contains(&format!("rh-agents resume {id}")), "{out}");
    s.assert_interrupted_by(&id, "system_shutdown");
}

#[test]
fn commands_about_existing_runs_never_create_a_store() {
    let s = Scratch::new("no-create");
    let missing = s.path("typo/state.db");
    for args in [
        &["show", "some-id"][..],
        &["resume", "some-id"],
        &["interrupt", "some-id"],
        &["export", "some-id"],
    ] {
        let out = s.expect_on(&missing, 2, args);
        assert!(
            text(&out.stderr).contains("no store here"),
            "{}",
            both(&out)
        );
    }
    // Listing a store that does not exist yet is an empty list.
    let out = s.expect_on(&missing, 0, &["runs", "--json"]);
    assert_eq!(text(&out.stdout).trim(), "[]");
    assert!(!s.path("typo").exists(), "nothing was created");
}

#[test]
fn a_resume_from_another_directory_runs_commands_where_the_run_started() {
    let s = Scratch::new("workdir");
    let first = s.path("first");
    let elsewhere = s.path("elsewhere");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let marker = s.path("ok");
    let file = s.write(
        "p.toml",
        &pipeline(
            "workdir",
            &[
                s.step("a", "pwd > \"$0/a.pwd\""),
                s.step(
                    "b",
                    &format!(
                        "test -f \"{}\" || exit 1; pwd > \"$0/b.pwd\"",
                        marker.display()
                    ),
                ),
            ],
        ),
    );
    let mut run = s.cmd(&["run"]);
    run.arg(&file).current_dir(&first);
    let out = expect_exit(1, run);
    let id = run_id(&text(&out.stdout));

    std::fs::write(&marker, "").unwrap();
    let mut resume = s.cmd(&["resume", &id]);
    resume.current_dir(&elsewhere);
    expect_exit(0, resume);
    let pwd = |name: &str| {
        std::fs::read_to_string(s.path(&format!("{name}.pwd")))
            .unwrap()
            .trim()
            .to_owned()
    };
    let first = std::fs::canonicalize(&first).unwrap();
    assert_eq!(Path::new(&pwd("a")), first);
    assert_eq!(
        Path::new(&pwd("b")),
        first,
        "the resumed step ran where the run started, not where it was resumed"
    );
    assert_eq!(s.count("a"), 1);
}
