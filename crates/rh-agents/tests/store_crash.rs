#![cfg(unix)] // SIGKILL and the exit status that names it
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed test
//! A real crash. This test binary runs twice: as the parent (the test), and as a child process
//! that the parent starts with `RH_AGENTS_CRASH_CHILD=<db path>`.
//!
//! - The child runs a durable pipeline on an SQLite store: 40 sequential tool calls, each
//!   sleeping 15 ms of real time and returning its index, some failing once first (so the
//!   history holds RETRYING records). It never finishes: after the 40 steps it sleeps.
//! - The parent reads the database from its own connection while the child writes (a reader
//!   never meets "database is locked"), and kills the child with SIGKILL once 15 calls have
//!   completed.
//! - Every record the parent saw is still stored, unchanged and in order; the last stored
//!   record may be a dangling STARTED.
//! - The parent resumes the run in-process (`ReplayMode::Normal`): steps completed before the
//!   kill are replayed (RECOVERED) without running, the others run once, every result is
//!   right, and the finished run is saved `completed`.
//! - In `CommitMode::Sync` (the default), every step whose result the child's pipeline got
//!   (it notes each in a file) is stored as completed. The same crash runs with the child in
//!   `CommitMode::batched()`, where only the rest holds: nothing committed is lost, no gap.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rh_agents::store::{ReplayMode, RunStatus, Snapshot, SqliteStore, StateStore, StoreError};
use rh_agents::{
    Actor, ActorKind, CommitMode, Ctx, Event, EventStatus, ExecutionState, RetryPolicy,
};
use serde_json::json;

use EventStatus::{Completed, Failed, Log, Recovered, Retrying, Started};

/// The environment variable that makes this test the child; its value is the database path.
const CHILD_ENV: &str = "RH_AGENTS_CRASH_CHILD";
/// The environment variable that runs the child in `CommitMode::batched()` when set.
const BATCHED_ENV: &str = "RH_AGENTS_CRASH_BATCHED";
/// The tests' names, for the child's `--exact` filter.
const TEST_NAME: &str = "sigkill_midway_then_resume_loses_nothing";
const BATCHED_TEST_NAME: &str = "sigkill_midway_in_batched_mode_loses_nothing_committed";
/// The run's fixed id.
const RUN_ID: &str = "crash-run";
/// How many sequential steps the pipeline has.
const STEPS: u32 = 40;
/// How long each step's handler takes (real time).
const STEP_TIME: Duration = Duration::from_millis(15);
/// The child is killed once this many steps completed.
const KILL_AFTER: usize = 15;
/// How long the parent waits for that before it gives up (and kills the child).
const DEADLINE: Duration = Duration::from_secs(20);
/// How long the child sleeps after its 40 steps, waiting to be killed.
const CHILD_LINGER: Duration = Duration::from_secs(30);

/// Whether a step fails once before it succeeds (in the child).
fn flaky(step: u32) -> bool {
    step % 5 == 2
}

/// The address of step `i`.
fn address(i: u32) -> String {
    format!("step#{i}")
}

/// The statuses a step records when it runs to completion in the child.
fn expected_statuses(i: u32) -> Vec<EventStatus> {
    if flaky(i) {
        vec![Started, Failed, Retrying, Started, Completed]
    } else {
        vec![Started, Completed]
    }
}

/// One handler-call counter per step.
fn counters() -> Arc<Vec<AtomicU32>> {
    Arc::new((0..STEPS).map(|_| AtomicU32::new(0)).collect())
}

