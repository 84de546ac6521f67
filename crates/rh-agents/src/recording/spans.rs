//! The `tracing` spans of calls, shared by the runtime and the tracing bridge.
//!
//! With a [`TracingBridge`](crate::observe::tracing_bridge::TracingBridge) subscribed, the
//! runtime opens each call's span itself, on the caller's thread, when the call starts (and
//! each group's and task's), and runs the handler's future inside it: what the handler logs
//! through `tracing` lands in its call's span. The bridge, on its own thread, finds the span
//! here when the records arrive and emits them into it; it opens one itself only for records
//! the runtime did not open a span for (a replayed call, a record read back from a file).
//! Whoever opens a span gives it the span of the parent address as its parent, or, for a
//! top-level call, the current span.

use std::collections::HashMap;
use std::fmt;

use parking_lot::{Mutex, MutexGuard};
use tracing::Span;

use crate::actor::ActorKind;
use crate::address::Address;

/// The open spans of calls, by address.
#[doc(hidden)]
#[derive(Default)]
pub struct CallSpans {
    spans: Mutex<HashMap<Address, Span>>,
}

impl fmt::Debug for CallSpans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallSpans")
            .field("open", &self.spans.lock().len())
            .finish()
    }
}

impl CallSpans {
    /// The span of the call at `address`, opened now if it is not open yet.
    pub(crate) fn open(&self, address: &Address, actor: &str, kind: ActorKind) -> Span {
        let mut spans = self.spans.lock();
        if let Some(span) = spans.get(address) {
            return span.clone();
        }
        let span = new_span(&spans, address, actor, kind);
        spans.insert(address.clone(), span.clone());
        span
    }

    /// The map, for the bridge.
    // Only the bridge (feature `tracing`) reads the map itself.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<Address, Span>> {
        self.spans.lock()
    }
}

/// A new span for the call at `address`, a child of its parent address's span if that is
/// open, else of the current span.
pub(crate) fn new_span(
    spans: &HashMap<Address, Span>,
    address: &Address,
    actor: &str,
    kind: ActorKind,
) -> Span {
    let parent = address
        .parent()
        .filter(|parent| !parent.is_root())
        .and_then(|parent| spans.get(&parent));
    match parent {
        Some(parent) => tracing::info_span!(
            parent: parent,
            "rh_agents.call",
            actor = %actor,
            kind = %kind,
            address = %address,
        ),
        None => tracing::info_span!(
            "rh_agents.call",
            actor = %actor,
            kind = %kind,
            address = %address,
        ),
    }
}
