#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Durable state when things go wrong: failed writes kept and written later, results set
//! aside by a resume never coming back, replay failures recorded, lock probes that do not
//! disturb writers.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use rh_agents::store::{
    ArtifactRef, ListFilter, MemoryStore, ReplayMode, RunInfo, RunStatus, Snapshot, SqliteStore,
    StateStore, StoreError, WriteLock,
};
use rh_agents::{Actor, Ctx, Event, EventStatus, ExecutionState, InterruptSignal};
use serde_json::Value;
use support::store::{counted, resume};

/// A memory store whose storage writes fail while `fail_storage` is set.
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryStore,
    fail_storage: AtomicBool,
}

impl StateStore for FlakyStore {
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
        self.inner.append_events(id, events)
    }
    fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError> {
        self.inner.set_status(id, status)
    }
    fn put_storage(&self, id: &str, key: &str, value: Option<&Value>) -> Result<(), StoreError> {
        if self.fail_storage.load(Ordering::SeqCst) {
            return Err(StoreError::NoStore("disk full".into()));
        }
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

#[tokio::test]
async fn a_failed_storage_write_is_kept_and_written_later_and_the_run_cannot_end_before() {
    let flaky = Arc::new(FlakyStore::default());
    let store: Arc<dyn StateStore> = Arc::<FlakyStore>::clone(&flaky);
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();

    flaky.fail_storage.store(true, Ordering::SeqCst);
    let err = state.storage().set("k", &1).unwrap_err();
    assert!(err.report().contains("disk full"), "{}", err.report());
    assert_eq!(
        state.storage().get::<u32>("k").unwrap(),
        Some(1),
        "kept in memory"
    );
    // The next record notices the failure and stops the run.
    state.log(rh_agents::Severity::Info, "after");
    assert!(state.is_interrupted());
    // While the change is unsaved, the run cannot be saved as ended.
    assert!(state.finish_ok().is_err());
    assert!(!store.load(&id).unwrap().storage.contains_key("k"));

    // The store recovers: the kept change is written with the next save.
    flaky.fail_storage.store(false, Ordering::SeqCst);
    assert_eq!(state.finish_ok().unwrap(), RunStatus::Completed);
    assert_eq!(
        store.load(&id).unwrap().storage.get("k"),
        Some(&Value::from(1))
    );
}

#[tokio::test]
async fn a_result_set_aside_by_a_resume_from_an_address_never_comes_back() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let a = counted("a", |x| x + 1);
    let fails = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU32::new(0));
    let b = {
        let (fails, runs) = (Arc::clone(&fails), Arc::clone(&runs));
        Actor::tool("b", move |x: u32, _ctx: Ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            let fail = fails.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(std::io::Error::other("b is broken now"))
                } else {
                    Ok(x + 100)
                }
            }
        })
        .retry(rh_agents::RetryPolicy::disabled())
    };
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&a.actor, 1).await.unwrap();
    assert_eq!(state.call(&b, 1).await.unwrap(), 101);
    drop(state);

    // Run again from b: it fails now.
    fails.store(true, Ordering::SeqCst);
    let again = resume(&store, &id, ReplayMode::FromAddress("b#0".into())).await;
    again.call(&a.actor, 1).await.unwrap();
    assert!(again.call(&b, 1).await.is_err());
    drop(again);
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A normal resume must not bring back the result the failed re-run replaced.
    fails.store(false, Ordering::SeqCst);
    let last = resume(&store, &id, ReplayMode::Normal).await;
    last.call(&a.actor, 1).await.unwrap();
    assert_eq!(last.call(&b, 1).await.unwrap(), 101);
    assert_eq!(runs.load(Ordering::SeqCst), 3, "b ran again");
    assert_eq!(a.calls(), 1, "a was replayed every time");
    drop(last);

    // A resume from an address that is interrupted before reaching it sets results aside
    // too: the marker of that resume says so to later resumes.
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&a.actor, 1).await.unwrap();
    state.call(&b, 1).await.unwrap();
    drop(state);
    let partial = resume(&store, &id, ReplayMode::FromAddress("a#0".into())).await;
    drop(partial);
    let runs_before = runs.load(Ordering::SeqCst);
    let calls_before = a.calls();
    let last = resume(&store, &id, ReplayMode::Normal).await;
    last.call(&a.actor, 1).await.unwrap();
    last.call(&b, 1).await.unwrap();
    assert_eq!(a.calls(), calls_before + 1);
    assert_eq!(runs.load(Ordering::SeqCst), runs_before + 1);
}

