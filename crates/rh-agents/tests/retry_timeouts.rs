#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

//! Time limits: the retry budget (`retry_timeout`, one deadline across attempts and waits) and
//! the per-attempt timeout (`attempt_timeout`).

mod support;

use std::time::Duration;

use rh_agents::{AttemptTimeout, ErrorKind, EventStatus, ExecutionState, RetryPolicy};
use support::{scripted, statuses, with_status, Step};
use tokio::time::Instant;
use EventStatus::{Completed, Failed, Retrying, Started};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The delays scheduled by the RETRYING records at `address`, in order.
fn retry_delays(state: &ExecutionState, address: &str) -> Vec<Duration> {
    with_status(state, address, Retrying)
        .iter()
        .map(|e| e.retry.delay.unwrap())
        .collect()
}

/// A rejection for postconditions: makes an attempt that succeeded count as failed.
fn reject(_: &(), out: &String) -> Result<(), String> {
    Err(format!("output {out:?} rejected"))
}

// ── Retry budget ───────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn retry_timeout_clamps_each_sleep_to_the_budget_left() {
    let state = ExecutionState::new();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::constant(secs(2))
        .max_attempts(10)
        .no_jitter()
        .retry_timeout(secs(5))
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    let err = state.call(&flaky, ()).await.unwrap_err();

    // Attempts at 0 s, 2 s and 4 s; the third wait is clamped to the 1 s left; the attempt at
    // the deadline fails and no time is left for another.
    assert_eq!(retry_delays(&state, "flaky#0"), [secs(2), secs(2), secs(1)]);
    assert_eq!(start.elapsed(), secs(5));
    assert_eq!(err.kind(), ErrorKind::RetryTimeout);
    assert!(err.is_timeout());
    assert!(!err.is_retry_exhausted());
    assert_eq!(err.attempts(), 4);
    assert_eq!(s.calls(), 4);
    assert_eq!(err.last_error().unwrap().to_string(), "down");
    assert_eq!(state.history().latest("flaky#0").unwrap().status, Failed);
}

#[tokio::test(start_paused = true)]
async fn retry_timeout_never_lets_the_waits_exceed_the_budget() {
    let state = ExecutionState::new();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::exponential(secs(1))
        .max_attempts(20)
        .no_jitter()
        .retry_timeout(secs(10))
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    let err = state.call(&flaky, ()).await.unwrap_err();

    // 1 + 2 + 4 = 7 s, then the 8 s wait is clamped to the 3 s left.
    assert_eq!(
        retry_delays(&state, "flaky#0"),
        [secs(1), secs(2), secs(4), secs(3)]
    );
    assert_eq!(start.elapsed(), secs(10));
    assert_eq!(err.kind(), ErrorKind::RetryTimeout);
}

