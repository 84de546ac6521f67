#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The recording core: nothing slow or stuck — a subscriber, the store — holds up calls or an
//! interrupt; sync commits come before results, batched commits come in groups; streams
//! resume from a record number; annotations and progress updates.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rh_agents::store::{
    ArtifactRef, ListFilter, MemoryStore, RunInfo, RunStatus, Snapshot, StateStore, StoreError,
    WriteLock,
};
use rh_agents::{
    Actor, BoxError, CommitMode, Ctx, Event, EventStatus, ExecutionState, InterruptReason,
    InterruptSignal, Progress, RetryPolicy, Severity, Subscriber, Update,
};
use serde_json::{json, Value};
use support::{scripted, Step};
use tokio_stream::StreamExt;

/// A memory store whose record writes can be held at a gate, and which counts its writes.
#[derive(Debug, Default)]
struct Gated {
    inner: MemoryStore,
    /// While set, `append_events` waits for `open` to be signalled.
    hold: AtomicBool,
    gate: Mutex<Option<mpsc::Receiver<()>>>,
    /// Told once a write is being held.
    entered: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// How many `append_events` calls, and how many records are committed.
    appends: AtomicUsize,
    committed: AtomicU64,
}

impl Gated {
    /// Holds the next writes until the returned sender sends (or is dropped); the receiver
    /// hears when a write is held.
    fn close(&self) -> (mpsc::Sender<()>, tokio::sync::oneshot::Receiver<()>) {
        let (open, gate) = mpsc::channel();
        let (entered, held) = tokio::sync::oneshot::channel();
        *self.gate.lock().unwrap() = Some(gate);
        *self.entered.lock().unwrap() = Some(entered);
        self.hold.store(true, Ordering::SeqCst);
        (open, held)
    }
}

impl StateStore for Gated {
    fn create(&self, info: &RunInfo) -> Result<(), StoreError> {
        self.inner.create(info)
    }
    fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save(snapshot)
    }
    fn load(&self, id: &str) -> Result<Snapshot, StoreError> {
        self.inner.load(id)
    }
    fn list(&self, filter: &ListFilter) -> Result<Vec<RunInfo>, StoreError> {
        self.inner.list(filter)
    }
    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete(id)
    }
    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.exists(id)
    }
    fn append_events(&self, id: &str, events: &[Arc<Event>]) -> Result<(), StoreError> {
        if self.hold.load(Ordering::SeqCst) {
            if let Some(entered) = self.entered.lock().unwrap().take() {
                let _ = entered.send(());
            }
            let gate = self.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                // Held until the test opens the gate (or drops its end).
                let _ = gate.recv();
                self.hold.store(false, Ordering::SeqCst);
            }
        }
        self.inner.append_events(id, events)?;
        self.appends.fetch_add(1, Ordering::SeqCst);
        if let Some(last) = events.last() {
            self.committed.fetch_max(last.id + 1, Ordering::SeqCst);
        }
        Ok(())
    }
    fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError> {
        self.inner.set_status(id, status)
    }
    fn put_storage(&self, id: &str, key: &str, value: Option<&Value>) -> Result<(), StoreError> {
        self.inner.put_storage(id, key, value)
    }
    fn put_blob(&self, artifact: &ArtifactRef, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_blob(artifact, bytes)
    }
    fn get_blob(&self, artifact: &ArtifactRef) -> Result<Vec<u8>, StoreError> {
        self.inner.get_blob(artifact)
    }
    fn put_artifact(&self, id: &str, name: &str, artifact: &ArtifactRef) -> Result<(), StoreError> {
        self.inner.put_artifact(id, name, artifact)
    }
    fn lock_writer(&self, id: &str) -> Result<WriteLock, StoreError> {
        self.inner.lock_writer(id)
    }
    fn is_writing(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.is_writing(id)
    }
    fn request_interrupt(&self, id: &str, signal: &InterruptSignal) -> Result<(), StoreError> {
        self.inner.request_interrupt(id, signal)
    }
    fn pending_interrupt(&self, id: &str) -> Result<Option<InterruptSignal>, StoreError> {
        self.inner.pending_interrupt(id)
    }
    fn clear_interrupt(&self, id: &str) -> Result<(), StoreError> {
        self.inner.clear_interrupt(id)
    }
}

/// A tool that never finishes on its own.
fn hanging() -> Actor<(), ()> {
    Actor::tool("hang", |(): (), _ctx: Ctx| async move {
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(())
    })
}

/// A subscriber that blocks on the first record it is given until the test lets it go.
fn blocking_subscriber() -> (impl Subscriber, mpsc::Sender<()>, Arc<AtomicUsize>) {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate));
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let subscriber = move |_: &Event| {
        counter.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = gate.lock().unwrap().take() {
            let _ = gate.recv();
        }
    };
    (subscriber, release, seen)
}

