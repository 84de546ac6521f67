#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The event bus: sync and async subscribers, streams, log records, the JSON form of events
//! and how much input/output detail records keep.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::{
    Actor, ActorKind, BoxError, Ctx, Error, Event, EventStatus, ExecutionState, InterruptReason,
    Severity, Subscriber,
};
use serde_json::{json, Map, Value};
use support::{collect, constant, scripted, statuses, with_status, Step};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use EventStatus::{Completed, Failed, Interrupted, Log, Retrying, Started};

fn spawn_call(
    state: &ExecutionState,
    actor: Actor<(), String>,
) -> JoinHandle<Result<String, Error>> {
    let state = state.clone();
    tokio::spawn(async move { state.call(&actor, ()).await })
}

fn history_ids(state: &ExecutionState) -> Vec<u64> {
    state.history().events().iter().map(|e| e.id).collect()
}

/// A retried call, a log line and an interrupt: a run with every kind of record.
async fn eventful_run(state: &ExecutionState) {
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_millis(100), 3));
    assert_eq!(state.call(&actor, ()).await.unwrap(), "up");
    state.log(Severity::Info, "between calls");
    let hanging = scripted("hanging", vec![Step::Fail("again")]);
    let task = spawn_call(
        state,
        hanging
            .actor
            .clone()
            .retry(constant(Duration::from_secs(10), 3)),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    assert!(task.await.unwrap().unwrap_err().is_interrupted());
}

#[tokio::test(start_paused = true)]
async fn sync_subscribers_see_every_event_in_history_order() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&ids);
    let state = ExecutionState::builder()
        .subscriber(move |e: &Event| sink.lock().unwrap().push(e.id))
        .build();
    let late = collect(&state);

    eventful_run(&state).await;

    let history = state.history().events();
    assert!(history.len() >= 10, "expected a full run, got {history:?}");
    assert_eq!(*ids.lock().unwrap(), history_ids(&state));
    let late = late.lock().unwrap();
    assert_eq!(late.len(), history.len());
    for (seen, recorded) in late.iter().zip(&history) {
        assert_eq!(seen, &**recorded);
    }
    // Ids are the positions in the history.
    assert!(history.iter().enumerate().all(|(i, e)| e.id == i as u64));
    assert_eq!(state.subscriber_failures(), 0);
}

#[tokio::test(start_paused = true)]
async fn panicking_subscriber_does_not_fail_the_call_and_is_counted() {
    let state = ExecutionState::builder()
        .subscriber(|e: &Event| {
            assert_ne!(e.status, EventStatus::Completed, "subscriber exploded");
        })
        .build();
    let after = collect(&state);
    let tool = scripted("fine", vec![Step::Ok("done")]);

    let output = state.call(&tool.actor, ()).await;

    assert_eq!(output.unwrap(), "done");
    assert_eq!(state.subscriber_failures(), 1);
    assert_eq!(statuses(&state, "fine#0"), [Started, Completed]);
    // Subscribers after the failing one still get every event.
    assert_eq!(after.lock().unwrap().len(), 2);
}

struct Rejecting {
    seen: Arc<AtomicU32>,
}

