//! The history: every record in order, plus the latest actor record per address.
//!
//! Appending and delivering to sync subscribers happen under one re-entrant lock, so every
//! subscriber sees the history order, and a subscriber may itself read the history or log.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::ReentrantMutex;
use rustc_hash::FxHashMap;

use crate::actor::ActorKind;
use crate::address::Address;
use crate::bus::Bus;
use crate::event::{Event, EventStatus};
use crate::store::durable::Durable;

#[derive(Debug, Default)]
struct Records {
    events: Vec<Arc<Event>>,
    /// The latest actor record per address, brought up to date lazily by readers: keeping it
    /// current on every append would put a hash-map insert on the hot path.
    latest: FxHashMap<Address, usize>,
    /// How many records `latest` covers.
    indexed: usize,
    /// Whether a delivery is under way on the thread holding the lock.
    delivering: bool,
    /// Records appended by a subscriber during a delivery, delivered after it in order (with
    /// the number of calls running when each was made).
    pending: VecDeque<(Arc<Event>, usize)>,
}

/// Clears the delivering flag (and any undelivered records) when a delivery ends.
struct ResetDelivering<'a>(&'a RefCell<Records>);

impl Drop for ResetDelivering<'_> {
    fn drop(&mut self) {
        if let Ok(mut records) = self.0.try_borrow_mut() {
            records.delivering = false;
            records.pending.clear();
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Journal {
    records: ReentrantMutex<RefCell<Records>>,
    /// Where records are saved as they are appended (a durable state's store).
    sink: Option<Arc<Durable>>,
    /// Calls begun and not yet finished. Raised when a call starts; lowered, under the lock,
    /// with its final record, so each delivery can say how many calls were still running
    /// (which is how a stream knows that every call has recorded how it ended).
    active: AtomicUsize,
}

impl Journal {
    /// A journal holding `restored` (records of a saved run, numbered 0, 1, 2, …), saving
    /// new records to `sink`.
    pub(crate) fn new(restored: Vec<Arc<Event>>, sink: Option<Arc<Durable>>) -> Self {
        Self {
            records: ReentrantMutex::new(RefCell::new(Records {
                events: restored,
                ..Records::default()
            })),
            sink,
            active: AtomicUsize::new(0),
        }
    }

    /// Numbers, stores and delivers one record.
    ///
    /// A subscriber may record events of its own while it is being given one (the lock is
    /// re-entrant); those are stored at once but delivered only after the current delivery,
    /// so every subscriber and stream sees the history order.
    pub(crate) fn append(
        &self,
        mut event: Event,
        bus: &Bus,
        finishes_call: bool,
        publish: bool,
    ) -> Arc<Event> {
        let guard = self.records.lock();
        let active = if finishes_call {
            self.active.fetch_sub(1, Ordering::AcqRel).saturating_sub(1)
        } else {
            self.active.load(Ordering::Acquire)
        };
        let (event, deliver) = {
            let mut records = guard.borrow_mut();
            event.id = records.events.len() as u64;
            let event = Arc::new(event);
            records.events.push(Arc::clone(&event));
            let deliver = if !publish {
                false
            } else if records.delivering {
                records.pending.push_back((Arc::clone(&event), active));
                false
            } else {
                records.delivering = true;
                true
            };
            (event, deliver)
        };
        // Written to the store before anyone hears of it, in history order (the lock is held).
        if let Some(sink) = &self.sink {
            sink.write(&event);
        }
        if !deliver {
            return event;
        }
        // Whatever happens during delivery (even a panic outside any subscriber), the flag is
        // cleared: a stuck flag would stop every later record from being delivered.
        let _reset = ResetDelivering(&guard);
        let mut next = Some((Arc::clone(&event), active));
        while let Some((current, active)) = next {
            bus.dispatch(&current, active);
            next = guard.borrow_mut().pending.pop_front();
        }
        event
    }

    /// Counts a call as running.
    pub(crate) fn begin_call(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a call as over without a final record (it was unwound by a panic).
    pub(crate) fn abandon_call(&self) {
        let _guard = self.records.lock();
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// Runs `f` holding the history, so that what `f` decides and records is ordered before
    /// any other task's records.
    pub(crate) fn hold<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = self.records.lock();
        f()
    }

    fn with<T>(&self, f: impl FnOnce(&Records) -> T) -> T {
        let guard = self.records.lock();
        let records = guard.borrow();
        f(&records)
    }

    /// Like `with`, with the latest-per-address index brought up to date first.
    fn with_index<T>(&self, f: impl FnOnce(&Records) -> T) -> T {
        let guard = self.records.lock();
        {
            let mut records = guard.borrow_mut();
            let Records {
                events,
                latest,
                indexed,
                ..
            } = &mut *records;
            for (index, event) in events.iter().enumerate().skip(*indexed) {
                if event.kind != ActorKind::System && event.status != EventStatus::Log {
                    latest.insert(event.address.clone(), index);
                }
            }
            *indexed = events.len();
        }
        let records = guard.borrow();
        f(&records)
    }
}

/// A read view of a state's history. Cheap to create; each method takes a consistent look.
///
/// # Examples
///
/// ```
/// # use rh_agents::{Actor, ExecutionState, EventStatus};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = ExecutionState::new();
/// let echo = Actor::tool("echo", |s: String, _ctx| async move { Ok::<_, std::io::Error>(s) });
/// state.call(&echo, "hi".to_owned()).await.unwrap();
/// let history = state.history();
/// assert_eq!(history.statuses("echo#0"), [EventStatus::Started, EventStatus::Completed]);
/// assert_eq!(history.latest("echo#0").unwrap().result, Some(serde_json::json!("hi")));
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    journal: &'a Journal,
}

impl<'a> History<'a> {
    pub(crate) fn new(journal: &'a Journal) -> Self {
        Self { journal }
    }

    /// Every record, in order.
    pub fn events(&self) -> Vec<Arc<Event>> {
        self.journal.with(|r| r.events.clone())
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.journal.with(|r| r.events.len())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest actor record at an address (logs and interrupt notices excluded).
    pub fn latest(&self, address: &str) -> Option<Arc<Event>> {
        let address = Address::parse(address);
        self.journal.with_index(|r| {
            r.latest
                .get(&address)
                .and_then(|&i| r.events.get(i).cloned())
        })
    }

    /// The latest actor record of every address, in order of first appearance.
    pub fn latest_by_address(&self) -> Vec<Arc<Event>> {
        self.journal.with_index(|r| {
            let mut seen = std::collections::HashSet::new();
            r.events
                .iter()
                .filter(|e| r.latest.contains_key(&e.address) && seen.insert(&e.address))
                .filter_map(|e| {
                    r.latest
                        .get(&e.address)
                        .and_then(|&i| r.events.get(i).cloned())
                })
                .collect()
        })
    }

    /// Every record at one address, in order.
    pub fn at(&self, address: &str) -> Vec<Arc<Event>> {
        self.journal.with(|r| {
            r.events
                .iter()
                .filter(|e| e.address.as_str() == address)
                .cloned()
                .collect()
        })
    }

    /// The statuses recorded at one address, in order (logs excluded).
    pub fn statuses(&self, address: &str) -> Vec<EventStatus> {
        self.at(address)
            .iter()
            .filter(|e| e.status != EventStatus::Log)
            .map(|e| e.status)
            .collect()
    }
}