#[tokio::test(start_paused = true)]
async fn a_blocked_subscriber_holds_up_neither_calls_nor_an_interrupt() {
    let (blocked, release, seen) = blocking_subscriber();
    let fine = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&fine);
    let state = ExecutionState::builder()
        // The hanging handler ignores interrupts: abort it at once.
        .grace_period(Duration::ZERO)
        .subscriber(blocked)
        .subscriber(move |e: &Event| sink.lock().unwrap().push(e.id))
        .build();
    let tool = scripted("quick", vec![Step::Ok("done")]);

    // Many calls complete although one subscriber never returns from its first record.
    let real = std::time::Instant::now();
    for _ in 0..50 {
        assert_eq!(state.call(&tool.actor, ()).await.unwrap(), "done");
    }
    assert_eq!(state.history().len(), 100);
    // The subscriber that keeps up has seen every call by the time it returned.
    assert_eq!(fine.lock().unwrap().len(), 100);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the blocked one is still on its first"
    );

    // An interrupt ends a running call at once.
    let task = {
        let state = state.clone();
        tokio::spawn(async move { state.call(&hanging(), ()).await })
    };
    tokio::task::yield_now().await;
    let asked = tokio::time::Instant::now();
    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    let err = task.await.unwrap().unwrap_err();
    assert!(err.is_interrupted());
    assert_eq!(asked.elapsed(), Duration::ZERO, "no virtual time passed");
    // Real time: the whole test waited for the blocked subscriber once, boundedly.
    assert!(
        real.elapsed() < Duration::from_secs(5),
        "{:?}",
        real.elapsed()
    );

    release.send(()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_blocked_store_does_not_delay_an_interrupt() {
    let gated = Arc::new(Gated::default());
    let store: Arc<dyn StateStore> = Arc::<Gated>::clone(&gated);
    let state = ExecutionState::builder()
        .grace_period(Duration::ZERO)
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let tool = scripted("quick", vec![Step::Ok("done")]);
    state.call(&tool.actor, ()).await.unwrap();

    let (open, held) = gated.close();
    let task = {
        let state = state.clone();
        tokio::spawn(async move { state.call(&hanging(), ()).await })
    };
    // The call's STARTED is being written, and the store does not answer.
    held.await.unwrap();
    let real = std::time::Instant::now();
    assert!(state.request_interrupt(InterruptReason::UserCancelled));
    assert!(state.is_interrupted());
    let err = task.await.unwrap().unwrap_err();
    assert!(err.is_interrupted());
    assert!(
        real.elapsed() < Duration::from_secs(2),
        "the interrupt waited for the store: {:?}",
        real.elapsed()
    );

    // The store comes back: nothing recorded is lost.
    open.send(()).unwrap();
    let recorded = state.history().len();
    drop(state);
    let stored = store.load(&id).unwrap();
    assert_eq!(stored.events.len(), recorded);
    assert_eq!(stored.status, RunStatus::Interrupted);
}

#[tokio::test(start_paused = true)]
async fn sync_mode_reports_a_result_only_once_its_records_are_committed() {
    let gated = Arc::new(Gated::default());
    let store: Arc<dyn StateStore> = Arc::<Gated>::clone(&gated);
    let state = ExecutionState::builder()
        .commit_mode(CommitMode::Sync)
        .start(store)
        .await
        .unwrap();
    let attempts_saw = Arc::new(Mutex::new(Vec::new()));
    let flaky = {
        let (gated, seen) = (Arc::clone(&gated), Arc::clone(&attempts_saw));
        Actor::tool("flaky", move |(): (), ctx: Ctx| {
            // When an attempt runs, the store knows it began (and how the last one ended).
            let committed = gated.committed.load(Ordering::SeqCst);
            seen.lock()
                .unwrap()
                .push((committed, ctx.snapshot().events.len() as u64));
            let attempt = ctx.attempt();
            async move {
                if attempt == 0 {
                    Err(std::io::Error::other("once"))
                } else {
                    Ok(attempt)
                }
            }
        })
        .retry(
            RetryPolicy::constant(Duration::from_millis(10))
                .max_attempts(2)
                .build()
                .unwrap(),
        )
    };

    for _ in 0..3 {
        state.call(&flaky, ()).await.unwrap();
        // At the moment the result is reported, every record that says so is committed.
        assert_eq!(
            gated.committed.load(Ordering::SeqCst),
            state.history().len() as u64
        );
    }
    for (committed, recorded) in attempts_saw.lock().unwrap().iter() {
        assert_eq!(
            committed, recorded,
            "an attempt ran before the store knew of it"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn batched_mode_commits_in_groups_and_calls_never_wait_for_the_store() {
    let gated = Arc::new(Gated::default());
    let store: Arc<dyn StateStore> = Arc::<Gated>::clone(&gated);
    let state = ExecutionState::builder()
        .commit_mode(CommitMode::Batched {
            max_records: 10,
            max_delay: Duration::from_secs(3600),
        })
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let tool = scripted("quick", vec![Step::Ok("done")]);

    // The store does not answer at all: calls go on regardless.
    let (open, _held) = gated.close();
    for _ in 0..100 {
        state.call(&tool.actor, ()).await.unwrap();
    }
    assert_eq!(state.history().len(), 200);
    open.send(()).unwrap();
    state.save_checkpoint().unwrap();

    let appends = gated.appends.load(Ordering::SeqCst);
    assert!(
        (1..=21).contains(&appends),
        "200 records in groups of at least 10 take at most 21 writes, not {appends}"
    );
    assert_eq!(store.load(&id).unwrap().events.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_from_misses_and_doubles_nothing_under_concurrent_recording() {
    const WRITERS: usize = 4;
    const EACH: usize = 300;
    const TOTAL: u64 = (WRITERS * EACH) as u64;
    let state = ExecutionState::builder().bus_capacity(1 << 20).build();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let state = state.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    state.log(Severity::Debug, format!("{w}/{i}"));
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    // Readers join at many points while the writers write, each from a record number at or
    // before the end so far (a reconnecting client's last id + 1).
    let mut readers = Vec::new();
    let mut salt = 7u64;
    while readers.len() < 24 {
        let len = state.history().len() as u64;
        salt = salt.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let from = if len == 0 { 0 } else { salt % (len + 1) };
        let mut stream = state.subscribe_from(from);
        readers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(event) = stream.next().await {
                ids.push(event.id);
                if event.id + 1 == TOTAL {
                    break;
                }
            }
            (from, ids)
        }));
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for reader in readers {
        let (from, ids) = reader.await.unwrap();
        let expected: Vec<u64> = (from..TOTAL).collect();
        assert_eq!(
            ids, expected,
            "a reader from #{from} missed or doubled records"
        );
    }
}

/// A sync subscriber that keeps records and progress updates in the order it was given them.
#[derive(Clone, Default)]
struct Watcher(Arc<Mutex<Vec<String>>>);

impl Subscriber for Watcher {
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        self.0
            .lock()
            .unwrap()
            .push(event.status.as_str().to_owned());
        Ok(())
    }
    fn on_progress(&self, progress: &Progress) -> Result<(), BoxError> {
        self.0
            .lock()
            .unwrap()
            .push(format!("progress {}", progress.value));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn progress_reaches_subscribers_and_streams_but_not_the_history_or_the_store() {
    let watcher = Watcher::default();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let state = ExecutionState::builder()
        .subscriber(watcher.clone())
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let mut stream = state.stream().with_progress();
    let llm = Actor::llm("write", |(): (), ctx: Ctx| async move {
        for token in ["Hel", "lo"] {
            ctx.progress(token);
        }
        ctx.progress(json!({ "percent": 100 }));
        Ok::<_, std::io::Error>("Hello".to_owned())
    });

    assert_eq!(state.call(&llm, ()).await.unwrap(), "Hello");

    assert_eq!(
        *watcher.0.lock().unwrap(),
        [
            "started",
            "progress \"Hel\"",
            "progress \"lo\"",
            "progress {\"percent\":100}",
            "completed"
        ]
    );
    let mut streamed = Vec::new();
    for _ in 0..5 {
        streamed.push(match stream.next().await.unwrap() {
            Update::Record(event) => event.status.as_str().to_owned(),
            Update::Progress(progress) => {
                assert_eq!(progress.address.as_str(), "write#0");
                assert_eq!(progress.after, 1, "after STARTED, before COMPLETED");
                format!("progress {}", progress.value)
            }
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(streamed, *watcher.0.lock().unwrap());
    assert_eq!(
        state.history().statuses("write#0"),
        [EventStatus::Started, EventStatus::Completed]
    );
    drop(state);
    assert_eq!(store.load(&id).unwrap().events.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn annotations_are_merged_into_the_final_record() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let llm = Actor::llm("answer", |(): (), ctx: Ctx| async move {
        ctx.annotate("usage", json!({ "input_tokens": 12, "output_tokens": 30 }));
        ctx.annotate("cost_usd", 0.25);
        ctx.annotate("model", "small");
        if ctx.attempt() == 0 {
            return Err(std::io::Error::other("overloaded"));
        }
        ctx.annotate("model", "large");
        Ok("42".to_owned())
    })
    .retry(
        RetryPolicy::constant(Duration::ZERO)
            .max_attempts(2)
            .build()
            .unwrap(),
    );
    let mut metadata = serde_json::Map::new();
    metadata.insert("model".to_owned(), json!("unset"));
    metadata.insert("team".to_owned(), json!("search"));

    state.call(&llm, ()).metadata(metadata).await.unwrap();

    let done = state.history().latest("answer#0").unwrap();
    assert_eq!(done.status, EventStatus::Completed);
    let meta = done.metadata.as_deref().unwrap();
    assert_eq!(meta["usage"]["output_tokens"], 30);
    assert_eq!(meta["cost_usd"], 0.25);
    assert_eq!(meta["model"], "large", "the handler's last word wins");
    assert_eq!(meta["team"], "search", "the call's own metadata is kept");
    // Only the final record carries them; and they are stored with it.
    let failed = &state.history().at("answer#0")[1];
    assert_eq!(failed.status, EventStatus::Failed);
    assert!(failed.metadata.as_deref().unwrap().get("usage").is_none());
    drop(state);
    let stored = store.load(&id).unwrap();
    assert_eq!(stored.events.last().unwrap().metadata, done.metadata);
}
