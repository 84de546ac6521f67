#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Interrupt edge cases: hanging and failing checkers, shared polling, interrupts raised by a
//! subscriber, the order of the interrupt notice, the end of a stream and extreme durations.

mod support;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::{
    Actor, ActorKind, Ctx, Error, Event, EventStatus, ExecutionState, InterruptChecker,
    InterruptReason, RetryPolicy, Severity,
};
use support::{constant, scripted, spawn_call, statuses, with_status, Step};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use EventStatus::{Completed, Failed, Interrupted, Retrying, Started};

/// An agent whose handler calls `inner` once and returns its answer.
fn agent_over(name: &str, inner: Actor<(), String>) -> Actor<(), String> {
    Actor::agent(name, move |(): (), ctx: Ctx| {
        let inner = inner.clone();
        async move { ctx.call(&inner, ()).await }
    })
}

/// A sync checker that never says stop, and how often it was asked.
fn counting_checker() -> (InterruptChecker, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&count);
    let checker = InterruptChecker::from_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        false
    });
    (checker, count)
}

/// An async checker that never answers, and how often it was started.
fn hanging_checker() -> (InterruptChecker, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&count);
    let checker = InterruptChecker::from_async(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<bool>()
    });
    (checker, count)
}

/// The warning log records.
fn warnings(state: &ExecutionState) -> Vec<Arc<Event>> {
    state
        .history()
        .events()
        .into_iter()
        .filter(|e| e.status == EventStatus::Log && e.level == Some(Severity::Warning))
        .collect()
}

