#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Interrupts that arrive while a call waits out a retry backoff, before a call, or from a
//! run timeout.

mod support;

use std::time::Duration;

use rh_agents::{ActorKind, EventStatus, ExecutionState, InterruptReason, InterruptSignal};
use support::{constant, scripted, spawn_call, statuses, with_status, Step};
use tokio::time::Instant;

use EventStatus::{Completed, Failed, Interrupted, Retrying, Started};

/// The runtime's own interrupt notices (kind system, status interrupted).
fn notices(state: &ExecutionState) -> usize {
    state
        .history()
        .events()
        .iter()
        .filter(|e| e.kind == ActorKind::System && e.status == Interrupted)
        .count()
}

#[tokio::test(start_paused = true)]
async fn interrupt_during_backoff_stops_the_call_and_records_the_retry_trail() {
    let state = ExecutionState::new();
    let tool = scripted("flaky", vec![Step::Fail("upstream down")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(10), 3));
    let task = spawn_call(&state, actor);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let signal = InterruptSignal::new(InterruptReason::UserCancelled).message("stop now");
    assert!(state.request_interrupt(signal.clone()));
    let (result, _) = task.await.unwrap();
    let err = result.unwrap_err();

    assert_eq!(
        tool.calls(),
        1,
        "the handler must not run again after the interrupt"
    );
    assert!(
        err.is_interrupted(),
        "expected an interrupt error, got {err:?}"
    );
    assert!(!err.is_retry_exhausted());
    assert_eq!(err.attempts(), 1);
    let carried = err.interrupt().unwrap();
    assert_eq!(carried.reason, InterruptReason::UserCancelled);
    assert_eq!(carried.message.as_deref(), Some("stop now"));
    assert_eq!(carried, &signal);
    assert_eq!(err.address().unwrap().as_str(), "flaky#0");

    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Interrupted]
    );
    let failed = &with_status(&state, "flaky#0", Failed)[0];
    assert_eq!(failed.message.as_deref(), Some("upstream down"));

    let retrying = &with_status(&state, "flaky#0", Retrying)[0];
    assert_eq!(retrying.retry.attempt, 1);
    assert!(retrying.retry.is_retry);
    assert_eq!(retrying.retry.delay, Some(Duration::from_secs(10)));
    assert_eq!(
        retrying.retry.original_error.as_deref(),
        Some("upstream down")
    );

    let interrupted = &with_status(&state, "flaky#0", Interrupted)[0];
    assert_eq!(
        interrupted.detail.as_deref(),
        Some("Interrupted during retry backoff: user_cancelled")
    );
    assert_eq!(interrupted.message.as_deref(), Some("stop now"));
    assert_eq!(
        interrupted.retry.original_error.as_deref(),
        Some("upstream down")
    );
    assert_eq!(interrupted.interrupt.as_deref(), Some(&signal));
    assert_eq!(interrupted.kind, ActorKind::Tool);
}

#[tokio::test(start_paused = true)]
async fn interrupted_ten_second_backoff_ends_without_waiting_it_out() {
    let state = ExecutionState::new();
    let tool = scripted("slow_retry", vec![Step::Fail("nope"), Step::Ok("late")]);
    let start = Instant::now();
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(10), 2)),
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let requested = Instant::now();
    assert!(state.request_interrupt(InterruptSignal::new(InterruptReason::UserCancelled)));
    let (result, returned) = task.await.unwrap();

    assert!(result.unwrap_err().is_interrupted());
    assert_eq!(
        returned.duration_since(requested),
        Duration::ZERO,
        "the backoff must end in the same instant the interrupt is requested"
    );
    assert_eq!(returned.duration_since(start), Duration::from_secs(1));
    assert_eq!(
        tool.calls(),
        1,
        "the retry after the backoff must never run"
    );
}

#[tokio::test(start_paused = true)]
async fn interrupt_after_several_retries_stops_the_next_one() {
    let state = ExecutionState::new();
    let tool = scripted(
        "flaky",
        vec![
            Step::Fail("first"),
            Step::Fail("second"),
            Step::Fail("third"),
            Step::Ok("fourth time lucky"),
        ],
    );
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(1), 10)),
    );

    // Attempts run at 0 s, 1 s and 2 s; the fourth would run at 3 s.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    let (result, _) = task.await.unwrap();
    let err = result.unwrap_err();

    assert_eq!(tool.calls(), 3);
    assert!(err.is_interrupted());
    assert_eq!(err.attempts(), 3);
    assert_eq!(
        statuses(&state, "flaky#0"),
        [
            Started,
            Failed,
            Retrying,
            Started,
            Failed,
            Retrying,
            Started,
            Failed,
            Retrying,
            Interrupted
        ]
    );
    let interrupted = &with_status(&state, "flaky#0", Interrupted)[0];
    assert_eq!(interrupted.retry.attempt, 3);
    assert_eq!(interrupted.retry.original_error.as_deref(), Some("third"));
    let attempts: Vec<u32> = with_status(&state, "flaky#0", Started)
        .iter()
        .map(|e| e.retry.attempt)
        .collect();
    assert_eq!(attempts, [0, 1, 2]);
}

