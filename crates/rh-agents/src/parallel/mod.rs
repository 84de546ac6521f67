//! Parallel groups: fan work out with bounded workers, fail fast or slow, time out, and trip a
//! circuit breaker — with nothing left running when the group returns.
//!
//! - [`group`] — [`ParallelGroup`], its builder and [`GroupStream`]; `drive` runs it (workers,
//!   results, stops) and `records` makes the group's and its tasks' records.
//! - [`breaker`] — [`CircuitBreaker`].
//! - [`record`] — [`GroupRecord`], [`GroupStatus`] and [`GroupOutcome`].

pub mod breaker;
mod drive;
pub mod group;
mod orphans;
pub mod record;
mod records;

pub(crate) use orphans::Orphans;

pub use breaker::{CircuitBreaker, CircuitState, Permit};
pub use group::{ErrorStrategy, GroupStream, ParallelGroup, DEFAULT_MAX_WORKERS};
pub use record::{GroupOutcome, GroupRecord, GroupStatus, TaskError};