/// Tool `step`: sleeps [`STEP_TIME`] and returns its input, counting its handler calls per
/// step. With `fail_first`, flaky steps fail once (at once) before that.
fn step_actor(calls: Arc<Vec<AtomicU32>>, fail_first: bool) -> Actor<u32, u32> {
    Actor::tool("step", move |i: u32, _ctx: Ctx| {
        let n = calls[i as usize].fetch_add(1, Ordering::SeqCst);
        async move {
            if fail_first && flaky(i) && n == 0 {
                return Err(io::Error::other(format!("step {i}: transient failure")));
            }
            tokio::time::sleep(STEP_TIME).await;
            Ok(i)
        }
    })
    .retry(
        RetryPolicy::constant(Duration::ZERO)
            .max_attempts(3)
            .build()
            .unwrap(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The steps whose call completed in `events`.
fn completed_steps(events: &[Event]) -> BTreeSet<u32> {
    events
        .iter()
        .filter(|e| e.status == Completed && e.is_final)
        .map(|e| {
            let index = e.address.as_str().strip_prefix("step#");
            index.and_then(|i| i.parse().ok()).unwrap_or_else(|| {
                panic!("record #{} is at an unexpected address {}", e.id, e.address)
            })
        })
        .collect()
}

/// The child: the pipeline, durable, never finished.
fn child(db: &Path) {
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(db).unwrap());
    let mode = if std::env::var_os(BATCHED_ENV).is_some() {
        CommitMode::batched()
    } else {
        CommitMode::Sync
    };
    let runtime = runtime();
    let state = runtime
        .block_on(
            ExecutionState::builder()
                .id(RUN_ID)
                .commit_mode(mode)
                .start(store),
        )
        .unwrap();
    let step = step_actor(counters(), true);
    // Each step whose result the pipeline got is noted in a file the parent reads after the
    // kill (written and flushed before the next step starts).
    let mut returned = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(db.with_extension("returned"))
        .unwrap();
    runtime.block_on(async {
        for i in 0..STEPS {
            assert_eq!(state.call(&step, i).await.unwrap(), i);
            use std::io::Write as _;
            writeln!(returned, "{i}").unwrap();
            returned.flush().unwrap();
        }
    });
    // The parent kills it before this ends; a parent that died leaves it to exit on its own.
    std::thread::sleep(CHILD_LINGER);
    panic!("the crash child was not killed within {CHILD_LINGER:?}");
}

/// The child process, killed (if still running) when dropped: a failing parent leaves no
/// process behind.
struct ChildProcess {
    child: Child,
    out: std::path::PathBuf,
}

impl ChildProcess {
    /// What the child wrote, for failure messages.
    fn output(&self) -> String {
        let read =
            |ext: &str| std::fs::read_to_string(self.out.with_extension(ext)).unwrap_or_default();
        format!(
            "\n--- child stdout ---\n{}\n--- child stderr ---\n{}",
            read("out"),
            read("err")
        )
    }

    /// Fails the test (killing the child) with `message` and the child's output.
    fn fail(&mut self, message: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{message}{}", self.output());
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that `later` starts with every record of `earlier`, unchanged and in order.
fn assert_prefix(earlier: &[Event], later: &[Event], what: &str) {
    assert!(
        later.len() >= earlier.len(),
        "{what}: {} records, fewer than the {} seen before",
        later.len(),
        earlier.len()
    );
    for (i, (before, now)) in earlier.iter().zip(later).enumerate() {
        assert_eq!(before, now, "{what}: record #{i} changed");
    }
}

#[test]
fn sigkill_midway_then_resume_loses_nothing() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&db));
        return;
    }
    crash_and_resume(TEST_NAME, false);
}

/// The same crash with the child committing in batches (`CommitMode::batched()`). What its
/// documentation promises: nothing committed is lost and the stored history has no gap; the
/// steps whose completion was not committed yet run again on resume (here: every step not
/// completed in the store runs once, every one completed there is replayed).
#[test]
fn sigkill_midway_in_batched_mode_loses_nothing_committed() {
    if let Some(db) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&db));
        return;
    }
    crash_and_resume(BATCHED_TEST_NAME, true);
}

