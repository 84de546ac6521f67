#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Parallel groups: bounded workers, result order, fail-slow and fail-fast, the group timeout,
//! interrupts, retries and nested groups inside tasks, streaming, and nothing left running.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::parallel::GroupStatus;
use rh_agents::{
    ActorKind, Ctx, ErrorKind, EventStatus, ExecutionState, GroupRef, InterruptReason,
    InterruptSignal, RetryPolicy,
};
use support::{collect, scripted, statuses, with_status, Step};
use tokio::time::Instant;
use tokio_stream::StreamExt;

use EventStatus::{Completed, Failed, Interrupted, Retrying, Started};

const SEC: Duration = Duration::from_secs(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Counts tasks running at once and remembers the most seen.
#[derive(Default)]
struct Peak {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Peak {
    /// Marks a task as running until the returned guard is dropped (also when it is aborted).
    fn enter(self: &Arc<Self>) -> PeakGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        PeakGuard(Arc::clone(self))
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }

    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
}

struct PeakGuard(Arc<Peak>);

impl Drop for PeakGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn group_ref(id: &str, index: u32) -> GroupRef {
    GroupRef {
        id: Arc::from(id),
        index,
    }
}

/// The group's own records (kind group) at `address`.
fn group_records(state: &ExecutionState, address: &str) -> Vec<EventStatus> {
    state
        .history()
        .at(address)
        .iter()
        .filter(|e| e.kind == ActorKind::Group)
        .map(|e| e.status)
        .collect()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_max_workers() {
    let state = ExecutionState::new();
    let peak = Arc::new(Peak::default());
    let mut group = state.group::<usize>("group").max_workers(4);
    for i in 0..50 {
        let peak = Arc::clone(&peak);
        group.add(move |_ctx: Ctx| async move {
            let _running = peak.enter();
            tokio::time::sleep(SEC).await;
            Ok::<_, io::Error>(i)
        });
    }
    let start = Instant::now();
    let outcome = group.run().await;

    assert_eq!(peak.max(), 4, "exactly max_workers tasks run at once");
    assert_eq!(peak.now(), 0);
    // 50 tasks in waves of 4: ceil(50 / 4) = 13 seconds.
    assert_eq!(start.elapsed(), secs(13));
    assert_eq!(outcome.record.total, 50);
    assert_eq!(outcome.record.completed, 50);
    assert_eq!(outcome.record.failed, 0);
    assert_eq!(outcome.record.cancelled, 0);
    assert_eq!(outcome.record.status, GroupStatus::Completed);
    assert!((outcome.record.success_rate - 1.0).abs() < f64::EPSILON);
    assert_eq!(outcome.record.execution_time, secs(13));
    assert!(outcome.record.errors.is_empty());
    assert_eq!(group_records(&state, "group#0"), [Started, Completed]);
    let last = state.history().latest("group#0").unwrap();
    assert!(last.is_final);
    assert_eq!(last.group, None, "a top-level group is in no group itself");
}

#[tokio::test(start_paused = true)]
async fn results_come_in_add_order_whatever_the_completion_order() {
    let state = ExecutionState::new();
    let finished = Arc::new(Mutex::new(Vec::new()));
    let mut group = state.group::<String>("group").max_workers(10);
    for i in 0..10u64 {
        let finished = Arc::clone(&finished);
        group.add(move |ctx: Ctx| async move {
            tokio::time::sleep(secs(10 - i)).await;
            finished.lock().unwrap().push(i);
            Ok::<_, io::Error>(format!("{i} at {}", ctx.address()))
        });
    }
    let start = Instant::now();
    let outcome = group.run().await;

    assert_eq!(start.elapsed(), secs(10));
    assert_eq!(
        *finished.lock().unwrap(),
        (0..10).rev().collect::<Vec<_>>(),
        "the last task added finishes first"
    );
    let results: Vec<String> = outcome.results.into_iter().map(Result::unwrap).collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("{i} at group#0/task#{i}"))
        .collect();
    assert_eq!(results, expected);
    for i in 0..10 {
        let address = format!("group#0/task#{i}");
        assert_eq!(statuses(&state, &address), [Started, Completed]);
        let done = &with_status(&state, &address, Completed)[0];
        assert_eq!(done.kind, ActorKind::Task);
        assert!(done.is_parallel && done.is_final);
        assert_eq!(done.group, Some(group_ref("group#0", i)));
        assert_eq!(
            done.result,
            Some(serde_json::json!(format!("{i} at {address}")))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn fail_slow_runs_everything_and_collects_every_error() {
    let state = ExecutionState::new();
    let started = Arc::new(AtomicUsize::new(0));
    let mut group = state.group::<u32>("group").max_workers(2);
    for i in 0..6u32 {
        let started = Arc::clone(&started);
        group.add(move |_ctx: Ctx| async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(SEC).await;
            if i == 1 || i == 4 {
                Err(io::Error::other(format!("task {i} broke")))
            } else {
                Ok(i * 10)
            }
        });
    }
    let start = Instant::now();
    let outcome = group.run().await;

    assert_eq!(
        started.load(Ordering::SeqCst),
        6,
        "fail-slow runs every task"
    );
    assert_eq!(start.elapsed(), secs(3));
    let record = &outcome.record;
    assert_eq!(record.status, GroupStatus::Failed);
    assert_eq!(
        (record.completed, record.failed, record.cancelled),
        (4, 2, 0)
    );
    assert!((record.success_rate - 4.0 / 6.0).abs() < 1e-9);
    let indices: Vec<usize> = record.errors.iter().map(|e| e.index).collect();
    assert_eq!(indices, [1, 4]);
    assert!(
        record.errors[0].error.contains("task 1 broke"),
        "{:?}",
        record.errors
    );
    assert!(
        record.errors[1].error.contains("task 4 broke"),
        "{:?}",
        record.errors
    );

    assert_eq!(
        outcome.successes().copied().collect::<Vec<_>>(),
        [0, 20, 30, 50]
    );
    let errors: Vec<(usize, ErrorKind)> = outcome.errors().map(|(i, e)| (i, e.kind())).collect();
    assert_eq!(
        errors,
        [(1, ErrorKind::TaskFailed), (4, ErrorKind::TaskFailed)]
    );
    let err = outcome.results[1].as_ref().unwrap_err();
    assert_eq!(err.address().unwrap().as_str(), "group#0/task#1");
    assert_eq!(err.last_error().unwrap().to_string(), "task 1 broke");

    assert_eq!(statuses(&state, "group#0/task#1"), [Started, Failed]);
    let failed = &with_status(&state, "group#0/task#1", Failed)[0];
    assert_eq!(failed.message.as_deref(), Some("task 1 broke"));
    assert!(failed.is_final);
    assert_eq!(group_records(&state, "group#0"), [Started, Failed]);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_stops_running_tasks_at_once_and_never_starts_the_rest() {
    let state = ExecutionState::new();
    let started = Arc::new(AtomicUsize::new(0));
    let mut group = state.group::<u32>("group").max_workers(3).fail_fast();
    for i in 0..10u32 {
        let started = Arc::clone(&started);
        group.add(move |_ctx: Ctx| async move {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                tokio::time::sleep(SEC).await;
                return Err(io::Error::other("first task broke"));
            }
            tokio::time::sleep(secs(60)).await;
            Ok(i)
        });
    }
    let start = Instant::now();
    let outcome = group.run().await;

    assert_eq!(
        start.elapsed(),
        SEC,
        "running tasks are stopped when the first fails, not waited for"
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        3,
        "tasks 3..9 must never start"
    );
    let record = &outcome.record;
    assert_eq!(record.status, GroupStatus::Failed);
    assert_eq!(
        (record.completed, record.failed, record.cancelled),
        (0, 1, 9)
    );
    assert_eq!(
        outcome.results[0].as_ref().unwrap_err().kind(),
        ErrorKind::TaskFailed
    );
    for i in 1..10 {
        let err = outcome.results[i].as_ref().unwrap_err();
        assert!(err.is_cancelled(), "task {i}: {err:?}");
    }

    assert_eq!(statuses(&state, "group#0/task#0"), [Started, Failed]);
    for i in 1..3 {
        let address = format!("group#0/task#{i}");
        assert_eq!(statuses(&state, &address), [Started, Interrupted]);
        let stopped = &with_status(&state, &address, Interrupted)[0];
        assert!(stopped.is_final && stopped.is_parallel);
        assert_eq!(stopped.kind, ActorKind::Task);
        assert_eq!(
            stopped.detail.as_deref(),
            Some("Cancelled: fail-fast after task 0 failed")
        );
    }
    for i in 3..10 {
        let address = format!("group#0/task#{i}");
        assert!(
            statuses(&state, &address).is_empty(),
            "never-started task {i} has no records"
        );
    }
    assert_eq!(group_records(&state, "group#0"), [Started, Failed]);
}

/// `GroupRecord::errors` is documented as "the error of each failed or cancelled task", and
/// `cancelled` counts tasks that never started: so never-started tasks belong in `errors` too.
#[tokio::test(start_paused = true)]
async fn record_errors_list_every_cancelled_task_including_never_started_ones() {
    let state = ExecutionState::new();
    let mut group = state.group::<()>("group").max_workers(2).fail_fast();
    for i in 0..5 {
        group.add(move |_ctx: Ctx| async move {
            if i == 0 {
                return Err(io::Error::other("broke"));
            }
            tokio::time::sleep(secs(60)).await;
            Ok(())
        });
    }
    let outcome = group.run().await;
    let record = &outcome.record;

    // Task 0 failed, task 1 was stopped while running, tasks 2..4 never started.
    assert_eq!((record.failed, record.cancelled), (1, 4));
    let indices: Vec<usize> = record.errors.iter().map(|e| e.index).collect();
    assert_eq!(
        indices,
        [0, 1, 2, 3, 4],
        "errors must hold one entry per failed or cancelled task: {:?}",
        record.errors
    );
    assert_eq!(record.errors.len(), record.failed + record.cancelled);
}

#[tokio::test(start_paused = true)]
async fn group_timeout_keeps_finished_work_and_cancels_the_rest() {
    let state = ExecutionState::new();
    let mut group = state.group::<u64>("group").max_workers(3).timeout(secs(5));
    // Tasks 0 and 1 finish at 1 s and 2 s; 2, 3 and 4 are running at 5 s; 5 never starts.
    for (i, sleep) in [1, 2, 10, 10, 10, 10].into_iter().enumerate() {
        group.add(move |_ctx: Ctx| async move {
            tokio::time::sleep(secs(sleep)).await;
            Ok::<_, io::Error>(i as u64 * 100)
        });
    }
    let start = Instant::now();
    let outcome = group.run().await;

    assert_eq!(start.elapsed(), secs(5), "returns exactly at the timeout");
    let record = &outcome.record;
    assert_eq!(record.status, GroupStatus::Cancelled);
    assert_eq!(
        (record.completed, record.failed, record.cancelled),
        (2, 0, 4)
    );
    assert_eq!(record.execution_time, secs(5));
    assert_eq!(*outcome.results[0].as_ref().unwrap(), 0);
    assert_eq!(*outcome.results[1].as_ref().unwrap(), 100);
    for i in 2..6 {
        let err = outcome.results[i].as_ref().unwrap_err();
        assert!(err.is_cancelled(), "task {i}: {err:?}");
    }

    for i in 0..2 {
        let address = format!("group#0/task#{i}");
        assert_eq!(statuses(&state, &address), [Started, Completed]);
        let done = &with_status(&state, &address, Completed)[0];
        assert_eq!(done.result, Some(serde_json::json!(i * 100)));
    }
    for i in 2..5 {
        let address = format!("group#0/task#{i}");
        assert_eq!(statuses(&state, &address), [Started, Interrupted]);
        let stopped = &with_status(&state, &address, Interrupted)[0];
        assert_eq!(
            stopped.detail.as_deref(),
            Some("Cancelled: group timed out after 5.0s")
        );
    }
    assert!(statuses(&state, "group#0/task#5").is_empty());
    assert_eq!(group_records(&state, "group#0"), [Started, Interrupted]);
    let last = state.history().latest("group#0").unwrap();
    assert!(last.is_final);
    assert_eq!(last.duration, Some(secs(5)));
    assert!(
        last.message.as_deref().unwrap().contains("group timed out"),
        "{:?}",
        last.message
    );
    assert!(
        !state.is_interrupted(),
        "a group timeout is not a run interrupt"
    );
}

#[tokio::test(start_paused = true)]
async fn interrupt_stops_every_task_in_the_same_instant() {
    let state = ExecutionState::new();
    // The tool ignores interrupts: only the group can stop it.
    let tool = scripted("tool", vec![Step::Hang]);
    let mut group = state.group::<String>("group").max_workers(3);
    for _ in 0..5 {
        let actor = tool.actor.clone();
        group.add(move |ctx: Ctx| async move { ctx.call(&actor, ()).await });
    }
    let requester = {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SEC).await;
            let requested = Instant::now();
            let signal = InterruptSignal::new(InterruptReason::UserCancelled).message("stop");
            assert!(state.request_interrupt(signal));
            requested
        })
    };
    let start = Instant::now();
    let outcome = group.run().await;
    let returned = Instant::now();
    let requested = requester.await.unwrap();

    assert_eq!(
        returned.duration_since(requested),
        Duration::ZERO,
        "the group returns in the instant the interrupt is requested"
    );
    assert_eq!(returned.duration_since(start), SEC);
    assert_eq!(tool.calls(), 3, "only the running tasks called the tool");
    let record = &outcome.record;
    assert_eq!(record.status, GroupStatus::Cancelled);
    assert_eq!(
        (record.completed, record.failed, record.cancelled),
        (0, 0, 5)
    );
    for i in 0..3 {
        let err = outcome.results[i].as_ref().unwrap_err();
        assert!(err.is_interrupted(), "running task {i}: {err:?}");
        assert_eq!(
            err.interrupt().unwrap().reason,
            InterruptReason::UserCancelled
        );
        let address = format!("group#0/task#{i}");
        assert_eq!(statuses(&state, &address), [Started, Interrupted]);
        assert_eq!(
            statuses(&state, &format!("{address}/tool#0")),
            [Started, Interrupted]
        );
    }
    for i in 3..5 {
        // Never started, stopped by the interrupt: the one interrupt error, as everywhere.
        assert!(outcome.results[i].as_ref().unwrap_err().is_interrupted());
        assert!(statuses(&state, &format!("group#0/task#{i}")).is_empty());
    }
    assert_eq!(group_records(&state, "group#0"), [Started, Interrupted]);
    let last = state.history().latest("group#0").unwrap();
    assert!(last.is_final);
    assert_eq!(
        last.interrupt.as_ref().unwrap().reason,
        InterruptReason::UserCancelled
    );
}

