#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Robustness: deterministic and unambiguous addresses, and user code that panics or misbehaves
//! (`Serialize`, `Display`, async subscribers, conditions) never crashing a run; error reports
//! and policy validation of out-of-range durations.

mod support;

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::{
    Actor, Address, ConditionFailed, Ctx, Error, ErrorKind, Event, EventStatus, ExecutionState,
    HandlerPanic, PolicyError, RetryPolicy,
};
use serde::{Deserialize, Serialize, Serializer};
use support::{constant, scripted, statuses, with_status, Step};

use EventStatus::{Completed, Failed, Retrying, Started};

/// A value whose `Serialize` panics.
#[derive(Debug, Clone, Deserialize)]
struct Bomb;

impl Serialize for Bomb {
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        panic!("Serialize exploded")
    }
}

/// An error whose `Display` panics.
#[derive(Debug)]
struct Grumpy;

impl fmt::Display for Grumpy {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("Display exploded")
    }
}

impl std::error::Error for Grumpy {}

/// An error with a cause.
#[derive(Debug)]
struct FetchFailed(io::Error);

impl fmt::Display for FetchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("fetch of the index failed")
    }
}

impl std::error::Error for FetchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// A condition that panics instead of answering.
fn explode(what: &str) -> Result<(), io::Error> {
    panic!("{what} exploded")
}

#[tokio::test(start_paused = true)]
async fn addresses_follow_the_order_calls_are_created_not_awaited() {
    let state = ExecutionState::new();
    let echo: Actor<u32, u32> =
        Actor::tool(
            "echo",
            |x: u32, _ctx: Ctx| async move { Ok::<_, io::Error>(x) },
        );
    let agent = Actor::agent("agent", move |(): (), ctx: Ctx| {
        let echo = echo.clone();
        async move {
            let a = ctx.call(&echo, 1);
            let b = ctx.call(&echo, 2);
            let second = b.await?;
            let first = a.await?;
            Ok::<_, Error>(vec![first, second])
        }
    });

    let output = state.call(&agent, ()).await.unwrap();

    assert_eq!(output, [1, 2]);
    let first = &with_status(&state, "agent#0/echo#0", Started)[0];
    let second = &with_status(&state, "agent#0/echo#1", Started)[0];
    assert_eq!(
        first.detail.as_deref(),
        Some("1"),
        "echo#0 is the call made first"
    );
    assert_eq!(second.detail.as_deref(), Some("2"));
    assert!(
        second.id < first.id,
        "the call created second ran first, yet keeps the second address"
    );
    assert_eq!(statuses(&state, "agent#0/echo#0"), [Started, Completed]);
    assert_eq!(statuses(&state, "agent#0/echo#1"), [Started, Completed]);
}

#[tokio::test(start_paused = true)]
async fn separators_in_actor_names_are_escaped_in_addresses() {
    let state = ExecutionState::new();
    let search = Actor::tool("web/search#x", |q: String, _ctx: Ctx| async move {
        Ok::<_, io::Error>(q)
    });

    assert_eq!(
        state.call(&search, "rust".to_owned()).await.unwrap(),
        "rust"
    );

    assert_eq!(statuses(&state, "web%2Fsearch%23x#0"), [Started, Completed]);
    let record = state.history().latest("web%2Fsearch%23x#0").unwrap();
    assert_eq!(record.address.as_str(), "web%2Fsearch%23x#0");
    assert_eq!(record.address.depth(), 1);
    assert_eq!(record.address.parent(), Some(Address::root()));
    assert_eq!(&*record.actor, "web/search#x", "the name itself is kept");
    assert!(state.history().at("web/search#x#0").is_empty());
}

#[tokio::test(start_paused = true)]
async fn escaped_names_keep_nested_addresses_unambiguous() {
    let state = ExecutionState::new();
    let leaf = Actor::tool("c#d", |(): (), _ctx: Ctx| async move {
        Ok::<_, io::Error>("leaf".to_owned())
    });
    let agent = Actor::agent("a/b", move |(): (), ctx: Ctx| {
        let leaf = leaf.clone();
        async move { ctx.call(&leaf, ()).await }
    });

    state.call(&agent, ()).await.unwrap();

    let record = state.history().latest("a%2Fb#0/c%23d#0").unwrap();
    assert_eq!(record.address.depth(), 2);
    assert_eq!(record.address.parent(), Some(Address::parse("a%2Fb#0")));
    assert_eq!(record.status, Completed);
}

