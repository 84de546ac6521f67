//! Progress updates: what a running call reports about itself (streamed tokens, percent
//! done) for whoever watches, without making it part of the run.
//!
//! A progress update is not a record: it has no number, is not in the history, is never
//! written to the store and is not replayed. Sync subscribers get it through
//! [`Subscriber::on_progress`](crate::Subscriber::on_progress) and streams made with
//! [`EventStream::with_progress`](crate::EventStream::with_progress) as
//! [`Update::Progress`], in order with the records: an update comes after every record made
//! before it. The newest [`bus_capacity`](crate::ExecutionStateBuilder::bus_capacity)
//! updates are kept for readers that are behind; older ones are skipped.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::actor::ActorKind;
use crate::address::Address;
use crate::event::Event;

/// One progress update of a running call (see [`Ctx::progress`](crate::Ctx::progress)).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Progress {
    /// The call's address.
    pub address: Address,
    /// The call's actor.
    pub actor: Arc<str>,
    /// The actor's kind.
    pub kind: ActorKind,
    /// The attempt that reported it.
    pub attempt: u32,
    /// How many records the run had made when it was reported: it comes after record
    /// `after - 1` and before record `after`.
    pub after: u64,
    /// What the call reported.
    pub value: Value,
}

/// What a stream made with [`EventStream::with_progress`](crate::EventStream::with_progress)
/// yields: a record, or a progress update.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Update {
    /// A record of the run (in the history, stored).
    Record(Arc<Event>),
    /// A progress update (not in the history, not stored).
    Progress(Arc<Progress>),
}
