//! External interrupt checkers: a function (sync or async) that another process, a database or
//! a cache answers through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::signal::{InterruptReason, InterruptSignal};
use crate::BoxError;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a checker may return: `bool` (true = interrupt), a full [`InterruptSignal`], an
/// `Option` of one, or a `Result` of any of these (an `Err` is reported as a log event and
/// never interrupts). There is no implementation for `()`: a checker that can never say stop
/// does not compile.
///
/// ```compile_fail
/// use rh_agents::InterruptChecker;
/// let never = InterruptChecker::from_fn(|| ());
/// ```
pub trait CheckOutcome {
    /// The signal to raise, if any.
    ///
    /// # Errors
    ///
    /// The checker's own failure.
    fn into_signal(self) -> Result<Option<InterruptSignal>, BoxError>;
}

impl CheckOutcome for bool {
    fn into_signal(self) -> Result<Option<InterruptSignal>, BoxError> {
        Ok(self.then(|| {
            InterruptSignal::new(InterruptReason::Custom)
                .message("interrupt requested by an external checker")
                .triggered_by("external checker")
        }))
    }
}

impl CheckOutcome for InterruptSignal {
    fn into_signal(self) -> Result<Option<InterruptSignal>, BoxError> {
        Ok(Some(self))
    }
}

impl CheckOutcome for Option<InterruptSignal> {
    fn into_signal(self) -> Result<Option<InterruptSignal>, BoxError> {
        Ok(self)
    }
}

impl<T: CheckOutcome, E: Into<BoxError>> CheckOutcome for Result<T, E> {
    fn into_signal(self) -> Result<Option<InterruptSignal>, BoxError> {
        self.map_err(Into::into)?.into_signal()
    }
}

/// Something outside the runtime that can say "stop": another process, a database row, a
/// Redis key. Build one with [`InterruptChecker::from_fn`] or [`InterruptChecker::from_async`].
///
/// Sources that can push (a store notification, pub/sub) should call
/// [`request_interrupt`](crate::ExecutionState::request_interrupt) directly instead.
#[derive(Clone)]
pub struct InterruptChecker {
    check: Arc<
        dyn Fn() -> BoxFuture<'static, Result<Option<InterruptSignal>, BoxError>> + Send + Sync,
    >,
}

impl std::fmt::Debug for InterruptChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterruptChecker")
    }
}

impl InterruptChecker {
    /// A synchronous checker.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use rh_agents::{ExecutionState, InterruptChecker};
    ///
    /// let flag = Arc::new(AtomicBool::new(false));
    /// let seen = Arc::clone(&flag);
    /// let state = ExecutionState::builder()
    ///     .checker(InterruptChecker::from_fn(move || seen.load(Ordering::SeqCst)))
    ///     .build();
    /// # drop(state);
    /// ```
    pub fn from_fn<F, R>(check: F) -> Self
    where
        F: Fn() -> R + Send + Sync + 'static,
        R: CheckOutcome,
    {
        Self {
            check: Arc::new(move || {
                let outcome = check().into_signal();
                Box::pin(std::future::ready(outcome))
            }),
        }
    }

    /// An asynchronous checker (a database query, a network call).
    pub fn from_async<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: CheckOutcome,
    {
        Self {
            check: Arc::new(move || {
                let fut = check();
                Box::pin(async move { fut.await.into_signal() })
            }),
        }
    }

    /// Starts one check. A panic while building the future is the caller's to catch.
    pub(crate) fn start(&self) -> BoxFuture<'static, Result<Option<InterruptSignal>, BoxError>> {
        (self.check)()
    }
}