#[tokio::test]
async fn a_validation_rerun_that_fails_is_a_mismatch_and_is_not_replayed_later() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let fails = Arc::new(AtomicBool::new(false));
    let step = {
        let fails = Arc::clone(&fails);
        Actor::tool("step", move |x: u32, _ctx: Ctx| {
            let fail = fails.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err(std::io::Error::other("gone"))
                } else {
                    Ok(x)
                }
            }
        })
        .retry(rh_agents::RetryPolicy::disabled())
    };
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&step, 7).await.unwrap();
    drop(state);

    fails.store(true, Ordering::SeqCst);
    let check = resume(&store, &id, ReplayMode::Validation).await;
    assert!(check.call(&step, 7).await.is_err());
    let mismatches = check.mismatches();
    assert_eq!(mismatches.len(), 1);
    assert_eq!(mismatches[0].expected, Value::from(7));
    assert!(mismatches[0].actual["error"]
        .as_str()
        .unwrap()
        .contains("gone"));
    drop(check);

    let next = resume(&store, &id, ReplayMode::Normal).await;
    assert!(
        next.call(&step, 7).await.is_err(),
        "the failed re-run withdrew the old result: the call runs"
    );
}

#[tokio::test]
async fn a_replay_that_fails_is_recorded_where_it_failed() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
    let number = counted("step", |x| x + 1);
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    state.call(&number.actor, 1).await.unwrap();
    drop(state);

    let text = Actor::tool("step", |x: u32, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(format!("{x}"))
    });
    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    assert!(resumed.call(&text, 1).await.is_err());
    let last = resumed.history().latest("step#0").unwrap();
    assert_eq!(last.status, EventStatus::Failed);
    assert!(last.is_final);
    assert!(
        last.message
            .as_deref()
            .unwrap()
            .contains("cannot be replayed"),
        "{:?}",
        last.message
    );
    assert_eq!(
        store.load(&id).unwrap().events.last().map(|e| e.status),
        Some(EventStatus::Failed),
        "and saved"
    );
}

#[test]
fn probing_for_a_writer_neither_writes_nor_keeps_writers_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    let lock_dir = dir.path().join("state.db.locks");

    // A probe of a run nobody wrote makes no lock file.
    assert!(!store.is_writing("nobody").unwrap());
    assert!(!lock_dir.exists());

    // A reader probing in a loop (`rh-agents runs` under `watch`) never makes a writer fail.
    let prober = SqliteStore::open(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let probing = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut seen_writing = 0u32;
            while !stop.load(Ordering::SeqCst) {
                if prober.is_writing("busy").unwrap() {
                    seen_writing += 1;
                }
            }
            seen_writing
        })
    };
    for _ in 0..200 {
        let lock = store.lock_writer("busy").unwrap();
        std::thread::yield_now();
        drop(lock);
    }
    let held = store.lock_writer("busy").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::SeqCst);
    assert!(probing.join().unwrap() > 0, "the probe saw the writer");
    drop(held);
}

#[test]
fn appending_to_a_run_that_does_not_exist_is_not_found() {
    let store = SqliteStore::open_in_memory().unwrap();
    let state = ExecutionState::new();
    state.log(rh_agents::Severity::Info, "one");
    state.log(rh_agents::Severity::Info, "two");
    let events = state.history().events();
    for slice in [&events[..1], &events[1..]] {
        match store.append_events("ghost", slice) {
            Err(StoreError::NotFound { id }) => assert_eq!(id, "ghost"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

#[test]
fn opening_a_store_that_must_exist_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo").join("state.db");
    match SqliteStore::open_existing(&path) {
        Err(StoreError::Io { path: p, source }) => {
            assert_eq!(p, path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a not-found error, got {other:?}"),
    }
    assert!(!dir.path().join("typo").exists());
    SqliteStore::open(&path).unwrap();
    SqliteStore::open_existing(&path).unwrap();
}

#[test]
fn many_processes_opening_a_new_store_at_once_all_get_in() {
    // `rh-agents run` started in several terminals on a store that does not exist yet: each
    // process opens it (one of them creates it), and none may fail with "database is
    // locked". The test binary runs itself as those processes.
    const CHILD: &str = "RH_AGENTS_OPEN_CHILD";
    if let Ok(path) = std::env::var(CHILD) {
        // Every child waits for the go, so that they open the store at the same instant.
        let go = std::path::Path::new(&path).with_extension("go");
        while !go.exists() {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let store: Arc<dyn StateStore> =
            Arc::new(SqliteStore::open(&path).unwrap_or_else(|e| panic!("open: {e}")));
        let id = format!("run-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = runtime
            .block_on(ExecutionState::builder().id(id).start(store))
            .unwrap_or_else(|e| panic!("start: {e}"));
        state.log(rh_agents::Severity::Info, "hello");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "many_processes_opening_a_new_store_at_once_all_get_in",
                        "--test-threads=1",
                    ])
                    .env(CHILD, &path)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::write(path.with_extension("go"), "").unwrap();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list(&ListFilter::new()).unwrap().len(), 8);
    }
}