/// The runtime's interrupt notices.
fn notices(state: &ExecutionState) -> Vec<Arc<Event>> {
    state
        .history()
        .events()
        .into_iter()
        .filter(|e| e.kind == ActorKind::System && e.status == Interrupted)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn hanging_async_checker_costs_one_check_timeout_per_checkpoint_and_does_not_hang_the_call() {
    let (checker, started_checks) = hanging_checker();
    let state = ExecutionState::builder()
        .checker(checker)
        .check_timeout(Duration::from_millis(200))
        .build();
    let tool = scripted("fine", vec![Step::Ok("done")]);
    let start = Instant::now();

    let output = tokio::time::timeout(Duration::from_secs(60), state.call(&tool.actor, ()))
        .await
        .expect("a hanging checker must not hang the call");

    assert_eq!(output.unwrap(), "done");
    assert_eq!(tool.calls(), 1);
    assert_eq!(statuses(&state, "fine#0"), [Started, Completed]);
    assert!(!state.is_interrupted());
    let checks = started_checks.load(Ordering::SeqCst);
    assert!(checks >= 1, "the checker must be consulted");
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(200) * checks,
        "each consultation costs exactly the check timeout"
    );
    let logs = warnings(&state);
    assert!(
        logs.iter()
            .any(|e| e.message.as_deref()
                == Some("interrupt checker failed: no answer within 200.0ms")),
        "expected a timeout warning, got {:?}",
        logs.iter().map(|e| e.message.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn local_interrupt_stops_a_backoff_at_once_while_a_hanging_checker_is_consulted() {
    let (checker, started_checks) = hanging_checker();
    let state = ExecutionState::builder()
        .checker(checker)
        .check_timeout(Duration::from_secs(60))
        .check_interval(Duration::from_millis(100))
        .build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let task = spawn_call(
        &state,
        tool.actor
            .clone()
            .retry(constant(Duration::from_secs(600), 2)),
    );

    // 0 s: the first checkpoint waits the full 60 s check timeout; then the attempt fails and
    // the backoff begins; 100 ms into it a poll starts that will not end before 120.1 s.
    tokio::time::sleep(Duration::from_millis(60_500)).await;
    assert_eq!(statuses(&state, "flaky#0"), [Started, Failed, Retrying]);
    assert_eq!(
        started_checks.load(Ordering::SeqCst),
        2,
        "a checker poll must be in progress during the backoff"
    );

    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    let requested = Instant::now();
    let (result, returned) = task.await.unwrap();

    let err = result.unwrap_err();
    assert!(err.is_interrupted(), "expected an interrupt, got {err:?}");
    assert_eq!(
        returned.duration_since(requested),
        Duration::ZERO,
        "the hanging checker must not delay the interrupt"
    );
    assert_eq!(tool.calls(), 1);
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Interrupted]
    );
    assert_eq!(
        with_status(&state, "flaky#0", Interrupted)[0]
            .detail
            .as_deref(),
        Some("Interrupted during retry backoff: user_cancelled")
    );
}

#[tokio::test(start_paused = true)]
async fn failing_checker_is_reported_at_most_once_every_ten_seconds() {
    let asked = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&asked);
    let state = ExecutionState::builder()
        .checker(InterruptChecker::from_fn(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Err::<bool, _>(io::Error::other("database unreachable"))
        }))
        .check_interval(Duration::from_millis(100))
        .build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(25), 2));
    let start = Instant::now();

    let output = state.call(&actor, ()).await;

    assert_eq!(output.unwrap(), "up");
    assert_eq!(start.elapsed(), Duration::from_secs(25));
    assert!(!state.is_interrupted());
    let failures = asked.load(Ordering::SeqCst);
    assert!(
        failures >= 240,
        "the checker must keep being polled (and failing), got {failures} polls"
    );
    let logs = warnings(&state);
    assert_eq!(
        logs.len(),
        3,
        "expected one warning at 0 s, 10 s and 20 s, got {:?}",
        logs.iter()
            .map(|e| e.message.as_deref().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    );
    for log in &logs {
        assert_eq!(
            log.message.as_deref(),
            Some("interrupt checker failed: database unreachable")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn nested_waits_share_one_checker_poll_per_interval() {
    let (checker, checks) = counting_checker();
    let state = ExecutionState::builder()
        .checker(checker)
        .check_interval(Duration::from_millis(100))
        .build();
    let tool = scripted("leaf", vec![Step::Fail("down"), Step::Ok("up")]);
    let leaf = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(10), 2));
    // top#0/level1#0/level2#0/level3#0/leaf#0: four agents wait on their handlers while the
    // tool waits in its backoff.
    let level3 = agent_over("level3", leaf);
    let level2 = agent_over("level2", level3);
    let level1 = agent_over("level1", level2);
    let top = agent_over("top", level1);
    let task = spawn_call(&state, top);

    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(
        statuses(&state, "top#0/level1#0/level2#0/level3#0/leaf#0"),
        [Started, Failed, Retrying]
    );
    let before = checks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let polls = checks.load(Ordering::SeqCst) - before;

    assert!(
        (9..=12).contains(&polls),
        "expected ~10 polls in 1 s for five waiting levels, got {polls}"
    );
    let (result, _) = task.await.unwrap();
    assert_eq!(result.unwrap(), "up");
    assert_eq!(statuses(&state, "top#0"), [Started, Completed]);
}

#[tokio::test(start_paused = true)]
async fn interrupt_from_a_subscriber_on_started_keeps_the_handler_from_running() {
    let state = ExecutionState::builder()
        .grace_period(Duration::from_secs(5))
        .build();
    let inner = state.clone();
    state.subscribe(move |e: &Event| {
        if e.status == Started && e.kind == ActorKind::Tool {
            inner.request_interrupt(InterruptReason::UserCancelled);
        }
    });
    let tool = scripted("tool", vec![Step::Ok("ran")]);
    let start = Instant::now();

    let err = state.call(&tool.actor, ()).await.unwrap_err();

    assert!(err.is_interrupted(), "expected an interrupt, got {err:?}");
    assert_eq!(tool.calls(), 0, "the handler must never run");
    assert_eq!(statuses(&state, "tool#0"), [Started, Interrupted]);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no grace period for a handler that never started"
    );
    let notice = &notices(&state)[0];
    let started = &with_status(&state, "tool#0", Started)[0];
    let interrupted = &with_status(&state, "tool#0", Interrupted)[0];
    assert!(started.id < notice.id && notice.id < interrupted.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_notice_precedes_every_interrupted_record_of_concurrent_calls() {
    const CALLS: usize = 20;
    let state = ExecutionState::new();
    let tool = scripted("waiter", vec![Step::HangCooperative]);
    let tasks: Vec<_> = (0..CALLS)
        .map(|_| spawn_call(&state, tool.actor.clone()))
        .collect();

    let count_started = || {
        state
            .history()
            .events()
            .iter()
            .filter(|e| e.status == Started)
            .count()
    };
    let mut started = count_started();
    for _ in 0..1_000_000 {
        if started == CALLS {
            break;
        }
        tokio::task::yield_now().await;
        started = count_started();
    }
    assert_eq!(started, CALLS, "every call must have started");

    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    for task in tasks {
        let (result, _) = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("every call must end after the interrupt")
            .unwrap();
        assert!(result.unwrap_err().is_interrupted());
    }

    let events = state.history().events();
    for (position, event) in events.iter().enumerate() {
        assert_eq!(event.id, position as u64, "ids follow history order");
    }
    let notices = notices(&state);
    assert_eq!(notices.len(), 1);
    let notice = notices[0].id;
    let interrupted: Vec<&Arc<Event>> = events
        .iter()
        .filter(|e| e.kind == ActorKind::Tool && e.status == Interrupted)
        .collect();
    assert_eq!(interrupted.len(), CALLS);
    for event in interrupted {
        assert!(
            event.id > notice,
            "{} recorded INTERRUPTED (id {}) before the notice (id {notice})",
            event.address,
            event.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_notice_precedes_interrupted_records_of_calls_starting_meanwhile() {
    const HAMMERS: usize = 4;
    let state = ExecutionState::new();
    let tool = scripted("quick", vec![Step::Ok("done")]);
    // Each task starts call after call until one is interrupted: some of them see the
    // interrupt at their first checkpoint, right as it is being requested.
    let tasks: Vec<JoinHandle<Error>> = (0..HAMMERS)
        .map(|_| {
            let state = state.clone();
            let actor = tool.actor.clone();
            tokio::spawn(async move {
                loop {
                    match state.call(&actor, ()).await {
                        Ok(_) => tokio::task::yield_now().await,
                        Err(e) => return e,
                    }
                }
            })
        })
        .collect();
    for _ in 0..1_000_000 {
        if state.history().len() >= 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(state.history().len() >= 200, "the calls must be running");

    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    for task in tasks {
        let err = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("every loop must end after the interrupt")
            .unwrap();
        assert!(err.is_interrupted(), "expected an interrupt, got {err:?}");
    }

    let notices = notices(&state);
    assert_eq!(notices.len(), 1);
    let notice = notices[0].id;
    let events = state.history().events();
    let interrupted: Vec<&Arc<Event>> = events
        .iter()
        .filter(|e| e.kind == ActorKind::Tool && e.status == Interrupted)
        .collect();
    assert!(interrupted.len() >= HAMMERS);
    for event in interrupted {
        assert!(
            event.id > notice,
            "{} recorded INTERRUPTED (id {}) before the notice (id {notice})",
            event.address,
            event.id
        );
    }
}

#[tokio::test(start_paused = true)]
async fn stream_ends_after_the_notice_and_the_interrupted_records_of_every_running_call() {
    let state = ExecutionState::new();
    let tool = scripted("hang", vec![Step::Hang]);
    let agent = agent_over("boss", tool.actor.clone());
    let task = spawn_call(&state, agent);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(statuses(&state, "boss#0"), [Started]);
    assert_eq!(statuses(&state, "boss#0/hang#0"), [Started]);

    let mut stream = state.stream();
    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    let streamed = tokio::time::timeout(Duration::from_secs(60), async {
        let mut items = Vec::new();
        while let Some(event) = stream.next().await {
            items.push(event);
        }
        items
    })
    .await
    .expect("the stream must end");

    let seen: Vec<(ActorKind, &str, EventStatus)> = streamed
        .iter()
        .map(|e| (e.kind, e.address.as_str(), e.status))
        .collect();
    assert_eq!(
        seen,
        [
            (ActorKind::System, "", Interrupted),
            (ActorKind::Tool, "boss#0/hang#0", Interrupted),
            (ActorKind::Agent, "boss#0", Interrupted),
        ]
    );
    assert!(stream.next().await.is_none(), "the stream stays ended");
    let (result, _) = task.await.unwrap();
    assert!(result.unwrap_err().is_interrupted());
    assert_eq!(statuses(&state, "boss#0"), [Started, Interrupted]);
    assert_eq!(statuses(&state, "boss#0/hang#0"), [Started, Interrupted]);
}

#[tokio::test(start_paused = true)]
async fn maximal_check_interval_and_retry_timeout_do_not_panic() {
    let (checker, checks) = counting_checker();
    let state = ExecutionState::builder()
        .checker(checker)
        .check_interval(Duration::MAX)
        .build();
    let policy = RetryPolicy::constant(Duration::from_secs(1))
        .no_jitter()
        .max_attempts(2)
        .retry_timeout(Duration::MAX)
        .build()
        .unwrap();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let start = Instant::now();

    let output = state.call(&tool.actor.clone().retry(policy), ()).await;

    assert_eq!(output.unwrap(), "up");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(tool.calls(), 2);
    assert_eq!(
        statuses(&state, "flaky#0"),
        [Started, Failed, Retrying, Started, Completed]
    );
    assert!(
        checks.load(Ordering::SeqCst) >= 2,
        "the checker is still consulted at checkpoints"
    );
    assert!(!state.is_interrupted());
}

#[tokio::test(start_paused = true)]
async fn maximal_check_timeout_does_not_panic() {
    let (checker, checks) = counting_checker();
    let state = ExecutionState::builder()
        .checker(checker)
        .check_timeout(Duration::MAX)
        .build();
    let tool = scripted("flaky", vec![Step::Fail("down"), Step::Ok("up")]);
    let actor = tool
        .actor
        .clone()
        .retry(constant(Duration::from_secs(1), 2));

    let output = state.call(&actor, ()).await;

    assert_eq!(output.unwrap(), "up");
    assert!(checks.load(Ordering::SeqCst) >= 10);
    assert!(warnings(&state).is_empty());
}