#[tokio::test(start_paused = true)]
async fn attempts_that_take_time_count_against_the_retry_budget() {
    let state = ExecutionState::new();
    // Each attempt sleeps 4 s, then its output is rejected.
    let s = scripted("slow", vec![Step::Sleep(secs(4))]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(10)
        .no_jitter()
        .retry_timeout(secs(9))
        .build()
        .unwrap();
    let slow = s.actor.clone().postcondition(reject).retry(policy);

    let start = Instant::now();
    let err = state.call(&slow, ()).await.unwrap_err();

    // 0–4 s attempt, 1 s wait, 5–9 s attempt: the budget is spent.
    assert_eq!(err.kind(), ErrorKind::RetryTimeout);
    assert!(err.is_timeout());
    assert_eq!(s.calls(), 2);
    assert_eq!(err.attempts(), 2);
    assert_eq!(start.elapsed(), secs(9));
    assert_eq!(
        statuses(&state, "slow#0"),
        [Started, Failed, Retrying, Started, Failed]
    );
    let failed = with_status(&state, "slow#0", Failed);
    assert!(failed.iter().all(|e| e.duration == Some(secs(4))));
}

#[tokio::test(start_paused = true)]
async fn sleep_clamp_accounts_for_time_spent_in_the_attempt() {
    let state = ExecutionState::new();
    let s = scripted("slow", vec![Step::Sleep(secs(4))]);
    let policy = RetryPolicy::constant(secs(5))
        .max_attempts(10)
        .no_jitter()
        .retry_timeout(secs(6))
        .build()
        .unwrap();
    let slow = s.actor.clone().postcondition(reject).retry(policy);

    let err = state.call(&slow, ()).await.unwrap_err();

    // The first attempt used 4 s of the 6 s budget: the 5 s wait becomes 2 s.
    assert_eq!(retry_delays(&state, "slow#0"), [secs(2)]);
    assert_eq!(err.kind(), ErrorKind::RetryTimeout);
    assert_eq!(s.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_timeout_caps_a_retry_after_hint() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::RetryAfter(secs(20))]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(5)
        .no_jitter()
        .retry_timeout(secs(5))
        .build()
        .unwrap();

    let start = Instant::now();
    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(retry_delays(&state, "api#0"), [secs(5)]);
    assert_eq!(start.elapsed(), secs(5));
    assert_eq!(err.kind(), ErrorKind::RetryTimeout);
    assert_eq!(s.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn unspent_retry_budget_ends_in_retries_exhausted_not_a_timeout() {
    let state = ExecutionState::new();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(3)
        .no_jitter()
        .retry_timeout(secs(100))
        .build()
        .unwrap();

    let start = Instant::now();
    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert!(!err.is_timeout());
    assert_eq!(s.calls(), 3);
    assert_eq!(start.elapsed(), secs(2));
}

#[tokio::test(start_paused = true)]
async fn retry_budget_is_measured_from_the_first_attempt_not_from_the_preconditions() {
    // `retry_timeout` is documented as "measured from the first attempt": time spent in an
    // async precondition before it must not be taken from the budget.
    let state = ExecutionState::new();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::constant(secs(2))
        .max_attempts(10)
        .no_jitter()
        .retry_timeout(secs(6))
        .build()
        .unwrap();
    let flaky = s
        .actor
        .clone()
        .precondition_async(|(): ()| async {
            tokio::time::sleep(secs(5)).await;
            Ok::<_, std::io::Error>(())
        })
        .retry(policy);

    let start = Instant::now();
    let err = state.call(&flaky, ()).await.unwrap_err();

    // Precondition 0–5 s; attempts at 5, 7, 9 and 11 s; the 6 s budget ends at 11 s.
    assert_eq!(err.kind(), ErrorKind::RetryTimeout);
    assert_eq!(
        retry_delays(&state, "flaky#0"),
        [secs(2), secs(2), secs(2)],
        "the first wait was clamped as if the precondition used the retry budget"
    );
    assert_eq!(s.calls(), 4);
    assert_eq!(start.elapsed(), secs(11));
}

// ── Per-attempt timeout ────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn attempt_timeout_fails_each_hanging_attempt_with_attempt_timeout() {
    let state = ExecutionState::new();
    let s = scripted("stuck", vec![Step::Hang]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(3)
        .no_jitter()
        .attempt_timeout(secs(2))
        .build()
        .unwrap();

    let start = Instant::now();
    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    // Retried by default: 2 s + 1 s + 2 s + 1 s + 2 s.
    assert!(err.is_retry_exhausted());
    assert!(err.is_timeout());
    assert_eq!(err.attempts(), 3);
    assert_eq!(s.calls(), 3);
    assert_eq!(start.elapsed(), secs(8));
    let timeout = err.find::<AttemptTimeout>().unwrap();
    assert_eq!(timeout.after, secs(2));
    let failed = with_status(&state, "stuck#0", Failed);
    assert_eq!(failed.len(), 3);
    for event in failed {
        assert_eq!(event.duration, Some(secs(2)));
        assert_eq!(
            event.message.as_deref(),
            Some("attempt timed out after 2.0s")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_is_retried_and_a_later_attempt_can_succeed() {
    let state = ExecutionState::new();
    let s = scripted("stuck", vec![Step::Hang, Step::Ok("unstuck")]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(3)
        .no_jitter()
        .attempt_timeout(secs(2))
        .build()
        .unwrap();

    let start = Instant::now();
    let out = state.call(&s.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "unstuck");
    assert_eq!(start.elapsed(), secs(3));
    assert_eq!(
        statuses(&state, "stuck#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    let retrying = with_status(&state, "stuck#0", Retrying);
    assert_eq!(
        retrying[0].retry.original_error.as_deref(),
        Some("attempt timed out after 2.0s")
    );
}

#[tokio::test(start_paused = true)]
async fn attempt_within_its_timeout_is_not_cut() {
    let state = ExecutionState::new();
    let s = scripted("slow", vec![Step::Sleep(Duration::from_millis(1_999))]);
    let policy = RetryPolicy::constant(secs(1))
        .attempt_timeout(secs(2))
        .build()
        .unwrap();

    let out = state.call(&s.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "slept");
    assert_eq!(s.calls(), 1);
    assert_eq!(statuses(&state, "slow#0"), [Started, Completed]);
}

#[tokio::test(start_paused = true)]
async fn excluding_attempt_timeout_stops_retries() {
    let state = ExecutionState::new();
    let s = scripted("stuck", vec![Step::Hang, Step::Ok("never")]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(5)
        .attempt_timeout(secs(2))
        .exclude::<AttemptTimeout>()
        .build()
        .unwrap();

    let start = Instant::now();
    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert!(err.is_timeout());
    assert_eq!(err.attempts(), 1);
    assert_eq!(s.calls(), 1);
    assert!(err.find::<AttemptTimeout>().is_some());
    assert_eq!(start.elapsed(), secs(2));
    assert_eq!(statuses(&state, "stuck#0"), [Started, Failed]);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_and_retry_budget_work_together() {
    let state = ExecutionState::new();
    let s = scripted("stuck", vec![Step::Hang]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(10)
        .no_jitter()
        .attempt_timeout(secs(3))
        .retry_timeout(secs(7))
        .build()
        .unwrap();

    let start = Instant::now();
    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    // 0–3 s timed out, 1 s wait, 4–7 s timed out: the budget is spent.
    assert_eq!(err.kind(), ErrorKind::RetryTimeout);
    assert!(err.is_timeout());
    assert_eq!(s.calls(), 2);
    assert_eq!(start.elapsed(), secs(7));
    assert!(err.find::<AttemptTimeout>().is_some());
}
