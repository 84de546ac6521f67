//! The history: every record in order, plus the latest actor record per address.
//!
//! The `Journal` ties the recording parts of a state together: the log (the sequencer), the
//! delivery to sync subscribers and, for a durable state, the store writer (see
//! `recording`).

use std::sync::Arc;

use crate::address::Address;
use crate::bus::Subscriber;
use crate::event::{Event, EventStatus};
use crate::recording::delivery::Delivery;
use crate::recording::log::Log;
use crate::recording::writer::Writer;
use crate::recording::CommitMode;
use crate::store::durable::Durable;

#[derive(Debug)]
pub(crate) struct Journal {
    pub(crate) log: Arc<Log>,
    pub(crate) delivery: Arc<Delivery>,
    /// The store writer of a durable state.
    pub(crate) writer: Option<Arc<Writer>>,
    /// The spans of calls, when a tracing bridge is subscribed (the first one's).
    pub(crate) spans: std::sync::OnceLock<Arc<crate::recording::CallSpans>>,
}

impl Journal {
    /// A journal holding `restored` (records of a saved run, numbered 0, 1, 2, …, already in
    /// the store), delivering new records to `subscribers` and writing them through `durable`.
    pub(crate) fn new(
        restored: Vec<Arc<Event>>,
        durable: Option<Arc<Durable>>,
        mode: CommitMode,
        capacity: usize,
        subscribers: Vec<Arc<dyn Subscriber>>,
    ) -> Self {
        let written = restored.len() as u64;
        let log = Arc::new(Log::new(restored, capacity, durable.is_some()));
        let delivery = Arc::new(Delivery::new());
        let journal = Self {
            writer: durable.map(|d| Arc::new(Writer::new(d, mode, written, Arc::clone(&delivery)))),
            log,
            delivery,
            spans: std::sync::OnceLock::new(),
        };
        for subscriber in subscribers {
            journal.subscribe(subscriber);
        }
        journal
    }

    /// Adds a sync subscriber, from the current end of the log.
    pub(crate) fn subscribe(&self, subscriber: Arc<dyn Subscriber>) {
        if let Some(spans) = subscriber.call_spans() {
            let _ = self.spans.set(spans);
        }
        self.delivery.add(&self.log, subscriber, self.log.len());
    }

    /// The span of a call (or group, or task) starting at `address`, when a tracing bridge
    /// is subscribed.
    pub(crate) fn open_span(
        &self,
        address: &Address,
        actor: &str,
        kind: crate::ActorKind,
    ) -> Option<tracing::Span> {
        self.spans
            .get()
            .map(|spans| spans.open(address, actor, kind))
    }

    /// Numbers and appends one record (`finishes_call`: the call it ends stops counting as
    /// running; `publish`: subscribers and streams are given it), and tells the writer.
    pub(crate) fn append(&self, event: Event, finishes_call: bool, publish: bool) -> Arc<Event> {
        let event = self.log.append(event, finishes_call, publish);
        self.appended(&event);
        event
    }

    /// Tells the writer about a record appended to the log.
    pub(crate) fn appended(&self, event: &Event) {
        if let Some(writer) = &self.writer {
            writer.appended(&self.log, event.id);
        }
    }

    /// Counts a call as running.
    pub(crate) fn begin_call(&self) {
        self.log.begin_call();
    }

    /// Counts a call as over without a final record (it was unwound by a panic).
    pub(crate) fn abandon_call(&self) {
        self.log.abandon_call();
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
    log: &'a Log,
}

impl<'a> History<'a> {
    pub(crate) fn new(journal: &'a Journal) -> Self {
        Self { log: &journal.log }
    }

    /// Every record, in order.
    pub fn events(&self) -> Vec<Arc<Event>> {
        self.log
            .with(|r| r.entries.iter().map(|e| Arc::clone(&e.event)).collect())
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.log.len() as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest actor record at an address (logs and interrupt notices excluded).
    pub fn latest(&self, address: &str) -> Option<Arc<Event>> {
        let address = Address::parse(address);
        self.log.with_index(|r| {
            r.latest
                .get(&address)
                .and_then(|&i| r.entries.get(i).map(|e| Arc::clone(&e.event)))
        })
    }

    /// The latest actor record of every address, in order of first appearance.
    pub fn latest_by_address(&self) -> Vec<Arc<Event>> {
        self.log.with_index(|r| {
            let mut seen = std::collections::HashSet::new();
            r.entries
                .iter()
                .map(|e| &e.event)
                .filter(|e| r.latest.contains_key(&e.address) && seen.insert(&e.address))
                .filter_map(|e| {
                    r.latest
                        .get(&e.address)
                        .and_then(|&i| r.entries.get(i).map(|e| Arc::clone(&e.event)))
                })
                .collect()
        })
    }

    /// Every record at one address, in order.
    pub fn at(&self, address: &str) -> Vec<Arc<Event>> {
        self.log.with(|r| {
            r.entries
                .iter()
                .filter(|e| e.event.address.as_str() == address)
                .map(|e| Arc::clone(&e.event))
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
