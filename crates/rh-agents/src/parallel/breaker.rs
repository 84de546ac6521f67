//! A circuit breaker: after N consecutive failures, stop trying for a while.
//!
//! ```text
//! closed ──N consecutive failures──▶ open ──reset timeout──▶ half-open ──trial succeeds──▶ closed
//!                                     ▲                          │
//!                                     └──────trial fails─────────┘
//! ```
//!
//! Invariant: every outcome is tied to the [`Permit`] that admitted the work. Each time the
//! circuit opens or closes from half-open, a new generation starts, and outcomes of permits
//! from an older generation are ignored: work admitted before the circuit opened cannot close
//! it again, and only the half-open trial decides the half-open state.

use std::sync::Arc;
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
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_running: bool },
}

#[derive(Debug)]
struct Inner {
    generation: u64,
    phase: Phase,
}

/// Stops sending work to something that keeps failing: after `threshold` consecutive
/// failures the circuit opens and work fails at once; after `reset_timeout` it half-opens and
/// lets one trial through. Share one (it is used through an `Arc`) between groups to protect
/// one service.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rh_agents::parallel::{CircuitBreaker, CircuitState};
///
/// let breaker = Arc::new(CircuitBreaker::new(2, Duration::from_secs(30)));
/// breaker.try_acquire().unwrap().failure();
/// breaker.try_acquire().unwrap().failure();
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(breaker.try_acquire().is_none());
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
            inner: Mutex::new(Inner {
                generation: 0,
                phase: Phase::Closed { failures: 0 },
            }),
        }
    }

    /// The state now (an open circuit whose timeout has passed reads as half-open).
    pub fn state(&self) -> CircuitState {
        match &self.inner.lock().phase {
            Phase::Closed { .. } => CircuitState::Closed,
            Phase::Open { until } if Instant::now() >= *until => CircuitState::HalfOpen,
            Phase::Open { .. } => CircuitState::Open,
            Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// How many consecutive failures open the circuit.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Asks to run one piece of work: a permit if it may go (the circuit is closed, or this is
    /// the half-open trial). Report its outcome through the permit; a permit dropped without
    /// an outcome (the work was cancelled) gives its trial slot back.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut inner = self.inner.lock();
        let trial = match inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if Instant::now() >= until => {
                inner.phase = Phase::HalfOpen {
                    trial_running: true,
                };
                true
            }
            Phase::Open { .. }
            | Phase::HalfOpen {
                trial_running: true,
            } => return None,
            Phase::HalfOpen {
                trial_running: false,
            } => {
                inner.phase = Phase::HalfOpen {
                    trial_running: true,
                };
                true
            }
        };
        Some(Permit {
            breaker: Arc::clone(self),
            generation: inner.generation,
            trial,
            settled: false,
        })
    }

    fn settle(&self, permit: &Permit, outcome: Option<bool>) {
        let mut inner = self.inner.lock();
        if permit.generation != inner.generation {
            return; // Admitted before the circuit last changed: says nothing about it now.
        }
        let reopen = |inner: &mut Inner| {
            inner.generation += 1;
            inner.phase = Phase::Open {
                until: Instant::now() + self.reset_timeout,
            };
        };
        match (&inner.phase, permit.trial, outcome) {
            (Phase::Closed { .. }, false, Some(true)) => {
                inner.phase = Phase::Closed { failures: 0 };
            }
            (Phase::Closed { failures }, false, Some(false)) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    reopen(&mut inner);
                } else {
                    inner.phase = Phase::Closed { failures };
                }
            }
            (Phase::HalfOpen { .. }, true, Some(true)) => {
                inner.generation += 1;
                inner.phase = Phase::Closed { failures: 0 };
            }
            (Phase::HalfOpen { .. }, true, Some(false)) => reopen(&mut inner),
            (Phase::HalfOpen { .. }, true, None) => {
                inner.phase = Phase::HalfOpen {
                    trial_running: false,
                };
            }
            _ => {}
        }
    }
}

/// Leave to run one piece of work under a [`CircuitBreaker`]. Report how the work ended with
/// [`success`](Self::success) or [`failure`](Self::failure); dropping it unreported means the
/// work was cancelled (a half-open trial slot is given back).
#[derive(Debug)]
#[must_use = "report the outcome with `.success()` or `.failure()`"]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    generation: u64,
    trial: bool,
    settled: bool,
}

impl Permit {
    /// Whether this permit is the half-open trial.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The work succeeded.
    pub fn success(mut self) {
        self.settled = true;
        self.breaker.settle(&self, Some(true));
    }

    /// The work failed.
    pub fn failure(mut self) {
        self.settled = true;
        self.breaker.settle(&self, Some(false));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self, None);
        }
    }
}
