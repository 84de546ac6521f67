#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The tracing bridge: one span per call, nested like the addresses, one event per record at
//! the right level, and every span closed once its call has ended. Needs the `tracing`
//! feature: `cargo test --features tracing --test observe_tracing`.
#![cfg(feature = "tracing")]

mod support;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::observe::tracing_bridge::TracingBridge;
use rh_agents::{Actor, Ctx, Error, Event, ExecutionState, InterruptReason, Severity};
use support::{constant, scripted, Step};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

// ── A recording layer ──────────────────────────────────────────────────────────────────────

/// Field values as text.
#[derive(Debug, Default, Clone)]
struct Fields(HashMap<String, String>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

#[derive(Debug)]
struct SpanRecord {
    name: &'static str,
    fields: Fields,
    /// Index of the parent span in `Seen::spans`.
    parent: Option<usize>,
    closed: bool,
}

#[derive(Debug)]
struct EventRecord {
    level: Level,
    fields: Fields,
    /// Index of the span the event is in.
    span: Option<usize>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Every span ever opened, in order (ids are reused after a close; indexes are not).
    spans: Vec<SpanRecord>,
    open: HashMap<Id, usize>,
    events: Vec<EventRecord>,
}

impl Seen {
    fn span(&self, address: &str) -> usize {
        let found: Vec<usize> = (0..self.spans.len())
            .filter(|&i| self.spans[i].fields.get("address") == Some(address))
            .collect();
        assert_eq!(found.len(), 1, "one span for {address}: {:#?}", self.spans);
        found[0]
    }

    fn events_in(&self, span: usize) -> Vec<&EventRecord> {
        self.events
            .iter()
            .filter(|e| e.span == Some(span))
            .collect()
    }

    fn statuses_in(&self, span: usize) -> Vec<(Level, String)> {
        self.events_in(span)
            .iter()
            .map(|e| (e.level, e.fields.get("status").unwrap().to_owned()))
            .collect()
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut seen = self.0.lock().unwrap();
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| seen.open[&parent.id()]);
        let index = seen.spans.len();
        seen.spans.push(SpanRecord {
            name: attrs.metadata().name(),
            fields,
            parent,
            closed: false,
        });
        seen.open.insert(id.clone(), index);
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut seen = self.0.lock().unwrap();
        let span = ctx.event_span(event).map(|span| seen.open[&span.id()]);
        seen.events.push(EventRecord {
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let mut seen = self.0.lock().unwrap();
        let index = seen.open.remove(&id).unwrap();
        seen.spans[index].closed = true;
    }
}

/// Installs a recording subscriber on this thread (the tests run on one thread) and builds
/// a state with the bridge.
fn traced() -> (
    ExecutionState,
    Arc<Mutex<Seen>>,
    tracing::subscriber::DefaultGuard,
) {
    traced_with(|_| {})
}

/// Like `traced`, with `before` adding subscribers that come ahead of the bridge.
fn traced_with(
    before: impl FnOnce(&ExecutionState),
) -> (
    ExecutionState,
    Arc<Mutex<Seen>>,
    tracing::subscriber::DefaultGuard,
) {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.0);
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder));
    let state = ExecutionState::new();
    before(&state);
    state.subscribe(TracingBridge::new());
    (state, seen, guard)
}

fn owned(items: &[(Level, &str)]) -> Vec<(Level, String)> {
    items.iter().map(|(l, s)| (*l, (*s).to_owned())).collect()
}

