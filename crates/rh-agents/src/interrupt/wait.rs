//! Interrupt bookkeeping and interruptible waits.
//!
//! Invariant: the first signal wins. `signal` is set once; the token is cancelled right after
//! the interrupt record is published, so every waiter that wakes finds the signal set.
//!
//! Invariant: a wait selects only on the token. External checkers and the store's mailbox are
//! polled by the state's watcher task ([`super::watch`]), never inside a wait.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::checker::InterruptChecker;
use super::signal::{InterruptReason, InterruptSignal};
use super::watch::Watcher;
use crate::state::ExecutionState;

/// The interrupt side of a state.
#[derive(Debug)]
pub(crate) struct Interrupts {
    pub(crate) token: CancellationToken,
    signal: OnceLock<InterruptSignal>,
    checkers: RwLock<Arc<Vec<InterruptChecker>>>,
    has_checkers: AtomicBool,
    pub(crate) check_interval: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) timeout: Mutex<Option<AbortHandle>>,
    /// The background task that polls the checkers and the mailbox.
    pub(crate) watcher: Watcher,
    /// When a checker failure was last reported.
    last_warning: Mutex<Option<tokio::time::Instant>>,
}

/// A checker that keeps failing is reported at most this often.
const WARNING_EVERY: Duration = Duration::from_secs(10);

impl Interrupts {
    pub(crate) fn new(
        checkers: Vec<InterruptChecker>,
        check_interval: Duration,
        check_timeout: Duration,
        watcher: Watcher,
    ) -> Self {
        Self {
            token: CancellationToken::new(),
            signal: OnceLock::new(),
            has_checkers: AtomicBool::new(!checkers.is_empty()),
            checkers: RwLock::new(Arc::new(checkers)),
            check_interval,
            check_timeout,
            timeout: Mutex::new(None),
            watcher,
            last_warning: Mutex::new(None),
        }
    }

    /// Whether a checker failure should be reported now (rate-limited).
    pub(crate) fn should_warn(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self.last_warning.lock();
        match *last {
            Some(at) if now.saturating_duration_since(at) < WARNING_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// The signal, once an interrupt was requested.
    pub(crate) fn current(&self) -> Option<&InterruptSignal> {
        self.signal.get()
    }

    /// Records the signal; `true` if it is the first.
    pub(crate) fn set(&self, signal: InterruptSignal) -> bool {
        self.signal.set(signal).is_ok()
    }

    pub(crate) fn add_checker(&self, checker: InterruptChecker) {
        let mut guard = self.checkers.write();
        let mut list = Vec::clone(&guard);
        list.push(checker);
        *guard = Arc::new(list);
        self.has_checkers.store(true, Ordering::Release);
    }

    /// The interval between checker polls while waiting: at least a millisecond (no busy
    /// loop), at most a year (the clock must be able to add it).
    pub(crate) fn poll_period(&self) -> Duration {
        self.check_interval.clamp(
            Duration::from_millis(1),
            Duration::from_secs(60 * 60 * 24 * 365),
        )
    }

    pub(crate) fn has_checkers(&self) -> bool {
        self.has_checkers.load(Ordering::Acquire)
    }

    pub(crate) fn checkers(&self) -> Arc<Vec<InterruptChecker>> {
        Arc::clone(&self.checkers.read())
    }

    /// The signal to report when the token fired (always set by then; the fallback only
    /// guards against a token cancelled from outside).
    fn fired(&self) -> InterruptSignal {
        self.current()
            .cloned()
            .unwrap_or_else(|| InterruptSignal::new(InterruptReason::Custom))
    }
}

impl ExecutionState {
    /// A checkpoint: the current interrupt. When checkers are registered, they are consulted
    /// first: the watcher runs a round for this checkpoint (and any concurrent ones) and the
    /// checkpoint waits for it. The mailbox is not read here; the watcher reads it every few
    /// milliseconds, so a call's checkpoints cost nothing on a durable state.
    pub(crate) async fn check_now(&self) -> Option<InterruptSignal> {
        let interrupts = &self.inner.interrupts;
        if let Some(signal) = interrupts.current() {
            return Some(signal.clone());
        }
        if interrupts.has_checkers() {
            // Boxed so that the round's wait is not part of every call's future.
            Box::pin(self.fresh_round()).await;
        }
        interrupts.current().cloned()
    }

    /// Runs `fut` until it finishes or the run is interrupted, whichever comes first.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future drops `fut`.
    pub(crate) async fn until_interrupted<F: Future>(
        &self,
        fut: F,
    ) -> Result<F::Output, InterruptSignal> {
        let interrupts = &self.inner.interrupts;
        if let Some(signal) = interrupts.current() {
            return Err(signal.clone());
        }
        if interrupts.has_checkers() {
            // A checker added to a state built outside a runtime starts its watcher here.
            self.start_watcher();
        }
        tokio::pin!(fut);
        // One poll before anything else: most handlers finish on their first poll, and then no
        // waiter is registered on the token and no wait state is allocated.
        let first = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        if let Some(out) = first {
            return Ok(out);
        }
        // Still running: wait for it or the interrupt. Boxed, as the token's waiter is large
        // and only futures that really wait need it.
        Box::pin(async {
            tokio::select! {
                biased;
                out = &mut fut => Ok(out),
                () = interrupts.token.cancelled() => Err(interrupts.fired()),
            }
        })
        .await
    }

    /// Waits `delay`, or until an interrupt. A zero delay never touches the timer (a zero
    /// sleep would still wait for the next 1 ms tick) but is still a checkpoint.
    pub(crate) async fn interruptible_sleep(&self, delay: Duration) -> Result<(), InterruptSignal> {
        if delay.is_zero() {
            return match self.check_now().await {
                Some(signal) => Err(signal),
                None => Ok(()),
            };
        }
        // Boxed: a timer is large, and only calls that really back off need one.
        self.until_interrupted(Box::pin(tokio::time::sleep(delay)))
            .await
    }
}
