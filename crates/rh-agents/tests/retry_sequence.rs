#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

//! The attempt loop as recorded: status sequences, the content of RETRYING and STARTED
//! records, exhausted retries, exact backoff delays, addresses, panics and results.

mod support;

use std::time::Duration;

use rh_agents::{
    Actor, Ctx, ErrorKind, EventStatus, ExecutionState, FixedRandom, HandlerPanic, PolicySource,
    RetryPolicy,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{constant, scripted, statuses, with_status, Step};
use tokio::time::Instant;
use EventStatus::{Completed, Failed, Retrying, Started};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A state whose jitter draws are pinned to `random`.
fn pinned(random: f64) -> ExecutionState {
    ExecutionState::builder()
        .random(FixedRandom(random))
        .build()
}

/// The delays scheduled by the RETRYING records at `address`, in order.
fn retry_delays(state: &ExecutionState, address: &str) -> Vec<Duration> {
    with_status(state, address, Retrying)
        .iter()
        .map(|e| e.retry.delay.unwrap())
        .collect()
}

/// The delays carried by the STARTED records of retries at `address`, in order.
fn started_delays(state: &ExecutionState, address: &str) -> Vec<Duration> {
    with_status(state, address, Started)
        .iter()
        .filter(|e| e.retry.is_retry)
        .map(|e| e.retry.delay.unwrap())
        .collect()
}

// ── The sequence of records ────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn retry_until_success_records_started_failed_retrying_started_completed() {
    let state = ExecutionState::new();
    let s = scripted(
        "fetch",
        vec![Step::Fail("connection reset"), Step::Ok("page")],
    );
    let fetch = s.actor.clone().retry(constant(secs(1), 3));

    let out = state.call(&fetch, ()).await.unwrap();

    assert_eq!(out, "page");
    assert_eq!(s.calls(), 2);
    assert_eq!(
        statuses(&state, "fetch#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
}

#[tokio::test(start_paused = true)]
async fn retrying_record_carries_delay_next_attempt_error_message_and_policy_source() {
    let state = ExecutionState::new();
    let s = scripted(
        "fetch",
        vec![
            Step::Fail("first outage"),
            Step::Fail("second outage"),
            Step::Ok("page"),
        ],
    );
    let fetch = s.actor.clone().retry(constant(secs(1), 3));

    state.call(&fetch, ()).await.unwrap();

    let retrying = with_status(&state, "fetch#0", Retrying);
    assert_eq!(retrying.len(), 2);

    let first = &retrying[0];
    assert_eq!(first.retry.delay, Some(secs(1)));
    assert_eq!(first.retry.attempt, 1, "the first retry is attempt 1");
    assert_eq!(first.retry.max_attempts, 3);
    assert!(first.retry.is_retry);
    assert_eq!(first.retry.original_error.as_deref(), Some("first outage"));
    assert_eq!(first.message.as_deref(), Some("Attempt 2/3 in 1.0s"));
    assert_eq!(first.retry.policy_source, Some(PolicySource::Actor));

    let second = &retrying[1];
    assert_eq!(second.retry.delay, Some(secs(1)));
    assert_eq!(second.retry.attempt, 2);
    assert_eq!(
        second.retry.original_error.as_deref(),
        Some("second outage")
    );
    assert_eq!(second.message.as_deref(), Some("Attempt 3/3 in 1.0s"));
    assert_eq!(second.retry.policy_source, Some(PolicySource::Actor));
}

#[tokio::test(start_paused = true)]
async fn started_record_of_a_retry_carries_is_retry_delay_and_original_error() {
    let state = ExecutionState::new();
    let s = scripted(
        "fetch",
        vec![Step::Fail("connection reset"), Step::Ok("page")],
    );
    let fetch = s.actor.clone().retry(constant(secs(3), 3));

    state.call(&fetch, ()).await.unwrap();

    let started = with_status(&state, "fetch#0", Started);
    assert_eq!(started.len(), 2);

    let first = &started[0];
    assert_eq!(first.retry.attempt, 0);
    assert!(!first.retry.is_retry);
    assert_eq!(first.retry.delay, None);
    assert_eq!(first.retry.original_error, None);

    let retry = &started[1];
    assert_eq!(retry.retry.attempt, 1);
    assert!(retry.retry.is_retry);
    assert_eq!(retry.retry.delay, Some(secs(3)));
    assert_eq!(
        retry.retry.original_error.as_deref(),
        Some("connection reset")
    );
    assert_eq!(retry.retry.policy_source, Some(PolicySource::Actor));

    let failed = with_status(&state, "fetch#0", Failed);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].retry.attempt, 0);
    assert_eq!(failed[0].message.as_deref(), Some("connection reset"));
}

