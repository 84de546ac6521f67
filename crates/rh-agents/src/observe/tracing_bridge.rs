//! The tracing bridge: each actor call as a `tracing` span, each record as a `tracing` event
//! inside it (feature `tracing`).
//!
//! # Spans
//!
//! A call's span, `rh_agents.call` with the fields `actor`, `kind` and `address`, opens at the
//! call's first record (normally STARTED of attempt 0) and closes after its final record. Its
//! parent is the span of the parent address (an agent's span holds the spans of the calls its
//! handler makes); a top-level call's span has the current span as parent, as usual in
//! `tracing`, so a call awaited inside a span of your own nests under it. The bridge never
//! enters its spans: it sees records, not the handler running.
//!
//! # Which record is final
//!
//! A call ends with the one record the runtime marks [`is_final`](Event::is_final): COMPLETED,
//! INTERRUPTED, or a FAILED that no retry follows. A FAILED that is retried is not final, so
//! the span stays open through RETRYING and the next attempt. (A record without the mark, as
//! read from a file written before it existed, ends its call if it is COMPLETED or
//! INTERRUPTED.) A call that records nothing more, because its process stopped, keeps its
//! span until the bridge is dropped with its state.
//!
//! Use one bridge per state: addresses are unique within a state only.

use std::fmt;
use std::sync::Arc;

use tracing::{Level, Span};

use crate::bus::{is_interrupt_notice, Subscriber};
use crate::event::{Event, EventStatus, Severity};
use crate::recording::spans::{new_span, CallSpans};
use crate::BoxError;

/// A [`Subscriber`] that turns calls into `tracing` spans and records into `tracing` events.
///
/// Each record becomes an event inside its call's span, with the fields `status`, `attempt`,
/// `delay_ms`, `duration_ms`, `message` (the record's message, or the status when it has
/// none) and `original_error`. FAILED and INTERRUPTED records are events at `WARN`, log
/// records at their severity, everything else at `INFO`. The runtime's interrupt notice is a
/// `WARN` event with `reason`, `triggered_by` and `message`. See the
/// [module docs](self) for when spans open and close.
///
/// # Examples
///
/// ```
/// use rh_agents::observe::tracing_bridge::TracingBridge;
/// use rh_agents::{Actor, ExecutionState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rh_agents::Error> {
/// // With a `tracing` subscriber installed (e.g. `tracing_subscriber::fmt`), every call
/// // shows up as a span named `rh_agents.call`.
/// let state = ExecutionState::builder()
///     .subscriber(TracingBridge::new())
///     .build();
/// let double = Actor::tool("double", |x: u32, _ctx| async move { Ok::<_, std::io::Error>(x * 2) });
/// assert_eq!(state.call(&double, 21).await?, 42);
/// # Ok(())
/// # }
/// ```
#[derive(Default)]
pub struct TracingBridge {
    /// The spans of the calls that have not ended, by address (shared with the runtime,
    /// which opens them as calls start).
    spans: Arc<CallSpans>,
}

impl TracingBridge {
    /// A bridge with no open spans.
    pub fn new() -> Self {
        Self::default()
    }

    /// Finds or opens the span of `event`'s call. When the call ends with `event`, the span
    /// is taken out of the map: the returned handle is its last, and dropping it closes it.
    fn track(&self, event: &Event) -> Span {
        let mut spans = self.spans.lock();
        let ends = event.is_final
            || matches!(
                event.status,
                EventStatus::Completed | EventStatus::Interrupted
            );
        if ends {
            if let Some(span) = spans.remove(&event.address) {
                return span;
            }
        } else if let Some(span) = spans.get(&event.address) {
            return span.clone();
        }
        let span = new_span(&spans, &event.address, &event.actor, event.kind);
        if !ends {
            spans.insert(event.address.clone(), span.clone());
        }
        span
    }
}

impl fmt::Debug for TracingBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingBridge")
            .field("open_spans", &self.spans.lock().len())
            .finish()
    }
}

impl Subscriber for TracingBridge {
    /// Emits `event` as a `tracing` event, opening or closing its call's span.
    ///
    /// # Errors
    ///
    /// Never fails.
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        if is_interrupt_notice(event) {
            emit_notice(event);
            return Ok(());
        }
        if event.status == EventStatus::Log {
            // A log record belongs to the call at its address, if that call is running.
            let span = self.spans.lock().get(&event.address).cloned();
            emit(&span.unwrap_or_else(Span::current), event);
            return Ok(());
        }
        // The event is emitted outside the lock; for a call's final record the span is out of
        // the map, so dropping this last handle after its last event closes it.
        let span = self.track(event);
        emit(&span, event);
        Ok(())
    }

    fn call_spans(&self) -> Option<Arc<CallSpans>> {
        Some(Arc::clone(&self.spans))
    }
}

/// The level of a record's event.
fn level_of(event: &Event) -> Level {
    match event.status {
        EventStatus::Failed | EventStatus::Interrupted => Level::WARN,
        EventStatus::Log => match event.level {
            Some(Severity::Debug) => Level::DEBUG,
            Some(Severity::Warning) => Level::WARN,
            Some(Severity::Error) => Level::ERROR,
            Some(Severity::Info) | None => Level::INFO,
        },
        _ => Level::INFO,
    }
}

/// Emits a `tracing` event at a level known only at run time (the macros need a constant;
/// `level_of` never gives `TRACE`).
macro_rules! event_at {
    (parent: $parent:expr, $level:expr, $($args:tt)+) => {{
        let level = $level;
        if level == Level::ERROR {
            tracing::event!(parent: $parent, Level::ERROR, $($args)+);
        } else if level == Level::WARN {
            tracing::event!(parent: $parent, Level::WARN, $($args)+);
        } else if level == Level::INFO {
            tracing::event!(parent: $parent, Level::INFO, $($args)+);
        } else {
            tracing::event!(parent: $parent, Level::DEBUG, $($args)+);
        }
    }};
}

/// Emits one record as an event inside `span`.
fn emit(span: &Span, event: &Event) {
    let status = event.status.as_str();
    let millis = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    event_at!(
        parent: span,
        level_of(event),
        status,
        attempt = event.retry.attempt,
        delay_ms = event.retry.delay.map(millis),
        duration_ms = event.duration.map(millis),
        original_error = event.retry.original_error.as_deref(),
        message = event.message.as_deref().unwrap_or(status),
    );
}

/// Emits the runtime's interrupt notice.
fn emit_notice(event: &Event) {
    let signal = event.interrupt.as_deref();
    tracing::warn!(
        status = event.status.as_str(),
        reason = signal.map(|s| s.reason.as_str()),
        triggered_by = signal.and_then(|s| s.triggered_by.as_deref()),
        message = event.message.as_deref().unwrap_or("interrupt requested"),
    );
}
