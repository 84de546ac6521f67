#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Interrupts that reach a running handler: raised by the handler itself, honoured
//! cooperatively, or enforced after the grace period.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::{
    Actor, ActorKind, BoxError, Ctx, Error, EventStatus, ExecutionState, InterruptReason,
    InterruptSignal, DEFAULT_GRACE_PERIOD,
};
use support::{constant, scripted, scripted_kind, spawn_call, statuses, with_status, Step};
use tokio::time::Instant;

use EventStatus::{Completed, Interrupted, Started};

/// Spawns the call, waits `after` of virtual time, interrupts, and returns the result with
/// the virtual time from the request to the call's return.
async fn interrupt_after(
    state: &ExecutionState,
    actor: Actor<(), String>,
    after: Duration,
) -> (Result<String, Error>, Duration) {
    let task = spawn_call(state, actor);
    tokio::time::sleep(after).await;
    let requested = Instant::now();
    assert!(state
        .request_interrupt(InterruptSignal::new(InterruptReason::UserCancelled).message("stop")));
    let (result, returned) = task.await.unwrap();
    (result, returned.duration_since(requested))
}

#[tokio::test(start_paused = true)]
async fn interrupt_raised_inside_the_handler_is_not_retried() {
    let state = ExecutionState::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let actor = Actor::tool("self_stop", move |(): (), ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let error: BoxError = Box::new(ctx.interrupt(
                InterruptSignal::new(InterruptReason::Custom).message("found what I needed"),
            ));
            Err::<String, _>(error)
        }
    })
    .retry(constant(Duration::ZERO, 5));

    let err = state.call(&actor, ()).await.unwrap_err();

    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "an interrupt is never retried"
    );
    assert!(err.is_interrupted(), "got {err:?}");
    assert!(!err.is_retry_exhausted());
    assert_eq!(err.attempts(), 1);
    let signal = err.interrupt().unwrap();
    assert_eq!(signal.reason, InterruptReason::Custom);
    assert_eq!(signal.message.as_deref(), Some("found what I needed"));
    assert!(state.is_interrupted());
    assert_eq!(statuses(&state, "self_stop#0"), [Started, Interrupted]);
    let record = &with_status(&state, "self_stop#0", Interrupted)[0];
    assert_eq!(
        record.detail.as_deref(),
        Some("Interrupted during handler: custom")
    );
}

#[tokio::test(start_paused = true)]
async fn cooperative_handler_stops_as_soon_as_it_sees_the_interrupt() {
    let state = ExecutionState::new();
    let tool = scripted_kind(ActorKind::Llm, "thinker", vec![Step::HangCooperative]);
    let actor = tool.actor.clone().retry(constant(Duration::ZERO, 3));

    let (result, waited) = interrupt_after(&state, actor, Duration::from_secs(5)).await;
    let err = result.unwrap_err();

    assert!(err.is_interrupted(), "got {err:?}");
    assert_eq!(waited, Duration::ZERO, "no grace period needed");
    assert_eq!(tool.calls(), 1, "the error it returned is not retried");
    assert_eq!(
        err.interrupt().unwrap().reason,
        InterruptReason::UserCancelled
    );
    assert_eq!(statuses(&state, "thinker#0"), [Started, Interrupted]);
    let record = &with_status(&state, "thinker#0", Interrupted)[0];
    assert_eq!(record.kind, ActorKind::Llm);
    assert_eq!(record.message.as_deref(), Some("stop"));
}

#[tokio::test(start_paused = true)]
async fn handler_that_ignores_the_interrupt_is_aborted_after_the_grace_period() {
    let state = ExecutionState::builder()
        .grace_period(Duration::from_secs(2))
        .build();
    let tool = scripted("stubborn", vec![Step::Hang]);

    let (result, waited) =
        interrupt_after(&state, tool.actor.clone(), Duration::from_secs(1)).await;
    let err = result.unwrap_err();

    assert!(err.is_interrupted(), "got {err:?}");
    assert_eq!(waited, Duration::from_secs(2));
    assert_eq!(tool.calls(), 1);
    assert_eq!(statuses(&state, "stubborn#0"), [Started, Interrupted]);
}

#[tokio::test(start_paused = true)]
async fn default_grace_period_applies_when_not_configured() {
    let state = ExecutionState::new();
    let tool = scripted("stubborn", vec![Step::Hang]);

    let (result, waited) =
        interrupt_after(&state, tool.actor.clone(), Duration::from_secs(1)).await;

    assert!(result.unwrap_err().is_interrupted());
    assert_eq!(waited, DEFAULT_GRACE_PERIOD);
}

#[tokio::test(start_paused = true)]
async fn zero_grace_period_aborts_a_stubborn_handler_at_once() {
    let state = ExecutionState::builder()
        .grace_period(Duration::ZERO)
        .build();
    let tool = scripted("stubborn", vec![Step::Hang]);

    let (result, waited) =
        interrupt_after(&state, tool.actor.clone(), Duration::from_secs(1)).await;

    assert!(result.unwrap_err().is_interrupted());
    assert_eq!(waited, Duration::ZERO);
    assert_eq!(statuses(&state, "stubborn#0"), [Started, Interrupted]);
}

#[tokio::test(start_paused = true)]
async fn handler_finishing_within_the_grace_period_keeps_its_result() {
    let state = ExecutionState::builder()
        .grace_period(Duration::from_secs(2))
        .build();
    let tool = scripted("almost_done", vec![Step::Sleep(Duration::from_secs(3))]);

    // Interrupted at 2 s; the handler finishes at 3 s, inside the 2 s grace period.
    let (result, waited) =
        interrupt_after(&state, tool.actor.clone(), Duration::from_secs(2)).await;

    assert_eq!(result.unwrap(), "slept");
    assert_eq!(waited, Duration::from_secs(1));
    assert_eq!(statuses(&state, "almost_done#0"), [Started, Completed]);
    let completed = &with_status(&state, "almost_done#0", Completed)[0];
    assert_eq!(completed.result, Some(serde_json::json!("slept")));
    assert!(state.is_interrupted(), "the run itself stays interrupted");
}

