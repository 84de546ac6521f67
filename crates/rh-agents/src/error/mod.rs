//! The runtime's error, and the marks and attempt errors that feed retry decisions.

mod attempt;
mod marks;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

pub use attempt::{AttemptTimeout, ConditionFailed, HandlerPanic};
pub(crate) use marks::{chain, class_of, retry_after_of};
pub use marks::{ErrorClass, ErrorExt, Marked};

use crate::actor::ActorKind;
use crate::address::Address;
use crate::interrupt::InterruptSignal;

/// A boxed error as handlers return it: any `std::error::Error + Send + Sync + 'static`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a call failed, at the level the runtime can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An interrupt stopped the call; see [`Error::interrupt`].
    Interrupted,
    /// Every attempt the policy allows failed.
    RetriesExhausted,
    /// An attempt failed with an error the policy does not retry.
    NotRetryable,
    /// The policy's total retry budget (`retry_timeout`) ran out.
    RetryTimeout,
    /// A precondition rejected the input; the handler never ran.
    PreconditionFailed,
    /// The handler's output could not be recorded as JSON.
    Output,
    /// The runtime could not do what was asked (e.g. no Tokio runtime to run a timer on).
    Runtime,
    /// A task of a parallel group returned an error (the cause).
    TaskFailed,
    /// A task of a parallel group was stopped, or never started, because the group was
    /// cancelled (fail-fast, the group timeout, or an interrupt).
    Cancelled,
    /// A task of a parallel group was not run because its circuit breaker is open.
    CircuitOpen,
    /// A resumed run could not replay a recorded result (it no longer fits the actor's
    /// output type, or its artifact is missing).
    Replay,
    /// The state's store failed to keep something the call produced (an artifact output).
    Store,
}

