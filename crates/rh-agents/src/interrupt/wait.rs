//! Interrupt bookkeeping and interruptible waits.
//!
//! Invariant: the first signal wins. `signal` is set once; the token is cancelled right after
//! the interrupt record is published, so every waiter that wakes finds the signal set.

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
use crate::event::Severity;
use crate::panic::{catch, CatchUnwind};
use crate::state::ExecutionState;
use crate::BoxError;

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
    /// When a waiter last polled the checkers (shared by all waiters).
    last_poll: Mutex<Option<tokio::time::Instant>>,
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
    ) -> Self {
        Self {
            token: CancellationToken::new(),
            signal: OnceLock::new(),
            has_checkers: AtomicBool::new(!checkers.is_empty()),
            checkers: RwLock::new(Arc::new(checkers)),
            check_interval,
            check_timeout,
            timeout: Mutex::new(None),
            last_poll: Mutex::new(None),
            last_warning: Mutex::new(None),
        }
    }

    /// Whether a checker failure should be reported now (rate-limited).
    fn should_warn(&self) -> bool {
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

    fn checkers(&self) -> Arc<Vec<InterruptChecker>> {
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
    /// Consults every external checker once. A checker that says stop raises the interrupt;
    /// one that fails, panics or takes longer than `check_timeout` is reported as a warning log
    /// record (at most one per `WARNING_EVERY`) and ignored. A local interrupt ends the poll at
    /// once, even while a checker is still answering.
    pub(crate) async fn poll_checkers(&self) -> Option<InterruptSignal> {
        let interrupts = &self.inner.interrupts;
        let limit = interrupts.check_timeout;
        for checker in interrupts.checkers().iter() {
            let check = async {
                let started = match catch(|| checker.start()) {
                    Ok(fut) => fut,
                    Err(p) => return Err(BoxError::from(p)),
                };
                match tokio::time::timeout(limit, CatchUnwind(started)).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(p)) => Err(BoxError::from(p)),
                    Err(_) => Err(BoxError::from(format!(
                        "no answer within {}",
                        crate::serde_time::Human(limit)
                    ))),
                }
            };
            let outcome = tokio::select! {
                biased;
                () = interrupts.token.cancelled() => return Some(interrupts.fired()),
                outcome = check => outcome,
            };
            match outcome {
                Ok(None) => {}
                Ok(Some(signal)) => {
                    self.request_interrupt(signal);
                    return interrupts.current().cloned();
                }
                Err(e) => {
                    if interrupts.should_warn() {
                        self.log(Severity::Warning, format!("interrupt checker failed: {e}"));
                    }
                }
            }
            if let Some(signal) = interrupts.current() {
                // The checker requested the interrupt itself.
                return Some(signal.clone());
            }
        }
        None
    }

    /// The poll made while something waits: every waiter ticks, but one poll per interval is
    /// enough for all of them (the interrupt it raises wakes every waiter), so nested and
    /// parallel waits do not multiply the load on the checkers.
    pub(crate) async fn poll_checkers_shared(&self) -> Option<InterruptSignal> {
        let interrupts = &self.inner.interrupts;
        let now = tokio::time::Instant::now();
        {
            let mut last = interrupts.last_poll.lock();
            if let Some(at) = *last {
                if now.saturating_duration_since(at) < interrupts.check_interval / 2 {
                    return None;
                }
            }
            *last = Some(now);
        }
        self.poll_checkers().await
    }

    /// A checkpoint: the current interrupt, after consulting the external checkers.
    pub(crate) async fn check_now(&self) -> Option<InterruptSignal> {
        let interrupts = &self.inner.interrupts;
        if let Some(signal) = interrupts.current() {
            return Some(signal.clone());
        }
        if interrupts.has_checkers() {
            // Boxed so that the checkers' futures are not part of every call's future.
            return Box::pin(self.poll_checkers()).await;
        }
        None
    }

    /// Runs `fut` until it finishes or the run is interrupted, whichever comes first. While it
    /// runs, external checkers are polled every `check_interval`.
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
            // Boxed so that the poll timer is not part of every call's future (this path is
            // taken only when a checker is registered).
            return Box::pin(self.until_interrupted_polling(fut)).await;
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

    async fn until_interrupted_polling<F: Future>(
        &self,
        fut: F,
    ) -> Result<F::Output, InterruptSignal> {
        let interrupts = &self.inner.interrupts;
        tokio::pin!(fut);
        let period = interrupts.poll_period();
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = interrupts.token.cancelled() => return Err(interrupts.fired()),
                _ = ticks.tick() => {
                    if let Some(signal) = self.poll_checkers_shared().await {
                        return Err(signal);
                    }
                }
            }
        }
    }

    /// Waits `delay`, or until an interrupt. A zero delay never touches the timer (a zero
    /// sleep would still wait for the next 1 ms tick) but still checks for an interrupt.
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
