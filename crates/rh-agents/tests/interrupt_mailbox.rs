#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! A durable state watches its own mailbox: interrupt requests left in its store (through
//! another connection, another handle, another process) stop the run with no checker
//! registered by hand. (Another process: `cli_store.rs`, `interrupt_from_another_process…`.)

mod support;

use std::sync::Arc;
use std::time::Duration;

use rh_agents::store::{MemoryStore, RunStatus, StateStore};
use rh_agents::{EventStatus, ExecutionState, InterruptReason, InterruptSignal};
use support::{scripted, statuses, Step};
use tokio::time::Instant;

fn user_stop() -> InterruptSignal {
    InterruptSignal::new(InterruptReason::UserCancelled)
        .message("stopped from another terminal")
        .triggered_by("operator")
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_written_by_another_connection_stops_a_sqlite_run_by_itself() {
    use rh_agents::store::SqliteStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let state = ExecutionState::builder()
        .id("watched")
        .grace_period(Duration::ZERO)
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let tool = scripted("hangs", vec![Step::Hang]);
    let running = {
        let state = state.clone();
        let actor = tool.actor.clone();
        tokio::spawn(async move { state.call(&actor, ()).await })
    };
    // The call has started (its STARTED record is written) before the request is left.
    while state.history().is_empty() {
        tokio::task::yield_now().await;
    }

    // Another connection to the same file, as `rh-agents interrupt` would open.
    let other = SqliteStore::open(&path).unwrap();
    let asked = std::time::Instant::now();
    other.request_interrupt("watched", &user_stop()).unwrap();
    let err = running.await.unwrap().unwrap_err();
    let took = asked.elapsed();

    assert!(err.is_interrupted(), "{err:?}");
    let signal = err.interrupt().unwrap();
    assert_eq!(signal.reason, InterruptReason::UserCancelled);
    assert_eq!(
        signal.message.as_deref(),
        Some("stopped from another terminal")
    );
    // A few polls of the change counter (5 ms each); generous for a loaded machine.
    assert!(
        took < Duration::from_secs(2),
        "stopped {took:?} after the request"
    );
    assert_eq!(
        statuses(&state, "hangs#0"),
        [EventStatus::Started, EventStatus::Interrupted]
    );
    assert_eq!(
        other.load("watched").unwrap().status,
        RunStatus::Interrupted
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_through_the_runs_own_handle_stops_it_too() {
    use rh_agents::store::SqliteStore;

    // The same connection: its own commits do not move `PRAGMA data_version`, so the store
    // counts the requests left through it as well.
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let state = ExecutionState::builder()
        .id("same-handle")
        .grace_period(Duration::ZERO)
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let tool = scripted("hangs", vec![Step::Hang]);
    let running = {
        let state = state.clone();
        let actor = tool.actor.clone();
        tokio::spawn(async move { state.call(&actor, ()).await })
    };
    while state.history().is_empty() {
        tokio::task::yield_now().await;
    }
    store
        .request_interrupt("same-handle", &user_stop())
        .unwrap();

    let err = running.await.unwrap().unwrap_err();
    assert!(err.is_interrupted(), "{err:?}");
    assert_eq!(
        err.interrupt().unwrap().reason,
        InterruptReason::UserCancelled
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_stops_the_run_within_the_mailbox_interval() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let state = ExecutionState::builder()
        .id("backoff")
        .mailbox_interval(Duration::from_millis(20))
        // The handler ignores interrupts: it is aborted at once rather than after a grace.
        .grace_period(Duration::ZERO)
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let tool = scripted("slow", vec![Step::Sleep(Duration::from_secs(3600))]);
    let running = {
        let state = state.clone();
        let actor = tool.actor.clone();
        tokio::spawn(async move {
            let result = state.call(&actor, ()).await;
            (result, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(1_005)).await;

    let asked = Instant::now();
    store.request_interrupt("backoff", &user_stop()).unwrap();
    let (result, stopped) = running.await.unwrap();

    assert!(result.unwrap_err().is_interrupted());
    let took = stopped.duration_since(asked);
    assert!(
        took <= Duration::from_millis(20),
        "stopped {took:?} after the request"
    );
}

#[tokio::test(start_paused = true)]
async fn a_resumed_run_watches_its_mailbox_and_ignores_the_request_it_cleared() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let first = ExecutionState::builder()
        .id("again")
        .start(Arc::clone(&store))
        .await
        .unwrap();
    store.request_interrupt("again", &user_stop()).unwrap();
    first.interrupted().await;
    drop(first);

    // The old request is cleared by the resume: the resumed run is not stopped by it.
    let resumed = ExecutionState::builder()
        .resume(
            Arc::clone(&store),
            "again",
            rh_agents::store::ReplayMode::Normal,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!resumed.is_interrupted());

    // A new one stops it.
    store
        .request_interrupt("again", &InterruptSignal::new(InterruptReason::Timeout))
        .unwrap();
    let signal = resumed.interrupted().await;
    assert_eq!(signal.reason, InterruptReason::Timeout);
}

#[tokio::test(start_paused = true)]
async fn the_watcher_ends_when_the_run_is_finished_or_the_state_dropped() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let settle = || async {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    // The watcher keeps a handle on the store while it runs.
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    settle().await;
    let watching = Arc::strong_count(&store);
    state.finish_ok().unwrap();
    settle().await;
    assert_eq!(
        Arc::strong_count(&store),
        watching - 1,
        "finished: no watcher"
    );
    drop(state);
    assert_eq!(Arc::strong_count(&store), 1);

    // Dropped while running: the task goes with the state.
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    settle().await;
    assert!(Arc::strong_count(&store) > 1);
    drop(state);
    settle().await;
    assert_eq!(
        Arc::strong_count(&store),
        1,
        "the watcher outlived its state"
    );
}

#[tokio::test(start_paused = true)]
async fn a_state_without_a_store_or_checker_runs_no_watcher() {
    // Nothing to watch: no task, no timer (virtual time would otherwise tick through it).
    let state = ExecutionState::new();
    let tool = scripted("ok", vec![Step::Ok("fine")]);
    assert_eq!(state.call(&tool.actor, ()).await.unwrap(), "fine");
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
}

#[test]
fn a_state_moved_to_another_runtime_gets_its_watcher_back() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&stop);
    // Built on one runtime, its watcher consulted there once; then that runtime ends.
    let first = paused();
    let state = first.block_on(async {
        let state = ExecutionState::builder()
            .checker(rh_agents::InterruptChecker::from_fn(move || {
                seen.load(Ordering::SeqCst)
            }))
            .build();
        state.check_interrupt().await.unwrap();
        state
    });
    drop(first);

    // Used on another: the first checkpoint starts a new watcher and waits for its round.
    stop.store(true, Ordering::SeqCst);
    let second = paused();
    let tool = scripted("never", vec![Step::Ok("unreachable")]);
    let (err, took) = second.block_on(async {
        let start = Instant::now();
        let err = state.call(&tool.actor, ()).await.unwrap_err();
        (err, start.elapsed())
    });
    assert!(err.is_interrupted(), "{err:?}");
    assert_eq!(
        tool.calls(),
        0,
        "the checker was consulted before the handler"
    );
    assert_eq!(
        took,
        Duration::ZERO,
        "a round at once, not at the next interval"
    );
}
