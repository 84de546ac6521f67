#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

//! Pre- and postconditions under retries: preconditions run once and a failure ends the call
//! before the handler; a failed postcondition fails the attempt, which is retried.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::{
    ConditionFailed, ErrorKind, EventStatus, ExecutionState, HandlerPanic, RetryPolicy,
};
use support::{scripted, statuses, with_status, Step};
use tokio::time::Instant;
use EventStatus::{Completed, Failed, Retrying, Started};

/// Three attempts, no waits.
fn zero_delay() -> RetryPolicy {
    RetryPolicy::constant(Duration::ZERO)
        .max_attempts(3)
        .build()
        .unwrap()
}

/// A counter and a clone of it to move into a closure.
fn counter() -> (Arc<AtomicU32>, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let clone = Arc::clone(&count);
    (count, clone)
}

// ── Preconditions ──────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn preconditions_run_once_even_when_attempts_are_retried() {
    let state = ExecutionState::new();
    let (checks, seen) = counter();
    let s = scripted(
        "api",
        vec![Step::Fail("one"), Step::Fail("two"), Step::Ok("done")],
    );
    let api = s
        .actor
        .clone()
        .precondition(move |(): &()| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .retry(zero_delay());

    let out = state.call(&api, ()).await.unwrap();

    assert_eq!(out, "done");
    assert_eq!(s.calls(), 3);
    assert_eq!(checks.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn failing_precondition_ends_the_call_before_the_handler() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Ok("never")]);
    let api = s
        .actor
        .clone()
        .precondition(|(): &()| Err::<(), _>("quota exhausted"))
        .retry(zero_delay());

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(err.attempts(), 0);
    assert_eq!(err.last_error().unwrap().to_string(), "quota exhausted");
    assert_eq!(s.calls(), 0);
    assert_eq!(statuses(&state, "api#0"), [Failed]);
    let failed = state.history().latest("api#0").unwrap();
    let message = failed.message.as_deref().unwrap();
    assert!(message.starts_with("precondition failed"), "{message}");
    assert!(message.contains("quota exhausted"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn later_preconditions_are_skipped_after_one_fails() {
    let state = ExecutionState::new();
    let (second_checks, seen) = counter();
    let s = scripted("api", vec![Step::Ok("never")]);
    let api = s
        .actor
        .clone()
        .precondition(|(): &()| Err::<(), _>("first check failed"))
        .precondition(move |(): &()| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        });

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(second_checks.load(Ordering::SeqCst), 0);
    assert_eq!(s.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn async_precondition_is_awaited_before_the_first_attempt() {
    let state = ExecutionState::new();
    let (checks, seen) = counter();
    let s = scripted("api", vec![Step::Fail("blip"), Step::Ok("done")]);
    let api = s
        .actor
        .clone()
        .precondition_async(move |(): ()| {
            let seen = Arc::clone(&seen);
            async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                seen.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(())
            }
        })
        .retry(zero_delay());

    let start = Instant::now();
    let out = state.call(&api, ()).await.unwrap();

    assert_eq!(out, "done");
    assert_eq!(checks.load(Ordering::SeqCst), 1);
    assert_eq!(s.calls(), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn failing_async_precondition_ends_the_call_before_the_handler() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Ok("never")]);
    let api = s
        .actor
        .clone()
        .precondition_async(|(): ()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Err::<(), _>("index not ready")
        })
        .retry(zero_delay());

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(err.last_error().unwrap().to_string(), "index not ready");
    assert_eq!(s.calls(), 0);
    assert_eq!(statuses(&state, "api#0"), [Failed]);
    let message = state.history().latest("api#0").unwrap().message.clone();
    assert!(message.unwrap().starts_with("precondition failed"));
}

#[tokio::test(start_paused = true)]
async fn panicking_precondition_is_a_precondition_failure_not_a_crash() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Ok("never")]);
    let api = s
        .actor
        .clone()
        .precondition(|(): &()| -> Result<(), std::io::Error> { panic!("check exploded") })
        .retry(zero_delay());

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(s.calls(), 0);
    assert_eq!(statuses(&state, "api#0"), [Failed]);
    let message = state
        .history()
        .latest("api#0")
        .unwrap()
        .message
        .clone()
        .unwrap();
    assert!(message.starts_with("precondition failed"), "{message}");
    assert!(message.contains("check exploded"), "{message}");
    assert!(err
        .last_error()
        .unwrap()
        .to_string()
        .contains("check exploded"));
}

#[tokio::test(start_paused = true)]
async fn panicking_precondition_is_findable_as_a_handler_panic() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Ok("never")]);
    let api = s
        .actor
        .clone()
        .precondition(|(): &()| -> Result<(), std::io::Error> { panic!("check exploded") });

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(
        err.find::<HandlerPanic>().map(|p| p.message.as_str()),
        Some("check exploded")
    );
}

