//! The builder of an [`ExecutionState`].

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use serde_json::Value;

use super::persist::RunRecord;
use super::{ExecutionState, Settings, StateInner};
use crate::actor::ActorKind;
use crate::address::{Address, Node};
use crate::bus::Subscriber;
use crate::event::Event;
use crate::history::Journal;
use crate::interrupt::wait::Interrupts;
use crate::interrupt::watch::{Mailbox, Watcher};
use crate::interrupt::InterruptChecker;
use crate::recording::CommitMode;
use crate::retry::{RandomSource, RetryConfig, RetryPolicy, ThreadRandom};
use crate::storage::Storage;
use crate::store::durable::Durable;
use crate::store::replay::Replay;
use crate::store::{
    ReplayMode, RunInfo, RunMetadata, RunStatus, Snapshot, StateStore, StoreError, WriteLock,
};

/// How often the state's watcher polls the external checkers, by default.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How long one external checker may take to answer, by default.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a handler that ignores an interrupt may run on before it is aborted, by default.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(1);
/// How many characters of input/output a record keeps as detail, by default.
pub const DEFAULT_DETAIL_LIMIT: usize = 2_000;
/// How many events an async subscriber or stream may fall behind, by default.
pub const DEFAULT_BUS_CAPACITY: usize = 1_024;
/// How often a durable state reads its store's mailbox change counter, by default: an
/// interrupt request left in the store (by another process or connection) stops the run
/// within about this long.
pub const DEFAULT_MAILBOX_INTERVAL: Duration = Duration::from_millis(5);
/// How long starting or resuming a run waits for another writer of it to go away, by default
/// (a run interrupted a moment ago may still be saving its last records).
pub const DEFAULT_WRITER_WAIT: Duration = Duration::from_secs(1);

/// Configures an [`ExecutionState`].
#[must_use = "a builder does nothing until `.build()`"]
pub struct ExecutionStateBuilder {
    id: Option<String>,
    retry: RetryConfig,
    checkers: Vec<InterruptChecker>,
    subscribers: Vec<Arc<dyn Subscriber>>,
    check_interval: Duration,
    check_timeout: Duration,
    mailbox_interval: Duration,
    writer_wait: Duration,
    grace_period: Duration,
    detail_limit: usize,
    record_io: bool,
    bus_capacity: usize,
    random: Arc<dyn RandomSource>,
    metadata: RunMetadata,
    commit_mode: CommitMode,
    /// The run's mailbox, for a durable state (set by `start`/`resume`).
    mailbox: Option<Mailbox>,
}

impl std::fmt::Debug for ExecutionStateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionStateBuilder")
            .field("id", &self.id)
            .field("retry", &self.retry)
            .field("checkers", &self.checkers.len())
            .field("subscribers", &self.subscribers.len())
            .field("check_interval", &self.check_interval)
            .field("mailbox_interval", &self.mailbox_interval)
            .field("writer_wait", &self.writer_wait)
            .field("grace_period", &self.grace_period)
            .finish_non_exhaustive()
    }
}

impl Default for ExecutionStateBuilder {
    fn default() -> Self {
        Self {
            id: None,
            retry: RetryConfig::default(),
            checkers: Vec::new(),
            subscribers: Vec::new(),
            check_interval: DEFAULT_CHECK_INTERVAL,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            mailbox_interval: DEFAULT_MAILBOX_INTERVAL,
            writer_wait: DEFAULT_WRITER_WAIT,
            grace_period: DEFAULT_GRACE_PERIOD,
            detail_limit: DEFAULT_DETAIL_LIMIT,
            record_io: true,
            bus_capacity: DEFAULT_BUS_CAPACITY,
            random: Arc::new(ThreadRandom),
            metadata: RunMetadata::default(),
            commit_mode: CommitMode::default(),
            mailbox: None,
        }
    }
}