#[tokio::test(start_paused = true)]
async fn output_whose_serialize_panics_fails_the_call_with_an_output_error() {
    let state = ExecutionState::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let tool = Actor::tool("bomber", move |(): (), _ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, io::Error>(Bomb) }
    });

    let err = state.call(&tool, ()).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Output, "got {err:?}");
    assert_eq!(err.attempts(), 1);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "an output error is not retried"
    );
    assert_eq!(
        err.find::<HandlerPanic>().map(|p| p.message.as_str()),
        Some("Serialize exploded")
    );
    assert_eq!(statuses(&state, "bomber#0"), [Started, Failed]);
    let failed = &with_status(&state, "bomber#0", Failed)[0];
    let message = failed.message.as_deref().unwrap();
    assert!(
        message.contains("output could not be recorded as JSON"),
        "{message}"
    );
    assert!(message.contains("Serialize exploded"), "{message}");

    // The run goes on.
    let fine = scripted("fine", vec![Step::Ok("done")]);
    assert_eq!(state.call(&fine.actor, ()).await.unwrap(), "done");
}

#[tokio::test(start_paused = true)]
async fn input_whose_serialize_panics_still_runs_and_is_recorded_without_detail() {
    let state = ExecutionState::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let tool = Actor::tool("defuser", move |_bomb: Bomb, _ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, io::Error>("defused".to_owned()) }
    });

    let output = state.call(&tool, Bomb).await;

    assert_eq!(output.unwrap(), "defused");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(statuses(&state, "defuser#0"), [Started, Completed]);
    let started = &with_status(&state, "defuser#0", Started)[0];
    assert_eq!(started.detail, None);
    let completed = &with_status(&state, "defuser#0", Completed)[0];
    assert_eq!(completed.detail.as_deref(), Some("\"defused\""));
}

#[tokio::test(start_paused = true)]
async fn error_whose_display_panics_is_recorded_as_undisplayable_and_retried_normally() {
    let state = ExecutionState::new();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let tool = Actor::tool("grumpy", move |(): (), _ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Err::<String, _>(Grumpy) }
    })
    .retry(constant(Duration::ZERO, 2));

    let err = state.call(&tool, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted(), "got {err:?}");
    assert_eq!(err.attempts(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(err.find::<Grumpy>().is_some());
    assert_eq!(
        err.to_string(),
        "tool `grumpy` at grumpy#0: failed after 2 attempts (retries exhausted)"
    );
    // One cause failing to display does not hide the others.
    let report = err.report();
    assert!(
        report.starts_with("tool `grumpy` at grumpy#0: failed after 2 attempts"),
        "{report}"
    );
    assert!(
        report.contains("the error could not be displayed"),
        "{report}"
    );
    assert_eq!(
        statuses(&state, "grumpy#0"),
        [Started, Failed, Retrying, Started, Failed]
    );
    for failed in with_status(&state, "grumpy#0", Failed) {
        let message = failed.message.as_deref().unwrap();
        assert!(
            message.starts_with("the error could not be displayed"),
            "{message}"
        );
        assert!(message.contains("Display exploded"), "{message}");
    }
    let retrying = &with_status(&state, "grumpy#0", Retrying)[0];
    assert!(retrying
        .retry
        .original_error
        .as_deref()
        .unwrap()
        .starts_with("the error could not be displayed"));
}

#[tokio::test(start_paused = true)]
async fn async_subscriber_that_panics_in_its_callback_is_counted_and_still_served() {
    let state = ExecutionState::new();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&deliveries);
    let handle = state
        .subscribe_async(move |_event: Arc<Event>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                panic!("subscriber exploded on the first event");
            }
            async { Ok::<(), Infallible>(()) }
        })
        .unwrap();
    let tool = scripted("fine", vec![Step::Ok("done")]);

    state.call(&tool.actor, ()).await.unwrap();
    state.call(&tool.actor, ()).await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;

    assert_eq!(state.history().len(), 4);
    assert_eq!(
        deliveries.load(Ordering::SeqCst),
        4,
        "events after the panic are still delivered"
    );
    assert_eq!(state.subscriber_failures(), 1);
    assert!(
        !handle.is_finished(),
        "the subscriber task survives the panic"
    );
}

