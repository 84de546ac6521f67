//! The event bus: subscribers see every record in history order.
//!
//! # Delivery policy
//!
//! - **Sync subscribers** ([`Subscriber`]) run inline, on the task that records the event,
//!   while the history is held, so they see events exactly in history order and an event is
//!   delivered before the call that produced it moves on (what a checkpoint writer needs).
//!   They must be quick: slow work belongs in an async subscriber. A subscriber may read the
//!   state or record events of its own (the lock is re-entrant; its records are delivered
//!   after the current one), but it must never block waiting for another thread that
//!   records events: that thread waits for the subscriber, and both stop.
//! - **Async subscribers and streams** read from a bounded buffer (1,024 events by default,
//!   [`bus_capacity`](crate::ExecutionStateBuilder::bus_capacity)). The runtime never waits for
//!   them: one that falls further behind than its buffer skips the oldest events and the skip
//!   is counted ([`EventStream::lagged`]) and logged through `tracing`. The history itself is
//!   always complete.
//! - A subscriber that returns an error or panics is counted and logged through `tracing`; it
//!   never fails the handler whose event it was given, and nothing is retried because of it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::RwLock;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};
use tokio_stream::Stream;

use crate::actor::ActorKind;
use crate::event::{Event, EventStatus};
use crate::panic::catch;
use crate::BoxError;

/// Receives every event a state records, inline and in history order.
///
/// Every hook defaults to doing nothing. A closure `Fn(&Event)` is a subscriber.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use rh_agents::{Event, ExecutionState};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&seen);
/// let state = ExecutionState::builder()
///     .subscriber(move |e: &Event| sink.lock().unwrap().push(e.status))
///     .build();
/// # drop(state);
/// ```
pub trait Subscriber: Send + Sync + 'static {
    /// Called for every event, in history order.
    ///
    /// # Errors
    ///
    /// A failure is counted and logged; it never affects the run.
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        let _ = event;
        Ok(())
    }
}

impl<F: Fn(&Event) + Send + Sync + 'static> Subscriber for F {
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        self(event);
        Ok(())
    }
}

type SubscriberList = Arc<Vec<Arc<dyn Subscriber>>>;

pub(crate) struct Bus {
    subscribers: RwLock<SubscriberList>,
    /// Each event travels with the number of calls still running after it.
    tx: broadcast::Sender<(Arc<Event>, usize)>,
    failures: Arc<AtomicU64>,
    // Fast paths for the common case of nobody listening: two atomic loads instead of a lock
    // each. Set once, never cleared (a send to receivers that left is a harmless no-op).
    has_subscribers: AtomicBool,
    has_receivers: AtomicBool,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.subscribers.read().len())
            .field("receivers", &self.tx.receiver_count())
            .field("failures", &self.failures())
            .finish()
    }
}

impl Bus {
    pub(crate) fn new(capacity: usize, subscribers: Vec<Arc<dyn Subscriber>>) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            has_subscribers: AtomicBool::new(!subscribers.is_empty()),
            subscribers: RwLock::new(Arc::new(subscribers)),
            tx,
            failures: Arc::new(AtomicU64::new(0)),
            has_receivers: AtomicBool::new(false),
        }
    }

    pub(crate) fn add(&self, subscriber: Arc<dyn Subscriber>) {
        let mut guard = self.subscribers.write();
        let mut list = Vec::clone(&guard);
        list.push(subscriber);
        *guard = Arc::new(list);
        self.has_subscribers.store(true, Ordering::Release);
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The failure counter, shared with async subscriber tasks.
    pub(crate) fn failure_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.failures)
    }

    pub(crate) fn receiver(&self) -> broadcast::Receiver<(Arc<Event>, usize)> {
        let rx = self.tx.subscribe();
        self.has_receivers.store(true, Ordering::Release);
        rx
    }

    /// Delivers one event. Called with the history held, so deliveries follow history order.
    pub(crate) fn dispatch(&self, event: &Arc<Event>, active_calls: usize) {
        if self.has_subscribers.load(Ordering::Acquire) {
            self.deliver_inline(event);
        }
        if self.has_receivers.load(Ordering::Acquire) {
            // An error only means every receiver left meanwhile; nothing to do.
            let _ = self.tx.send((Arc::clone(event), active_calls));
        }
    }

    fn deliver_inline(&self, event: &Event) {
        let subscribers = Arc::clone(&self.subscribers.read());
        for subscriber in subscribers.iter() {
            let failure = match catch(|| subscriber.on_event(event)) {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(panic) => panic.to_string(),
            };
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = event.id, %failure, "event subscriber failed");
        }
    }
}

/// Whether the record is the runtime's own interrupt notice (the end of a stream).
pub(crate) fn is_interrupt_notice(event: &Event) -> bool {
    event.kind == ActorKind::System && event.status == EventStatus::Interrupted
}

/// An async stream of the events a state records from now on.
///
/// It ends once the run is interrupted and every call that was running has recorded how it
/// ended: after the interrupt notice (the record `request_interrupt` publishes) and the
/// INTERRUPTED records that follow it. It also ends when the state is dropped.
///
/// Use it with `tokio_stream::StreamExt` (re-exported as [`crate::StreamExt`]).
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    inner: BroadcastStream<(Arc<Event>, usize)>,
    lagged: u64,
    interrupted: bool,
    done: bool,
}

impl EventStream {
    pub(crate) fn new(rx: broadcast::Receiver<(Arc<Event>, usize)>) -> Self {
        Self {
            inner: BroadcastStream::new(rx),
            lagged: 0,
            interrupted: false,
            done: false,
        }
    }

    /// How many events this stream skipped because it fell behind its buffer.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl Stream for EventStream {
    type Item = Arc<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok((event, active_calls)))) => {
                    if is_interrupt_notice(&event) {
                        self.interrupted = true;
                    }
                    if self.interrupted && active_calls == 0 {
                        self.done = true;
                    }
                    return Poll::Ready(Some(event));
                }
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    self.lagged += n;
                    tracing::warn!(skipped = n, "event stream fell behind and skipped events");
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
