#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

//! How a failed call says why nothing more was tried: a policy that allows one attempt
//! (retries disabled) did not retry, it did not exhaust anything.

use std::time::Duration;

use rh_agents::{Actor, Ctx, ExecutionState, RetryPolicy};

fn failing(name: &'static str) -> Actor<(), ()> {
    Actor::tool(name, |(): (), _ctx: Ctx| async {
        Err::<(), _>(std::io::Error::other("boom"))
    })
}

#[tokio::test(start_paused = true)]
async fn a_call_with_retries_disabled_says_not_retried() {
    let state = ExecutionState::new();
    let tool = failing("once").retry(RetryPolicy::disabled());
    let err = state.call(&tool, ()).await.unwrap_err();
    assert!(err.is_retry_exhausted(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "tool `once` at once#0: failed after 1 attempt (not retried)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_that_used_its_retries_says_they_were_exhausted() {
    let state = ExecutionState::new();
    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .initial_delay(Duration::ZERO)
        .build()
        .unwrap();
    let err = state
        .call(&failing("twice").retry(policy), ())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tool `twice` at twice#0: failed after 2 attempts (retries exhausted)"
    );
}