#[tokio::test(start_paused = true)]
async fn first_attempt_success_records_no_retry_information() {
    let state = ExecutionState::new();
    let s = scripted("fetch", vec![Step::Ok("page")]);

    state.call(&s.actor, ()).await.unwrap();

    assert_eq!(statuses(&state, "fetch#0"), [Started, Completed]);
    for event in state.history().at("fetch#0") {
        assert_eq!(event.retry.attempt, 0);
        assert!(!event.retry.is_retry);
        assert_eq!(event.retry.delay, None);
        assert_eq!(event.retry.original_error, None);
        assert_eq!(event.retry.policy_source, Some(PolicySource::BuiltIn));
    }
}

// ── Exhausted retries ──────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn retries_exhausted_error_reports_attempts_and_last_error() {
    let state = ExecutionState::new();
    let s = scripted(
        "flaky",
        vec![
            Step::Fail("first"),
            Step::Fail("second"),
            Step::Fail("third"),
        ],
    );
    let flaky = s.actor.clone().retry(constant(secs(1), 3));

    let err = state.call(&flaky, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert_eq!(err.kind(), ErrorKind::RetriesExhausted);
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.last_error().unwrap().to_string(), "third");
    assert_eq!(err.actor(), Some("flaky"));
    assert_eq!(err.address().unwrap().as_str(), "flaky#0");
    assert_eq!(s.calls(), 3);
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Started, Failed, Retrying, Started, Failed]
    );
    let last = state.history().latest("flaky#0").unwrap();
    assert_eq!(last.status, Failed);
    assert_eq!(last.retry.attempt, 2);
    assert_eq!(last.message.as_deref(), Some("third"));
}

#[tokio::test(start_paused = true)]
async fn no_sleep_after_the_final_attempt() {
    let state = ExecutionState::new();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let flaky = s.actor.clone().retry(constant(secs(10), 3));

    let start = Instant::now();
    let err = state.call(&flaky, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert_eq!(s.calls(), 3);
    // Two waits of 10 s between three attempts; none after the last.
    assert_eq!(start.elapsed(), secs(20));
    assert_eq!(retry_delays(&state, "flaky#0"), [secs(10), secs(10)]);
}

// ── Exact delays of each backoff ───────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn constant_backoff_waits_the_same_delay_each_time() {
    let state = pinned(0.5);
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::constant(secs(2))
        .max_attempts(5)
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    state.call(&flaky, ()).await.unwrap_err();

    let expected = [secs(2), secs(2), secs(2), secs(2)];
    assert_eq!(retry_delays(&state, "flaky#0"), expected);
    assert_eq!(started_delays(&state, "flaky#0"), expected);
    assert_eq!(start.elapsed(), secs(8));
}