/// The error returned by a call: what happened, where, after how many attempts, and the last
/// underlying error as its [`source`](StdError::source).
///
/// # Examples
///
/// ```
/// # use rh_agents::{Actor, ExecutionState, RetryPolicy};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = ExecutionState::new();
/// let flaky = Actor::tool("flaky", |_: (), _ctx| async move {
///     Err::<(), _>(std::io::Error::other("down"))
/// })
/// .retry(RetryPolicy::constant(std::time::Duration::ZERO).max_attempts(2).build().unwrap());
/// let err = state.call(&flaky, ()).await.unwrap_err();
/// assert!(err.is_retry_exhausted());
/// assert_eq!(err.attempts(), 2);
/// assert_eq!(err.last_error().unwrap().to_string(), "down");
/// # }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    actor: Option<(Arc<str>, ActorKind)>,
    address: Option<Address>,
    attempts: u32,
    interrupt: Option<InterruptSignal>,
    cause: Option<BoxError>,
    detail: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                actor: None,
                address: None,
                attempts: 0,
                interrupt: None,
                cause: None,
                detail: None,
            }),
        }
    }

    pub(crate) fn interrupted(signal: InterruptSignal) -> Self {
        let mut e = Self::new(ErrorKind::Interrupted);
        e.inner.interrupt = Some(signal);
        e
    }

    pub(crate) fn runtime(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Runtime).detail(detail)
    }

    pub(crate) fn at(mut self, actor: &Arc<str>, kind: ActorKind, address: &Address) -> Self {
        self.inner.actor = Some((Arc::clone(actor), kind));
        self.inner.address = Some(address.clone());
        self
    }

    pub(crate) fn attempts_made(mut self, attempts: u32) -> Self {
        self.inner.attempts = attempts;
        self
    }

    pub(crate) fn cause(mut self, cause: BoxError) -> Self {
        self.inner.cause = Some(cause);
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.inner.detail = Some(detail.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether an interrupt stopped the call.
    pub fn is_interrupted(&self) -> bool {
        self.inner.kind == ErrorKind::Interrupted
    }

    /// Whether time ran out: the retry budget, the last attempt's timeout, or an interrupt
    /// with reason `timeout`.
    pub fn is_timeout(&self) -> bool {
        match self.inner.kind {
            ErrorKind::RetryTimeout => true,
            ErrorKind::Interrupted => self
                .interrupt()
                .is_some_and(|s| s.reason == crate::InterruptReason::Timeout),
            _ => self
                .last_error()
                .is_some_and(|e| chain(e).any(|e| e.is::<AttemptTimeout>())),
        }
    }

    /// Whether a parallel group stopped this task (or never started it).
    pub fn is_cancelled(&self) -> bool {
        self.inner.kind == ErrorKind::Cancelled
    }

    /// Whether every allowed attempt failed.
    pub fn is_retry_exhausted(&self) -> bool {
        self.inner.kind == ErrorKind::RetriesExhausted
    }

    /// How many attempts ran (0 when the handler never ran).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The interrupt, when [`is_interrupted`](Self::is_interrupted).
    pub fn interrupt(&self) -> Option<&InterruptSignal> {
        self.inner.interrupt.as_ref()
    }

    /// The actor's name, when the error comes from a call.
    pub fn actor(&self) -> Option<&str> {
        self.inner.actor.as_ref().map(|(name, _)| &**name)
    }

    /// The address of the call that failed.
    pub fn address(&self) -> Option<&Address> {
        self.inner.address.as_ref()
    }

    /// The last error an attempt (or condition) returned.
    pub fn last_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.inner.cause.as_deref()
    }

    /// This error and its causes on one line (`call failed: cause: root cause`), for logs and
    /// people. `Display` shows this error alone, as is the convention; use this when printing.
    pub fn report(&self) -> String {
        describe(self).to_string()
    }

    /// Finds an error of type `E` in the cause chain (looking through marks and nested calls).
    pub fn find<E: StdError + 'static>(&self) -> Option<&E> {
        let cause = self.inner.cause.as_deref()?;
        chain(cause).find_map(|e| e.downcast_ref::<E>())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(address) = &self.inner.address {
            d.field("address", address);
        }
        d.field("attempts", &self.inner.attempts);
        if let Some(signal) = &self.inner.interrupt {
            d.field("interrupt", signal);
        }
        if let Some(cause) = &self.inner.cause {
            d.field("cause", cause);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        if let Some((name, kind)) = &inner.actor {
            write!(f, "{kind} `{name}`")?;
            if let Some(address) = &inner.address {
                write!(f, " at {address}")?;
            }
            f.write_str(": ")?;
        }
        let attempts = inner.attempts;
        let plural = if attempts == 1 { "" } else { "s" };
        match inner.kind {
            ErrorKind::Interrupted => {
                f.write_str("interrupted")?;
                if let Some(signal) = &inner.interrupt {
                    write!(f, " ({})", signal.reason)?;
                    if let Some(message) = &signal.message {
                        write!(f, ": {message}")?;
                    }
                }
                Ok(())
            }
            // One allowed attempt (a disabled policy, `max_attempts = 1`) is no retry at all.
            ErrorKind::RetriesExhausted if attempts <= 1 => {
                write!(f, "failed after {attempts} attempt{plural} (not retried)")
            }
            ErrorKind::RetriesExhausted => {
                write!(
                    f,
                    "failed after {attempts} attempt{plural} (retries exhausted)"
                )
            }
            ErrorKind::NotRetryable => {
                write!(
                    f,
                    "failed after {attempts} attempt{plural} (error not retryable)"
                )
            }
            ErrorKind::RetryTimeout => write!(
                f,
                "failed after {attempts} attempt{plural} (retry timeout spent)"
            ),
            ErrorKind::PreconditionFailed => f.write_str("precondition failed"),
            ErrorKind::Output => f.write_str("output could not be recorded as JSON"),
            ErrorKind::Runtime => f.write_str(inner.detail.as_deref().unwrap_or("runtime error")),
            ErrorKind::TaskFailed => f.write_str("task failed"),
            ErrorKind::Cancelled => {
                f.write_str("cancelled")?;
                if let Some(detail) = &inner.detail {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
            ErrorKind::Replay => write!(
                f,
                "the recorded result cannot be replayed: {}",
                inner.detail.as_deref().unwrap_or("unreadable")
            ),
            ErrorKind::Store => f.write_str("the result could not be saved to the state store"),
            ErrorKind::CircuitOpen => f.write_str(
                inner
                    .detail
                    .as_deref()
                    .unwrap_or("not run: the circuit breaker is open"),
            ),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .cause
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// The error and its causes as one line, `outer: inner: root`. Marks are transparent (they
/// display as the error they wrap), so they are skipped rather than repeated.
pub(crate) fn describe(error: &(dyn StdError + 'static)) -> Arc<str> {
    use std::fmt::Write as _;
    // A user's `Display` may panic; the record then says so instead of crashing the run.
    crate::panic::catch(|| {
        crate::text::build(|text| {
            for e in chain(error).filter(|e| !e.is::<Marked>()) {
                if !text.is_empty() {
                    text.push_str(": ");
                }
                // Writing to a String cannot fail.
                let _ = write!(text, "{e}");
            }
        })
    })
    .unwrap_or_else(|_| {
        // Some cause's `Display` panicked: go again one cause at a time, so the others are
        // still shown.
        let parts: Vec<String> = chain(error)
            .filter(|e| !e.is::<Marked>())
            .map(|e| {
                crate::panic::catch(|| e.to_string())
                    .unwrap_or_else(|panic| format!("the error could not be displayed: {panic}"))
            })
            .collect();
        Arc::from(parts.join(": "))
    })
}

/// Whether an error (as a handler returned it) is, or wraps, an interrupt of this runtime.
pub(crate) fn interrupt_in<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a InterruptSignal> {
    chain(error).find_map(|e| e.downcast_ref::<Error>().and_then(Error::interrupt))
}