impl ExecutionStateBuilder {
    /// Uses this id instead of a fresh UUID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The global default policy (level 4).
    pub fn default_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry.default = Some(policy);
        self
    }

    /// The policy for one actor kind (level 3). `System`, `Group` and `Task` name records the
    /// runtime makes itself, which are never retried: a policy for them is ignored.
    pub fn kind_retry(mut self, kind: ActorKind, policy: RetryPolicy) -> Self {
        self.retry.set_kind(kind, policy);
        self
    }

    /// Adds an external interrupt checker.
    pub fn checker(mut self, checker: InterruptChecker) -> Self {
        self.checkers.push(checker);
        self
    }

    /// How often the state's watcher polls the external checkers (default 100 ms), and the
    /// interrupt requests of a store that keeps no change counter. Waits never poll: the
    /// watcher raises the interrupt, which ends every wait at once.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// How long one external checker may take to answer (default 1 s). A checker that takes
    /// longer is reported as failed for that check and does not hold the run up.
    pub fn check_timeout(mut self, limit: Duration) -> Self {
        self.check_timeout = limit;
        self
    }

    /// How often a durable state reads its store's mailbox change counter (default 5 ms; at
    /// least 1 ms): the bound on how long an interrupt request left in the store by another
    /// process or connection takes to reach the run. Reading the counter is cheap (SQLite:
    /// `PRAGMA data_version`); the request itself is read only when the counter moved. A
    /// store without a counter has its requests read every [`check_interval`](Self::check_interval).
    pub fn mailbox_interval(mut self, interval: Duration) -> Self {
        self.mailbox_interval = interval;
        self
    }

    /// How long [`start`](Self::start) and [`resume`](Self::resume) wait for another writer of
    /// the run to let go before they fail with [`StoreError::Locked`] (default 1 s; zero fails
    /// at once). The wait is asynchronous: it holds up no thread.
    pub fn writer_wait(mut self, wait: Duration) -> Self {
        self.writer_wait = wait;
        self
    }

    /// How long a running handler may go on after an interrupt before it is aborted
    /// (default 1 s; zero aborts at once).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How many characters of input/output records keep as detail (default 2,000).
    pub fn detail_limit(mut self, chars: usize) -> Self {
        self.detail_limit = chars;
        self
    }

    /// Whether records carry the input/output detail (default on). Results are recorded
    /// either way.
    pub fn record_io(mut self, on: bool) -> Self {
        self.record_io = on;
        self
    }

    /// How far an async subscriber or stream may fall behind before it skips events
    /// (default 1,024).
    pub fn bus_capacity(mut self, events: usize) -> Self {
        self.bus_capacity = events;
        self
    }

    /// The random source for jitter (for reproducible delays in tests, a
    /// [`SeededRandom`](crate::SeededRandom) or [`FixedRandom`](crate::FixedRandom)).
    pub fn random(mut self, random: impl RandomSource + 'static) -> Self {
        self.random = Arc::new(random);
        self
    }

    /// Adds a sync subscriber.
    pub fn subscriber(mut self, subscriber: impl Subscriber) -> Self {
        self.subscribers.push(Arc::new(subscriber));
        self
    }

    /// What the run is: pipeline, tags, description, lineage, custom JSON (kept in
    /// snapshots and stores).
    pub fn metadata(mut self, metadata: RunMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// When a durable state ([`start`](Self::start), [`resume`](Self::resume)) commits its
    /// records to the store: [`CommitMode::Sync`] (the default) or
    /// [`CommitMode::Batched`], with the loss window that mode documents.
    pub fn commit_mode(mut self, mode: CommitMode) -> Self {
        self.commit_mode = mode;
        self
    }

    /// Builds the state (in memory; see [`start`](Self::start) for a durable one).
    pub fn build(self) -> ExecutionState {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let metadata = self.metadata.clone();
        let run = RunRecord::new(
            crate::serde_time::now(),
            metadata,
            RunStatus::Running,
            BTreeMap::new(),
        );
        let state = self.assemble(id, run, Restored::default(), None);
        state.start_watcher();
        state
    }

    /// Builds a durable state: a new run in `store`, which then receives every record as it
    /// is made (see [`store`](crate::store)). Interrupt requests left in the store for the
    /// run (by `StateStore::request_interrupt`, from any process) stop it by themselves: the
    /// state watches its mailbox (see [`mailbox_interval`](Self::mailbox_interval)).
    ///
    /// The store's work runs on Tokio's blocking pool, so no async thread waits on a file
    /// lock or a busy database.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyExists`] when a run with the chosen id exists;
    /// [`StoreError::Locked`] when another writer still holds that id after
    /// [`writer_wait`](Self::writer_wait); the store's failures.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes may leave the new run in the store (without
    /// records), as a run that stopped at once.
    pub async fn start(self, store: Arc<dyn StateStore>) -> Result<ExecutionState, StoreError> {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let lock = acquire_writer(&store, &id, self.writer_wait).await?;
        let created_at = crate::serde_time::now();
        let info = RunInfo {
            id: id.clone(),
            status: RunStatus::Running,
            created_at,
            updated_at: created_at,
            metadata: self.metadata.clone(),
            events: 0,
        };
        on_store(&store, "creating the run", move |store| store.create(&info)).await?;
        let run = RunRecord::new(
            created_at,
            self.metadata.clone(),
            RunStatus::Running,
            BTreeMap::new(),
        );
        let mailbox = Mailbox::new(&store, &id);
        let durable = Arc::new(Durable::new(store, id.clone(), lock));
        let state =
            self.with_mailbox(mailbox)
                .assemble(id, run, Restored::default(), Some(durable));
        state.start_watcher();
        Ok(state)
    }

    /// Resumes run `id` from `store`: its history, storage and artifacts are restored, it
    /// goes on writing to the store, and calls replay as `mode` says. A pending interrupt
    /// request is cleared and the status set back to running; requests left after that stop
    /// the run by themselves, as for [`start`](Self::start). The builder's id and metadata
    /// are not used (the run keeps its own).
    ///
    /// A previous writer of the run (a process interrupted a moment ago, still saving) is
    /// waited for, asynchronously, up to [`writer_wait`](Self::writer_wait).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`]; [`StoreError::Locked`] when another writer still holds the
    /// run after the wait (it is still running somewhere); [`StoreError::Corrupt`] when it
    /// cannot be read; for [`ReplayMode::FromAddress`], `NotFound` when the address is not in
    /// its history.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves the run as it was, except that a
    /// pending interrupt request may have been cleared.
    pub async fn resume(
        self,
        store: Arc<dyn StateStore>,
        id: &str,
        mode: ReplayMode,
    ) -> Result<ExecutionState, StoreError> {
        // The lock first: nothing may be appended between reading the run and writing to it.
        let lock = acquire_writer(&store, id, self.writer_wait).await?;
        let owned = id.to_owned();
        let snapshot = on_store(&store, "reading the run", move |store| store.load(&owned)).await?;
        // Checked before anything is written: a resume that is refused leaves the run as it was.
        let (run, restored, replay) = restore_parts(snapshot, mode)?;
        let owned = id.to_owned();
        on_store(&store, "reopening the run", move |store| {
            store.clear_interrupt(&owned)?;
            store.set_status(&owned, RunStatus::Running)
        })
        .await?;
        let mailbox = Mailbox::new(&store, id);
        let durable = Arc::new(Durable::new(store, id.to_owned(), lock));
        let state = self
            .with_mailbox(mailbox)
            .assemble(
                id.to_owned(),
                run,
                restored.with_replay(replay),
                Some(durable),
            )
            .marked_resumed();
        state.start_watcher();
        Ok(state)
    }

    /// Builds an in-memory state from a snapshot (no store): its history and storage are
    /// restored and calls replay as `mode` says. Artifact bytes are not in a snapshot, so an
    /// artifact output cannot be replayed this way (resume from a store for that).
    ///
    /// # Errors
    ///
    /// [`StoreError::IncompatibleVersion`], [`StoreError::Corrupt`] for a snapshot that
    /// cannot be resumed; for [`ReplayMode::FromAddress`], `NotFound` when the address is not
    /// in its history.
    pub fn restore(
        self,
        snapshot: Snapshot,
        mode: ReplayMode,
    ) -> Result<ExecutionState, StoreError> {
        snapshot.schema_version.check()?;
        snapshot.check_ids()?;
        let id = snapshot.state_id.clone();
        let (run, restored, replay) = restore_parts(snapshot, mode)?;
        Ok(self
            .assemble(id, run, restored.with_replay(replay), None)
            .marked_resumed())
    }

    fn with_mailbox(mut self, mailbox: Mailbox) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    fn assemble(
        self,
        id: String,
        run: RunRecord,
        restored: Restored,
        durable: Option<Arc<Durable>>,
    ) -> ExecutionState {
        let state = ExecutionState {
            inner: Arc::new(StateInner {
                id,
                journal: Journal::new(
                    restored.events,
                    durable.clone(),
                    self.commit_mode,
                    self.bus_capacity,
                    self.subscribers,
                ),
                storage: Storage::restore(restored.storage, durable.clone()),
                retry: self.retry,
                interrupts: Interrupts::new(
                    self.checkers,
                    self.check_interval,
                    self.check_timeout,
                    Watcher::new(self.mailbox, self.mailbox_interval),
                ),
                settings: Settings {
                    grace_period: self.grace_period,
                    detail_limit: self.detail_limit,
                    record_io: self.record_io,
                },
                random: self.random,
                root: Node::new(Address::root()),
                orphans: crate::parallel::Orphans::default(),
                run,
                durable,
                replay: restored.replay,
            }),
        };
        state.stop_on_store_failure();
        state
    }
}