#[tokio::test(start_paused = true)]
async fn linear_backoff_grows_by_the_initial_delay() {
    let state = pinned(0.5);
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::linear(secs(1))
        .max_attempts(5)
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    state.call(&flaky, ()).await.unwrap_err();

    let expected = [secs(1), secs(2), secs(3), secs(4)];
    assert_eq!(retry_delays(&state, "flaky#0"), expected);
    assert_eq!(started_delays(&state, "flaky#0"), expected);
    assert_eq!(start.elapsed(), secs(10));
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_doubles_by_default() {
    let state = pinned(0.5);
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::exponential(secs(1))
        .max_attempts(5)
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    state.call(&flaky, ()).await.unwrap_err();

    let expected = [secs(1), secs(2), secs(4), secs(8)];
    assert_eq!(retry_delays(&state, "flaky#0"), expected);
    assert_eq!(started_delays(&state, "flaky#0"), expected);
    assert_eq!(start.elapsed(), secs(15));
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_uses_the_configured_multiplier() {
    let state = pinned(0.5);
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::exponential(secs(1))
        .multiplier(3.0)
        .max_attempts(5)
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    state.call(&flaky, ()).await.unwrap_err();

    assert_eq!(
        retry_delays(&state, "flaky#0"),
        [secs(1), secs(3), secs(9), secs(27)]
    );
}

#[tokio::test(start_paused = true)]
async fn fibonacci_backoff_follows_the_fibonacci_numbers() {
    let state = pinned(0.5);
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::fibonacci(secs(1))
        .max_attempts(6)
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    state.call(&flaky, ()).await.unwrap_err();

    let expected = [secs(1), secs(1), secs(2), secs(3), secs(5)];
    assert_eq!(retry_delays(&state, "flaky#0"), expected);
    assert_eq!(started_delays(&state, "flaky#0"), expected);
    assert_eq!(start.elapsed(), secs(12));
}

#[tokio::test(start_paused = true)]
async fn no_jitter_gives_exact_delays_whatever_the_random_source() {
    // The default (thread) random source: only `no_jitter` keeps the delays exact.
    let state = ExecutionState::new();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let policy = RetryPolicy::exponential(secs(1))
        .max_attempts(4)
        .no_jitter()
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    state.call(&flaky, ()).await.unwrap_err();

    assert_eq!(retry_delays(&state, "flaky#0"), [secs(1), secs(2), secs(4)]);
    assert_eq!(start.elapsed(), secs(7));
}

#[tokio::test(start_paused = true)]
async fn jitter_at_its_maximum_raises_delays_but_never_past_max_delay() {
    let state = pinned(0.999);
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let cap = secs(5);
    let policy = RetryPolicy::exponential(secs(1))
        .max_attempts(7)
        .jitter(0.25)
        .max_delay(cap)
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    state.call(&flaky, ()).await.unwrap_err();

    let delays = retry_delays(&state, "flaky#0");
    assert_eq!(delays.len(), 6);
    // Below the cap: base · (1 + 0.25 · (2 · 0.999 − 1)) = base · 1.2495.
    for (delay, base) in delays.iter().zip([1.0, 2.0, 4.0]) {
        let expected = base * 1.2495;
        assert!(
            (delay.as_secs_f64() - expected).abs() < 1e-6,
            "delay {delay:?}, expected {expected}s"
        );
    }
    // 8 s · 1.2495 and beyond: the cap, exactly.
    assert_eq!(delays[3..], [cap, cap, cap]);
    assert!(delays.iter().all(|d| *d <= cap));
}

#[tokio::test(start_paused = true)]
async fn max_delay_applies_after_jitter() {
    // 4 s jittered up to 4.998 s would pass the 4.5 s cap; the cap wins.
    let state = pinned(0.999);
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let cap = Duration::from_millis(4_500);
    let policy = RetryPolicy::constant(secs(4))
        .max_attempts(3)
        .jitter(0.25)
        .max_delay(cap)
        .build()
        .unwrap();
    let flaky = s.actor.clone().retry(policy);

    let start = Instant::now();
    state.call(&flaky, ()).await.unwrap_err();

    assert_eq!(retry_delays(&state, "flaky#0"), [cap, cap]);
    assert_eq!(start.elapsed(), secs(9));
}

#[tokio::test(start_paused = true)]
async fn zero_delay_retries_do_not_advance_virtual_time() {
    let state = ExecutionState::new();
    let s = scripted("flaky", vec![Step::Fail("down")]);
    let flaky = s.actor.clone().retry(constant(Duration::ZERO, 5));

    let start = Instant::now();
    let err = state.call(&flaky, ()).await.unwrap_err();

    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(err.attempts(), 5);
    assert_eq!(s.calls(), 5);
    assert_eq!(retry_delays(&state, "flaky#0"), [Duration::ZERO; 4]);
}

// ── Addresses ──────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn calling_one_tool_twice_gives_two_indexed_addresses() {
    let state = ExecutionState::new();
    let echo = Actor::tool("echo", |text: String, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(text)
    });

    state.call(&echo, "first".to_owned()).await.unwrap();
    state.call(&echo, "second".to_owned()).await.unwrap();

    let history = state.history();
    assert_eq!(history.statuses("echo#0"), [Started, Completed]);
    assert_eq!(history.statuses("echo#1"), [Started, Completed]);
    assert_eq!(
        history.latest("echo#0").unwrap().result,
        Some(json!("first"))
    );
    assert_eq!(
        history.latest("echo#1").unwrap().result,
        Some(json!("second"))
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_nests_the_addresses_of_the_tools_it_calls() {
    let state = ExecutionState::new();
    let search = Actor::tool("search", |q: String, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(format!("hits for {q}"))
    });
    let fetch = Actor::tool("fetch", |url: String, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(format!("page at {url}"))
    });
    let planner = Actor::agent("planner", move |goal: String, ctx: Ctx| {
        let (search, fetch) = (search.clone(), fetch.clone());
        async move {
            let a = ctx.call(&search, format!("{goal} a")).await?;
            let b = ctx.call(&search, format!("{goal} b")).await?;
            let c = ctx
                .call(&fetch, "https://example.invalid".to_owned())
                .await?;
            Ok::<_, rh_agents::Error>(vec![a, b, c])
        }
    });

    let out = state.call(&planner, "plan".to_owned()).await.unwrap();

    assert_eq!(out.len(), 3);
    let history = state.history();
    assert_eq!(history.statuses("planner#0"), [Started, Completed]);
    assert_eq!(history.statuses("planner#0/search#0"), [Started, Completed]);
    assert_eq!(history.statuses("planner#0/search#1"), [Started, Completed]);
    assert_eq!(history.statuses("planner#0/fetch#0"), [Started, Completed]);
    assert_eq!(
        history.latest("planner#0/search#1").unwrap().result,
        Some(json!("hits for plan b"))
    );
    // Nothing is recorded at top-level addresses for the children.
    assert!(history.statuses("search#0").is_empty());
    assert!(history.statuses("fetch#0").is_empty());
}

