//! Delivery to sync subscribers: each on its own thread, in history order, each record once.
//!
//! # Policy
//!
//! - Every [`Subscriber`] gets a thread of its own that reads the log from where it joined.
//!   A subscriber that is slow or blocked holds up nobody but itself.
//! - A call, before it returns, waits until every subscriber that keeps up has been given its
//!   records (and the records subscribers made in response), so that a well-behaved
//!   subscriber has seen a call by the time its caller has the result. The wait selects on the
//!   interrupt token: an interrupt never waits for a subscriber.
//! - A subscriber that spends longer than [`BLOCKED_AFTER`] on one record, or is still behind
//!   after [`WAIT_LIMIT`], is marked *slow*: calls stop waiting for it until it has caught up
//!   again. It still gets every record unless it falls more than the bus capacity behind;
//!   then it skips ahead and the skip is counted and logged (see `reader`).
//! - Failures and panics of a subscriber are counted and logged; delivery goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use super::log::{mark_consumer_thread, now_mark, thread_waker, Log};
use super::reader::{Next, Reader};
use super::writer::Writer;
use crate::bus::Subscriber;
use crate::panic::catch;

/// A subscriber busy with one record for longer than this is not waited for.
pub(crate) const BLOCKED_AFTER: Duration = Duration::from_millis(500);
/// The longest a call waits for its records to be delivered.
pub(crate) const WAIT_LIMIT: Duration = Duration::from_secs(5);
/// Once the run is interrupted, a subscriber busy with one record for longer than this is
/// not waited for...
pub(crate) const BLOCKED_AFTER_INTERRUPT: Duration = Duration::from_millis(50);
/// ...and no wait lasts longer than this. An interrupt ends the run at once; the waits that
/// remain only give the store and the subscribers that keep up a moment to take in how it
/// ended, and a consumer that is stuck is not waited for at all.
const WAIT_LIMIT_INTERRUPTED: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Worker {
    /// How many records this subscriber has been given (or skipped).
    acked: AtomicU64,
    /// When it began the record it is on (`now_mark`), or zero when idle.
    busy_since: AtomicU64,
    /// Not waited for until it catches up.
    slow: AtomicBool,
    /// Its thread ended (the state was dropped and everything was delivered).
    done: AtomicBool,
}

impl Worker {
    /// Whether a waiter may stop waiting for this worker at `target`.
    fn settled(&self, target: u64, now: u64, blocked_after: Duration, final_wait: bool) -> bool {
        if self.done.load(Ordering::Acquire)
            || (!final_wait && self.slow.load(Ordering::Acquire))
            || self.acked.load(Ordering::SeqCst) >= target
        {
            return true;
        }
        let busy = self.busy_since.load(Ordering::Acquire);
        if busy != 0 && now.saturating_sub(busy) > blocked_after.as_micros() as u64 {
            self.mark_slow("it has been busy with one record");
            return true;
        }
        false
    }

    fn mark_slow(&self, why: &str) {
        if !self.slow.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                why,
                "a sync subscriber is slow: calls no longer wait for it until it catches up"
            );
        }
    }
}