/// Runs the pipeline in a child process (this test binary again, running `test_name`),
/// kills it midway with SIGKILL, checks the store and resumes.
fn crash_and_resume(test_name: &str, batched: bool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    // The parent's own connection, opened first (it creates the tables).
    let reader = SqliteStore::open(&db).unwrap();

    let out = dir.path().join("child");
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db);
    if batched {
        command.env(BATCHED_ENV, "1");
    } else {
        command.env_remove(BATCHED_ENV);
    }
    let mut child = ChildProcess {
        child: command
            .stdin(Stdio::null())
            .stdout(File::create(out.with_extension("out")).unwrap())
            .stderr(File::create(out.with_extension("err")).unwrap())
            .spawn()
            .unwrap(),
        out,
    };

    // Poll while the child writes, until 15 steps completed. Any error but "no such run yet"
    // fails the test: a reader must never be refused ("database is locked").
    let deadline = Instant::now() + DEADLINE;
    let mut polls = 0_u32;
    let seen: Snapshot = loop {
        if let Some(status) = child.child.try_wait().unwrap() {
            child.fail(&format!(
                "the child ended on its own ({status}) before being killed"
            ));
        }
        if Instant::now() > deadline {
            child.fail(&format!(
                "no {KILL_AFTER} completed steps within {DEADLINE:?} ({polls} polls)"
            ));
        }
        match reader.load(RUN_ID) {
            Ok(snapshot) if completed_steps(&snapshot.events).len() >= KILL_AFTER => {
                break snapshot;
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => child.fail(&format!("a reader failed while the child writes: {e}")),
        }
        polls += 1;
        std::thread::sleep(Duration::from_millis(2));
    };
    // A connection opened while the writer writes reads as well.
    let fresh = SqliteStore::open(&db).unwrap().load(RUN_ID);
    let fresh = fresh.unwrap_or_else(|e| child.fail(&format!("a new reader failed: {e}")));
    // The child is the run's one writer, and says so.
    match reader.lock_writer(RUN_ID) {
        Err(StoreError::Locked { holder, .. }) => {
            assert_eq!(holder, format!("process {}", child.child.id()));
        }
        other => child.fail(&format!(
            "the child does not hold the writer lock: {other:?}"
        )),
    }

    child.child.kill().unwrap();
    let status = child.child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child was not killed by SIGKILL: {status}"
    );

    // What was seen is still there, unchanged and in order.
    assert_eq!(seen.status, RunStatus::Running);
    assert!(
        seen.events.iter().any(|e| e.status == Retrying),
        "the history seen holds no RETRYING record"
    );
    assert_prefix(&seen.events, &fresh.events, "a later read");
    let after = SqliteStore::open(&db).unwrap().load(RUN_ID).unwrap();
    assert_prefix(&seen.events, &after.events, "after the kill");
    assert_prefix(&fresh.events, &after.events, "after the kill");
    assert_eq!(
        reader.load(RUN_ID).unwrap(),
        after,
        "the old connection reads differently"
    );
    assert_eq!(
        after.status,
        RunStatus::Running,
        "the killed run is still `running`"
    );
    // The killed writer's lock was released by the system.
    assert!(!reader.is_writing(RUN_ID).unwrap());

    // In sync mode, every step whose result the pipeline got is completed in the store: a
    // resume runs none of them again. (Batched mode promises no such thing.)
    let returned: BTreeSet<u32> = std::fs::read_to_string(db.with_extension("returned"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(returned.len() >= KILL_AFTER.saturating_sub(1) || batched);
    if !batched {
        let stored = completed_steps(&after.events);
        let lost: Vec<&u32> = returned.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "steps {lost:?} returned their result in the child but are not stored as completed"
        );
    }

    // The stored history is exactly the pipeline's, cut at the kill: completed steps
    // 0..done, then (perhaps) the beginning of the next one, such as a dangling STARTED.
    let done = completed_steps(&after.events);
    let n_done = u32::try_from(done.len()).unwrap();
    assert!(done.len() >= KILL_AFTER);
    assert!(
        n_done < STEPS,
        "the child finished all {STEPS} steps before the kill: nothing was cut midway"
    );
    assert_eq!(done, (0..n_done).collect::<BTreeSet<_>>());
    let pipeline: Vec<(String, EventStatus)> = (0..STEPS)
        .flat_map(|i| {
            expected_statuses(i)
                .into_iter()
                .map(move |s| (address(i), s))
        })
        .collect();
    let stored: Vec<(String, EventStatus)> = after
        .events
        .iter()
        .map(|e| (e.address.as_str().to_owned(), e.status))
        .collect();
    assert_eq!(stored[..], pipeline[..stored.len()], "the stored history");
    for e in &after.events {
        if e.status == Completed {
            let index: u32 = e.address.as_str()["step#".len()..].parse().unwrap();
            assert_eq!(e.result, Some(json!(index)));
        }
    }

    // Resume in this process, with a connection of its own, and run the same 40 steps.
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&db).unwrap());
    let runtime = runtime();
    let resumed = runtime
        .block_on(ExecutionState::builder().resume(Arc::clone(&store), RUN_ID, ReplayMode::Normal))
        .unwrap();
    let calls = counters();
    let step = step_actor(Arc::clone(&calls), false);
    let results: Vec<u32> = runtime.block_on(async {
        let mut results = Vec::new();
        for i in 0..STEPS {
            results.push(resumed.call(&step, i).await.unwrap());
        }
        results
    });
    assert_eq!(results, (0..STEPS).collect::<Vec<_>>());
    for i in 0..STEPS {
        let ran = calls[i as usize].load(Ordering::SeqCst);
        let expected = u32::from(!done.contains(&i));
        assert_eq!(ran, expected, "step {i} ran {ran} times after the resume");
    }

    // The resumed history: the stored one, then one RECOVERED record per completed step and
    // STARTED, COMPLETED for each of the others.
    let history: Vec<Event> = resumed
        .history()
        .events()
        .iter()
        .map(|e| Event::clone(e))
        .collect();
    assert_prefix(&after.events, &history, "the resumed history");
    // Records of the runtime's own (such as a note that the run was resumed) may come too:
    // logs at the root, never calls.
    let (new, runtime_notes): (Vec<&Event>, Vec<&Event>) = history[after.events.len()..]
        .iter()
        .partition(|e| &*e.actor == "step");
    for e in runtime_notes {
        assert!(
            e.kind == ActorKind::System && e.status == Log && e.address.is_root(),
            "an unexpected record in the resumed run: {e:?}"
        );
    }
    let expected: Vec<(String, EventStatus)> = (0..STEPS)
        .flat_map(|i| {
            let statuses = if done.contains(&i) {
                vec![Recovered]
            } else {
                vec![Started, Completed]
            };
            statuses.into_iter().map(move |s| (address(i), s))
        })
        .collect();
    let got: Vec<(String, EventStatus)> = new
        .iter()
        .map(|e| (e.address.as_str().to_owned(), e.status))
        .collect();
    assert_eq!(got, expected, "the records of the resumed run");
    for e in new.iter().filter(|e| e.status == Recovered) {
        assert!(e.is_replayed && e.is_final);
        let index: u32 = e.address.as_str()["step#".len()..].parse().unwrap();
        assert_eq!(e.result, Some(json!(index)));
    }

    let outcome: Result<(), rh_agents::Error> = Ok(());
    assert_eq!(resumed.finish(&outcome).unwrap(), RunStatus::Completed);
    let last = store.load(RUN_ID).unwrap();
    assert_eq!(last.status, RunStatus::Completed);
    assert_prefix(&seen.events, &last.events, "the finished run");
    assert_eq!(last.events, history, "the finished run's stored history");
    drop(resumed);
    assert!(!store.is_writing(RUN_ID).unwrap());
}