#[tokio::test(start_paused = true)]
async fn retries_of_a_nested_tool_are_recorded_at_its_nested_address() {
    let state = ExecutionState::new();
    let s = scripted("search", vec![Step::Fail("blip"), Step::Ok("hits")]);
    let search = s.actor.clone().retry(constant(secs(1), 3));
    let planner = Actor::agent("planner", move |(): (), ctx: Ctx| {
        let search = search.clone();
        async move { ctx.call(&search, ()).await }
    });

    let out = state.call(&planner, ()).await.unwrap();

    assert_eq!(out, "hits");
    assert_eq!(
        statuses(&state, "planner#0/search#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    // The agent itself ran once and saw only the success.
    assert_eq!(statuses(&state, "planner#0"), [Started, Completed]);
}

// ── Panics ─────────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn handler_panic_is_a_failed_attempt_that_is_retried() {
    let state = ExecutionState::new();
    let s = scripted("fragile", vec![Step::Panic, Step::Ok("recovered")]);
    let fragile = s.actor.clone().retry(constant(Duration::ZERO, 3));

    let out = state.call(&fragile, ()).await.unwrap();

    assert_eq!(out, "recovered");
    assert_eq!(s.calls(), 2);
    assert_eq!(
        statuses(&state, "fragile#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    let failed = with_status(&state, "fragile#0", Failed);
    assert_eq!(
        failed[0].message.as_deref(),
        Some("panicked: scripted panic")
    );
    let retrying = with_status(&state, "fragile#0", Retrying);
    assert_eq!(
        retrying[0].retry.original_error.as_deref(),
        Some("panicked: scripted panic")
    );
}

#[tokio::test(start_paused = true)]
async fn handler_panic_on_every_attempt_is_findable_in_the_error() {
    let state = ExecutionState::new();
    let s = scripted("fragile", vec![Step::Panic]);
    let fragile = s.actor.clone().retry(constant(Duration::ZERO, 3));

    let err = state.call(&fragile, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert_eq!(err.attempts(), 3);
    assert_eq!(s.calls(), 3);
    let panic = err.find::<HandlerPanic>().unwrap();
    assert_eq!(panic.message, "scripted panic");
    assert_eq!(state.history().latest("fragile#0").unwrap().status, Failed);
}

#[tokio::test(start_paused = true)]
async fn handler_that_panics_before_returning_a_future_is_a_failed_attempt() {
    let state = ExecutionState::new();
    let eager = Actor::tool("eager", |n: u32, _ctx: Ctx| {
        assert!(n != 0, "eager panic on {n}");
        async move { Ok::<_, std::io::Error>(n) }
    })
    .retry(constant(Duration::ZERO, 2));

    let err = state.call(&eager, 0).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert_eq!(err.attempts(), 2);
    assert_eq!(
        err.find::<HandlerPanic>().unwrap().message,
        "eager panic on 0"
    );
    assert_eq!(
        statuses(&state, "eager#0"),
        [Started, Failed, Retrying, Started, Failed]
    );
}

// ── Results ────────────────────────────────────────────────────────────────────────────────

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Summary {
    title: String,
    hits: u32,
}

#[tokio::test(start_paused = true)]
async fn completed_records_the_output_as_json_in_result() {
    let state = ExecutionState::new();
    let s = scripted("raw", vec![Step::Fail("blip"), Step::Ok("ok")]);
    let raw = s.actor.clone().retry(constant(Duration::ZERO, 2));
    let summarize = Actor::tool("summarize", move |topic: String, ctx: Ctx| {
        let raw = raw.clone();
        async move {
            ctx.call(&raw, ()).await?;
            Ok::<_, rh_agents::Error>(Summary {
                title: topic,
                hits: 3,
            })
        }
    });

    let out = state.call(&summarize, "rust".to_owned()).await.unwrap();

    assert_eq!(
        out,
        Summary {
            title: "rust".to_owned(),
            hits: 3
        }
    );
    let completed = state.history().latest("summarize#0").unwrap();
    assert_eq!(completed.status, Completed);
    assert_eq!(completed.result, Some(json!({"title": "rust", "hits": 3})));
    // Only the COMPLETED record of a call carries a result.
    let nested = state.history().at("summarize#0/raw#0");
    assert_eq!(
        nested.iter().filter(|e| e.result.is_some()).count(),
        1,
        "{nested:?}"
    );
    assert_eq!(nested.last().unwrap().result, Some(json!("ok")));
}