#[tokio::test(start_paused = true)]
async fn run_timeout_interrupts_with_reason_timeout() {
    let state = ExecutionState::new();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(10), 2));
    let start = Instant::now();
    state.set_timeout(Duration::from_secs(3)).unwrap();

    let err = state.call(&actor, ()).await.unwrap_err();

    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert!(err.is_interrupted());
    assert!(
        err.is_timeout(),
        "an interrupt with reason timeout is a timeout"
    );
    let signal = err.interrupt().unwrap();
    assert_eq!(signal.reason, InterruptReason::Timeout);
    assert_eq!(signal.message.as_deref(), Some("run timed out after 3.0s"));
    assert_eq!(tool.calls(), 1);
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Interrupted]
    );
    assert_eq!(notices(&state), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_timeout_never_interrupts() {
    let state = ExecutionState::new();
    let tool = scripted("sleeper", vec![Step::Sleep(Duration::from_secs(5))]);
    state.set_timeout(Duration::from_secs(1)).unwrap();
    assert!(state.cancel_timeout(), "a timeout was set");
    assert!(!state.cancel_timeout(), "nothing left to cancel");

    let output = state.call(&tool.actor, ()).await.unwrap();
    assert_eq!(output, "slept");
    // Long past the cancelled deadline, nothing fires.
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert!(!state.is_interrupted());
    assert_eq!(state.interrupt_signal(), None);
    assert_eq!(statuses(&state, "sleeper#0"), [Started, Completed]);
    assert_eq!(notices(&state), 0);
}

#[tokio::test(start_paused = true)]
async fn replacing_a_timeout_keeps_only_the_latest() {
    let state = ExecutionState::new();
    let tool = scripted("sleeper", vec![Step::Sleep(Duration::from_secs(5))]);
    state.set_timeout(Duration::from_secs(1)).unwrap();
    state.set_timeout(Duration::from_secs(30)).unwrap();

    assert_eq!(state.call(&tool.actor, ()).await.unwrap(), "slept");
    assert!(
        !state.is_interrupted(),
        "the replaced 1 s timeout must not fire"
    );
}

#[tokio::test(start_paused = true)]
async fn interrupt_before_a_call_fails_it_without_running_the_handler() {
    let state = ExecutionState::new();
    let tool = scripted("never", vec![Step::Ok("unreachable")]);
    assert!(state.request_interrupt(
        InterruptSignal::new(InterruptReason::SystemShutdown).message("shutting down")
    ));
    let start = Instant::now();

    let err = state.call(&tool.actor, ()).await.unwrap_err();

    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(tool.calls(), 0, "the handler must not run");
    assert!(err.is_interrupted());
    assert_eq!(err.attempts(), 0);
    assert_eq!(
        err.interrupt().unwrap().reason,
        InterruptReason::SystemShutdown
    );
    assert_eq!(statuses(&state, "never#0"), [Interrupted]);
    let record = &with_status(&state, "never#0", Interrupted)[0];
    assert_eq!(record.message.as_deref(), Some("shutting down"));
    assert_eq!(
        record.detail.as_deref(),
        Some("Interrupted before preconditions: system_shutdown")
    );
}

#[tokio::test(start_paused = true)]
async fn one_interrupt_publishes_exactly_one_notice() {
    let state = ExecutionState::new();
    let tool = scripted("flaky", vec![Step::Fail("down")]);
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(10), 3)),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let first = InterruptSignal::new(InterruptReason::UserCancelled).message("first");
    assert!(state.request_interrupt(first.clone()));
    assert!(!state.request_interrupt(InterruptSignal::new(InterruptReason::Timeout)));
    assert!(!state
        .request_interrupt(InterruptSignal::new(InterruptReason::SystemShutdown).message("third")));
    let (result, _) = task.await.unwrap();

    assert_eq!(notices(&state), 1);
    let notice = state
        .history()
        .events()
        .into_iter()
        .find(|e| e.kind == ActorKind::System)
        .unwrap();
    assert_eq!(notice.status, Interrupted);
    assert!(notice.address.is_root());
    assert_eq!(notice.interrupt.as_deref(), Some(&first));
    assert_eq!(notice.message.as_deref(), Some("user_cancelled: first"));
    // The first signal wins everywhere.
    assert_eq!(state.interrupt_signal(), Some(first.clone()));
    assert_eq!(result.unwrap_err().interrupt(), Some(&first));
    assert_eq!(with_status(&state, "flaky#0", Interrupted).len(), 1);
}
