//! Durable state: snapshots of runs, the [`StateStore`] trait and its backends, artifacts,
//! and resume/replay.
//!
//! A run started with [`ExecutionStateBuilder::start`](crate::ExecutionStateBuilder::start)
//! writes every record to its store (an append-only log: no rewrite per checkpoint), together
//! with storage changes, artifacts and its status. Records are committed in groups by the
//! state's writer, as its [`CommitMode`](crate::CommitMode) says: in `Sync` (the default) a
//! step's records are committed before its handler runs and before its result is reported,
//! so a crash or a kill loses no step anyone saw complete; `Batched` has a documented loss
//! window. Nothing committed is ever lost. [`ExecutionStateBuilder::resume`](crate::ExecutionStateBuilder::resume)
//! continues it: calls whose address already completed return their recorded result without
//! running (see [`ReplayMode`]).
//!
//! Backends: [`SqliteStore`] (the embedded default, feature `sqlite`), [`MemoryStore`] (tests
//! and short programs), and JSON files for one run ([`json`]). A server backend implements
//! the same trait.
//!
//! ```
//! use std::sync::Arc;
//! use rh_agents::store::{MemoryStore, ReplayMode, RunStatus, StateStore};
//! use rh_agents::{Actor, ExecutionState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
//! let double = Actor::tool("double", |x: u32, _ctx| async move { Ok::<_, std::io::Error>(x * 2) });
//!
//! let state = ExecutionState::builder().start(Arc::clone(&store)).await?;
//! let id = state.id().to_owned();
//! state.call(&double, 21).await?;
//! drop(state); // e.g. the process stopped here
//!
//! let resumed = ExecutionState::builder().resume(Arc::clone(&store), &id, ReplayMode::Normal).await?;
//! assert_eq!(resumed.call(&double, 21).await?, 42); // replayed, not run
//! assert_eq!(resumed.finish_ok()?, RunStatus::Completed);
//! assert_eq!(store.load(&id)?.status, RunStatus::Completed);
//! # Ok(())
//! # }
//! ```

mod artifact;
pub(crate) mod durable;
mod error;
pub mod json;
mod memory;
pub(crate) mod replay;
mod snapshot;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use artifact::ArtifactRef;
pub use error::StoreError;
pub use memory::MemoryStore;
pub use replay::{Mismatch, MismatchKind, ReplayMode};
pub use snapshot::{
    RunMetadata, RunStatus, SchemaVersion, Snapshot, SnapshotDiff, StorageChange,
    SNAPSHOT_SCHEMA_MAJOR, SNAPSHOT_SCHEMA_MINOR,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteStore};

use crate::event::Event;
use crate::interrupt::{InterruptChecker, InterruptSignal};
use crate::serde_time;

/// One run as listed: its header, without the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunInfo {
    /// The run's id.
    pub id: String,
    /// Where it stands.
    pub status: RunStatus,
    /// When it began.
    #[serde(with = "serde_time::timestamp")]
    pub created_at: SystemTime,
    /// When it last changed: its latest record, or its status was saved, whichever is later.
    #[serde(with = "serde_time::timestamp")]
    pub updated_at: SystemTime,
    /// What it is.
    pub metadata: RunMetadata,
    /// How many records its history holds.
    pub events: u64,
}

/// Which runs [`StateStore::list`] returns. Every condition given must hold.
///
/// # Examples
///
/// ```
/// use rh_agents::store::{ListFilter, RunStatus};
///
/// let filter = ListFilter::new().tag("nightly").status(RunStatus::Failed).limit(10);
/// assert_eq!(filter.limit, Some(10));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Runs carrying all of these tags.
    pub tags: Vec<String>,
    /// Runs with this status.
    pub status: Option<RunStatus>,
    /// Runs of this pipeline.
    pub pipeline: Option<String>,
    /// At most this many runs (newest first).
    pub limit: Option<usize>,
}

