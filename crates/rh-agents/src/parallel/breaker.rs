//! A circuit breaker: after N consecutive failures, stop trying for a while.
//!
//! ```text
//! closed ──N consecutive failures──▶ open ──reset timeout──▶ half-open ──trial succeeds──▶ closed
//!                                     ▲                          │
//!                                     └──────trial fails─────────┘
//! ```

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Work goes through; consecutive failures are counted.
    Closed,
    /// Work fails at once until the reset timeout has passed.
    Open,
    /// One trial goes through; its outcome closes or reopens the circuit.
    HalfOpen,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

/// Stops sending work to something that keeps failing: after `threshold` consecutive
/// failures the circuit opens and work fails at once; after `reset_timeout` it half-opens and
/// lets one trial through. Share one (in an `Arc`) between groups to protect one service.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::parallel::{CircuitBreaker, CircuitState};
///
/// let breaker = CircuitBreaker::new(2, Duration::from_secs(30));
/// assert!(breaker.try_acquire());
/// breaker.record(false);
/// breaker.record(false);
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(!breaker.try_acquire());
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    reset_timeout: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures (at least 1) and
    /// half-opens `reset_timeout` after opening.
    pub fn new(threshold: u32, reset_timeout: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            reset_timeout,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    /// The state now (an open circuit whose timeout has passed reads as half-open).
    pub fn state(&self) -> CircuitState {
        match &*self.inner.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until } if Instant::now() >= *until => CircuitState::HalfOpen,
            Inner::Open { .. } => CircuitState::Open,
            Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// How many consecutive failures open the circuit.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Asks to run one piece of work: `true` if it may go (closed, or the half-open trial).
    pub fn try_acquire(&self) -> bool {
        let mut inner = self.inner.lock();
        match &*inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } => {
                if Instant::now() >= *until {
                    *inner = Inner::HalfOpen {
                        trial_running: true,
                    };
                    true
                } else {
                    false
                }
            }
            Inner::HalfOpen { trial_running } => {
                if *trial_running {
                    false
                } else {
                    *inner = Inner::HalfOpen {
                        trial_running: true,
                    };
                    true
                }
            }
        }
    }

    /// Reports how acquired work ended. A success closes a closed or half-open circuit (in
    /// half-open, work admitted before the circuit opened cannot be told from the trial, so its
    /// success closes the circuit too); it does not close an open one.
    pub fn record(&self, success: bool) {
        let mut inner = self.inner.lock();
        let open = Inner::Open {
            until: Instant::now() + self.reset_timeout,
        };
        *inner = match (&*inner, success) {
            // A success from work admitted before the circuit opened says nothing about the
            // service now: an open circuit waits for its reset timeout and a trial.
            (Inner::Open { until }, true) => Inner::Open { until: *until },
            (_, true) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    open
                } else {
                    Inner::Closed { failures }
                }
            }
            (Inner::HalfOpen { .. }, false) => open,
            (Inner::Open { until }, false) => Inner::Open { until: *until },
        };
    }

    /// Gives back an acquisition whose work never ran (it was cancelled): a half-open trial
    /// slot becomes free again; nothing else changes.
    pub fn release(&self) {
        let mut inner = self.inner.lock();
        if let Inner::HalfOpen { .. } = &*inner {
            *inner = Inner::HalfOpen {
                trial_running: false,
            };
        }
    }
}
