#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Edge cases of parallel groups: external checkers while a group waits, a spent time limit,
//! logs inside tasks, and a dropped group.
mod support;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::parallel::GroupStatus;
use rh_agents::{Ctx, EventStatus, ExecutionState, InterruptChecker, Severity};

#[tokio::test(start_paused = true)]
async fn an_external_checker_stops_a_group_whose_tasks_make_no_calls() {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flag);
    let state = ExecutionState::builder()
        .checker(InterruptChecker::from_fn(move || {
            seen.load(Ordering::SeqCst)
        }))
        .build();
    let mut group = state.group::<()>("sleepers").max_workers(2);
    for _ in 0..2 {
        group.add(|_ctx: Ctx| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, io::Error>(())
        });
    }
    let setter = Arc::clone(&flag);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        setter.store(true, Ordering::SeqCst);
    });
    let started = tokio::time::Instant::now();

    let outcome = group.run().await;

    assert_eq!(outcome.record.status, GroupStatus::Cancelled);
    assert!(outcome
        .results
        .iter()
        .all(|r| r.as_ref().unwrap_err().is_interrupted()));
    // Noticed at the next poll (every 100 ms by default), not after the tasks' 10 s.
    assert!(
        started.elapsed() <= Duration::from_millis(1_100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_checker_does_not_stall_the_groups_scheduling() {
    // The checker never answers (each poll gives up after the 1 s check timeout). It is polled
    // by the state's watcher, not by the group: tasks start the moment a worker is free.
    let polls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&polls);
    let state = ExecutionState::builder()
        .checker(InterruptChecker::from_async(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<bool>()
        }))
        .build();
    let mut group = state.group::<()>("steady").max_workers(2);
    for _ in 0..20 {
        group.add(|_ctx: Ctx| async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok::<_, io::Error>(())
        });
    }
    let started = tokio::time::Instant::now();

    let outcome = group.run().await;

    assert_eq!(outcome.record.status, GroupStatus::Completed);
    // Ten waves of 150 ms, whatever the checker does.
    assert_eq!(started.elapsed(), Duration::from_millis(1_500));
    assert!(
        polls.load(Ordering::SeqCst) >= 1,
        "the checker was consulted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_time_limit_starts_no_task() {
    let state = ExecutionState::new();
    let started = Arc::new(AtomicUsize::new(0));
    let mut group = state.group::<()>("late").timeout(Duration::ZERO);
    for _ in 0..3 {
        let started = Arc::clone(&started);
        group.add(move |_ctx: Ctx| async move {
            started.fetch_add(1, Ordering::SeqCst);
            Ok::<_, io::Error>(())
        });
    }

    let outcome = group.run().await;

    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(outcome.record.status, GroupStatus::Cancelled);
    assert_eq!(outcome.record.cancelled, 3);
    assert!(outcome
        .results
        .iter()
        .all(|r| r.as_ref().unwrap_err().is_cancelled()));
}

#[tokio::test(start_paused = true)]
async fn a_log_inside_a_task_carries_the_group_and_index() {
    let state = ExecutionState::new();
    let mut group = state.group::<()>("g");
    for _ in 0..2 {
        group.add(|ctx: Ctx| async move {
            ctx.log(Severity::Info, "working");
            Ok::<_, io::Error>(())
        });
    }
    group.run().await;

    let logs: Vec<_> = state
        .history()
        .events()
        .into_iter()
        .filter(|e| e.status == EventStatus::Log)
        .collect();
    assert_eq!(logs.len(), 2);
    for log in logs {
        assert!(log.is_parallel);
        let group = log.group.as_ref().unwrap();
        assert_eq!(&*group.id, "g#0");
        assert_eq!(log.address.as_str(), format!("g#0/task#{}", group.index));
    }
}

#[tokio::test(start_paused = true)]
async fn a_dropped_group_closes_its_records_and_lets_streams_end() {
    use tokio_stream::StreamExt;
    let state = ExecutionState::new();
    let mut stream = state.stream();
    let mut group = state.group::<()>("slow");
    group.add(|_ctx: Ctx| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, io::Error>(())
    });

    let gave_up = tokio::time::timeout(Duration::from_secs(1), group.run()).await;
    assert!(gave_up.is_err());
    assert_eq!(
        state.history().statuses("slow#0/task#0"),
        [EventStatus::Started, EventStatus::Interrupted]
    );
    assert_eq!(
        state.history().statuses("slow#0"),
        [EventStatus::Started, EventStatus::Interrupted]
    );

    // Nothing is left counted as running: after an interrupt the stream ends.
    state.request_interrupt(rh_agents::InterruptReason::UserCancelled);
    let mut seen = 0;
    while let Some(_event) = stream.next().await {
        seen += 1;
    }
    assert_eq!(seen, state.history().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_started_under_a_failed_fast_group_outlives_it_not_even_in_nested_groups() {
    let state = ExecutionState::new();
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut outer = state.group::<()>("outer").max_workers(2).fail_fast();
    // Task 0: a nested group whose task keeps working (yielding between steps).
    let counter = Arc::clone(&ticks);
    outer.add(move |ctx: Ctx| async move {
        let mut inner = ctx.group::<()>("inner");
        inner.add(move |_ctx: Ctx| async move {
            loop {
                // A step of CPU work that cannot be interrupted (no await inside), then its
                // tick: an abort takes effect only at the next await, after the tick.
                let step = std::time::Instant::now();
                while step.elapsed() < Duration::from_millis(15) {
                    std::hint::spin_loop();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                if counter.load(Ordering::SeqCst) == usize::MAX {
                    return Ok::<(), io::Error>(());
                }
            }
        });
        inner.run().await;
        Ok::<_, io::Error>(())
    });
    // Task 1: fails shortly after, which stops the group.
    outer.add(|_ctx: Ctx| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err::<(), _>(io::Error::other("stop"))
    });

    let outcome = outer.run().await;
    assert_eq!(outcome.record.status, GroupStatus::Failed);
    assert!(ticks.load(Ordering::SeqCst) > 0, "the inner task did run");

    // When the outer group has returned, the inner task is gone: it never ticks again.
    let after = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ticks.load(Ordering::SeqCst), after);
    for address in ["outer#0/task#0/inner#0", "outer#0/task#0/inner#0/task#0"] {
        let statuses = state.history().statuses(address);
        assert_eq!(statuses.first(), Some(&EventStatus::Started), "{address}");
        assert_eq!(
            statuses.last(),
            Some(&EventStatus::Interrupted),
            "{address}"
        );
    }
}
