#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! External interrupt checkers: polled at checkpoints and while something waits.

mod support;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::{
    Event, EventStatus, ExecutionState, InterruptChecker, InterruptReason, InterruptSignal,
    Severity, DEFAULT_CHECK_INTERVAL,
};
use support::{constant, scripted, spawn_call, statuses, with_status, Step};
use tokio::time::Instant;

use EventStatus::{Completed, Failed, Interrupted, Retrying, Started};

/// A sync checker that counts its calls and says stop from call `fire_on` on (never if 0).
fn counting_checker(fire_on: u32) -> (InterruptChecker, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&count);
    let checker = InterruptChecker::from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        fire_on != 0 && n >= fire_on
    });
    (checker, count)
}

/// The warning log records at the root address.
fn warnings(state: &ExecutionState) -> Vec<Arc<Event>> {
    state
        .history()
        .events()
        .into_iter()
        .filter(|e| e.status == EventStatus::Log && e.level == Some(Severity::Warning))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn checker_is_polled_throughout_a_backoff_and_a_quiet_one_changes_nothing() {
    let (checker, checks) = counting_checker(0);
    let state = ExecutionState::builder().checker(checker).build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(10), 2));
    let start = Instant::now();

    let output = state.call(&actor, ()).await.unwrap();

    assert_eq!(output, "up");
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    assert_eq!(DEFAULT_CHECK_INTERVAL, Duration::from_millis(100));
    let n = checks.load(Ordering::SeqCst);
    // About one check per 100 ms over 10 s, plus the checkpoints around the attempts.
    assert!(
        (95..=110).contains(&n),
        "expected ~100 polls over a 10 s backoff, got {n}"
    );
    assert!(!state.is_interrupted());
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    assert!(warnings(&state).is_empty());
}

#[tokio::test(start_paused = true)]
async fn checker_that_fires_stops_the_backoff_within_one_interval() {
    let count = Arc::new(AtomicU32::new(0));
    let fired_at = Arc::new(Mutex::new(None));
    let (counter, flip) = (Arc::clone(&count), Arc::clone(&fired_at));
    let checker = InterruptChecker::from_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 5 {
            *flip.lock().unwrap() = Some(Instant::now());
        }
        n >= 5
    });
    let state = ExecutionState::builder().checker(checker).build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let start = Instant::now();

    let err = state
        .call(
            &tool
                .actor
                .clone()
                .retry(constant(Duration::from_secs(10), 2)),
            (),
        )
        .await
        .unwrap_err();
    let ended = Instant::now();

    assert!(err.is_interrupted(), "expected an interrupt, got {err:?}");
    let signal = err.interrupt().unwrap();
    assert_eq!(signal.reason, InterruptReason::Custom);
    assert_eq!(signal.triggered_by.as_deref(), Some("external checker"));
    assert_eq!(count.load(Ordering::SeqCst), 5, "no polling after it fired");
    let fired_at = fired_at.lock().unwrap().unwrap();
    assert!(ended.duration_since(fired_at) <= DEFAULT_CHECK_INTERVAL);
    assert!(
        ended.duration_since(start) < Duration::from_secs(1),
        "the 10 s backoff must end early, took {:?}",
        ended.duration_since(start)
    );
    assert_eq!(tool.calls(), 1);
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Interrupted]
    );
    let record = &with_status(&state, "flaky#0", Interrupted)[0];
    assert_eq!(
        record.detail.as_deref(),
        Some("Interrupted during retry backoff: custom")
    );
}