impl Subscriber for Rejecting {
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if event.status == Failed {
            return Err("cannot store failures".into());
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn subscriber_returning_an_error_is_counted_and_changes_nothing() {
    let seen = Arc::new(AtomicU32::new(0));
    let state = ExecutionState::builder()
        .subscriber(Rejecting {
            seen: Arc::clone(&seen),
        })
        .build();
    let tool = scripted(
        "flaky",
        vec![Step::Fail("down"), Step::Fail("down"), Step::Ok("up")],
    );
    let actor = tool.actor.clone().retry(constant(Duration::ZERO, 3));

    let output = state.call(&actor, ()).await;

    assert_eq!(
        output.unwrap(),
        "up",
        "a subscriber error must not fail or retry the call"
    );
    assert_eq!(tool.calls(), 3);
    assert_eq!(state.subscriber_failures(), 2);
    assert_eq!(seen.load(Ordering::SeqCst) as usize, state.history().len());
}

#[tokio::test(start_paused = true)]
async fn subscriber_may_log_and_read_the_history_without_deadlock() {
    let state = ExecutionState::new();
    let observed = Arc::new(Mutex::new(Vec::new()));
    let (inner, sink) = (state.clone(), Arc::clone(&observed));
    state.subscribe(move |e: &Event| {
        let history = inner.history();
        // The event is already in the history when it is delivered.
        let recorded = history.events().iter().any(|h| h.id == e.id);
        sink.lock().unwrap().push((e.id, recorded, history.len()));
        if e.status != Log {
            inner.log(
                Severity::Debug,
                format!("saw {} at {}", e.status, e.address),
            );
        }
    });
    let tool = scripted("fine", vec![Step::Ok("done")]);

    let output = state.call(&tool.actor, ()).await;

    assert_eq!(output.unwrap(), "done");
    assert_eq!(
        state.subscriber_failures(),
        0,
        "no subscriber may fail (no re-borrow panic)"
    );
    let logs: Vec<String> = state
        .history()
        .events()
        .iter()
        .filter(|e| e.status == Log)
        .map(|e| e.message.as_deref().unwrap().to_owned())
        .collect();
    assert_eq!(logs, ["saw started at fine#0", "saw completed at fine#0"]);
    let observed = observed.lock().unwrap();
    assert_eq!(observed.len(), state.history().len());
    assert!(observed.iter().all(|(_, recorded, _)| *recorded));
    assert!(observed.iter().all(|(id, _, len)| (*id as usize) < *len));
}

#[tokio::test(start_paused = true)]
async fn events_recorded_by_a_subscriber_keep_history_order_for_other_subscribers() {
    let state = ExecutionState::new();
    let inner = state.clone();
    state.subscribe(move |e: &Event| {
        if e.status != Log {
            inner.log(Severity::Debug, format!("saw {}", e.status));
        }
    });
    let seen = collect(&state);
    let mut stream = state.stream();
    let tool = scripted("fine", vec![Step::Ok("done")]);

    state.call(&tool.actor, ()).await.unwrap();
    assert!(state.request_interrupt(InterruptReason::UserCancelled));

    let ids = history_ids(&state);
    let delivered: Vec<u64> = seen.lock().unwrap().iter().map(|e| e.id).collect();
    let mut streamed = Vec::new();
    while let Some(e) = stream.next().await {
        streamed.push(e.id);
    }
    assert_eq!(delivered, ids, "sync subscribers must see history order");
    // The stream ends with the interrupt notice; the subscriber's log about it comes later.
    let notice = state
        .history()
        .events()
        .iter()
        .position(|e| {
            e.kind == rh_agents::ActorKind::System && e.status == EventStatus::Interrupted
        })
        .unwrap();
    assert_eq!(streamed, ids[..=notice], "streams must see history order");
}

#[tokio::test(start_paused = true)]
async fn stream_ends_after_the_interrupt_and_the_final_records_of_running_calls() {
    let state = ExecutionState::new();
    let mut stream = state.stream();
    let tool = scripted("flaky", vec![Step::Fail("down")]);
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(10), 3)),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    assert!(task.await.unwrap().unwrap_err().is_interrupted());

    let mut streamed = Vec::new();
    while let Some(event) = stream.next().await {
        streamed.push(event);
    }
    assert!(stream.next().await.is_none(), "the stream stays ended");
    assert_eq!(stream.lagged(), 0);

    // The stream ends once the run is interrupted and the running call has recorded how it
    // ended: it carries the whole history, the notice and the call's INTERRUPTED included.
    let history = state.history().events();
    let expected: Vec<&Event> = history.iter().map(|e| &**e).collect();
    let got: Vec<&Event> = streamed.iter().map(|e| &**e).collect();
    assert_eq!(got, expected);
    let notice = &streamed[streamed.len() - 2];
    assert_eq!(
        (notice.kind, notice.status),
        (ActorKind::System, Interrupted)
    );
    let last = streamed.last().unwrap();
    assert_eq!(
        (last.address.as_str(), last.status),
        ("flaky#0", Interrupted)
    );
}

