#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

//! Which errors are retried: exclude and retry-on lists (by type through the cause chain, by
//! `io::ErrorKind`, by predicate), permanent and transient marks, retry-after hints, and
//! interrupts, which are never retried.

mod support;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::{
    Actor, BoxError, Ctx, ErrorExt, ErrorKind, EventStatus, ExecutionState, InterruptReason,
    InterruptSignal, RetryPolicy, RetryPolicyBuilder,
};
use support::{scripted, statuses, with_status, Scripted, Step};
use tokio::time::Instant;
use EventStatus::{Completed, Failed, Interrupted, Retrying, Started};

// ── Error types of our own ─────────────────────────────────────────────────────────────────

#[derive(Debug, thiserror::Error)]
#[error("rate limited by upstream")]
struct RateLimited;

#[derive(Debug, thiserror::Error)]
#[error("search backend failed")]
struct BackendFailed(#[source] RateLimited);

#[derive(Debug, thiserror::Error)]
#[error("research step failed")]
struct StepFailed(#[source] BackendFailed);

#[derive(Debug, thiserror::Error)]
#[error("request failed")]
struct RequestFailed(#[source] BoxError);

#[derive(Debug, thiserror::Error)]
#[error("invalid query")]
struct InvalidQuery;

#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}")]
struct HttpStatus {
    status: u16,
}

// ── Helpers ────────────────────────────────────────────────────────────────────────────────

/// A tool whose `n`-th call (0-based) returns `script(n)`.
fn tool_with(
    name: &str,
    script: impl Fn(u32) -> Result<String, BoxError> + Send + Sync + 'static,
) -> Scripted {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let actor = Actor::tool(name, move |(): (), _ctx: Ctx| {
        let result = script(counter.fetch_add(1, Ordering::SeqCst));
        async move { result }
    });
    Scripted { actor, calls }
}

/// Five attempts, no waits: enough room for a filter to show what it lets through.
fn zero_delay() -> RetryPolicyBuilder {
    RetryPolicy::constant(Duration::ZERO).max_attempts(5)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ── Exclude and retry-on ───────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn exclude_wins_over_retry_on_for_the_same_error() {
    let state = ExecutionState::new();
    let t = tool_with("api", |_| Err(RateLimited.into()));
    let policy = zero_delay()
        .retry_on::<RateLimited>()
        .exclude::<RateLimited>()
        .build()
        .unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(err.attempts(), 1);
    assert_eq!(t.calls(), 1);
    assert_eq!(statuses(&state, "api#0"), [Started, Failed]);
}

#[tokio::test(start_paused = true)]
async fn exclude_wins_over_a_matching_retry_on_kind() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::FailKind(io::ErrorKind::TimedOut)]);
    let policy = zero_delay()
        .retry_on_kind(io::ErrorKind::TimedOut)
        .exclude_kind(io::ErrorKind::TimedOut)
        .build()
        .unwrap();

    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(s.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_on_list_does_not_retry_errors_it_does_not_name() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Fail("disk full"), Step::Ok("never")]);
    let policy = zero_delay().retry_on::<RateLimited>().build().unwrap();

    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert!(!err.is_retry_exhausted());
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.last_error().unwrap().to_string(), "disk full");
    assert_eq!(s.calls(), 1);
    assert_eq!(statuses(&state, "api#0"), [Started, Failed]);
}

