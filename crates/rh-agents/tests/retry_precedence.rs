#![allow(clippy::unwrap_used)] // a panic in a test is a failed test

//! The five configuration levels (event, actor, kind, global default, built-in): the most
//! specific one that sets a policy decides, a disabled policy does not fall through, and the
//! deciding level is recorded on every event. Invalid policies are rejected at build.

mod support;

use std::time::Duration;

use rh_agents::retry::config::builtin;
use rh_agents::{
    ActorKind, EventStatus, ExecutionState, ExecutionStateBuilder, FixedRandom, PolicyError,
    PolicySource, RetryPolicy,
};
use support::{scripted, scripted_kind, statuses, with_status, Step};
use tokio::time::Instant;
use EventStatus::{Failed, Retrying, Started};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A zero-delay policy with `attempts` attempts: the attempt count identifies the level.
fn attempts(n: u32) -> RetryPolicy {
    RetryPolicy::constant(Duration::ZERO)
        .max_attempts(n)
        .build()
        .unwrap()
}

/// A state with a kind policy for tools (3 attempts) and a global default (2 attempts).
fn configured() -> ExecutionStateBuilder {
    ExecutionState::builder()
        .kind_retry(ActorKind::Tool, attempts(3))
        .default_retry(attempts(2))
}

/// Checks that every record at `address` names `source` as the deciding level, and that the
/// recorded attempt count matches.
fn assert_source(state: &ExecutionState, address: &str, source: PolicySource, max: u32) {
    let events = state.history().at(address);
    assert!(!events.is_empty(), "no records at {address}");
    for event in events {
        assert_eq!(
            event.retry.policy_source,
            Some(source),
            "{:?} record at {address}",
            event.status
        );
        assert_eq!(event.retry.max_attempts, max);
    }
}

// ── Which level decides ────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn event_policy_wins_over_actor_kind_and_default() {
    let state = configured().build();
    let s = scripted("api", vec![Step::Fail("down")]);
    let api = s.actor.clone().retry(attempts(4));

    let err = state.call(&api, ()).retry(attempts(5)).await.unwrap_err();

    assert_eq!(err.attempts(), 5);
    assert_eq!(s.calls(), 5);
    assert_source(&state, "api#0", PolicySource::Event, 5);
}

#[tokio::test(start_paused = true)]
async fn actor_policy_wins_over_kind_and_default() {
    let state = configured().build();
    let s = scripted("api", vec![Step::Fail("down")]);
    let api = s.actor.clone().retry(attempts(4));

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.attempts(), 4);
    assert_eq!(s.calls(), 4);
    assert_source(&state, "api#0", PolicySource::Actor, 4);
}

#[tokio::test(start_paused = true)]
async fn kind_policy_wins_over_the_global_default() {
    let state = configured().build();
    let s = scripted("api", vec![Step::Fail("down")]);

    let err = state.call(&s.actor, ()).await.unwrap_err();

    assert_eq!(err.attempts(), 3);
    assert_eq!(s.calls(), 3);
    assert_source(&state, "api#0", PolicySource::Kind, 3);
}

#[tokio::test(start_paused = true)]
async fn kind_policy_applies_only_to_its_own_kind() {
    let state = configured().build();
    let s = scripted_kind(ActorKind::Llm, "model", vec![Step::Fail("overloaded")]);

    let err = state.call(&s.actor, ()).await.unwrap_err();

    // The tool policy does not apply to an LLM call: the global default decides.
    assert_eq!(err.attempts(), 2);
    assert_eq!(s.calls(), 2);
    assert_source(&state, "model#0", PolicySource::Default, 2);
}

#[tokio::test(start_paused = true)]
async fn kind_policy_for_agents_makes_agents_retry() {
    let state = ExecutionState::builder()
        .kind_retry(ActorKind::Agent, attempts(3))
        .build();
    let s = scripted_kind(ActorKind::Agent, "planner", vec![Step::Fail("bad plan")]);

    let err = state.call(&s.actor, ()).await.unwrap_err();

    assert_eq!(s.calls(), 3);
    assert!(err.is_retry_exhausted());
    assert_source(&state, "planner#0", PolicySource::Kind, 3);
}

#[tokio::test(start_paused = true)]
async fn global_default_applies_when_no_more_specific_level_is_set() {
    let state = ExecutionState::builder().default_retry(attempts(4)).build();
    let s = scripted("api", vec![Step::Fail("down")]);

    let err = state.call(&s.actor, ()).await.unwrap_err();

    assert_eq!(err.attempts(), 4);
    assert_eq!(s.calls(), 4);
    assert_source(&state, "api#0", PolicySource::Default, 4);
}