impl ListFilter {
    /// Every run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires a tag (all tags given must be present).
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Requires a status.
    #[must_use]
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Requires a pipeline name.
    #[must_use]
    pub fn pipeline(mut self, name: impl Into<String>) -> Self {
        self.pipeline = Some(name.into());
        self
    }

    /// Keeps at most `n` runs.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether a run passes the filter (the limit aside).
    pub fn matches(&self, run: &RunInfo) -> bool {
        self.status.is_none_or(|s| s == run.status)
            && self
                .pipeline
                .as_deref()
                .is_none_or(|p| run.metadata.pipeline.as_deref() == Some(p))
            && self.tags.iter().all(|t| run.metadata.tags.contains(t))
    }
}

/// Held by the one writer of a run; dropping it lets another writer in. Obtained from
/// [`StateStore::lock_writer`].
pub struct WriteLock {
    _held: Box<dyn Send + Sync>,
}

impl WriteLock {
    /// Wraps whatever keeps the lock held (a locked file, a registry entry) until dropped.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for WriteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteLock")
    }
}

/// Where runs are kept. Backends implement this; the runtime uses nothing else, so a server
/// store can be added without touching it.
///
/// Methods are synchronous: the embedded stores answer in microseconds, and records are
/// written from inside the recording path, where the order of the history must be kept. A
/// backend that talks to a server can keep a connection pool and block on it.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Begins a new run: writes its header (status [`RunStatus::Running`], no records).
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyExists`] when the id is taken; backend failures.
    fn create(&self, info: &RunInfo) -> Result<(), StoreError>;

    /// Writes a whole snapshot, replacing any run with its id. Artifact bytes must have been
    /// stored with [`put_blob`](Self::put_blob).
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when a writer holds the run; backend failures.
    fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Reads a run whole.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; [`StoreError::Corrupt`] naming the run and the record when
    /// anything stored cannot be read (never a silently partial result).
    fn load(&self, id: &str) -> Result<Snapshot, StoreError>;

    /// Runs matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// Backend failures; [`StoreError::Corrupt`] for an unreadable header.
    fn list(&self, filter: &ListFilter) -> Result<Vec<RunInfo>, StoreError>;

    /// [`list`](Self::list), row by row: a run whose header cannot be read is an `Err` naming
    /// the run and what is wrong with it, in its place, and the runs around it are still
    /// listed (for a listing that must show what it can). Unreadable runs do not count
    /// towards the filter's limit. The default lists through [`list`](Self::list).
    ///
    /// # Errors
    ///
    /// Backend failures that stop the listing as a whole.
    fn list_rows(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<Result<RunInfo, StoreError>>, StoreError> {
        Ok(self.list(filter)?.into_iter().map(Ok).collect())
    }

    /// Deletes a run (its records, storage, artifact references and pending interrupt);
    /// `false` when there was none. Artifact bytes stay: other runs may share them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] when a writer holds the run; backend failures.
    fn delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Whether a run exists.
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn exists(&self, id: &str) -> Result<bool, StoreError>;

    /// Appends records to a run's history. Their ids must continue the stored numbering.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; [`StoreError::Conflict`] when an id is already taken;
    /// backend failures.
    fn append_events(&self, id: &str, events: &[Arc<Event>]) -> Result<(), StoreError>;

    /// Saves a run's status (and its `updated_at`).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; backend failures.
    fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError>;

    /// Sets (`Some`) or removes (`None`) one storage key of a run.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; backend failures.
    fn put_storage(&self, id: &str, key: &str, value: Option<&Value>) -> Result<(), StoreError>;

    /// Stores bytes under their SHA-256 (once: storing the same bytes again does nothing).
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn put_blob(&self, artifact: &ArtifactRef, bytes: &[u8]) -> Result<(), StoreError>;

    /// Reads stored bytes, checked against their hash.
    ///
    /// # Errors
    ///
    /// [`StoreError::ArtifactMissing`], [`StoreError::ArtifactCorrupt`]; backend failures.
    fn get_blob(&self, artifact: &ArtifactRef) -> Result<Vec<u8>, StoreError>;

    /// Names an artifact of a run.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; backend failures.
    fn put_artifact(&self, id: &str, name: &str, artifact: &ArtifactRef) -> Result<(), StoreError>;

    /// Becomes the one writer of a run, until the returned lock is dropped. The lock outlives
    /// no process: a killed writer's lock is free again.
    ///
    /// # Errors
    ///
    /// [`StoreError::Locked`] naming the holder when another writer has it.
    fn lock_writer(&self, id: &str) -> Result<WriteLock, StoreError>;

    /// Whether some writer holds the run now (a `running` run that nobody writes was
    /// killed or crashed).
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn is_writing(&self, id: &str) -> Result<bool, StoreError>;

    /// Leaves an interrupt request for a run, in its mailbox: its writer (in this or another
    /// process) notices it by itself and stops the run (see
    /// [`mailbox_version`](Self::mailbox_version)).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; backend failures.
    fn request_interrupt(&self, id: &str, signal: &InterruptSignal) -> Result<(), StoreError>;

    /// The interrupt request left for a run, if any.
    ///
    /// # Errors
    ///
    /// Backend failures; [`StoreError::Corrupt`] for an unreadable request.
    fn pending_interrupt(&self, id: &str) -> Result<Option<InterruptSignal>, StoreError>;

    /// Removes a run's interrupt request (done when the run is resumed).
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn clear_interrupt(&self, id: &str) -> Result<(), StoreError>;

    /// A cheap change counter for the mailboxes of this store: a number that changes whenever
    /// a request may have been left for any run (through this handle or any other connection
    /// or process). It may also change for other reasons; it must not stay the same across a
    /// new request. `None` (the default) when the backend keeps no such counter.
    ///
    /// A durable state's watcher reads it every few milliseconds and reads
    /// [`pending_interrupt`](Self::pending_interrupt) only when it moved; without a counter,
    /// it reads `pending_interrupt` at the state's check interval. It must answer in
    /// microseconds when nothing holds the store (it is called from the blocking pool).
    ///
    /// # Errors
    ///
    /// Backend failures.
    fn mailbox_version(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
}

/// An interrupt checker that polls `store` for requests left for run `id` (with
/// [`StateStore::request_interrupt`], e.g. from another process), at the state's check
/// interval.
///
/// A state started or resumed on a store watches that store's mailbox by itself; this
/// checker is for a state that should obey requests left in *another* store, or for one
/// built without a store.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rh_agents::store::{interrupt_checker, MemoryStore, StateStore};
/// use rh_agents::{ExecutionState, InterruptReason, InterruptSignal};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
/// // Where requests for the run are left (a run of its id must exist there).
/// let control: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
/// control.save(&ExecutionState::builder().id("nightly").build().snapshot())?;
///
/// let state = ExecutionState::builder().id("nightly").build(); // kept in memory
/// state.add_checker(interrupt_checker(Arc::clone(&control), "nightly"));
///
/// control.request_interrupt("nightly", &InterruptSignal::new(InterruptReason::UserCancelled))?;
/// assert!(state.check_interrupt().await.unwrap_err().is_interrupted());
/// # Ok(())
/// # }
/// ```
pub fn interrupt_checker(store: Arc<dyn StateStore>, id: &str) -> InterruptChecker {
    let id: Arc<str> = Arc::from(id);
    InterruptChecker::from_async(move || {
        let store = Arc::clone(&store);
        let id = Arc::clone(&id);
        async move {
            // Off the async threads: a store query may wait on a lock (up to its busy
            // timeout), and the state's check timeout must be able to give up on it.
            tokio::task::spawn_blocking(move || store.pending_interrupt(&id))
                .await
                .map_err(|e| StoreError::Backend {
                    context: "checking for interrupt requests".into(),
                    source: Box::new(e),
                })?
        }
    })
}
