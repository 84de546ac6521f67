//! Interrupts: the signal, external checkers, the watcher, and the waits that an interrupt
//! ends at once.
//!
//! A local [`request_interrupt`](crate::ExecutionState::request_interrupt) cancels a token that
//! every wait selects on, so a backoff, a precondition or a running handler sees it within the
//! same tick. Everything outside the process — registered [checkers](InterruptChecker) and, for
//! a durable state, the requests left in its store — is watched by one background task per
//! state, which requests the interrupt when one of them says stop: checkers every
//! `check_interval` (100 ms by default), the store's mailbox every few milliseconds
//! ([`DEFAULT_MAILBOX_INTERVAL`](crate::DEFAULT_MAILBOX_INTERVAL)). A state with neither runs no task and no timer.

mod checker;
mod signal;
pub(crate) mod wait;
pub(crate) mod watch;

pub use checker::{BoxFuture, CheckOutcome, InterruptChecker};
pub use signal::{InterruptReason, InterruptSignal};