#[tokio::test(start_paused = true)]
async fn built_in_policy_retries_tools_three_times_exponentially_from_one_second() {
    let state = ExecutionState::builder().random(FixedRandom(0.5)).build();
    let s = scripted("api", vec![Step::Fail("down")]);

    let start = Instant::now();
    let err = state.call(&s.actor, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    assert_eq!(err.attempts(), 3);
    assert_eq!(s.calls(), 3);
    let delays: Vec<_> = with_status(&state, "api#0", Retrying)
        .iter()
        .map(|e| e.retry.delay.unwrap())
        .collect();
    assert_eq!(delays, [secs(1), secs(2)]);
    assert_eq!(start.elapsed(), secs(3));
    assert_source(&state, "api#0", PolicySource::BuiltIn, 3);
}

#[tokio::test(start_paused = true)]
async fn built_in_policy_caps_tool_delays_at_thirty_seconds_even_with_maximum_jitter() {
    let built_in = builtin(ActorKind::Tool);

    assert_eq!(built_in.max_attempts(), 3);
    assert_eq!(built_in.initial_delay(), secs(1));
    assert_eq!(built_in.max_delay(), secs(30));
    // Retry 5 waits 16 s · 1.2495 ≈ 20 s; from retry 6 (32 s) on, the cap holds.
    assert!(built_in.delay_for(5, 0.999, None) < secs(30));
    for k in 6..12 {
        assert_eq!(built_in.delay_for(k, 0.999, None), secs(30), "retry {k}");
    }
    // The runtime draws jitter from the state's source: at its maximum, the first wait is
    // 1 s · 1.2495.
    let state = ExecutionState::builder().random(FixedRandom(0.999)).build();
    let s = scripted("api", vec![Step::Fail("down")]);
    state.call(&s.actor, ()).await.unwrap_err();
    let first = with_status(&state, "api#0", Retrying)[0]
        .retry
        .delay
        .unwrap();
    assert!((first.as_secs_f64() - 1.2495).abs() < 1e-6, "{first:?}");
}

#[test]
fn built_in_policy_for_agents_is_disabled() {
    assert!(!builtin(ActorKind::Agent).is_enabled());
    assert_eq!(builtin(ActorKind::Agent).max_attempts(), 1);
    assert!(builtin(ActorKind::Llm).is_enabled());
}

#[tokio::test(start_paused = true)]
async fn built_in_policy_retries_llm_calls_like_tools() {
    let state = ExecutionState::builder().random(FixedRandom(0.5)).build();
    let s = scripted_kind(ActorKind::Llm, "model", vec![Step::Fail("overloaded")]);

    state.call(&s.actor, ()).await.unwrap_err();

    assert_eq!(s.calls(), 3);
    let delays: Vec<_> = with_status(&state, "model#0", Retrying)
        .iter()
        .map(|e| e.retry.delay.unwrap())
        .collect();
    assert_eq!(delays, [secs(1), secs(2)]);
    assert_source(&state, "model#0", PolicySource::BuiltIn, 3);
}

#[tokio::test(start_paused = true)]
async fn built_in_policy_does_not_retry_agents() {
    let state = ExecutionState::new();
    let s = scripted_kind(ActorKind::Agent, "planner", vec![Step::Fail("bad plan")]);

    let start = Instant::now();
    let err = state.call(&s.actor, ()).await.unwrap_err();

    assert_eq!(err.attempts(), 1);
    assert_eq!(s.calls(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(statuses(&state, "planner#0"), [Started, Failed]);
    assert_source(&state, "planner#0", PolicySource::BuiltIn, 1);
}

// ── Disabled policies do not fall through ──────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn disabled_event_policy_stops_retries_even_when_actor_and_state_set_policies() {
    let state = configured().build();
    let s = scripted("api", vec![Step::Fail("down"), Step::Ok("never")]);
    let api = s.actor.clone().retry(attempts(4));

    let err = state
        .call(&api, ())
        .retry(RetryPolicy::disabled())
        .await
        .unwrap_err();

    assert_eq!(err.attempts(), 1);
    assert_eq!(s.calls(), 1);
    assert_eq!(statuses(&state, "api#0"), [Started, Failed]);
    assert_source(&state, "api#0", PolicySource::Event, 1);
}

#[tokio::test(start_paused = true)]
async fn disabled_actor_policy_does_not_fall_through_to_state_policies() {
    let state = configured().build();
    let s = scripted("api", vec![Step::Fail("down"), Step::Ok("never")]);
    let api = s.actor.clone().retry(RetryPolicy::disabled());

    let err = state.call(&api, ()).await.unwrap_err();

    assert_eq!(err.attempts(), 1);
    assert_eq!(s.calls(), 1);
    assert_source(&state, "api#0", PolicySource::Actor, 1);
}

#[tokio::test(start_paused = true)]
async fn disabled_kind_policy_does_not_fall_through_to_the_default() {
    let state = ExecutionState::builder()
        .kind_retry(ActorKind::Tool, RetryPolicy::disabled())
        .default_retry(attempts(4))
        .build();
    let s = scripted("api", vec![Step::Fail("down"), Step::Ok("never")]);

    let err = state.call(&s.actor, ()).await.unwrap_err();

    assert_eq!(s.calls(), 1);
    assert_eq!(err.attempts(), 1);
    assert_source(&state, "api#0", PolicySource::Kind, 1);
}

#[tokio::test(start_paused = true)]
async fn disabled_default_does_not_fall_through_to_the_built_in_policy() {
    let state = ExecutionState::builder()
        .default_retry(RetryPolicy::disabled())
        .build();
    let s = scripted("api", vec![Step::Fail("down"), Step::Ok("never")]);

    state.call(&s.actor, ()).await.unwrap_err();

    assert_eq!(s.calls(), 1);
    assert_source(&state, "api#0", PolicySource::Default, 1);
}

#[tokio::test(start_paused = true)]
async fn policy_built_with_enabled_false_is_single_shot() {
    let state = ExecutionState::new();
    let s = scripted("api", vec![Step::Fail("down"), Step::Ok("never")]);
    let off = RetryPolicy::constant(Duration::ZERO)
        .max_attempts(5)
        .enabled(false)
        .build()
        .unwrap();

    let err = state.call(&s.actor, ()).retry(off).await.unwrap_err();

    assert_eq!(err.attempts(), 1);
    assert_eq!(s.calls(), 1);
}

// ── The recorded source ────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn each_call_records_its_own_deciding_level() {
    let state = ExecutionState::builder()
        .kind_retry(ActorKind::Llm, attempts(2))
        .default_retry(attempts(2))
        .build();
    let tool = scripted("tool", vec![Step::Fail("down"), Step::Ok("ok")]);
    let llm = scripted_kind(
        ActorKind::Llm,
        "llm",
        vec![Step::Fail("busy"), Step::Ok("ok")],
    );
    let pinned = tool.actor.clone().retry(attempts(2));

    state.call(&tool.actor, ()).await.unwrap();
    state.call(&pinned, ()).await.unwrap();
    state.call(&pinned, ()).retry(attempts(2)).await.unwrap();
    state.call(&llm.actor, ()).await.unwrap();

    assert_source(&state, "tool#0", PolicySource::Default, 2);
    assert_source(&state, "tool#1", PolicySource::Actor, 2);
    assert_source(&state, "tool#2", PolicySource::Event, 2);
    assert_source(&state, "llm#0", PolicySource::Kind, 2);
}

// ── Invalid policies ───────────────────────────────────────────────────────────────────────

#[test]
fn zero_attempts_are_rejected_at_build() {
    let err = RetryPolicy::constant(secs(1))
        .max_attempts(0)
        .build()
        .unwrap_err();

    assert_eq!(err, PolicyError::ZeroAttempts);
    assert_eq!(
        err.to_string(),
        "max_attempts must be at least 1 (it counts the first attempt), got 0"
    );
}

#[test]
fn multiplier_below_one_is_rejected_at_build() {
    let err = RetryPolicy::exponential(secs(1))
        .multiplier(0.5)
        .build()
        .unwrap_err();

    assert_eq!(err, PolicyError::InvalidMultiplier(0.5));
    assert_eq!(
        err.to_string(),
        "multiplier must be a finite number >= 1, got 0.5"
    );
    assert!(RetryPolicy::exponential(secs(1))
        .multiplier(f64::NAN)
        .build()
        .is_err());
    assert!(RetryPolicy::exponential(secs(1))
        .multiplier(f64::INFINITY)
        .build()
        .is_err());
    assert!(RetryPolicy::exponential(secs(1))
        .multiplier(1.0)
        .build()
        .is_ok());
}

#[test]
fn nan_initial_delay_is_rejected_at_build() {
    let err = RetryPolicy::builder()
        .initial_delay_secs(f64::NAN)
        .build()
        .unwrap_err();

    assert!(matches!(
        err,
        PolicyError::InvalidDuration {
            field: "initial_delay",
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "initial_delay must be a finite, non-negative number of seconds, got NaN"
    );
}

#[test]
fn negative_initial_delay_is_rejected_at_build() {
    let err = RetryPolicy::builder()
        .initial_delay_secs(-1.5)
        .build()
        .unwrap_err();

    assert_eq!(
        err,
        PolicyError::InvalidDuration {
            field: "initial_delay",
            value: -1.5
        }
    );
    assert_eq!(
        err.to_string(),
        "initial_delay must be a finite, non-negative number of seconds, got -1.5"
    );
}

#[test]
fn infinite_max_delay_and_out_of_range_jitter_are_rejected_at_build() {
    let err = RetryPolicy::builder()
        .max_delay_secs(f64::INFINITY)
        .build()
        .unwrap_err();
    assert!(
        err.to_string().starts_with("max_delay must be a finite"),
        "{err}"
    );

    for jitter in [-0.1, 1.5, f64::NAN] {
        let err = RetryPolicy::builder().jitter(jitter).build().unwrap_err();
        assert!(matches!(err, PolicyError::InvalidJitter(_)), "{jitter}");
        assert!(
            err.to_string().starts_with("jitter must be a fraction"),
            "{err}"
        );
    }
}

#[test]
fn invalid_policy_is_rejected_when_read_from_json() {
    let err = serde_json::from_str::<RetryPolicy>(r#"{"multiplier": 0.25}"#).unwrap_err();
    assert!(
        err.to_string()
            .contains("multiplier must be a finite number >= 1, got 0.25"),
        "{err}"
    );
    let err = serde_json::from_str::<RetryPolicy>(r#"{"initial_delay_secs": -2.0}"#).unwrap_err();
    assert!(err.to_string().contains("initial_delay"), "{err}");
}