#[tokio::test(start_paused = true)]
async fn retry_on_list_retries_the_errors_it_names() {
    let state = ExecutionState::new();
    let t = tool_with("api", |n| match n {
        0 => Err(RateLimited.into()),
        _ => Ok("answer".to_owned()),
    });
    let policy = zero_delay().retry_on::<RateLimited>().build().unwrap();

    let out = state.call(&t.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "answer");
    assert_eq!(t.calls(), 2);
    assert_eq!(
        statuses(&state, "api#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
}

// ── Matching by type through the cause chain ───────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn retry_on_type_matches_through_a_wrapping_error_source_chain() {
    let state = ExecutionState::new();
    let t = tool_with("research", |n| match n {
        0 => Err(BackendFailed(RateLimited).into()),
        1 => Err(StepFailed(BackendFailed(RateLimited)).into()),
        2 => Err(RequestFailed(Box::new(RateLimited)).into()),
        _ => Ok("report".to_owned()),
    });
    let policy = zero_delay().retry_on::<RateLimited>().build().unwrap();

    let out = state.call(&t.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "report");
    assert_eq!(t.calls(), 4);
    let retrying = with_status(&state, "research#0", Retrying);
    let causes: Vec<_> = retrying
        .iter()
        .map(|e| e.retry.original_error.as_deref().unwrap().to_owned())
        .collect();
    assert_eq!(
        causes,
        [
            "search backend failed: rate limited by upstream",
            "research step failed: search backend failed: rate limited by upstream",
            "request failed: rate limited by upstream"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_on_type_rejects_a_wrapper_around_another_error() {
    let state = ExecutionState::new();
    let t = tool_with("research", |_| {
        Err(RequestFailed(Box::new(InvalidQuery)).into())
    });
    let policy = zero_delay().retry_on::<RateLimited>().build().unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(t.calls(), 1);
    assert!(err.find::<InvalidQuery>().is_some());
    assert!(err.find::<RequestFailed>().is_some());
}

#[tokio::test(start_paused = true)]
async fn exclude_type_matches_through_a_wrapping_error_source_chain() {
    let state = ExecutionState::new();
    let t = tool_with("research", |_| {
        Err(StepFailed(BackendFailed(RateLimited)).into())
    });
    let policy = zero_delay().exclude::<RateLimited>().build().unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(t.calls(), 1);
    assert!(err.find::<RateLimited>().is_some());
    assert_eq!(
        err.last_error().unwrap().to_string(),
        "research step failed"
    );
}

#[tokio::test(start_paused = true)]
async fn exclude_type_leaves_other_errors_retryable() {
    let state = ExecutionState::new();
    let t = tool_with("research", |n| match n {
        0 => Err(InvalidQuery.into()),
        _ => Ok("report".to_owned()),
    });
    let policy = zero_delay().exclude::<RateLimited>().build().unwrap();

    let out = state.call(&t.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "report");
    assert_eq!(t.calls(), 2);
}

// ── Matching by io::ErrorKind ──────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn retry_on_io_kind_retries_only_that_kind() {
    let state = ExecutionState::new();
    let s = scripted(
        "socket",
        vec![
            Step::FailKind(io::ErrorKind::TimedOut),
            Step::FailKind(io::ErrorKind::TimedOut),
            Step::FailKind(io::ErrorKind::PermissionDenied),
            Step::Ok("never"),
        ],
    );
    let policy = zero_delay()
        .retry_on_kind(io::ErrorKind::TimedOut)
        .build()
        .unwrap();

    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(err.attempts(), 3);
    assert_eq!(s.calls(), 3);
    assert_eq!(
        err.find::<io::Error>().unwrap().kind(),
        io::ErrorKind::PermissionDenied
    );
}

#[tokio::test(start_paused = true)]
async fn retry_on_io_kind_matches_an_io_error_inside_a_wrapper() {
    let state = ExecutionState::new();
    let t = tool_with("socket", |n| match n {
        0 => Err(RequestFailed(Box::new(io::Error::from(io::ErrorKind::TimedOut))).into()),
        _ => Ok("connected".to_owned()),
    });
    let policy = zero_delay()
        .retry_on_kind(io::ErrorKind::TimedOut)
        .build()
        .unwrap();

    let out = state.call(&t.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "connected");
    assert_eq!(t.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn exclude_io_kind_stops_retries_of_that_kind_only() {
    let state = ExecutionState::new();
    let s = scripted(
        "socket",
        vec![
            Step::FailKind(io::ErrorKind::ConnectionReset),
            Step::FailKind(io::ErrorKind::PermissionDenied),
        ],
    );
    let policy = zero_delay()
        .exclude_kind(io::ErrorKind::PermissionDenied)
        .build()
        .unwrap();

    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    // The reset was retried; the refusal was not.
    assert_eq!(s.calls(), 2);
    assert_eq!(
        statuses(&state, "socket#0"),
        [Started, Failed, Retrying, Started, Failed]
    );
}

// ── Matching by predicate ──────────────────────────────────────────────────────────────────

fn server_error(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<HttpStatus>()
        .is_some_and(|h| h.status >= 500)
}

#[tokio::test(start_paused = true)]
async fn retry_if_predicate_decides_which_errors_are_retried() {
    let state = ExecutionState::new();
    let t = tool_with("http", |n| {
        let status = [503, 502, 404, 200][n as usize];
        Err(HttpStatus { status }.into())
    });
    let policy = zero_delay().retry_if(server_error).build().unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(t.calls(), 3);
    assert_eq!(err.find::<HttpStatus>().unwrap().status, 404);
}

#[tokio::test(start_paused = true)]
async fn retry_if_and_retry_on_type_are_alternatives() {
    let state = ExecutionState::new();
    let t = tool_with("http", |n| match n {
        0 => Err(RateLimited.into()),
        1 => Err(HttpStatus { status: 503 }.into()),
        _ => Err(InvalidQuery.into()),
    });
    let policy = zero_delay()
        .retry_on::<RateLimited>()
        .retry_if(server_error)
        .build()
        .unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(t.calls(), 3);
    assert!(err.find::<InvalidQuery>().is_some());
}

#[tokio::test(start_paused = true)]
async fn exclude_if_predicate_stops_retries() {
    let state = ExecutionState::new();
    let t = tool_with("http", |n| {
        let status = [503, 400, 503][n as usize];
        Err(HttpStatus { status }.into())
    });
    let policy = zero_delay()
        .exclude_if(|e| {
            e.downcast_ref::<HttpStatus>()
                .is_some_and(|h| h.status < 500)
        })
        .build()
        .unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(t.calls(), 2);
    assert_eq!(err.find::<HttpStatus>().unwrap().status, 400);
}

// ── Marks ──────────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn permanent_mark_stops_retries() {
    let state = ExecutionState::new();
    let s = scripted(
        "api",
        vec![Step::Permanent("bad request"), Step::Ok("never")],
    );

    let err = state
        .call(&s.actor, ())
        .retry(zero_delay().build().unwrap())
        .await
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(err.attempts(), 1);
    assert_eq!(s.calls(), 1);
    // The mark is transparent: the error reads as the wrapped one.
    assert_eq!(err.last_error().unwrap().to_string(), "bad request");
    assert!(err.find::<io::Error>().is_some());
    assert_eq!(statuses(&state, "api#0"), [Started, Failed]);
}

#[tokio::test(start_paused = true)]
async fn permanent_mark_wins_over_a_matching_retry_on_entry() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Permanent("bad request")]);
    let policy = zero_delay()
        .retry_on_kind(io::ErrorKind::Other)
        .retry_on::<io::Error>()
        .build()
        .unwrap();

    let err = state.call(&s.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(s.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn permanent_mark_inside_a_wrapper_stops_retries() {
    let state = ExecutionState::new();
    let t = tool_with("api", |_| {
        Err(RequestFailed(io::Error::other("404 not found").permanent().into()).into())
    });

    let err = state
        .call(&t.actor, ())
        .retry(zero_delay().build().unwrap())
        .await
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(t.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_mark_passes_a_retry_on_list_that_does_not_name_it() {
    let state = ExecutionState::new();
    let t = tool_with("api", |n| match n {
        0 => Err(io::Error::other("connection blip").transient().into()),
        _ => Ok("answer".to_owned()),
    });
    let policy = zero_delay().retry_on::<RateLimited>().build().unwrap();

    let out = state.call(&t.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "answer");
    assert_eq!(t.calls(), 2);
    let retrying = with_status(&state, "api#0", Retrying);
    assert_eq!(
        retrying[0].retry.original_error.as_deref(),
        Some("connection blip")
    );
}

#[tokio::test(start_paused = true)]
async fn exclude_wins_over_a_transient_mark() {
    let state = ExecutionState::new();
    let t = tool_with("api", |_| Err(RateLimited.transient().into()));
    let policy = zero_delay().exclude::<RateLimited>().build().unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::NotRetryable);
    assert_eq!(t.calls(), 1);
}

// ── Retry-after hints ──────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn retry_after_hint_longer_than_the_backoff_sets_the_delay() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::RetryAfter(secs(7)), Step::Ok("answer")]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(3)
        .no_jitter()
        .build()
        .unwrap();

    let start = Instant::now();
    let out = state.call(&s.actor, ()).retry(policy).await.unwrap();

    assert_eq!(out, "answer");
    assert_eq!(start.elapsed(), secs(7));
    let retrying = with_status(&state, "api#0", Retrying);
    assert_eq!(retrying[0].retry.delay, Some(secs(7)));
    assert_eq!(retrying[0].message.as_deref(), Some("Attempt 2/3 in 7.0s"));
    assert_eq!(
        retrying[0].retry.original_error.as_deref(),
        Some("HTTP 429")
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_hint_shorter_than_the_backoff_does_not_shorten_it() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::RetryAfter(secs(1)), Step::Ok("answer")]);
    let policy = RetryPolicy::constant(secs(5))
        .max_attempts(3)
        .no_jitter()
        .build()
        .unwrap();

    let start = Instant::now();
    state.call(&s.actor, ()).retry(policy).await.unwrap();

    assert_eq!(start.elapsed(), secs(5));
    let retrying = with_status(&state, "api#0", Retrying);
    assert_eq!(retrying[0].retry.delay, Some(secs(5)));
}

#[tokio::test(start_paused = true)]
async fn retry_after_hint_is_capped_by_max_delay() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::RetryAfter(secs(90)), Step::Ok("answer")]);
    let policy = RetryPolicy::constant(secs(1))
        .max_attempts(3)
        .no_jitter()
        .max_delay(secs(10))
        .build()
        .unwrap();

    let start = Instant::now();
    state.call(&s.actor, ()).retry(policy).await.unwrap();

    assert_eq!(start.elapsed(), secs(10));
    let retrying = with_status(&state, "api#0", Retrying);
    assert_eq!(retrying[0].retry.delay, Some(secs(10)));
}