/// The sync subscribers of a state.
pub(crate) struct Delivery {
    workers: RwLock<Arc<Vec<Arc<Worker>>>>,
    has_workers: AtomicBool,
    failures: Arc<AtomicU64>,
    /// Waiters sleep here; workers notify after each record while someone waits.
    lock: Mutex<()>,
    acked: Condvar,
    waiters: AtomicUsize,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let workers = self.workers.read();
        f.debug_struct("Delivery")
            .field("subscribers", &workers.len())
            .field(
                "slow",
                &workers
                    .iter()
                    .filter(|w| w.slow.load(Ordering::Relaxed))
                    .count(),
            )
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub(crate) fn new() -> Self {
        Self {
            workers: RwLock::new(Arc::new(Vec::new())),
            has_workers: AtomicBool::new(false),
            failures: Arc::new(AtomicU64::new(0)),
            lock: Mutex::new(()),
            acked: Condvar::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    pub(crate) fn has_workers(&self) -> bool {
        self.has_workers.load(Ordering::Acquire)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn failure_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.failures)
    }

    /// Starts delivering the records from `from` on to `subscriber`, on a thread of its own.
    /// The thread uses the `tracing` dispatcher current here, so a subscriber that emits
    /// `tracing` events (the tracing bridge) reaches the caller's `tracing` subscriber.
    pub(crate) fn add(
        self: &Arc<Self>,
        log: &Arc<Log>,
        subscriber: Arc<dyn Subscriber>,
        from: u64,
    ) {
        let worker = Arc::new(Worker {
            acked: AtomicU64::new(from),
            ..Worker::default()
        });
        {
            let mut guard = self.workers.write();
            let mut list = Vec::clone(&guard);
            list.push(Arc::clone(&worker));
            *guard = Arc::new(list);
        }
        self.has_workers.store(true, Ordering::Release);
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let reader = Reader::new(Arc::clone(log), from, true);
        let delivery = Arc::clone(self);
        let thread_worker = Arc::clone(&worker);
        let spawned = std::thread::Builder::new()
            .name("rh-agents-subscriber".to_owned())
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    delivery.run(&thread_worker, &*subscriber, reader);
                });
            });
        if let Err(e) = spawned {
            // Without a thread the subscriber cannot be served; the run goes on, and nobody
            // waits for it.
            worker.done.store(true, Ordering::Release);
            tracing::error!(error = %e, "could not start a thread for a sync subscriber");
        }
    }

    fn run(&self, worker: &Worker, subscriber: &dyn Subscriber, mut reader: Reader) {
        let _mark = mark_consumer_thread();
        let waker = thread_waker();
        loop {
            match reader.next() {
                Next::Record(entry) => {
                    worker.busy_since.store(now_mark(), Ordering::Release);
                    let outcome = catch(|| subscriber.on_event(&entry.event));
                    worker.busy_since.store(0, Ordering::Release);
                    self.note(outcome, entry.event.id);
                    worker.acked.store(reader.cursor, Ordering::SeqCst);
                    self.notify();
                }
                Next::Progress(update) => {
                    let outcome = catch(|| subscriber.on_progress(&update));
                    self.note(outcome, update.after);
                }
                Next::Empty => {
                    worker.acked.store(reader.cursor, Ordering::SeqCst);
                    // Caught up: waited for again.
                    worker.slow.store(false, Ordering::Release);
                    self.notify();
                    if reader.log.is_closed() {
                        break;
                    }
                    if !reader.register(&waker) {
                        std::thread::park();
                    }
                }
            }
        }
        worker.done.store(true, Ordering::Release);
        self.notify();
    }

    fn note(&self, outcome: Result<Result<(), crate::BoxError>, crate::HandlerPanic>, at: u64) {
        let failure = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic.to_string(),
        };
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(event = at, %failure, "event subscriber failed");
    }

    /// Wakes the waiters (after a record was delivered, or an interrupt).
    pub(crate) fn notify(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock();
            self.acked.notify_all();
        }
    }

    /// Whether every subscriber that keeps up has been given `target` records (those readers
    /// may see yet), and those its subscribers made in response.
    pub(crate) fn settled(&self, log: &Log, target: u64) -> bool {
        self.settled_within(log, target, BLOCKED_AFTER, false)
    }

    fn settled_within(
        &self,
        log: &Log,
        target: u64,
        blocked_after: Duration,
        final_wait: bool,
    ) -> bool {
        if !self.has_workers() {
            return true;
        }
        let target = target.max(log.consumer_end()).min(log.visible());
        let now = now_mark();
        self.workers
            .read()
            .iter()
            .all(|w| w.settled(target, now, blocked_after, final_wait))
    }

    /// Blocks until the first `target` records are committed by `writer` (when given) and
    /// [`settled`](Self::settled). The commit is waited for as long as it takes; delivery for
    /// at most [`WAIT_LIMIT`] (then the subscribers still behind are marked slow). Once
    /// `token` is cancelled (the run is interrupted), the limits shrink: a store or a
    /// subscriber stuck on one record is not waited for, and nothing longer than a second;
    /// those that keep up get to take in how the run ended.
    ///
    /// The `final_wait` of a state that goes away waits for the slow subscribers too, however
    /// long one spends on a record (within [`WAIT_LIMIT`]), unless the run was interrupted:
    /// the last records of a run are not dropped because one of them takes long to print.
    pub(crate) fn wait(
        &self,
        log: &Log,
        target: u64,
        token: &CancellationToken,
        writer: Option<&Writer>,
        final_wait: bool,
    ) {
        if !self.has_workers() && writer.is_none() {
            return;
        }
        let mut deadline = Instant::now() + WAIT_LIMIT;
        let mut interrupted = false;
        self.waiters.fetch_add(1, Ordering::SeqCst);
        {
            let mut guard = self.lock.lock();
            loop {
                let now = Instant::now();
                if !interrupted && token.is_cancelled() {
                    interrupted = true;
                    deadline = deadline.min(now + WAIT_LIMIT_INTERRUPTED);
                }
                let blocked_after = if interrupted {
                    BLOCKED_AFTER_INTERRUPT
                } else if final_wait {
                    WAIT_LIMIT
                } else {
                    BLOCKED_AFTER
                };
                let patient = final_wait && !interrupted;
                let committed = writer.is_none_or(|w| w.settled(target, interrupted));
                if committed && self.settled_within(log, target, blocked_after, patient) {
                    break;
                }
                // The commit of a sync-mode state is waited for until it is done or the run
                // is interrupted; only delivery has a deadline.
                if now >= deadline && (committed || interrupted) {
                    let target = target.max(log.consumer_end()).min(log.visible());
                    for worker in self.workers.read().iter() {
                        if !worker.settled(target, now_mark(), blocked_after, patient) {
                            worker.mark_slow("it did not keep up with the run");
                        }
                    }
                    break;
                }
                // Woken by each delivery, commit and interrupt; the slice bounds how late a
                // stuck consumer is noticed.
                let slice = deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_millis(1))
                    .min(blocked_after / 4);
                self.acked.wait_for(&mut guard, slice);
            }
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