#[tokio::test(start_paused = true)]
async fn handler_too_slow_for_the_grace_period_loses_its_result() {
    let state = ExecutionState::builder()
        .grace_period(Duration::from_secs(2))
        .build();
    let tool = scripted("too_slow", vec![Step::Sleep(Duration::from_secs(10))]);

    let (result, waited) =
        interrupt_after(&state, tool.actor.clone(), Duration::from_secs(1)).await;

    assert!(result.unwrap_err().is_interrupted());
    assert_eq!(waited, Duration::from_secs(2));
    assert_eq!(statuses(&state, "too_slow#0"), [Started, Interrupted]);
}

/// An agent (allowed to retry) whose handler calls a hanging tool.
fn agent_over(tool: Actor<(), String>, runs: &Arc<AtomicU32>) -> Actor<(), String> {
    let counter = Arc::clone(runs);
    Actor::agent("planner", move |(): (), ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        let tool = tool.clone();
        async move { ctx.call(&tool, ()).await }
    })
    .retry(constant(Duration::ZERO, 5))
}

#[tokio::test(start_paused = true)]
async fn nested_calls_both_record_interrupted_and_the_agent_is_not_retried() {
    let state = ExecutionState::new();
    let tool = scripted("search", vec![Step::Hang]);
    let runs = Arc::new(AtomicU32::new(0));
    let agent = agent_over(tool.actor.clone(), &runs);

    let (result, _) = interrupt_after(&state, agent, Duration::from_secs(1)).await;
    let err = result.unwrap_err();

    assert!(err.is_interrupted(), "got {err:?}");
    assert_eq!(err.address().unwrap().as_str(), "planner#0");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the agent must not be retried"
    );
    assert_eq!(tool.calls(), 1);
    assert_eq!(
        statuses(&state, "planner#0/search#0"),
        [Started, Interrupted]
    );
    assert_eq!(statuses(&state, "planner#0"), [Started, Interrupted]);
    let agent_record = &with_status(&state, "planner#0", Interrupted)[0];
    assert_eq!(agent_record.kind, ActorKind::Agent);
    assert_eq!(
        agent_record.interrupt.as_ref().unwrap().reason,
        InterruptReason::UserCancelled
    );
}

#[tokio::test(start_paused = true)]
async fn nested_calls_both_record_interrupted_with_zero_grace() {
    let state = ExecutionState::builder()
        .grace_period(Duration::ZERO)
        .build();
    let tool = scripted("search", vec![Step::Hang]);
    let runs = Arc::new(AtomicU32::new(0));
    let agent = agent_over(tool.actor.clone(), &runs);

    let (result, waited) = interrupt_after(&state, agent, Duration::from_secs(1)).await;

    assert!(result.unwrap_err().is_interrupted());
    assert_eq!(waited, Duration::ZERO);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(statuses(&state, "planner#0"), [Started, Interrupted]);
    // Every STARTED gets a final record: the aborted child must not be left dangling.
    assert_eq!(
        statuses(&state, "planner#0/search#0"),
        [Started, Interrupted]
    );
}

#[tokio::test(start_paused = true)]
async fn is_interrupted_and_checkpoints_report_the_interrupt() {
    let state = ExecutionState::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let actor = Actor::tool("watcher", move |(): (), ctx: Ctx| {
        let sink = Arc::clone(&sink);
        async move {
            let before = (ctx.is_interrupted(), ctx.check_interrupt().await.is_ok());
            ctx.interrupted().await;
            let after = ctx.is_interrupted();
            let checkpoint = ctx.check_interrupt().await;
            let reason = checkpoint
                .as_ref()
                .err()
                .and_then(Error::interrupt)
                .map(|s| s.reason);
            sink.lock().unwrap().push((before, after, reason));
            checkpoint?;
            Ok::<_, Error>("unreachable".to_owned())
        }
    });

    assert!(state.check_interrupt().await.is_ok());
    let (result, waited) = interrupt_after(&state, actor, Duration::from_secs(1)).await;

    assert!(result.unwrap_err().is_interrupted());
    assert_eq!(waited, Duration::ZERO);
    assert_eq!(
        *seen.lock().unwrap(),
        [((false, true), true, Some(InterruptReason::UserCancelled))]
    );
    let err = state.check_interrupt().await.unwrap_err();
    assert!(err.is_interrupted());
    assert_eq!(
        err.interrupt().unwrap().reason,
        InterruptReason::UserCancelled
    );
    assert_eq!(err.interrupt().unwrap().message.as_deref(), Some("stop"));
    assert_eq!(statuses(&state, "watcher#0"), [Started, Interrupted]);
}

#[tokio::test(start_paused = true)]
async fn call_without_interrupt_completes_normally() {
    let state = ExecutionState::new();
    let tool = scripted("fine", vec![Step::Sleep(Duration::from_secs(2))]);
    let start = Instant::now();

    let output = state.call(&tool.actor, ()).await.unwrap();

    assert_eq!(output, "slept");
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert!(!state.is_interrupted());
    assert!(state.check_interrupt().await.is_ok());
    assert_eq!(statuses(&state, "fine#0"), [Started, Completed]);
    assert!(state
        .history()
        .events()
        .iter()
        .all(|e| e.status != Interrupted));
}