#[tokio::test(start_paused = true)]
async fn async_subscriber_sees_every_event_in_order() {
    let state = ExecutionState::new();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&ids);
    let handle = state
        .subscribe_async(move |e: Arc<Event>| {
            let sink = Arc::clone(&sink);
            async move {
                tokio::task::yield_now().await;
                sink.lock().unwrap().push(e.id);
                Ok::<(), std::convert::Infallible>(())
            }
        })
        .unwrap();

    eventful_run(&state).await;
    tokio::time::sleep(Duration::from_millis(10)).await;

    assert_eq!(*ids.lock().unwrap(), history_ids(&state));
    assert!(!handle.is_finished());
    drop(state);
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .expect("the async subscriber ends when the state is dropped")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn async_subscriber_error_is_counted_and_delivery_goes_on() {
    let state = ExecutionState::new();
    let seen = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&seen);
    let _handle = state
        .subscribe_async(move |e: Arc<Event>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if e.status == Started {
                    Err("sink unavailable")
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    let tool = scripted("fine", vec![Step::Ok("done")]);

    assert_eq!(state.call(&tool.actor, ()).await.unwrap(), "done");
    tokio::time::sleep(Duration::from_millis(10)).await;

    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "delivery goes on after a failure"
    );
    // `subscribe_async`: "A failing callback is counted and logged, never propagated", and
    // `subscriber_failures`: "How many times a subscriber failed".
    assert_eq!(state.subscriber_failures(), 1);
}

#[tokio::test(start_paused = true)]
async fn handler_log_is_addressed_under_the_actor() {
    let state = ExecutionState::new();
    let actor = Actor::tool("fetcher", |url: String, ctx: Ctx| async move {
        ctx.log(Severity::Info, format!("fetching {url}"));
        let mut meta = Map::new();
        meta.insert("bytes".to_owned(), json!(512));
        ctx.log_with(Severity::Debug, "fetched", meta);
        Ok::<_, std::io::Error>(url.len())
    });

    assert_eq!(state.call(&actor, "a.b/c".to_owned()).await.unwrap(), 5);

    let records = state.history().at("fetcher#0");
    let logs: Vec<&Arc<Event>> = records.iter().filter(|e| e.status == Log).collect();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].address.as_str(), "fetcher#0");
    assert_eq!(&*logs[0].actor, "fetcher");
    assert_eq!(logs[0].kind, ActorKind::Tool);
    assert_eq!(logs[0].level, Some(Severity::Info));
    assert_eq!(logs[0].message.as_deref(), Some("fetching a.b/c"));
    assert_eq!(logs[1].level, Some(Severity::Debug));
    assert_eq!(
        logs[1].metadata.as_deref().and_then(|m| m.get("bytes")),
        Some(&json!(512))
    );
    // Logs sit between the call's records but are not statuses of the call.
    assert_eq!(
        records.iter().map(|e| e.status).collect::<Vec<_>>(),
        [Started, Log, Log, Completed]
    );
    assert_eq!(statuses(&state, "fetcher#0"), [Started, Completed]);
    assert_eq!(
        state.history().latest("fetcher#0").unwrap().status,
        Completed
    );
}

#[tokio::test(start_paused = true)]
async fn state_log_with_metadata_is_recorded_at_the_root() {
    let state = ExecutionState::new();
    let mut meta = Map::new();
    meta.insert("run".to_owned(), Value::from("nightly"));
    meta.insert("shard".to_owned(), Value::from(3));

    state.log_with(Severity::Warning, "disk almost full", meta.clone());
    state.log(Severity::Error, "plain");

    let events = state.history().events();
    assert_eq!(events.len(), 2);
    let record = &events[0];
    assert!(record.address.is_root());
    assert_eq!(record.kind, ActorKind::System);
    assert_eq!(record.status, Log);
    assert_eq!(record.level, Some(Severity::Warning));
    assert_eq!(record.message.as_deref(), Some("disk almost full"));
    assert_eq!(record.metadata.as_deref(), Some(&meta));
    assert_eq!(events[1].level, Some(Severity::Error));
    assert_eq!(events[1].metadata, None);
    // Logs never count as the latest actor record of an address.
    assert!(state.history().latest_by_address().is_empty());
}