#[tokio::test(start_paused = true)]
async fn async_subscriber_whose_future_panics_is_counted_and_still_served() {
    let state = ExecutionState::new();
    let deliveries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&deliveries);
    let handle = state
        .subscribe_async(move |_event: Arc<Event>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::task::yield_now().await;
                assert_ne!(n, 0, "subscriber future exploded on the first event");
                Ok::<(), Infallible>(())
            }
        })
        .unwrap();
    let tool = scripted("fine", vec![Step::Ok("done")]);

    state.call(&tool.actor, ()).await.unwrap();
    state.call(&tool.actor, ()).await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;

    assert_eq!(deliveries.load(Ordering::SeqCst), 4);
    assert_eq!(state.subscriber_failures(), 1);
    assert!(!handle.is_finished());
}

#[tokio::test(start_paused = true)]
async fn report_of_an_exhausted_call_names_the_call_and_its_root_cause() {
    let state = ExecutionState::new();
    let tool = Actor::tool("fetch", |(): (), _ctx: Ctx| async move {
        Err::<String, _>(FetchFailed(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )))
    })
    .retry(constant(Duration::ZERO, 2));

    let err = state.call(&tool, ()).await.unwrap_err();
    let report = err.report();

    assert!(err.is_retry_exhausted());
    let call = report.find("failed after 2 attempts").expect(&report);
    let cause = report.find("fetch of the index failed").expect(&report);
    let root = report.find("connection reset by peer").expect(&report);
    assert!(call < cause && cause < root, "outer to inner: {report}");
    assert!(report.contains("fetch#0"), "{report}");
    // `Display` shows the call alone.
    assert!(!err.to_string().contains("connection reset"));
}

/// Runs `outer → inner_pre → guarded` and `outer → inner_post → verified`; the outer agent
/// collects the reports of its children's failures.
async fn run_nested(
    guarded: Actor<(), String>,
    verified: Actor<(), String>,
) -> (ExecutionState, Result<Vec<String>, Error>) {
    let state = ExecutionState::new();
    let inner_pre = Actor::agent("inner_pre", move |(): (), ctx: Ctx| {
        let guarded = guarded.clone();
        async move { ctx.call(&guarded, ()).await }
    });
    let inner_post = Actor::agent("inner_post", move |(): (), ctx: Ctx| {
        let verified = verified.clone();
        async move { ctx.call(&verified, ()).await }
    });
    let outer = Actor::agent("outer", move |(): (), ctx: Ctx| {
        let (inner_pre, inner_post) = (inner_pre.clone(), inner_post.clone());
        async move {
            let mut reports = Vec::new();
            for agent in [&inner_pre, &inner_post] {
                match ctx.call(agent, ()).await {
                    Ok(out) => reports.push(format!("unexpected success: {out}")),
                    Err(e) => reports.push(e.report()),
                }
            }
            Ok::<_, Error>(reports)
        }
    });
    let result = state.call(&outer, ()).await;
    (state, result)
}

fn assert_nested_failures_were_contained(state: &ExecutionState, reports: &[String]) {
    assert_eq!(reports.len(), 2);
    assert!(reports[0].contains("precondition failed"), "{}", reports[0]);
    assert!(
        reports[0].contains("precondition exploded"),
        "{}",
        reports[0]
    );
    assert!(
        reports[1].contains("postcondition failed"),
        "{}",
        reports[1]
    );
    assert!(
        reports[1].contains("postcondition exploded"),
        "{}",
        reports[1]
    );
    assert_eq!(statuses(state, "outer#0"), [Started, Completed]);
    assert_eq!(statuses(state, "outer#0/inner_pre#0"), [Started, Failed]);
    assert_eq!(statuses(state, "outer#0/inner_post#0"), [Started, Failed]);
    assert_eq!(statuses(state, "outer#0/inner_pre#0/guarded#0"), [Failed]);
    let pre = &with_status(state, "outer#0/inner_pre#0/guarded#0", Failed)[0];
    let message = pre.message.as_deref().unwrap();
    assert!(message.starts_with("precondition failed"), "{message}");
    assert!(message.contains("precondition exploded"), "{message}");
    assert_eq!(
        statuses(state, "outer#0/inner_post#0/verified#0"),
        [Started, Failed, Retrying, Started, Failed]
    );
}