// ── Tests ──────────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn each_call_is_one_span_nested_under_its_agent() {
    let (state, seen, _guard) = traced();
    let search = scripted(
        "search",
        vec![Step::Fail("upstream down"), Step::Ok("hits")],
    );
    let search = search
        .actor
        .clone()
        .retry(constant(Duration::from_millis(250), 3));
    let summarize = Actor::llm("summarize", |hits: String, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(format!("summary of {hits}"))
    });
    let planner = Actor::agent("planner", move |(): (), ctx: Ctx| {
        let (search, summarize) = (search.clone(), summarize.clone());
        async move {
            let hits = ctx.call(&search, ()).await?;
            ctx.call(&summarize, hits).await
        }
    });

    let out = state.call(&planner, ()).await.unwrap();

    assert_eq!(out, "summary of hits");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.spans.len(), 3, "one span per call: {:#?}", seen.spans);
    let planner = seen.span("planner#0");
    let search = seen.span("planner#0/search#0");
    let summarize = seen.span("planner#0/summarize#0");
    let agent = &seen.spans[planner];
    assert_eq!(agent.name, "rh_agents.call");
    assert_eq!(agent.fields.get("actor"), Some("planner"));
    assert_eq!(agent.fields.get("kind"), Some("agent"));
    assert_eq!(agent.parent, None);
    assert_eq!(seen.spans[search].parent, Some(planner));
    assert_eq!(seen.spans[search].fields.get("kind"), Some("tool"));
    assert_eq!(seen.spans[summarize].parent, Some(planner));
    assert_eq!(seen.spans[summarize].fields.get("kind"), Some("llm"));

    // One event per record, in its call's span; the failed attempt is a warning.
    use Level as L;
    assert_eq!(
        seen.statuses_in(search),
        owned(&[
            (L::INFO, "started"),
            (L::WARN, "failed"),
            (L::INFO, "retrying"),
            (L::INFO, "started"),
            (L::INFO, "completed"),
        ])
    );
    assert_eq!(
        seen.statuses_in(planner),
        owned(&[(L::INFO, "started"), (L::INFO, "completed")])
    );
    assert_eq!(seen.events.len(), state.history().len());
    let events = seen.events_in(search);
    let failed = &events[1].fields;
    assert_eq!(failed.get("message"), Some("upstream down"));
    assert_eq!(failed.get("attempt"), Some("0"));
    let retrying = &events[2].fields;
    assert_eq!(retrying.get("attempt"), Some("1"));
    assert_eq!(retrying.get("delay_ms"), Some("250.0"));
    assert_eq!(retrying.get("original_error"), Some("upstream down"));
    assert_eq!(retrying.get("message"), Some("Attempt 2/3 in 250.0ms"));

    // Every call has ended, so every span is closed (the state is still alive).
    assert!(
        seen.spans.iter().all(|s| s.closed),
        "open spans: {:#?}",
        seen.spans
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_close_the_span_at_the_last_failure() {
    let (state, seen, _guard) = traced();
    let tool = scripted("flaky", vec![Step::Fail("down")]);
    let actor = tool.actor.clone().retry(constant(Duration::ZERO, 2));

    let err = state.call(&actor, ()).await.unwrap_err();

    assert!(err.is_retry_exhausted());
    let seen = seen.lock().unwrap();
    let span = seen.span("flaky#0");
    assert!(seen.spans[span].closed);
    use Level as L;
    assert_eq!(
        seen.statuses_in(span),
        owned(&[
            (L::INFO, "started"),
            (L::WARN, "failed"),
            (L::INFO, "retrying"),
            (L::INFO, "started"),
            (L::WARN, "failed"),
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_that_is_not_retried_closes_its_span_at_once() {
    let (state, seen, _guard) = traced();
    let permanent = scripted("strict", vec![Step::Permanent("bad request")]);
    let actor = permanent.actor.clone().retry(constant(Duration::ZERO, 3));

    let err: Error = state.call(&actor, ()).await.unwrap_err();

    assert!(!err.is_retry_exhausted(), "attempts were left: {err}");
    let seen = seen.lock().unwrap();
    let span = seen.span("strict#0");
    assert!(seen.spans[span].closed);
    assert_eq!(
        seen.statuses_in(span),
        owned(&[(Level::INFO, "started"), (Level::WARN, "failed")])
    );
    assert_eq!(
        seen.events_in(span)[1].fields.get("message"),
        Some("bad request")
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_stopped_by_its_precondition_is_a_span_of_one_record() {
    let (state, seen, _guard) = traced();
    let guarded = Actor::tool("guarded", |x: u32, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(x)
    })
    .precondition(|x: &u32| {
        if *x > 10 {
            Ok(())
        } else {
            Err(std::io::Error::other("too small"))
        }
    });

    state.call(&guarded, 1).await.unwrap_err();

    let seen = seen.lock().unwrap();
    let span = seen.span("guarded#0");
    assert!(seen.spans[span].closed);
    assert_eq!(seen.statuses_in(span), owned(&[(Level::WARN, "failed")]));
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_logging_between_failed_and_retrying_keeps_one_span() {
    // This subscriber runs before the bridge and logs (at the root) on every failure: its
    // record is delivered between the FAILED and the RETRYING.
    let (state, seen, _guard) = traced_with(|state| {
        let inner = state.clone();
        state.subscribe(move |e: &Event| {
            if e.status == rh_agents::EventStatus::Failed {
                inner.log(Severity::Error, format!("{} failed", e.address));
            }
        });
    });
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool.actor.clone().retry(constant(Duration::ZERO, 3));

    assert_eq!(state.call(&actor, ()).await.unwrap(), "up");

    let seen = seen.lock().unwrap();
    let span = seen.span("flaky#0");
    assert!(seen.spans[span].closed);
    use Level as L;
    assert_eq!(
        seen.statuses_in(span),
        owned(&[
            (L::INFO, "started"),
            (L::WARN, "failed"),
            (L::INFO, "retrying"),
            (L::INFO, "started"),
            (L::INFO, "completed"),
        ])
    );
    let log = seen
        .events
        .iter()
        .find(|e| e.fields.get("status") == Some("log"))
        .unwrap();
    assert_eq!(log.level, Level::ERROR);
    assert_eq!(log.span, None, "a root log is in no call's span");
    assert_eq!(log.fields.get("message"), Some("flaky#0 failed"));
}

#[tokio::test(start_paused = true)]
async fn log_records_are_events_in_their_call_at_their_severity() {
    let (state, seen, _guard) = traced();
    let fetch = Actor::tool("fetch", |url: String, ctx: Ctx| async move {
        ctx.log(Severity::Debug, format!("fetching {url}"));
        ctx.log(Severity::Warning, "slow response");
        Ok::<_, std::io::Error>(url.len())
    });

    state.call(&fetch, "a.b/c".to_owned()).await.unwrap();

    let seen = seen.lock().unwrap();
    let span = seen.span("fetch#0");
    use Level as L;
    assert_eq!(
        seen.statuses_in(span),
        owned(&[
            (L::INFO, "started"),
            (L::DEBUG, "log"),
            (L::WARN, "log"),
            (L::INFO, "completed"),
        ])
    );
    assert_eq!(
        seen.events_in(span)[1].fields.get("message"),
        Some("fetching a.b/c")
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_is_a_warning_and_closes_the_running_calls() {
    let (state, seen, _guard) = traced();
    let tool = scripted("flaky", vec![Step::Fail("down")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(10), 3));
    let task = {
        let state = state.clone();
        tokio::spawn(async move { state.call(&actor, ()).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!seen.lock().unwrap().spans[0].closed, "backing off");

    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    assert!(task.await.unwrap().unwrap_err().is_interrupted());

    let seen = seen.lock().unwrap();
    let notice = seen
        .events
        .iter()
        .find(|e| e.fields.get("reason").is_some())
        .unwrap();
    assert_eq!(notice.level, Level::WARN);
    assert_eq!(notice.span, None);
    assert_eq!(notice.fields.get("reason"), Some("user_cancelled"));
    assert_eq!(notice.fields.get("status"), Some("interrupted"));
    assert!(notice.fields.get("message").is_some());
    let span = seen.span("flaky#0");
    assert!(seen.spans[span].closed);
    assert_eq!(
        seen.statuses_in(span).last().unwrap(),
        &(Level::WARN, "interrupted".to_owned())
    );
}

// Records of concurrent calls interleave on real threads (a multi-threaded runtime cannot
// pause time, so every delay here is zero): each call still gets one span with its own
// records, and every span closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_on_many_threads_each_get_one_span() {
    use tracing::instrument::WithSubscriber;

    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.0);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(recorder));
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let state = ExecutionState::builder()
        .subscriber(TracingBridge::new())
        .build();
    let flaky = scripted("flaky", vec![Step::Fail("down")]);
    let strict = scripted("strict", vec![Step::Permanent("bad request")]);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let state = state.clone();
            let (steps, actor) = match i % 4 {
                0 => (3, strict.actor.clone()),
                1 => (5, flaky.actor.clone()),
                _ => (
                    5,
                    Actor::tool("fine", |(): (), _ctx: Ctx| async move {
                        tokio::task::yield_now().await;
                        Ok::<_, std::io::Error>("ok".to_owned())
                    }),
                ),
            };
            let actor = actor.retry(constant(Duration::ZERO, 3));
            let task = async move {
                for _ in 0..steps {
                    let _ = state.call(&actor, ()).await;
                    tokio::task::yield_now().await;
                }
            };
            tokio::spawn(task.with_subscriber(dispatch.clone()))
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let history = state.history().events();
    let calls: std::collections::BTreeSet<String> = history
        .iter()
        .map(|e| e.address.as_str().to_owned())
        .collect();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.spans.len(), calls.len(), "one span per call");
    for address in &calls {
        let span = seen.span(address);
        let expected: Vec<String> = history
            .iter()
            .filter(|e| e.address.as_str() == address)
            .map(|e| e.status.as_str().to_owned())
            .collect();
        let got: Vec<String> = seen.statuses_in(span).into_iter().map(|(_, s)| s).collect();
        assert_eq!(got, expected, "events of {address}");
    }
    assert_eq!(seen.events.len(), history.len());
    assert!(seen.spans.iter().all(|s| s.closed));
}

#[tokio::test(start_paused = true)]
async fn a_handler_runs_inside_its_call_span() {
    let (state, seen, _guard) = traced();
    let inner = Actor::tool("inner", |(): (), _ctx: Ctx| async move {
        tracing::info!(said = "inner", "from the inner handler");
        tokio::task::yield_now().await;
        tracing::info!(said = "inner again", "after an await");
        Ok::<_, std::io::Error>(())
    });
    let outer = Actor::agent("outer", move |(): (), ctx: Ctx| {
        let inner = inner.clone();
        async move {
            tracing::info!(said = "outer", "from the agent's handler");
            ctx.call(&inner, ()).await
        }
    });

    state.call(&outer, ()).await.unwrap();

    let seen = seen.lock().unwrap();
    let outer = seen.span("outer#0");
    let inner = seen.span("outer#0/inner#0");
    assert_eq!(seen.spans[inner].parent, Some(outer));
    let said_in = |span: usize| -> Vec<String> {
        seen.events_in(span)
            .iter()
            .filter_map(|e| e.fields.get("said").map(str::to_owned))
            .collect()
    };
    assert_eq!(said_in(outer), ["outer"]);
    assert_eq!(said_in(inner), ["inner", "inner again"]);
    assert!(seen.spans[outer].closed && seen.spans[inner].closed);
}
