//! Interrupts: the signal, external checkers, and the waits that an interrupt ends at once.
//!
//! A local [`request_interrupt`](crate::ExecutionState::request_interrupt) cancels a token that
//! every wait selects on, so a backoff, a precondition or a running handler sees it within the
//! same tick. External [checkers](InterruptChecker) are consulted at every checkpoint and, while
//! something is waiting, every `check_interval` (100 ms by default) — only when a checker is
//! registered, so a run without checkers never starts a poll timer.

mod checker;
mod signal;
pub(crate) mod wait;

pub use checker::{BoxFuture, CheckOutcome, InterruptChecker};
pub use signal::{InterruptReason, InterruptSignal};
