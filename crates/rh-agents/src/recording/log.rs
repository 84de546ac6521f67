//! The sequencer: the in-memory log every consumer reads.
//!
//! Invariant: appending is a short critical section (a `parking_lot::Mutex`, not re-entrant)
//! that numbers the record, pushes it and publishes the new length — nothing else. No store
//! I/O, no subscriber and no user code run under it; consumers (the store writer, the sync
//! subscribers' threads, streams) each keep a cursor into the log and are woken after the lock
//! is released. The log is therefore also the queue: a consumer that is behind costs no extra
//! memory, since the history keeps every record anyway.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::actor::ActorKind;
use crate::address::Address;
use crate::event::{Event, EventStatus};

use super::progress::Progress;

/// One record and the number of calls still running once it was made (how a stream knows
/// that every call has recorded how it ended).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) event: Arc<Event>,
    pub(crate) active: usize,
    /// Whether subscribers and streams are given it (a replayed record may be kept quiet).
    pub(crate) publish: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Records {
    pub(crate) entries: Vec<Entry>,
    /// The latest actor record per address, brought up to date lazily by readers: keeping it
    /// current on every append would put a hash-map insert on the hot path.
    pub(crate) latest: FxHashMap<Address, usize>,
    /// How many records `latest` covers.
    pub(crate) indexed: usize,
    /// The newest progress updates (not records: never numbered, stored or kept for long),
    /// at most the bus capacity of them.
    progress: VecDeque<Arc<Progress>>,
    /// How many progress updates were ever made (the number of the next one).
    progress_made: u64,
}