/// A call that fails once, waits 250 ms and succeeds: STARTED, FAILED, RETRYING, STARTED,
/// COMPLETED.
async fn retried_run() -> ExecutionState {
    let state = ExecutionState::new();
    let tool = scripted(
        "flaky",
        vec![Step::Fail("upstream timed out"), Step::Ok("ok")],
    );
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_millis(250), 3));
    state.call(&actor, ()).await.unwrap();
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    state
}

#[tokio::test(start_paused = true)]
async fn retrying_event_json_carries_delay_original_error_and_rfc3339_timestamp() {
    let state = retried_run().await;

    let retrying = &with_status(&state, "flaky#0", Retrying)[0];
    let value: Value = serde_json::from_str(&retrying.to_json()).unwrap();
    assert_eq!(value["status"], "retrying");
    assert_eq!(value["address"], "flaky#0");
    assert_eq!(value["kind"], "tool");
    assert_eq!(value["retry"]["delay_ms"], json!(250.0));
    assert_eq!(value["retry"]["original_error"], "upstream timed out");
    assert_eq!(value["retry"]["attempt"], 1);
    assert_eq!(value["retry"]["is_retry"], true);
    let timestamp = value["timestamp"].as_str().unwrap();
    let parsed = humantime::parse_rfc3339(timestamp).unwrap();
    let drift = retrying
        .timestamp
        .duration_since(parsed)
        .unwrap_or_else(|e| e.duration());
    assert!(
        drift < Duration::from_micros(1),
        "timestamp {timestamp} is off by {drift:?}"
    );
    assert!(timestamp.ends_with('Z'), "UTC expected: {timestamp}");

    let back: Event = serde_json::from_value(value).unwrap();
    assert_eq!(back.retry, retrying.retry);
    assert_eq!(back.retry.delay, Some(Duration::from_millis(250)));
}

#[tokio::test(start_paused = true)]
async fn events_of_a_retried_run_round_trip_through_json() {
    let state = retried_run().await;

    for event in &state.history().events() {
        let text = serde_json::to_string(&**event).unwrap();
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, &**event, "round trip changed the event: {text}");
    }
}

#[tokio::test(start_paused = true)]
async fn event_json_reads_back_to_the_same_json() {
    let state = retried_run().await;

    for event in state.history().events() {
        let text = event.to_json();
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_json(), text);
        assert_eq!(back.id, event.id);
        assert_eq!(back.status, event.status);
        assert_eq!(back.retry, event.retry);
        assert_eq!(back.result, event.result);
    }
}

#[tokio::test(start_paused = true)]
async fn detail_limit_truncates_long_detail_but_not_the_result() {
    let state = ExecutionState::builder().detail_limit(10).build();
    let echo = Actor::tool("echo", |s: String, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(s)
    });
    let long = "abcdefghijklmnopqrstuvwxyz".to_owned();

    state.call(&echo, long.clone()).await.unwrap();

    let started = &with_status(&state, "echo#0", Started)[0];
    let detail = started.detail.as_deref().unwrap();
    assert_eq!(detail, "\"abcdefghi…");
    assert_eq!(detail.chars().count(), 11);
    let completed = &with_status(&state, "echo#0", Completed)[0];
    assert_eq!(completed.detail.as_deref(), Some("\"abcdefghi…"));
    assert_eq!(completed.result, Some(Value::String(long)));

    // Short detail is kept as is.
    state.call(&echo, "hi".to_owned()).await.unwrap();
    let started = &with_status(&state, "echo#1", Started)[0];
    assert_eq!(started.detail.as_deref(), Some("\"hi\""));
}

#[tokio::test(start_paused = true)]
async fn record_io_off_drops_detail_but_keeps_the_result() {
    let state = ExecutionState::builder().record_io(false).build();
    let echo = Actor::tool("echo", |s: String, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(s.to_uppercase())
    });

    state.call(&echo, "secret input".to_owned()).await.unwrap();

    let records = state.history().at("echo#0");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|e| e.detail.is_none()));
    let completed = &with_status(&state, "echo#0", Completed)[0];
    assert_eq!(completed.result, Some(json!("SECRET INPUT")));
}
