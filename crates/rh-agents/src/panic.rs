//! Turning a panicking handler into a failed attempt.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::HandlerPanic;

/// Polls a future, turning a panic inside `poll` into [`HandlerPanic`].
///
/// `AssertUnwindSafe` is sound here: after a panic the future is never polled again (the
/// attempt ends), so no broken invariant inside it can be observed.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, HandlerPanic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(HandlerPanic::from_payload(&*payload))),
        }
    }
}

/// Calls `f`, turning a panic into [`HandlerPanic`].
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, HandlerPanic> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| HandlerPanic::from_payload(&*payload))
}