#[tokio::test(start_paused = true)]
async fn panicking_async_precondition_is_a_precondition_failure_not_a_crash() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Ok("never")]);
    let api = s.actor.clone().precondition_async(|(): ()| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if true {
            panic!("async check exploded");
        }
        Ok::<_, std::io::Error>(())
    });

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(s.calls(), 0);
    assert!(err
        .last_error()
        .unwrap()
        .to_string()
        .contains("async check exploded"));
}

// ── Postconditions ─────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn failed_postcondition_is_a_failed_attempt_that_is_retried() {
    let state = ExecutionState::new();
    let s = scripted("writer", vec![Step::Ok("draft"), Step::Ok("final")]);
    let writer = s
        .actor
        .clone()
        .postcondition(|(): &(), out: &String| {
            if out == "final" {
                Ok(())
            } else {
                Err(format!("{out} is not final"))
            }
        })
        .retry(zero_delay());

    let out = state.call(&writer, ()).await.unwrap();

    assert_eq!(out, "final");
    assert_eq!(s.calls(), 2);
    assert_eq!(
        statuses(&state, "writer#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    let failed = with_status(&state, "writer#0", Failed);
    let message = failed[0].message.as_deref().unwrap();
    assert!(message.starts_with("postcondition failed"), "{message}");
    let retrying = with_status(&state, "writer#0", Retrying);
    assert!(retrying[0]
        .retry
        .original_error
        .as_deref()
        .unwrap()
        .starts_with("postcondition failed"));
    // Only the accepted output is recorded as the result.
    let completed = state.history().latest("writer#0").unwrap();
    assert_eq!(completed.result, Some(serde_json::json!("final")));
}

#[tokio::test(start_paused = true)]
async fn postconditions_always_failing_leave_a_condition_failed_in_the_error_chain() {
    let state = ExecutionState::new();
    let s = scripted("writer", vec![Step::Ok("draft")]);
    let writer = s
        .actor
        .clone()
        .postcondition(|(): &(), out: &String| Err::<(), _>(format!("{out} is too short")))
        .retry(zero_delay());

    let err = state.call(&writer, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert_eq!(err.attempts(), 3);
    assert_eq!(s.calls(), 3);
    let condition = err.find::<ConditionFailed>().unwrap();
    assert_eq!(condition.which, "postcondition");
    assert_eq!(condition.source.to_string(), "draft is too short");
}

#[tokio::test(start_paused = true)]
async fn async_postcondition_failure_is_retried() {
    let state = ExecutionState::new();
    let (checks, seen) = counter();
    let s = scripted("writer", vec![Step::Ok("draft"), Step::Ok("final")]);
    let writer = s
        .actor
        .clone()
        .postcondition_async(move |(): (), out: String| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if out == "final" {
                    Ok(())
                } else {
                    Err("not final yet")
                }
            }
        })
        .retry(zero_delay());

    let start = Instant::now();
    let out = state.call(&writer, ()).await.unwrap();

    assert_eq!(out, "final");
    assert_eq!(s.calls(), 2);
    // Postconditions run after every attempt, unlike preconditions.
    assert_eq!(checks.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn panicking_postcondition_is_a_failed_attempt_that_is_retried() {
    let state = ExecutionState::new();
    let s = scripted("writer", vec![Step::Ok("draft"), Step::Ok("final")]);
    let writer = s
        .actor
        .clone()
        .postcondition(|(): &(), out: &String| {
            assert!(out != "draft", "check exploded on {out}");
            Ok::<_, std::io::Error>(())
        })
        .retry(zero_delay());

    let out = state.call(&writer, ()).await.unwrap();

    assert_eq!(out, "final");
    assert_eq!(s.calls(), 2);
    assert_eq!(
        statuses(&state, "writer#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
}

#[tokio::test(start_paused = true)]
async fn panicking_postcondition_is_findable_as_a_handler_panic_in_a_condition_failed() {
    let state = ExecutionState::new();
    let s = scripted("writer", vec![Step::Ok("draft")]);
    let writer = s
        .actor
        .clone()
        .postcondition(|(): &(), _: &String| -> Result<(), std::io::Error> {
            panic!("check exploded")
        })
        .retry(zero_delay());

    let err = state.call(&writer, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert_eq!(s.calls(), 3);
    assert_eq!(
        err.find::<ConditionFailed>().unwrap().which,
        "postcondition"
    );
    assert_eq!(
        err.find::<HandlerPanic>().map(|p| p.message.as_str()),
        Some("check exploded")
    );
}

#[tokio::test(start_paused = true)]
async fn postcondition_is_not_checked_when_the_handler_fails() {
    let state = ExecutionState::new();
    let (checks, seen) = counter();
    let s = scripted("writer", vec![Step::Fail("no draft"), Step::Ok("final")]);
    let writer = s
        .actor
        .clone()
        .postcondition(move |(): &(), _: &String| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .retry(zero_delay());

    state.call(&writer, ()).await.unwrap();

    assert_eq!(s.calls(), 2);
    assert_eq!(checks.load(Ordering::SeqCst), 1);
    let failed = with_status(&state, "writer#0", Failed);
    assert_eq!(failed[0].message.as_deref(), Some("no draft"));
}
