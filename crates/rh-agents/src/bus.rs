//! The event bus: subscribers see every record in history order.
//!
//! # Delivery policy
//!
//! - **Sync subscribers** ([`Subscriber`]) each run on a thread of their own, reading the
//!   history in order: each sees every record once, in history order. Recording never waits
//!   for them: a slow or blocked subscriber delays nobody but itself. A call, before it
//!   returns its result, waits (boundedly, and never past an interrupt) until every
//!   subscriber that keeps up has seen its records — and the records subscribers made in
//!   response — so after `state.call(..).await` a well-behaved subscriber has seen the call.
//!   A subscriber busy with one record for more than half a second, or still behind after
//!   5 s, is marked slow and not waited for until it catches up. A subscriber may read the
//!   state and record events of its own; they are appended like any other.
//! - **Streams and async subscribers** read the same history with a cursor. The runtime never
//!   waits for them.
//! - Any reader that falls more than the bus capacity (1,024 records by default,
//!   [`bus_capacity`](crate::ExecutionStateBuilder::bus_capacity)) behind skips ahead to the
//!   newest records; the skip is counted ([`EventStream::lagged`]) and logged through
//!   `tracing`. The history itself is always complete.
//! - A subscriber that returns an error or panics is counted and logged through `tracing`; it
//!   never fails the handler whose event it was given, and nothing is retried because of it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::actor::ActorKind;
use crate::event::{Event, EventStatus};
use crate::recording::reader::{Next, Reader};
use crate::recording::{Progress, Update};
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

    /// Called for every progress update (see [`Ctx::progress`](crate::Ctx::progress)), in
    /// order with the records. Progress is not part of the history and is never stored.
    ///
    /// # Errors
    ///
    /// A failure is counted and logged; it never affects the run.
    fn on_progress(&self, progress: &Progress) -> Result<(), BoxError> {
        let _ = progress;
        Ok(())
    }

    /// The tracing bridge's spans, which the runtime then opens as calls start (see
    /// `recording::spans`). Not for other subscribers.
    #[doc(hidden)]
    fn call_spans(&self) -> Option<Arc<crate::recording::CallSpans>> {
        None
    }
}

impl<F: Fn(&Event) + Send + Sync + 'static> Subscriber for F {
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        self(event);
        Ok(())
    }
}

/// Whether the record is the runtime's own interrupt notice (the end of a stream).
pub(crate) fn is_interrupt_notice(event: &Event) -> bool {
    event.kind == ActorKind::System && event.status == EventStatus::Interrupted
}

/// An async stream of the events a state records (from now on, or from a given record with
/// [`subscribe_from`](crate::ExecutionState::subscribe_from)); a [`futures_core::Stream`].
///
/// It ends once the run is interrupted and every call that was running has recorded how it
/// ended: after the interrupt notice (the record `request_interrupt` publishes) and the
/// INTERRUPTED records that follow it. It also ends when the state is dropped, after the
/// records made until then.
///
/// Read it with any `Stream` combinators (e.g. `tokio_stream::StreamExt::next`).
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    reader: Reader,
    interrupted: bool,
    done: bool,
}

impl EventStream {
    pub(crate) fn new(reader: Reader) -> Self {
        Self {
            reader,
            interrupted: false,
            done: false,
        }
    }

    /// How many events this stream skipped because it fell behind its buffer.
    pub fn lagged(&self) -> u64 {
        self.reader.lagged
    }

    /// The same stream with the progress updates of running calls as well, in order with the
    /// records (see [`Update`]).
    pub fn with_progress(mut self) -> UpdateStream {
        self.reader.read_progress();
        UpdateStream { inner: self }
    }

    fn poll_update(&mut self, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.reader.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Next::Progress(update))) => {
                Poll::Ready(Some(Update::Progress(update)))
            }
            Poll::Ready(Some(Next::Record(entry))) => {
                if is_interrupt_notice(&entry.event) {
                    self.interrupted = true;
                }
                if self.interrupted && entry.active == 0 {
                    self.done = true;
                }
                Poll::Ready(Some(Update::Record(entry.event)))
            }
            // `poll` never yields an empty read.
            Poll::Ready(Some(Next::Empty)) => Poll::Pending,
        }
    }
}

impl futures_core::Stream for EventStream {
    type Item = Arc<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<Event>>> {
        loop {
            return match self.poll_update(cx) {
                Poll::Ready(Some(Update::Record(event))) => Poll::Ready(Some(event)),
                Poll::Ready(Some(Update::Progress(_))) => continue,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

/// An [`EventStream`] that also yields progress updates
/// ([`EventStream::with_progress`]).
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct UpdateStream {
    inner: EventStream,
}

impl UpdateStream {
    /// How many records this stream skipped because it fell behind its buffer.
    pub fn lagged(&self) -> u64 {
        self.inner.lagged()
    }
}

impl futures_core::Stream for UpdateStream {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.inner.poll_update(cx)
    }
}
