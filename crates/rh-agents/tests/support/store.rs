//! Helpers for the durable-state tests: the stores a test body runs against, counting actors,
//! and readers of stored histories.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[cfg(feature = "sqlite")]
use rh_agents::store::SqliteStore;
use rh_agents::store::{MemoryStore, ReplayMode, RunStatus, StateStore};
use rh_agents::{Actor, Ctx, Event, ExecutionState};

/// A store under test, with whatever keeps it alive (the directory of an SQLite file).
pub struct TestStore {
    /// "memory" or "sqlite".
    pub name: &'static str,
    pub store: Arc<dyn StateStore>,
    /// The SQLite file, when there is one.
    pub path: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl TestStore {
    pub fn memory() -> Self {
        Self {
            name: "memory",
            store: Arc::new(MemoryStore::new()),
            path: None,
            _dir: None,
        }
    }

    #[cfg(feature = "sqlite")]
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs").join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        Self {
            name: "sqlite",
            store: Arc::new(store),
            path: Some(path),
            _dir: Some(dir),
        }
    }

    /// One store of each kind.
    pub fn all() -> Vec<Self> {
        vec![
            Self::memory(),
            #[cfg(feature = "sqlite")]
            Self::sqlite(),
        ]
    }

    /// The store, to hand to a state.
    pub fn store(&self) -> Arc<dyn StateStore> {
        Arc::clone(&self.store)
    }

    /// A store of the same kind with nothing in it.
    pub fn fresh(&self) -> Self {
        match self.name {
            #[cfg(feature = "sqlite")]
            "sqlite" => Self::sqlite(),
            _ => Self::memory(),
        }
    }

    /// A path for files of this test (JSON exports), in a directory removed with the store.
    pub fn file(&self, name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
        match &self._dir {
            Some(dir) => (dir.path().join(name), None),
            None => {
                let dir = tempfile::tempdir().unwrap();
                (dir.path().join(name), Some(dir))
            }
        }
    }
}

/// Defines, for each `async fn name(store: TestStore)` given, a module `name` with two tests,
/// `memory` and `sqlite`, that run the body against each backend (in virtual time).
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(start_paused = true)]
                async fn memory() {
                    super::$name($crate::support::store::TestStore::memory()).await;
                }

                #[cfg(feature = "sqlite")]
                #[tokio::test(start_paused = true)]
                async fn sqlite() {
                    super::$name($crate::support::store::TestStore::sqlite()).await;
                }
            }
        )*
    };
}

/// An actor and how many times its handler ran.
pub struct Counted<I, O> {
    pub actor: Actor<I, O>,
    pub calls: Arc<AtomicU32>,
}

impl<I, O> Counted<I, O> {
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A tool that returns `f(input)` and counts its runs.
pub fn counted(name: &str, f: fn(u32) -> u32) -> Counted<u32, u32> {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let actor = Actor::tool(name, move |x: u32, _ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(f(x)) }
    });
    Counted { actor, calls }
}

/// A tool whose result is the number of times it ran (1, 2, 3, …): a result that changes.
pub fn drifting(name: &str) -> Counted<u32, u32> {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let actor = Actor::tool(name, move |_x: u32, _ctx: Ctx| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, std::io::Error>(n) }
    });
    Counted { actor, calls }
}

/// A tool whose first run interrupts the run (as a person pressing stop while it works) and
/// whose later runs return `input + 100`.
pub fn interrupts_once(name: &str) -> Counted<u32, u32> {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let actor = Actor::tool(name, move |x: u32, ctx: Ctx| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                let signal =
                    rh_agents::InterruptSignal::new(rh_agents::InterruptReason::UserCancelled)
                        .message("stopped while working")
                        .save_checkpoint(true);
                return Err(ctx.interrupt(signal));
            }
            Ok::<_, rh_agents::Error>(x + 100)
        }
    });
    Counted { actor, calls }
}

/// Resumes `id` from `store` with default settings.
pub async fn resume(store: &Arc<dyn StateStore>, id: &str, mode: ReplayMode) -> ExecutionState {
    ExecutionState::builder()
        .resume(Arc::clone(store), id, mode)
        .await
        .unwrap()
}

/// The stored status of run `id`.
pub fn stored_status(store: &Arc<dyn StateStore>, id: &str) -> RunStatus {
    store.load(id).unwrap().status
}

/// The addresses of a history's actor records, in first-seen order without repeats.
pub fn addresses(events: &[Arc<Event>]) -> Vec<String> {
    let mut seen = Vec::new();
    for event in events {
        let address = event.address.as_str();
        if !address.is_empty() && !seen.iter().any(|s: &String| s == address) {
            seen.push(address.to_owned());
        }
    }
    seen
}
