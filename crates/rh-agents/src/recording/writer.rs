//! The store writer of a durable state: records are committed in groups, off the callers'
//! threads, in history order.
//!
//! # How it works
//!
//! The log is the writer's queue: `written` counts the records in the store, and a flush
//! appends `written..len` in one [`StateStore::append_events`] call (SQLite: one
//! `BEGIN IMMEDIATE` transaction, many rows, one commit). Flushes run on Tokio's blocking
//! pool (inline when there is no runtime), one at a time under the writer's mutex; whoever
//! takes the mutex next writes everything that queued up meanwhile — a group commit.
//!
//! A failed write leaves `written` where it was: the records stay queued and are written
//! again, first and in order, by the next flush. The failure is noted and stops the run.
//!
//! The run's status is written by the writer too, after the records before it: an interrupt
//! only queues it, so requesting one never waits for the store.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use super::delivery::{Delivery, BLOCKED_AFTER_INTERRUPT};
use super::log::{mark_consumer_thread, now_mark, on_consumer_thread, Log};
use crate::event::Event;
use crate::store::durable::Durable;
use crate::store::{RunStatus, StoreError};

/// The most records one transaction takes (a long backlog is written in several).
const MAX_BATCH: usize = 4_096;
/// In [`CommitMode::Sync`], records nobody waits for (a STARTED, a log line) are committed
/// at the latest this long after they were made, or with the next commit someone waits for.
const SYNC_STRAGGLERS: Duration = Duration::from_millis(20);

/// When a durable state commits its records to the store (a builder option:
/// [`ExecutionStateBuilder::commit_mode`](crate::ExecutionStateBuilder::commit_mode)).
///
/// Both modes keep "nothing committed is lost" and write records in history order; they
/// differ in what a crash (a kill, a power loss under
/// [`Durability::Full`](crate::store::Durability::Full)) can lose. Either way, the
/// subscribers and streams of a durable state are given a record once it is committed, so a
/// record number they saw is never reused after a crash and a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CommitMode {
    /// A call does not return its result, and a retry does not start, until the records
    /// that say so (its final record; the RETRYING record) are committed. A resume therefore
    /// knows about every result a caller has seen: no step whose completion was reported
    /// runs again. Records nobody waits for (STARTED, logs) ride along with the next commit
    /// (or are committed within 20 ms); losing them only means a dangling call is re-run.
    /// The default, and the CLI's.
    #[default]
    Sync,
    /// Records are committed in groups: when `max_records` are waiting, or `max_delay` after
    /// the first of them, whichever comes first. Calls never wait for the store. The loss
    /// window: a crash loses the records of at most the last `max_delay` (or `max_records`
    /// records); a resume then runs those steps again, even if their callers saw them
    /// complete. Nothing that was committed is lost, and the stored history never has a gap.
    Batched {
        /// Commit once this many records are waiting (at least 1).
        max_records: usize,
        /// Commit at the latest this long after a record was made.
        max_delay: Duration,
    },
}

impl CommitMode {
    /// Batched commits of up to 256 records or every 50 ms.
    pub const fn batched() -> Self {
        Self::Batched {
            max_records: 256,
            max_delay: Duration::from_millis(50),
        }
    }

    fn delay(self) -> Duration {
        match self {
            Self::Sync => SYNC_STRAGGLERS,
            Self::Batched { max_delay, .. } => max_delay,
        }
    }
}

#[derive(Debug)]
struct Progress {
    /// How many records are in the store.
    written: u64,
    /// Set once the state is gone: nothing more may be written (another writer may own
    /// the run by then).
    closed: bool,
}

/// The writer of a durable state.
pub(crate) struct Writer {
    pub(crate) durable: Arc<Durable>,
    mode: CommitMode,
    /// Told about every commit, so that waiters wake.
    delivery: Arc<Delivery>,
    /// Held while writing: one flush at a time.
    progress: Mutex<Progress>,
    /// `written`, readable without the mutex.
    committed: AtomicU64,
    /// The status to write after the records (an interrupt's), kept apart from `progress`
    /// so that queueing it never waits for a write in progress.
    status: Mutex<Option<RunStatus>>,
    /// When the store call under way began (`now_mark`), or zero.
    busy_since: AtomicU64,
    /// The last write failed (cleared by one that succeeds).
    failing: AtomicBool,
    /// A flush is queued and has not started yet.
    scheduled: AtomicBool,
    /// A delayed flush is armed.
    timer: AtomicBool,
    /// Stops the run after a failed write (set by the state once it exists).
    on_failure: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("mode", &self.mode)
            .field("committed", &self.committed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// A writer whose store holds the first `written` records already.
    pub(crate) fn new(
        durable: Arc<Durable>,
        mode: CommitMode,
        written: u64,
        delivery: Arc<Delivery>,
    ) -> Self {
        Self {
            durable,
            mode,
            delivery,
            progress: Mutex::new(Progress {
                written,
                closed: false,
            }),
            committed: AtomicU64::new(written),
            status: Mutex::new(None),
            busy_since: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            scheduled: AtomicBool::new(false),
            timer: AtomicBool::new(false),
            on_failure: OnceLock::new(),
        }
    }

    pub(crate) fn set_on_failure(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_failure.set(f);
    }

    pub(crate) fn mode(&self) -> CommitMode {
        self.mode
    }

    /// How many records are committed.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Whether a waiter for the first `target` records (and a queued status) may stop
    /// waiting: they are committed, or the writer is failing (the run is being stopped), or —
    /// once the run is `interrupted` — the store has been stuck on one call for a while.
    pub(crate) fn settled(&self, target: u64, interrupted: bool) -> bool {
        if self.failing.load(Ordering::Acquire) {
            return true;
        }
        if self.committed() >= target && self.status.lock().is_none() {
            return true;
        }
        if !interrupted {
            return false;
        }
        let busy = self.busy_since.load(Ordering::Acquire);
        busy != 0 && now_mark().saturating_sub(busy) > BLOCKED_AFTER_INTERRUPT.as_micros() as u64
    }

    /// Called after every append (record `seq`): arranges for it to be committed as the mode
    /// says. Cheap: atomics, and now and then a queued flush or timer. (In sync mode the
    /// call that made the record commits it when it waits; the timer catches the records
    /// nobody waits for.)
    pub(crate) fn appended(self: &Arc<Self>, log: &Arc<Log>, seq: u64) {
        if let CommitMode::Batched { max_records, .. } = self.mode {
            let waiting = (seq + 1).saturating_sub(self.committed());
            if waiting >= max_records.max(1) as u64 {
                self.schedule(log);
                return;
            }
        }
        if !self.timer.swap(true, Ordering::AcqRel) {
            self.arm_timer(log);
        }
    }

    fn arm_timer(self: &Arc<Self>, log: &Arc<Log>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            // No runtime to time it: committed by the next flush (at the latest when the
            // state is dropped).
            self.timer.store(false, Ordering::Release);
            return;
        };
        let (writer, log) = (Arc::clone(self), Arc::clone(log));
        let delay = self.mode.delay();
        handle.spawn(async move {
            tokio::time::sleep(delay).await;
            writer.timer.store(false, Ordering::Release);
            writer.schedule(&log);
        });
    }