#[tokio::test(start_paused = true)]
async fn checker_flipped_externally_ends_the_wait_within_one_interval() {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flag);
    let state = ExecutionState::builder()
        .checker(InterruptChecker::from_fn(move || {
            seen.load(Ordering::SeqCst)
        }))
        .build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(10), 2)),
    );

    tokio::time::sleep(Duration::from_millis(2_050)).await;
    flag.store(true, Ordering::SeqCst);
    let flipped = Instant::now();
    let (result, returned) = task.await.unwrap();

    assert!(result.unwrap_err().is_interrupted());
    let waited = returned.duration_since(flipped);
    assert!(
        waited <= DEFAULT_CHECK_INTERVAL,
        "noticed {waited:?} after the flip"
    );
    assert_eq!(tool.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn async_checker_signal_reason_reaches_the_error() {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flag);
    let checker = InterruptChecker::from_async(move || {
        let seen = Arc::clone(&seen);
        async move {
            tokio::task::yield_now().await;
            seen.load(Ordering::SeqCst).then(|| {
                InterruptSignal::new(InterruptReason::ResourceLimit)
                    .message("token budget spent")
                    .triggered_by("budget watcher")
            })
        }
    });
    let state = ExecutionState::builder().checker(checker).build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(10), 2)),
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    flag.store(true, Ordering::SeqCst);
    let (result, returned) = task.await.unwrap();
    let err = result.unwrap_err();

    assert!(err.is_interrupted());
    let signal = err.interrupt().unwrap();
    assert_eq!(signal.reason, InterruptReason::ResourceLimit);
    assert_eq!(signal.message.as_deref(), Some("token budget spent"));
    assert_eq!(signal.triggered_by.as_deref(), Some("budget watcher"));
    assert!(!err.is_timeout());
    assert!(returned.elapsed() <= DEFAULT_CHECK_INTERVAL);
    assert_eq!(
        state.interrupt_signal().unwrap().reason,
        InterruptReason::ResourceLimit
    );
    let record = &with_status(&state, "flaky#0", Interrupted)[0];
    assert_eq!(
        record.interrupt.as_ref().unwrap().reason,
        InterruptReason::ResourceLimit
    );
}

#[tokio::test(start_paused = true)]
async fn check_interval_sets_how_often_checkers_are_polled() {
    async fn polls_over_a_backoff(interval: Option<Duration>) -> u32 {
        let (checker, checks) = counting_checker(0);
        let mut builder = ExecutionState::builder().checker(checker);
        if let Some(interval) = interval {
            builder = builder.check_interval(interval);
        }
        let state = builder.build();
        let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
        let actor = tool
            .actor
            .clone()
            .retry(constant(Duration::from_secs(10), 2));
        assert_eq!(state.call(&actor, ()).await.unwrap(), "up");
        checks.load(Ordering::SeqCst)
    }

    let every_second = polls_over_a_backoff(Some(Duration::from_secs(1))).await;
    let default = polls_over_a_backoff(None).await;

    assert!(
        (9..=14).contains(&every_second),
        "expected ~10 polls with a 1 s interval, got {every_second}"
    );
    assert!(
        default >= 95,
        "expected ~100 polls by default, got {default}"
    );
    assert!(every_second * 5 < default);
}

#[tokio::test(start_paused = true)]
async fn checker_that_never_fires_lets_the_call_complete() {
    let (checker, checks) = counting_checker(0);
    let state = ExecutionState::builder().checker(checker).build();
    let tool = scripted("slow", vec![Step::Sleep(Duration::from_secs(3))]);

    let output = state.call(&tool.actor, ()).await;

    assert_eq!(output.unwrap(), "slept");
    assert!(!state.is_interrupted());
    assert_eq!(statuses(&state, "slow#0"), [Started, Completed]);
    // Polled while the handler ran, too.
    assert!(checks.load(Ordering::SeqCst) >= 30);
}

#[tokio::test(start_paused = true)]
async fn failing_checker_is_logged_as_a_warning_and_never_interrupts() {
    let state = ExecutionState::builder()
        .checker(InterruptChecker::from_fn(|| {
            Err::<bool, _>(io::Error::other("database unreachable"))
        }))
        .build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(1), 2));

    let output = state.call(&actor, ()).await;

    assert_eq!(output.unwrap(), "up");
    assert!(!state.is_interrupted());
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    let logs = warnings(&state);
    assert!(!logs.is_empty(), "a failing checker must be reported");
    for log in &logs {
        assert_eq!(log.status, EventStatus::Log);
        assert_eq!(log.level, Some(Severity::Warning));
        let message = log.message.as_deref().unwrap();
        assert!(
            message.contains("interrupt checker failed"),
            "unexpected message {message:?}"
        );
        assert!(message.contains("database unreachable"));
    }
}