#[tokio::test(start_paused = true)]
async fn panicking_conditions_inside_nested_agents_do_not_crash_the_outer_call() {
    let guarded = Actor::tool("guarded", |(): (), _ctx: Ctx| async move {
        Ok::<_, io::Error>("unreachable".to_owned())
    })
    .precondition(|(): &()| explode("precondition"));
    let verified = Actor::tool("verified", |(): (), _ctx: Ctx| async move {
        Ok::<_, io::Error>("output".to_owned())
    })
    .postcondition(|(): &(), _out: &String| explode("postcondition"))
    .retry(constant(Duration::ZERO, 2));

    let (state, result) = run_nested(guarded, verified).await;

    let reports = result.unwrap();
    assert_nested_failures_were_contained(&state, &reports);
}

#[tokio::test(start_paused = true)]
async fn panicking_async_conditions_inside_nested_agents_do_not_crash_the_outer_call() {
    let guarded = Actor::tool("guarded", |(): (), _ctx: Ctx| async move {
        Ok::<_, io::Error>("unreachable".to_owned())
    })
    .precondition_async(|(): ()| async move {
        tokio::task::yield_now().await;
        explode("async precondition")
    });
    let verified = Actor::tool("verified", |(): (), _ctx: Ctx| async move {
        Ok::<_, io::Error>("output".to_owned())
    })
    .postcondition_async(|(): (), _out: String| async move {
        tokio::task::yield_now().await;
        explode("async postcondition")
    })
    .retry(constant(Duration::ZERO, 2));

    let (state, result) = run_nested(guarded, verified).await;

    let reports = result.unwrap();
    assert_nested_failures_were_contained(&state, &reports);
}

#[tokio::test(start_paused = true)]
async fn postcondition_panic_is_a_condition_failure_with_the_panic_as_reason() {
    let state = ExecutionState::new();
    let verified = Actor::tool("verified", |(): (), _ctx: Ctx| async move {
        Ok::<_, io::Error>("output".to_owned())
    })
    .postcondition(|(): &(), _out: &String| explode("postcondition"))
    .retry(RetryPolicy::disabled());

    let err = state.call(&verified, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted(), "got {err:?}");
    let condition = err.find::<ConditionFailed>().unwrap();
    assert_eq!(condition.which, "postcondition");
    assert_eq!(
        err.find::<HandlerPanic>().map(|p| p.message.as_str()),
        Some("postcondition exploded")
    );
}

#[test]
fn out_of_range_delay_seconds_are_rejected_with_a_precise_error() {
    let build = |secs: f64| {
        RetryPolicy::constant(Duration::ZERO)
            .initial_delay_secs(secs)
            .build()
            .unwrap_err()
    };

    assert!(
        matches!(
            build(1e30),
            PolicyError::DurationTooLarge {
                field: "initial_delay",
                ..
            }
        ),
        "{:?}",
        build(1e30)
    );
    for invalid in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -1.0] {
        assert!(
            matches!(
                build(invalid),
                PolicyError::InvalidDuration {
                    field: "initial_delay",
                    ..
                }
            ),
            "{invalid}: {:?}",
            build(invalid)
        );
    }
    let err = RetryPolicy::constant(Duration::ZERO)
        .max_delay_secs(1e30)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        PolicyError::DurationTooLarge {
            field: "max_delay",
            ..
        }
    ));
    let json = serde_json::from_str::<RetryPolicy>(r#"{"initial_delay_secs":1e30}"#).unwrap_err();
    assert!(json.to_string().contains("too large"), "{json}");
}
