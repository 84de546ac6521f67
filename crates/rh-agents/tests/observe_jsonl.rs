#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! JSON lines output: every event once, in history order, in the stable form that reads
//! back into the same `Event`; a failing writer is counted and never fails the run.

mod support;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::observe::jsonl::JsonLines;
use rh_agents::{
    Actor, ActorKind, Ctx, Error, Event, EventStatus, ExecutionState, InterruptReason, Severity,
    Subscriber,
};
use support::{constant, scripted, statuses, Step};

use EventStatus::{Completed, Failed, Interrupted, Retrying, Started};

/// A state writing JSON lines into a buffer the test keeps a handle to.
fn state_with_lines() -> (ExecutionState, Arc<JsonLines<Vec<u8>>>) {
    let lines = Arc::new(JsonLines::new(Vec::new()));
    let state = ExecutionState::builder()
        .subscriber(Arc::clone(&lines))
        .build();
    (state, lines)
}

fn written(lines: &JsonLines<Vec<u8>>) -> String {
    lines.with_writer(|buf| String::from_utf8(buf.clone()).unwrap())
}

/// Every history event is one line, in order, byte for byte its stable JSON form, and reads
/// back into an equal `Event`.
fn assert_lines_are_the_history(state: &ExecutionState, text: &str) {
    let history = state.history().events();
    assert!(text.ends_with('\n'), "every line ends with a newline");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), history.len(), "one line per event:\n{text}");
    for (line, recorded) in lines.iter().zip(&history) {
        let mut expected = Vec::new();
        serde_json::to_writer(&mut expected, &**recorded).unwrap();
        assert_eq!(line.as_bytes(), expected, "line for event {}", recorded.id);
        assert!(line.starts_with(r#"{"v":1,"#), "the versioned form: {line}");
        let back: Event = serde_json::from_str(line).unwrap();
        assert_eq!(&back, &**recorded, "line does not read back: {line}");
    }
}

#[tokio::test(start_paused = true)]
async fn retried_then_successful_run_is_written_event_by_event() {
    let (state, lines) = state_with_lines();
    let search = scripted(
        "search",
        vec![Step::Fail("upstream down"), Step::Ok("hits")],
    );
    let search = search
        .actor
        .clone()
        .retry(constant(Duration::from_millis(250), 3));
    let planner = Actor::agent("planner", move |(): (), ctx: Ctx| {
        let search = search.clone();
        async move {
            ctx.log(Severity::Info, "searching");
            ctx.call(&search, ()).await
        }
    });

    assert_eq!(state.call(&planner, ()).await.unwrap(), "hits");

    assert_eq!(
        statuses(&state, "planner#0/search#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    let text = written(&lines);
    assert_lines_are_the_history(&state, &text);
    let retrying: Event = text
        .lines()
        .map(|l| serde_json::from_str::<Event>(l).unwrap())
        .find(|e| e.status == Retrying)
        .unwrap();
    assert_eq!(retrying.retry.delay, Some(Duration::from_millis(250)));
    assert_eq!(
        retrying.retry.original_error.as_deref(),
        Some("upstream down")
    );
    assert_eq!(state.subscriber_failures(), 0);
}

#[tokio::test(start_paused = true)]
async fn interrupted_run_is_written_through_its_final_record() {
    let (state, lines) = state_with_lines();
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
    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    let err: Error = task.await.unwrap().unwrap_err();
    assert!(err.is_interrupted());

    let text = written(&lines);
    assert_lines_are_the_history(&state, &text);
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let notice = &events[events.len() - 2];
    assert_eq!(
        (notice.kind, notice.status),
        (ActorKind::System, Interrupted)
    );
    assert_eq!(
        notice.interrupt.as_ref().unwrap().reason,
        InterruptReason::UserCancelled
    );
    let last = events.last().unwrap();
    assert_eq!(
        (last.address.as_str(), last.status),
        ("flaky#0", Interrupted)
    );
}

#[tokio::test(start_paused = true)]
async fn lines_are_written_to_an_owned_writer_and_given_back() {
    let state = ExecutionState::new();
    let tool = scripted("fine", vec![Step::Ok("done")]);
    state.call(&tool.actor, ()).await.unwrap();

    // A finished run's history, written after the fact.
    let out = JsonLines::new(Vec::new()).flush_each(false);
    for event in state.history().events() {
        out.on_event(&event).unwrap();
    }
    out.flush().unwrap();
    let text = String::from_utf8(out.into_inner()).unwrap();

    assert_lines_are_the_history(&state, &text);
}

/// A writer that fails every write, or only every flush.
struct Broken {
    fail_writes: bool,
    flushes: Arc<AtomicU32>,
}

impl io::Write for Broken {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.fail_writes {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
        } else {
            Ok(buf.len())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        if self.fail_writes {
            Ok(())
        } else {
            Err(io::Error::other("disk full"))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn failing_writer_is_counted_and_does_not_fail_the_call() {
    let flushes = Arc::new(AtomicU32::new(0));
    let state = ExecutionState::builder()
        .subscriber(JsonLines::new(Broken {
            fail_writes: true,
            flushes: Arc::clone(&flushes),
        }))
        .build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool.actor.clone().retry(constant(Duration::ZERO, 3));

    let output = state.call(&actor, ()).await;

    assert_eq!(
        output.unwrap(),
        "up",
        "a writer error must not fail or retry the call"
    );
    assert_eq!(tool.calls(), 2);
    assert_eq!(state.subscriber_failures(), state.history().len() as u64);
    assert_eq!(
        flushes.load(Ordering::SeqCst),
        0,
        "nothing is flushed after a failed write"
    );
}

#[tokio::test(start_paused = true)]
async fn flush_errors_are_counted_only_when_flushing_each_line() {
    let tool = scripted("fine", vec![Step::Ok("done")]);
    for flush_each in [true, false] {
        let flushes = Arc::new(AtomicU32::new(0));
        let writer = Broken {
            fail_writes: false,
            flushes: Arc::clone(&flushes),
        };
        let state = ExecutionState::builder()
            .subscriber(JsonLines::new(writer).flush_each(flush_each))
            .build();

        assert_eq!(state.call(&tool.actor, ()).await.unwrap(), "done");

        let expected = if flush_each { 2 } else { 0 };
        assert_eq!(flushes.load(Ordering::SeqCst), expected, "{flush_each}");
        assert_eq!(
            state.subscriber_failures(),
            u64::from(expected),
            "{flush_each}"
        );
    }
}

#[test]
fn debug_names_the_writer() {
    let out = JsonLines::new(Vec::<u8>::new());
    let text = format!("{out:?}");
    assert!(text.contains("JsonLines"), "{text}");
    assert!(text.contains("flush_each: true"), "{text}");
}

/// Writes everything, except that its second write stops halfway and fails.
struct HalfBroken {
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    writes: usize,
}

impl std::io::Write for HalfBroken {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writes += 1;
        if self.writes == 2 {
            self.out
                .lock()
                .unwrap()
                .extend_from_slice(&buf[..buf.len() / 2]);
            return Err(std::io::Error::other("disk full"));
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_costs_one_line_not_the_next_one_too() {
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = HalfBroken {
        out: std::sync::Arc::clone(&out),
        writes: 0,
    };
    let state = rh_agents::ExecutionState::builder()
        .subscriber(rh_agents::observe::jsonl::JsonLines::new(writer))
        .build();
    let echo = rh_agents::Actor::tool("echo", |s: String, _ctx| async move {
        Ok::<_, std::io::Error>(s)
    });
    state.call(&echo, "a".to_owned()).await.unwrap();
    state.call(&echo, "b".to_owned()).await.unwrap();

    assert_eq!(state.subscriber_failures(), 1);
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Line 2 is cut short; every other record is a whole line that parses.
    assert_eq!(lines.len(), 4);
    let parsed = lines
        .iter()
        .filter(|l| serde_json::from_str::<rh_agents::Event>(l).is_ok())
        .count();
    assert_eq!(parsed, 3);
}