#[tokio::test(start_paused = true)]
async fn interrupt_before_run_starts_no_task() {
    let state = ExecutionState::new();
    let started = Arc::new(AtomicUsize::new(0));
    let mut group = state.group::<()>("group");
    for _ in 0..4 {
        let started = Arc::clone(&started);
        group.add(move |_ctx: Ctx| async move {
            started.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(())
        });
    }
    assert!(state.request_interrupt(InterruptReason::SystemShutdown));
    let outcome = group.run().await;

    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(outcome.record.status, GroupStatus::Cancelled);
    assert_eq!(outcome.record.cancelled, 4);
    assert!(outcome
        .results
        .iter()
        .all(|r| r.as_ref().unwrap_err().is_interrupted()));
    assert_eq!(group_records(&state, "group#0"), [Started, Interrupted]);
}

#[tokio::test(start_paused = true)]
async fn retries_inside_a_task_are_recorded_with_the_task_group_ref() {
    let state = ExecutionState::new();
    let policy = RetryPolicy::constant(SEC)
        .no_jitter()
        .max_attempts(3)
        .build()
        .unwrap();
    let tools: Vec<_> = (0..3)
        .map(|_| scripted("tool", vec![Step::Fail("flaky"), Step::Ok("fine")]))
        .collect();
    let mut group = state.group::<String>("group").max_workers(3);
    for tool in &tools {
        let actor = tool.actor.clone().retry(policy.clone());
        group.add(move |ctx: Ctx| async move { ctx.call(&actor, ()).await });
    }
    let start = Instant::now();
    let outcome = group.run().await;

    assert_eq!(start.elapsed(), SEC, "the three retries wait in parallel");
    assert_eq!(outcome.record.completed, 3);
    assert!(outcome
        .results
        .iter()
        .all(|r| r.as_deref().unwrap() == "fine"));
    for (i, tool) in tools.iter().enumerate() {
        assert_eq!(tool.calls(), 2);
        let address = format!("group#0/task#{i}/tool#0");
        let events = state.history().at(&address);
        let seen: Vec<EventStatus> = events.iter().map(|e| e.status).collect();
        assert_eq!(seen, [Started, Failed, Retrying, Started, Completed]);
        let expected = group_ref("group#0", i as u32);
        for event in &events {
            assert!(event.is_parallel, "{address} {}", event.status);
            assert_eq!(
                event.group.as_ref(),
                Some(&expected),
                "{address} {}",
                event.status
            );
            assert_eq!(event.kind, ActorKind::Tool);
        }
        let retry = &events[3];
        assert!(retry.retry.is_retry);
        assert_eq!(retry.retry.delay, Some(SEC));
        assert_eq!(
            statuses(&state, &format!("group#0/task#{i}")),
            [Started, Completed]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn nested_groups_nest_addresses_and_tag_inner_events_with_the_inner_group() {
    let state = ExecutionState::new();
    let tool = scripted("tool", vec![Step::Sleep(SEC)]);
    let mut outer = state.group::<Vec<String>>("outer").max_workers(2);
    for _ in 0..2 {
        let actor = tool.actor.clone();
        outer.add(move |ctx: Ctx| async move {
            let mut inner = ctx.group::<String>("inner").max_workers(2);
            for _ in 0..2 {
                let actor = actor.clone();
                inner.add(move |ctx: Ctx| async move {
                    let out = ctx.call(&actor, ()).await?;
                    Ok::<_, rh_agents::Error>(format!("{out} at {}", ctx.address()))
                });
            }
            let outcome = inner.run().await;
            outcome.results.into_iter().collect::<Result<Vec<_>, _>>()
        });
    }
    let start = Instant::now();
    let outcome = outer.run().await;

    assert_eq!(start.elapsed(), SEC, "all four inner tasks run at once");
    assert_eq!(outcome.record.completed, 2);
    for (i, result) in outcome.results.iter().enumerate() {
        let expected: Vec<String> = (0..2)
            .map(|j| format!("slept at outer#0/task#{i}/inner#0/task#{j}"))
            .collect();
        assert_eq!(result.as_ref().unwrap(), &expected);
    }
    for i in 0..2u32 {
        let inner_id = format!("outer#0/task#{i}/inner#0");
        // The inner group's own records sit in the outer group's task.
        let inner_records: Vec<_> = state
            .history()
            .at(&inner_id)
            .into_iter()
            .filter(|e| e.kind == ActorKind::Group)
            .collect();
        assert_eq!(inner_records.len(), 2);
        for record in &inner_records {
            assert_eq!(record.group, Some(group_ref("outer#0", i)));
            assert!(record.is_parallel);
        }
        for j in 0..2u32 {
            let task = format!("{inner_id}/task#{j}");
            let call = format!("{task}/tool#0");
            assert_eq!(statuses(&state, &task), [Started, Completed]);
            assert_eq!(statuses(&state, &call), [Started, Completed]);
            for event in state
                .history()
                .at(&task)
                .iter()
                .chain(&state.history().at(&call))
            {
                assert_eq!(
                    event.group,
                    Some(group_ref(&inner_id, j)),
                    "{} {}",
                    event.address,
                    event.status
                );
                assert!(event.is_parallel);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_keeps_running_after_a_fail_fast_return() {
    let baseline = alive_tasks();
    let state = ExecutionState::new();
    let late = Arc::new(AtomicBool::new(false));
    let mut group = state.group::<()>("group").max_workers(4).fail_fast();
    for i in 0..8 {
        let late = Arc::clone(&late);
        group.add(move |_ctx: Ctx| async move {
            if i == 0 {
                tokio::time::sleep(SEC).await;
                return Err(io::Error::other("broke"));
            }
            tokio::time::sleep(secs(100)).await;
            late.store(true, Ordering::SeqCst);
            Ok(())
        });
    }
    let outcome = group.run().await;
    assert_eq!(outcome.record.status, GroupStatus::Failed);
    assert_eq!(
        alive_tasks(),
        baseline,
        "every task the group spawned has ended when it returns"
    );

    tokio::time::sleep(secs(1_000)).await;
    assert!(
        !late.load(Ordering::SeqCst),
        "a stopped task must not go on running after the group returned"
    );
    assert_eq!(alive_tasks(), baseline);
}

#[tokio::test(start_paused = true)]
async fn stream_yields_results_in_completion_order_then_the_record() {
    let state = ExecutionState::new();
    let mut group = state.group::<u64>("group").max_workers(3);
    for sleep in [3, 1, 2] {
        group.add(move |_ctx: Ctx| async move {
            tokio::time::sleep(secs(sleep)).await;
            Ok::<_, io::Error>(sleep * 10)
        });
    }
    let start = Instant::now();
    let mut stream = group.stream().unwrap();
    let mut seen = Vec::new();
    while let Some((index, result)) = stream.next().await {
        seen.push((index, result.unwrap(), start.elapsed()));
    }
    assert_eq!(
        seen,
        [(1, 10, secs(1)), (2, 20, secs(2)), (0, 30, secs(3))],
        "each result arrives the moment its task completes"
    );
    let record = stream.finish().await.unwrap();
    assert_eq!(record.status, GroupStatus::Completed);
    assert_eq!(record.completed, 3);
    assert_eq!(record.execution_time, secs(3));
    assert_eq!(group_records(&state, "group#0"), [Started, Completed]);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_stream_early_aborts_the_rest() {
    let baseline = alive_tasks();
    let state = ExecutionState::new();
    let late = Arc::new(AtomicUsize::new(0));
    let mut group = state.group::<usize>("group").max_workers(2);
    for i in 0..5 {
        let late = Arc::clone(&late);
        group.add(move |_ctx: Ctx| async move {
            if i == 0 {
                tokio::time::sleep(SEC).await;
                return Ok::<_, io::Error>(i);
            }
            tokio::time::sleep(secs(100)).await;
            late.fetch_add(1, Ordering::SeqCst);
            Ok(i)
        });
    }
    let mut stream = group.stream().unwrap();
    let (index, result) = stream.next().await.unwrap();
    assert_eq!((index, result.unwrap()), (0, 0));
    drop(stream);

    tokio::time::sleep(secs(1_000)).await;
    assert_eq!(
        late.load(Ordering::SeqCst),
        0,
        "no task may finish after the stream was dropped"
    );
    assert_eq!(alive_tasks(), baseline, "the driver and its tasks are gone");
    assert_eq!(statuses(&state, "group#0/task#0"), [Started, Completed]);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_tasks_run_on_exactly_max_workers() {
    const TASKS: usize = 100_000;
    let state = ExecutionState::new();
    let peak = Arc::new(Peak::default());
    let mut group = state.group::<()>("group").max_workers(64);
    for _ in 0..TASKS {
        let peak = Arc::clone(&peak);
        group.add(move |_ctx: Ctx| async move {
            let _running = peak.enter();
            tokio::task::yield_now().await;
            Ok::<_, io::Error>(())
        });
    }
    let outcome = group.run().await;

    assert_eq!(peak.max(), 64);
    assert_eq!(peak.now(), 0);
    assert_eq!(outcome.record.completed, TASKS);
    assert_eq!(outcome.results.len(), TASKS);
    assert_eq!(outcome.record.status, GroupStatus::Completed);
}

/// Runs one group whose tasks finish in an order set by `seed`; returns the addresses
/// recorded for each task index, and the order the tasks finished in.
async fn addresses_of_a_run(seed: u64) -> (BTreeMap<u32, BTreeSet<String>>, Vec<usize>) {
    let state = ExecutionState::new();
    let seen = collect(&state);
    let search = scripted("search", vec![Step::Ok("found")]);
    let fetch = scripted("fetch", vec![Step::Ok("fetched")]);
    let finished = Arc::new(Mutex::new(Vec::new()));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut group = state.group::<String>("group").max_workers(8);
    for i in 0..8 {
        let (search, fetch) = (search.actor.clone(), fetch.actor.clone());
        let finished = Arc::clone(&finished);
        let (a, b) = (rng.u64(1..1_000), rng.u64(1..1_000));
        let name = if i % 2 == 0 { "even" } else { "odd" };
        group.add_named(name, move |ctx: Ctx| async move {
            tokio::time::sleep(Duration::from_millis(a)).await;
            ctx.call(&search, ()).await?;
            tokio::time::sleep(Duration::from_millis(b)).await;
            ctx.call(&search, ()).await?;
            let out = ctx.call(&fetch, ()).await?;
            finished.lock().unwrap().push(i);
            Ok::<_, rh_agents::Error>(out)
        });
    }
    let outcome = group.run().await;
    assert_eq!(outcome.record.completed, 8);

    let mut by_index: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for event in seen.lock().unwrap().iter() {
        if let Some(group) = &event.group {
            assert_eq!(&*group.id, "group#0");
            by_index
                .entry(group.index)
                .or_default()
                .insert(event.address.to_string());
        }
    }
    let order = finished.lock().unwrap().clone();
    (by_index, order)
}

#[tokio::test(start_paused = true)]
async fn addresses_do_not_depend_on_completion_order() {
    let (first, first_order) = addresses_of_a_run(1).await;
    let (second, second_order) = addresses_of_a_run(2).await;

    assert_ne!(
        first_order, second_order,
        "the two runs must finish in different orders for the test to mean anything"
    );
    assert_eq!(first, second);
    assert_eq!(first.len(), 8);
    for (index, addresses) in &first {
        let name = if index % 2 == 0 { "even" } else { "odd" };
        let task = format!("group#0/{name}#{index}");
        let expected: BTreeSet<String> = [
            task.clone(),
            format!("{task}/search#0"),
            format!("{task}/search#1"),
            format!("{task}/fetch#0"),
        ]
        .into_iter()
        .collect();
        assert_eq!(addresses, &expected, "task {index}");
    }
}

#[tokio::test(start_paused = true)]
async fn groups_opened_in_one_state_get_successive_addresses() {
    let state = ExecutionState::new();
    let first = state.group::<()>("group");
    let second = state.group::<()>("group");
    let other = state.group::<()>("other");
    assert_eq!(first.address().as_str(), "group#0");
    assert_eq!(second.address().as_str(), "group#1");
    assert_eq!(other.address().as_str(), "other#0");
    let empty = first.run().await;
    assert_eq!(empty.record.status, GroupStatus::Completed);
    assert!((empty.record.success_rate - 1.0).abs() < f64::EPSILON);
    assert_eq!(empty.record.total, 0);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_fails_alone() {
    let state = ExecutionState::new();
    let mut group = state.group::<u32>("group").max_workers(2);
    group.add(|_ctx: Ctx| async move {
        tokio::time::sleep(SEC).await;
        Ok::<_, io::Error>(1)
    });
    group.add(|_ctx: Ctx| async move {
        if true {
            panic!("task exploded");
        }
        Ok::<_, io::Error>(2)
    });
    group.add(|_ctx: Ctx| async move { Ok::<_, io::Error>(3) });
    let outcome = group.run().await;

    assert_eq!(outcome.record.status, GroupStatus::Failed);
    assert_eq!((outcome.record.completed, outcome.record.failed), (2, 1));
    assert_eq!(*outcome.results[0].as_ref().unwrap(), 1);
    assert_eq!(*outcome.results[2].as_ref().unwrap(), 3);
    let err = outcome.results[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TaskFailed);
    assert!(err.report().contains("task exploded"), "{}", err.report());
    assert_eq!(statuses(&state, "group#0/task#1"), [Started, Failed]);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_aborts_running_tasks() {
    let baseline = alive_tasks();
    let state = ExecutionState::new();
    let late = Arc::new(AtomicUsize::new(0));
    let mut group = state.group::<()>("group").max_workers(3);
    for _ in 0..6 {
        let late = Arc::clone(&late);
        group.add(move |_ctx: Ctx| async move {
            tokio::time::sleep(secs(10)).await;
            late.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(())
        });
    }
    let gave_up = tokio::time::timeout(SEC, group.run()).await;
    assert!(gave_up.is_err(), "the group cannot finish in a second");

    tokio::time::sleep(secs(1_000)).await;
    assert_eq!(
        late.load(Ordering::SeqCst),
        0,
        "no task outlives the dropped future"
    );
    assert_eq!(alive_tasks(), baseline);
}

/// A nested group whose task is stopped from outside (here: the outer group fails fast)
/// must still close its records: the inner group's STARTED and its tasks' STARTED each get a
/// final record, as every call's does (`run.rs`' `Unfinished` guard, "so no call is left
/// with a dangling STARTED").
#[tokio::test(start_paused = true)]
async fn outer_fail_fast_closes_the_records_of_a_nested_group() {
    let state = ExecutionState::new();
    let mut outer = state.group::<()>("outer").max_workers(2).fail_fast();
    outer.add(|_ctx: Ctx| async move {
        tokio::time::sleep(SEC).await;
        Err::<(), _>(io::Error::other("broke"))
    });
    outer.add(|ctx: Ctx| async move {
        let mut inner = ctx.group::<()>("inner").max_workers(2);
        for _ in 0..2 {
            inner.add(|_ctx: Ctx| async move {
                tokio::time::sleep(secs(60)).await;
                Ok::<_, io::Error>(())
            });
        }
        inner.run().await;
        Ok::<_, io::Error>(())
    });
    let outcome = outer.run().await;
    assert_eq!(outcome.record.status, GroupStatus::Failed);
    assert_eq!(statuses(&state, "outer#0/task#1"), [Started, Interrupted]);

    let events = state.history().events();
    let started: BTreeSet<String> = events
        .iter()
        .filter(|e| e.status == Started)
        .map(|e| e.address.to_string())
        .collect();
    let closed: BTreeSet<String> = events
        .iter()
        .filter(|e| e.is_final)
        .map(|e| e.address.to_string())
        .collect();
    let dangling: Vec<&String> = started.difference(&closed).collect();
    assert!(
        dangling.is_empty(),
        "records left with a STARTED and no final record: {dangling:?}"
    );
}

/// The same situation seen from a stream: `EventStream` ends "once the run is interrupted and
/// every call that was running has recorded how it ended". After the groups have returned,
/// nothing is running, so an interrupt must end the stream.
#[tokio::test(start_paused = true)]
async fn event_stream_ends_after_an_interrupt_that_follows_a_nested_fail_fast() {
    // Control: without nesting, the stream ends.
    let flat = ExecutionState::new();
    let mut flat_events = flat.stream();
    let mut group = flat.group::<()>("group").max_workers(2).fail_fast();
    group.add(|_ctx: Ctx| async move { Err::<(), _>(io::Error::other("broke")) });
    group.add(|_ctx: Ctx| async move {
        tokio::time::sleep(secs(60)).await;
        Ok::<_, io::Error>(())
    });
    let _ = group.run().await;
    assert!(flat.request_interrupt(InterruptReason::UserCancelled));
    let drained = tokio::time::timeout(secs(100), async {
        while flat_events.next().await.is_some() {}
    })
    .await;
    assert!(drained.is_ok(), "control: a flat group's stream ends");

    let state = ExecutionState::new();
    let mut events = state.stream();
    let mut outer = state.group::<()>("outer").max_workers(2).fail_fast();
    outer.add(|_ctx: Ctx| async move {
        tokio::time::sleep(SEC).await;
        Err::<(), _>(io::Error::other("broke"))
    });
    outer.add(|ctx: Ctx| async move {
        let mut inner = ctx.group::<()>("inner");
        inner.add(|_ctx: Ctx| async move {
            tokio::time::sleep(secs(60)).await;
            Ok::<_, io::Error>(())
        });
        inner.run().await;
        Ok::<_, io::Error>(())
    });
    let _ = outer.run().await;
    assert!(state.request_interrupt(InterruptReason::UserCancelled));

    let drained =
        tokio::time::timeout(secs(100), async { while events.next().await.is_some() {} }).await;
    assert!(
        drained.is_ok(),
        "the event stream never ended: the nested group still counts as running"
    );
}
