//! # rh-agents: actors that run as recorded events
//!
//! The tools, LLM calls and agents of an AI pipeline run here as recorded *events*: every
//! attempt is a record (STARTED, FAILED, RETRYING, COMPLETED, INTERRUPTED, …) in a history and on
//! an event bus; failures are retried by a policy you can read; an interrupt stops the run at
//! once, also in the middle of a backoff.
//!
//! ## A tour
//!
//! - An [`Actor`] is something to call: [`Actor::tool`], [`Actor::llm`] or [`Actor::agent`],
//!   with an async handler `Fn(I, Ctx) -> Result<O, E>`.
//! - An [`ExecutionState`] is one run. [`ExecutionState::call`] runs an actor as an event;
//!   an agent's handler calls other actors through its [`Ctx`], which nests their addresses
//!   (`planner#0/search#1`).
//! - A [`RetryPolicy`] says how to retry: constant, linear, exponential or fibonacci backoff,
//!   jitter, a hard `max_delay`, a total `retry_timeout`, a per-attempt timeout and error
//!   filters. Five levels configure it; the most specific one decides
//!   ([`retry::config`]).
//! - [`ExecutionState::group`] fans work out: a [`parallel::ParallelGroup`] runs tasks on
//!   bounded workers, fail-fast or fail-slow, with a timeout and a circuit breaker.
//! - [`ExecutionState::request_interrupt`] stops the run; external
//!   [`InterruptChecker`]s let another process do so.
//! - [`store`] makes runs durable: [`ExecutionStateBuilder::start`] writes every record to a
//!   [`store::StateStore`] (SQLite by default), committed as its [`CommitMode`] says, and
//!   [`ExecutionStateBuilder::resume`] continues a run, replaying what completed.
//! - [`ExecutionState::history`], [`ExecutionState::subscribe`] and
//!   [`ExecutionState::stream`] show what happened (each sync subscriber on a thread of its
//!   own, so none can hold up the run; [`ExecutionState::subscribe_from`] resumes a stream
//!   by record number; [`Ctx::progress`] and [`Ctx::annotate`] report from inside a call);
//!   [`observe`] has the console printer, the
//!   run summary, progress lines, JSON lines and (feature `tracing`) a `tracing` bridge.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rh_agents::{Actor, EventStatus, ExecutionState, InterruptReason, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let state = ExecutionState::new();
//!
//! // A tool that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&calls);
//! let flaky = Actor::tool("flaky", move |q: String, _ctx| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         if n < 2 {
//!             Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "upstream timed out"))
//!         } else {
//!             Ok(format!("answer to {q}"))
//!         }
//!     }
//! })
//! .retry(RetryPolicy::exponential(Duration::from_millis(1)).max_attempts(3).build()?);
//!
//! let answer = state.call(&flaky, "life".to_owned()).await?;
//! assert_eq!(answer, "answer to life");
//! use EventStatus::*;
//! assert_eq!(
//!     state.history().statuses("flaky#0"),
//!     [Started, Failed, Retrying, Started, Failed, Retrying, Started, Completed]
//! );
//!
//! // After an interrupt, every call stops with one consistent error.
//! state.request_interrupt(InterruptReason::UserCancelled);
//! let err = state.call(&flaky, "again".to_owned()).await.unwrap_err();
//! assert!(err.is_interrupted());
//! # Ok(())
//! # }
//! ```

mod actor;
mod address;
mod attempt;
mod bus;
mod call;
mod context;
mod error;
mod event;
mod history;
pub mod interrupt;
pub mod observe;
mod panic;
pub mod parallel;
mod recording;
pub mod retry;
mod run;
mod serde_time;
mod state;
mod storage;
pub mod store;
mod text;

pub use actor::{Actor, ActorKind};
pub use address::Address;
pub use bus::{EventStream, Subscriber, UpdateStream};
pub use call::Call;
pub use context::Ctx;
pub use error::{
    AttemptTimeout, BoxError, ConditionFailed, Error, ErrorClass, ErrorExt, ErrorKind,
    HandlerPanic, Marked,
};
pub use event::{
    Event, EventStatus, EventVersion, GroupRef, RetryInfo, Severity, EVENT_SCHEMA_VERSION,
};
pub use history::History;
pub use interrupt::{CheckOutcome, InterruptChecker, InterruptReason, InterruptSignal};
#[doc(hidden)]
pub use recording::CallSpans;
pub use recording::{CommitMode, Progress, Update};
pub use retry::{
    Backoff, FixedRandom, PolicyError, PolicySource, RandomSource, RetryConfig, RetryPolicy,
    RetryPolicyBuilder, SeededRandom, ThreadRandom,
};
pub use state::{
    ExecutionState, ExecutionStateBuilder, DEFAULT_BUS_CAPACITY, DEFAULT_CHECK_INTERVAL,
    DEFAULT_CHECK_TIMEOUT, DEFAULT_DETAIL_LIMIT, DEFAULT_GRACE_PERIOD, DEFAULT_MAILBOX_INTERVAL,
    DEFAULT_WRITER_WAIT,
};
pub use storage::{Storage, StorageError};