// ── Interrupts ─────────────────────────────────────────────────────────────────────────────

/// A tool that requests an interrupt and returns the interrupt error, marked by `mark`.
fn interrupter(mark: fn(rh_agents::Error) -> BoxError) -> Scripted {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let actor = Actor::tool("stopper", move |(): (), ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let signal = InterruptSignal::new(InterruptReason::UserCancelled).message("stop now");
            Err::<String, _>(mark(ctx.interrupt(signal)))
        }
    });
    Scripted { actor, calls }
}

#[tokio::test(start_paused = true)]
async fn interrupt_is_never_retried_even_when_the_filter_allows_it() {
    let state = ExecutionState::new();
    let t = interrupter(|e| e.into());
    let policy = zero_delay()
        .retry_if(|_| true)
        .retry_on::<rh_agents::Error>()
        .build()
        .unwrap();

    let err = state.call(&t.actor, ()).retry(policy).await.unwrap_err();

    assert!(err.is_interrupted());
    assert_eq!(err.kind(), ErrorKind::Interrupted);
    assert_eq!(
        err.interrupt().unwrap().reason,
        InterruptReason::UserCancelled
    );
    assert_eq!(t.calls(), 1);
    assert_eq!(statuses(&state, "stopper#0"), [Started, Interrupted]);
    let record = state.history().latest("stopper#0").unwrap();
    assert_eq!(
        record.interrupt.as_ref().unwrap().reason,
        InterruptReason::UserCancelled
    );
    assert_eq!(record.message.as_deref(), Some("stop now"));
    assert!(with_status(&state, "stopper#0", Retrying).is_empty());
}

#[tokio::test(start_paused = true)]
async fn interrupt_marked_transient_is_still_not_retried() {
    let state = ExecutionState::new();
    let t = interrupter(|e| e.transient().into());

    let err = state
        .call(&t.actor, ())
        .retry(zero_delay().build().unwrap())
        .await
        .unwrap_err();

    assert!(err.is_interrupted());
    assert_eq!(t.calls(), 1);
    assert_eq!(statuses(&state, "stopper#0"), [Started, Interrupted]);
}