impl ExecutionState {
    /// Records that the run was resumed, and how: later resumes read it to know which
    /// results a resume from an address set aside.
    fn marked_resumed(self) -> Self {
        if let Some(replay) = &self.inner.replay {
            self.record(replay.marker());
        }
        self
    }
}

/// What a restored state starts with.
#[derive(Default)]
struct Restored {
    events: Vec<Arc<Event>>,
    storage: BTreeMap<String, Value>,
    replay: Option<Replay>,
}

impl Restored {
    fn with_replay(mut self, replay: Replay) -> Self {
        self.replay = Some(replay);
        self
    }
}

fn restore_parts(
    snapshot: Snapshot,
    mode: ReplayMode,
) -> Result<(RunRecord, Restored, Replay), StoreError> {
    let Snapshot {
        state_id,
        created_at,
        metadata,
        events,
        storage,
        artifacts,
        ..
    } = snapshot;
    let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
    let replay = Replay::new(&state_id, &events, mode)?;
    let run = RunRecord::new(created_at, metadata, RunStatus::Running, artifacts);
    Ok((
        run,
        Restored {
            events,
            storage,
            replay: None,
        },
        replay,
    ))
}

/// Becomes the run's one writer, waiting (without holding a thread) for another writer to let
/// go, up to `wait`.
async fn acquire_writer(
    store: &Arc<dyn StateStore>,
    id: &str,
    wait: Duration,
) -> Result<WriteLock, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    // Short at first (a writer that was just interrupted lets go within milliseconds), then
    // less often.
    let mut pause = Duration::from_millis(5);
    loop {
        let owned = id.to_owned();
        match on_store(store, "taking the run's writer lock", move |store| {
            store.lock_writer(&owned)
        })
        .await
        {
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                let now = tokio::time::Instant::now();
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            outcome => return outcome,
        }
    }
}

/// Runs blocking store work on Tokio's blocking pool.
async fn on_store<T: Send + 'static>(
    store: &Arc<dyn StateStore>,
    context: &'static str,
    work: impl FnOnce(&dyn StateStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || work(&*store))
        .await
        .map_err(|e| StoreError::Backend {
            context: context.into(),
            source: Box::new(e),
        })?
}