#[tokio::test(start_paused = true)]
async fn panicking_sync_checker_is_logged_and_does_not_crash_the_run() {
    let state = ExecutionState::builder()
        .checker(InterruptChecker::from_fn(|| -> bool {
            panic!("checker exploded")
        }))
        .build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_millis(300), 2));

    let output = state.call(&actor, ()).await;

    assert_eq!(output.unwrap(), "up");
    assert!(!state.is_interrupted());
    let logs = warnings(&state);
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|e| e
        .message
        .as_deref()
        .unwrap()
        .contains("interrupt checker failed")));
}

#[tokio::test(start_paused = true)]
async fn panicking_async_checker_is_logged_and_does_not_crash_the_run() {
    let state = ExecutionState::builder()
        .checker(InterruptChecker::from_async(|| async {
            tokio::task::yield_now().await;
            if true {
                panic!("async checker exploded");
            }
            false
        }))
        .build();
    let tool = scripted("ok", vec![Step::Ok("fine")]);

    let output = state.call(&tool.actor, ()).await;

    assert_eq!(output.unwrap(), "fine");
    assert!(!state.is_interrupted());
    assert_eq!(statuses(&state, "ok#0"), [Started, Completed]);
    let logs = warnings(&state);
    assert!(!logs.is_empty());
    assert!(logs.iter().all(|e| e
        .message
        .as_deref()
        .unwrap()
        .contains("interrupt checker failed")));
}

#[tokio::test(start_paused = true)]
async fn checker_stops_a_zero_delay_retry_loop_at_a_checkpoint() {
    let (checker, checks) = counting_checker(6);
    let state = ExecutionState::builder().checker(checker).build();
    let tool = scripted("hot_loop", vec![Step::Fail("again")]);
    let actor = tool.actor.clone().retry(constant(Duration::ZERO, 10));
    let start = Instant::now();

    let err = state.call(&actor, ()).await.unwrap_err();

    assert_eq!(start.elapsed(), Duration::ZERO, "no timer may be involved");
    assert!(
        err.is_interrupted(),
        "the checker must stop the loop before retries run out: {err:?}"
    );
    assert!(!err.is_retry_exhausted());
    assert!(tool.calls() < 10, "ran {} attempts", tool.calls());
    assert!(tool.calls() >= 1);
    assert_eq!(checks.load(Ordering::SeqCst), 6);
    assert_eq!(
        statuses(&state, "hot_loop#0").last(),
        Some(&EventStatus::Interrupted)
    );
}

#[tokio::test(start_paused = true)]
async fn checker_added_after_build_is_consulted() {
    let state = ExecutionState::new();
    let flag = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&flag);
    state.add_checker(InterruptChecker::from_fn(move || {
        seen.load(Ordering::SeqCst)
    }));
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(10), 2)),
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    flag.store(true, Ordering::SeqCst);
    let flipped = Instant::now();
    let (result, returned) = task.await.unwrap();

    assert!(result.unwrap_err().is_interrupted());
    assert!(returned.duration_since(flipped) <= DEFAULT_CHECK_INTERVAL);
    assert_eq!(tool.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn checker_added_after_build_that_fires_blocks_the_next_call() {
    let state = ExecutionState::new();
    let tool = scripted("never", vec![Step::Ok("unreachable")]);
    state.add_checker(InterruptChecker::from_fn(|| true));

    let err = state.call(&tool.actor, ()).await.unwrap_err();

    assert!(err.is_interrupted());
    assert_eq!(tool.calls(), 0);
    assert_eq!(statuses(&state, "never#0"), [Interrupted]);
}
