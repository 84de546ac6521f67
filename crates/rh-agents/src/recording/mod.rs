//! Recording: the sequencer, delivery to subscribers and the store writer.
//!
//! - `log` — the sequencer and in-memory log (the one short critical section).
//! - `reader` — a cursor into the log, with the lag rule (streams, subscribers).
//! - `delivery` — sync subscribers, each on its own thread; the bounded wait of a call.
//! - `writer` — the store writer: group commits, [`CommitMode`]s.
//! - `progress` — progress updates, delivered but never stored.
//! - `spans` — the `tracing` spans of calls, opened by the runtime when the tracing bridge is on.

pub(crate) mod delivery;
pub(crate) mod log;
pub(crate) mod progress;
pub(crate) mod reader;
pub(crate) mod spans;
pub(crate) mod writer;

pub use progress::{Progress, Update};
pub use spans::CallSpans;
pub use writer::CommitMode;