    /// Queues a flush on the blocking pool (or runs it here without a runtime, or on a
    /// consumer thread, which may block).
    pub(crate) fn schedule(self: &Arc<Self>, log: &Arc<Log>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let (writer, log) = (Arc::clone(self), Arc::clone(log));
        let job = move || {
            let _mark = mark_consumer_thread();
            // Cleared first: anything appended from here on queues another flush.
            writer.scheduled.store(false, Ordering::Release);
            let _ = writer.flush(&log, u64::MAX);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if !on_consumer_thread() => {
                handle.spawn_blocking(job);
            }
            _ => job(),
        }
    }

    /// Queues the run's status, to be written after the records made before it.
    pub(crate) fn queue_status(self: &Arc<Self>, log: &Arc<Log>, status: RunStatus) {
        *self.status.lock() = Some(status);
        self.schedule(log);
    }

    /// Commits every record up to `target` (and whatever else is queued). Blocks: call it
    /// on the blocking pool or a thread of its own.
    ///
    /// # Errors
    ///
    /// The store's failure (the state is told, and stops the run).
    pub(crate) fn flush(&self, log: &Log, target: u64) -> Result<(), StoreError> {
        if self.committed() >= target.min(log.len()) && self.status.lock().is_none() {
            return Ok(());
        }
        let result = {
            let mut progress = self.progress.lock();
            self.flush_locked(&mut progress, log, None)
        };
        self.failing.store(result.is_err(), Ordering::Release);
        self.delivery.notify();
        if result.is_err() {
            // With no lock of ours held: stopping the run records an interrupt.
            if let Some(stop) = self.on_failure.get() {
                stop();
            }
        }
        result
    }

    /// Commits everything, then writes `status`: what `set_status` does, on the caller's
    /// thread.
    ///
    /// # Errors
    ///
    /// The store's failure, while anything remains unsaved.
    pub(crate) fn flush_with_status(&self, log: &Log, status: RunStatus) -> Result<(), StoreError> {
        let result = {
            let mut progress = self.progress.lock();
            self.flush_locked(&mut progress, log, Some(status))
        };
        self.delivery.notify();
        result
    }

    /// The final flush when the state goes away; nothing is written after it.
    pub(crate) fn close(&self, log: &Log) {
        let mut progress = self.progress.lock();
        if let Err(e) = self.flush_locked(&mut progress, log, None) {
            tracing::error!(
                run = %self.durable.id,
                error = %e,
                "records of a dropped state could not be saved"
            );
        }
        progress.closed = true;
    }

    fn flush_locked(
        &self,
        progress: &mut Progress,
        log: &Log,
        status: Option<RunStatus>,
    ) -> Result<(), StoreError> {
        if progress.closed {
            return Ok(());
        }
        while progress.written < log.len() {
            let to = log.len().min(progress.written + MAX_BATCH as u64);
            let batch: Vec<Arc<Event>> = log
                .read(progress.written, to)
                .into_iter()
                .map(|entry| entry.event)
                .collect();
            let written =
                self.store_call(|| self.durable.store.append_events(&self.durable.id, &batch));
            self.durable.noted(written)?;
            progress.written += batch.len() as u64;
            self.committed.store(progress.written, Ordering::Release);
            log.set_committed(progress.written);
            self.delivery.notify();
        }
        self.durable.flush_storage()?;
        let queued = self.status.lock().take();
        // An explicit status replaces a queued one: it is the later word.
        if let Some(next) = status.or(queued) {
            let saved = self.store_call(|| self.durable.store.set_status(&self.durable.id, next));
            if saved.is_err() && status.is_none() {
                // Kept to be written by the next flush.
                let mut slot = self.status.lock();
                if slot.is_none() {
                    *slot = Some(next);
                }
            }
            self.durable.noted(saved)?;
        }
        Ok(())
    }

    /// Runs one store call, marking the writer busy meanwhile (a waiter that sees it busy
    /// for long after an interrupt stops waiting).
    fn store_call<T>(&self, f: impl FnOnce() -> T) -> T {
        self.busy_since.store(now_mark(), Ordering::Release);
        let out = f();
        self.busy_since.store(0, Ordering::Release);
        out
    }
}