thread_local! {
    /// Set on the threads that deliver to sync subscribers and while the store writer
    /// writes: the records they make must not wait for delivery (they would wait for
    /// themselves).
    static CONSUMER: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as a consumer of the log (see `on_consumer_thread`) until the
/// guard is dropped.
pub(crate) fn mark_consumer_thread() -> ConsumerMark {
    ConsumerMark(CONSUMER.with(|c| c.replace(true)))
}

/// Restores the thread's mark when dropped (a blocking-pool thread runs other jobs later).
#[derive(Debug)]
pub(crate) struct ConsumerMark(bool);

impl Drop for ConsumerMark {
    fn drop(&mut self) {
        CONSUMER.with(|c| c.set(self.0));
    }
}

/// Whether this thread delivers records (a subscriber's thread or the store writer).
pub(crate) fn on_consumer_thread() -> bool {
    CONSUMER.with(Cell::get)
}

/// The in-memory log of a state.
pub(crate) struct Log {
    records: Mutex<Records>,
    /// The number of records, published after each push (readers need no lock to see it).
    len: AtomicU64,
    /// Whether readers see only the records the store writer has committed (a durable
    /// state: nobody hears of a record a crash could lose, so a record's number, once seen,
    /// is never given to another).
    gated: bool,
    /// The number of committed records, when `gated`.
    committed: AtomicU64,
    /// The number of progress updates made, published like `len`.
    progress_len: AtomicU64,
    /// One past the newest record made on a consumer thread (by a subscriber reacting to a
    /// record): waits for delivery include those, so that what a subscriber records in
    /// response to a call's records is delivered before the call returns.
    consumer_end: AtomicU64,
    /// Calls begun and not yet finished.
    active: AtomicUsize,
    /// How far a stream or subscriber may fall behind before it skips records.
    pub(crate) capacity: usize,
    /// Set when the state is dropped: readers end once they have read everything.
    closed: AtomicBool,
    /// Wakers of readers waiting for the log to grow, and how many there are (checked
    /// without the lock by every append).
    waiting: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
}

impl std::fmt::Debug for Log {
    /// Counts only: printing (or locking) the whole history for a `Debug` would be a trap.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("len", &self.len())
            .field("visible", &self.visible())
            .field("running_calls", &self.active.load(Ordering::Relaxed))
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Log {
    pub(crate) fn new(restored: Vec<Arc<Event>>, capacity: usize, gated: bool) -> Self {
        let len = restored.len() as u64;
        let entries = restored
            .into_iter()
            .map(|event| Entry {
                event,
                active: 0,
                publish: true,
            })
            .collect();
        Self {
            records: Mutex::new(Records {
                entries,
                ..Records::default()
            }),
            len: AtomicU64::new(len),
            gated,
            committed: AtomicU64::new(len),
            progress_len: AtomicU64::new(0),
            consumer_end: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Numbers and appends one record; `finishes_call` lowers the count of running calls with
    /// it, `publish` says whether readers are given it.
    pub(crate) fn append(&self, event: Event, finishes_call: bool, publish: bool) -> Arc<Event> {
        // Allocated before the lock: the critical section only numbers and pushes.
        let mut event = Arc::new(event);
        let seq = self.push(&mut self.records.lock(), &mut event, finishes_call, publish);
        self.appended(seq);
        event
    }

    /// Like `append`, but `decide`, run inside the critical section before the push, may
    /// refuse the record (the interrupt notice is appended only by the first request), and
    /// `then` runs inside it after the push (an interrupt cancels its token there, so the
    /// notice precedes every record a woken call makes).
    pub(crate) fn append_with(
        &self,
        event: Event,
        decide: impl FnOnce() -> bool,
        then: impl FnOnce(),
    ) -> Option<Arc<Event>> {
        let mut event = Arc::new(event);
        let seq = {
            let mut records = self.records.lock();
            if !decide() {
                return None;
            }
            let seq = self.push(&mut records, &mut event, false, true);
            then();
            seq
        };
        self.appended(seq);
        Some(event)
    }

    fn push(
        &self,
        records: &mut Records,
        event: &mut Arc<Event>,
        finishes_call: bool,
        publish: bool,
    ) -> u64 {
        let active = if finishes_call {
            self.active.fetch_sub(1, Ordering::AcqRel).saturating_sub(1)
        } else {
            self.active.load(Ordering::Acquire)
        };
        let seq = records.entries.len() as u64;
        // The Arc is ours alone until it is pushed.
        if let Some(e) = Arc::get_mut(event) {
            e.id = seq;
        }
        records.entries.push(Entry {
            event: Arc::clone(event),
            active,
            publish,
        });
        // SeqCst: paired with `register`, so a reader either sees the new length or its
        // waker is seen by `wake`.
        self.len.store(seq + 1, Ordering::SeqCst);
        seq
    }

    /// After the critical section: notes a consumer's record and wakes the readers.
    fn appended(&self, seq: u64) {
        if on_consumer_thread() {
            self.consumer_end.fetch_max(seq + 1, Ordering::AcqRel);
        }
        self.wake();
    }

    /// Appends a progress update (not a record): it goes after the records made so far.
    pub(crate) fn push_progress(&self, make: impl FnOnce(u64) -> Progress) {
        {
            let mut records = self.records.lock();
            let after = records.entries.len() as u64;
            let progress = Arc::new(make(after));
            if records.progress.len() >= self.capacity {
                records.progress.pop_front();
            }
            records.progress.push_back(progress);
            records.progress_made += 1;
            self.progress_len
                .store(records.progress_made, Ordering::SeqCst);
        }
        self.wake();
    }

    fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let wakers = std::mem::take(&mut *self.wakers.lock());
        self.waiting.fetch_sub(wakers.len(), Ordering::SeqCst);
        // Woken with no lock held: a waker is code we do not control.
        for waker in wakers {
            waker.wake();
        }
    }

    /// Registers `waker` to be woken when the log grows past `seen` records or `seen_progress`
    /// updates, or closes. Returns `true` (and registers nothing lasting) when that already
    /// happened, so the caller reads again instead of sleeping.
    pub(crate) fn register(&self, waker: &Waker, seen: u64, seen_progress: u64) -> bool {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.wakers.lock().push(waker.clone());
        self.visible() > seen
            || self.progress_len.load(Ordering::SeqCst) > seen_progress
            || self.is_closed()
    }

    /// The number of records.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// The number of records readers may see: all of them, or in a durable state those
    /// committed.
    pub(crate) fn visible(&self) -> u64 {
        if self.gated {
            self.committed.load(Ordering::SeqCst)
        } else {
            self.len.load(Ordering::SeqCst)
        }
    }

    /// The store writer committed the first `n` records: readers may see them.
    pub(crate) fn set_committed(&self, n: u64) {
        self.committed.store(n, Ordering::SeqCst);
        self.wake();
    }

    /// The number of progress updates made so far.
    pub(crate) fn progress_len(&self) -> u64 {
        self.progress_len.load(Ordering::Acquire)
    }

    /// One past the newest record a consumer thread made.
    pub(crate) fn consumer_end(&self) -> u64 {
        self.consumer_end.load(Ordering::Acquire)
    }

    /// Records `from..to` (clamped to what exists).
    pub(crate) fn read(&self, from: u64, to: u64) -> Vec<Entry> {
        let records = self.records.lock();
        let end = (to as usize).min(records.entries.len());
        let start = (from as usize).min(end);
        records.entries[start..end].to_vec()
    }

    /// The record numbered `seq`, if it exists.
    pub(crate) fn get(&self, seq: u64) -> Option<Entry> {
        self.records.lock().entries.get(seq as usize).cloned()
    }

    /// The progress update numbered `n`, unless it was already dropped from the buffer (then
    /// the oldest one kept, with its number).
    pub(crate) fn progress(&self, n: u64) -> Option<(u64, Arc<Progress>)> {
        let records = self.records.lock();
        let oldest = records.progress_made - records.progress.len() as u64;
        let n = n.max(oldest);
        records
            .progress
            .get((n - oldest) as usize)
            .map(|p| (n, Arc::clone(p)))
    }

    /// Counts a call as running.
    pub(crate) fn begin_call(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a call as over without a final record (it was unwound by a panic).
    pub(crate) fn abandon_call(&self) {
        let _records = self.records.lock();
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// Ends every reader once it has read everything (the state was dropped).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.wakers.lock());
        self.waiting.fetch_sub(wakers.len(), Ordering::SeqCst);
        for waker in wakers {
            waker.wake();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Runs `f` on the records.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Records) -> T) -> T {
        f(&self.records.lock())
    }

    /// Like `with`, with the latest-per-address index brought up to date first.
    pub(crate) fn with_index<T>(&self, f: impl FnOnce(&Records) -> T) -> T {
        let mut records = self.records.lock();
        {
            let Records {
                entries,
                latest,
                indexed,
                ..
            } = &mut *records;
            for (index, entry) in entries.iter().enumerate().skip(*indexed) {
                let event = &entry.event;
                if event.kind != ActorKind::System && event.status != EventStatus::Log {
                    latest.insert(event.address.clone(), index);
                }
            }
            *indexed = entries.len();
        }
        f(&records)
    }
}

static EPOCH: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

/// Microseconds of real time since the first use, plus one (zero can then mean "not
/// busy"). Real time: a consumer blocked on I/O is blocked whatever a paused test clock says.
pub(crate) fn now_mark() -> u64 {
    EPOCH.elapsed().as_micros() as u64 + 1
}

/// A waker that unparks a std thread (the consumers that run on their own threads).
pub(crate) fn thread_waker() -> Waker {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    Waker::from(Arc::new(Unpark(std::thread::current())))
}
