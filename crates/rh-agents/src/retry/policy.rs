//! The retry policy value and its validating builder.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::backoff::{self, Backoff, Delays};
use super::filter::RetryFilter;
use super::jitter::RandomSource;

/// The default jitter: delays vary by ±25 %.
pub const DEFAULT_JITTER: f64 = 0.25;
/// The default cap on a single delay.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// The default number of attempts, counting the first.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A policy was built with values that make no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `max_attempts` was 0; it counts the first attempt, so the least is 1.
    #[error("max_attempts must be at least 1 (it counts the first attempt), got 0")]
    ZeroAttempts,
    /// The multiplier was below 1, or not a number.
    #[error("multiplier must be a finite number >= 1, got {0}")]
    InvalidMultiplier(f64),
    /// The jitter fraction was outside `[0, 1]`, or not a number.
    #[error("jitter must be a fraction between 0 and 1 (0.25 means ±25 %), got {0}")]
    InvalidJitter(f64),
    /// A duration was negative, infinite or not a number.
    #[error("{field} must be a finite, non-negative number of seconds, got {value}")]
    InvalidDuration {
        /// Which setting.
        field: &'static str,
        /// The value given, in seconds.
        value: f64,
    },
    /// A duration was too large to represent.
    #[error("{field} is too large: at most {max} seconds, got {value}", max = u64::MAX)]
    DurationTooLarge {
        /// Which setting.
        field: &'static str,
        /// The value given, in seconds.
        value: f64,
    },
}

/// How a failed call is retried: attempts, backoff, caps, budget and error filter.
///
/// Built with [`RetryPolicy::exponential`] (or `constant`, `linear`, `fibonacci`, `builder`),
/// which validate on [`build`](RetryPolicyBuilder::build). [`RetryPolicy::disabled`] means "no
/// retries at this level" — it does not fall through to a less specific level.
///
/// The JSON form carries every setting but the error filter (filters hold code).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(Duration::from_millis(500))
///     .max_attempts(5)
///     .max_delay(Duration::from_secs(10))
///     .retry_on_kind(std::io::ErrorKind::TimedOut)
///     .build()?;
/// assert_eq!(policy.max_attempts(), 5);
///
/// let err = RetryPolicy::exponential(Duration::from_secs(1)).multiplier(0.5).build().unwrap_err();
/// assert_eq!(err.to_string(), "multiplier must be a finite number >= 1, got 0.5");
/// # Ok::<(), rh_agents::PolicyError>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "PolicySpec", into = "PolicySpec")]
pub struct RetryPolicy {
    enabled: bool,
    max_attempts: u32,
    backoff: Backoff,
    initial_delay: Duration,
    multiplier: f64,
    max_delay: Duration,
    jitter: f64,
    retry_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    filter: RetryFilter,
}

impl Default for RetryPolicy {
    /// The built-in policy for tools and LLM calls: 3 attempts, exponential from 1 s (×2),
    /// capped at 30 s, ±25 % jitter.
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::Exponential,
            initial_delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: DEFAULT_MAX_DELAY,
            jitter: DEFAULT_JITTER,
            retry_timeout: None,
            attempt_timeout: None,
            filter: RetryFilter::default(),
        }
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults (exponential from 1 s).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new(Backoff::Exponential, Duration::from_secs(1))
    }

    /// Constant backoff: every wait is `delay`.
    pub fn constant(delay: Duration) -> RetryPolicyBuilder {
        RetryPolicyBuilder::new(Backoff::Constant, delay)
    }

    /// Linear backoff: wait `k·delay` before retry `k`.
    pub fn linear(delay: Duration) -> RetryPolicyBuilder {
        RetryPolicyBuilder::new(Backoff::Linear, delay)
    }

    /// Exponential backoff: wait `delay·multiplier^(k−1)` before retry `k` (multiplier 2 by
    /// default).
    pub fn exponential(delay: Duration) -> RetryPolicyBuilder {
        RetryPolicyBuilder::new(Backoff::Exponential, delay)
    }

    /// Fibonacci backoff: wait `delay·fib(k)` before retry `k` (1, 1, 2, 3, 5…).
    pub fn fibonacci(delay: Duration) -> RetryPolicyBuilder {
        RetryPolicyBuilder::new(Backoff::Fibonacci, delay)
    }

    /// A policy that never retries. Setting it at a level stops the less specific levels
    /// from applying.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Whether retries are on.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// How many attempts run at most, counting the first (1 when disabled).
    pub fn max_attempts(&self) -> u32 {
        if self.enabled {
            self.max_attempts
        } else {
            1
        }
    }

    /// The backoff strategy.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The first delay.
    pub fn initial_delay(&self) -> Duration {
        self.initial_delay
    }

    /// The growth factor of exponential backoff.
    pub fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// The hard cap on any one delay, jitter and hints included.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The jitter fraction (0.25 = ±25 %).
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The total budget for all attempts and waits, if any.
    pub fn retry_timeout(&self) -> Option<Duration> {
        self.retry_timeout
    }

    /// The limit on one attempt, if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// The error filter.
    pub fn filter(&self) -> &RetryFilter {
        &self.filter
    }

    /// The delay before retry `k` (1-based), given a random number in `[0, 1)` for jitter and
    /// an optional retry-after hint. Always at most [`max_delay`](Self::max_delay).
    pub fn delay_for(&self, k: u32, random: f64, retry_after: Option<Duration>) -> Duration {
        let base = backoff::base_secs(self.backoff, self.initial_delay, self.multiplier, k);
        backoff::finish(base, self.jitter, random, retry_after, self.max_delay)
    }

    /// The delays this policy waits between its attempts, drawing jitter from `random`.
    pub fn delays<'a>(&'a self, random: &'a dyn RandomSource) -> Delays<'a> {
        Delays {
            policy: self,
            random,
            next_retry: 1,
        }
    }

    /// Whether `error` passes this policy's filter (interrupts are handled by the runtime).
    ///
    /// # Errors
    ///
    /// Returns why the error is not retried.
    pub fn check_error(&self, error: &(dyn StdError + 'static)) -> Result<(), &'static str> {
        self.filter.check(error)
    }
}

/// Builds a [`RetryPolicy`]; nothing is checked until [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.build()`"]
pub struct RetryPolicyBuilder {
    enabled: bool,
    max_attempts: u32,
    backoff: Backoff,
    initial_delay: Seconds,
    multiplier: f64,
    max_delay: Seconds,
    jitter: f64,
    retry_timeout: Option<Seconds>,
    attempt_timeout: Option<Seconds>,
    filter: RetryFilter,
}

/// A duration as given: exact, or a number of seconds still to be checked.
#[derive(Debug, Clone, Copy)]
enum Seconds {
    Exact(Duration),
    Float(f64),
}

impl Seconds {
    fn resolve(self, field: &'static str) -> Result<Duration, PolicyError> {
        match self {
            Self::Exact(d) => Ok(d),
            Self::Float(value) => Duration::try_from_secs_f64(value).map_err(|_| {
                if value.is_finite() && value >= 0.0 {
                    PolicyError::DurationTooLarge { field, value }
                } else {
                    PolicyError::InvalidDuration { field, value }
                }
            }),
        }
    }
}

impl RetryPolicyBuilder {
    fn new(backoff: Backoff, initial: Duration) -> Self {
        let d = RetryPolicy::default();
        Self {
            enabled: true,
            max_attempts: d.max_attempts,
            backoff,
            initial_delay: Seconds::Exact(initial),
            multiplier: d.multiplier,
            max_delay: Seconds::Exact(d.max_delay),
            jitter: d.jitter,
            retry_timeout: None,
            attempt_timeout: None,
            filter: RetryFilter::default(),
        }
    }

    /// How many attempts at most, counting the first (default 3; at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff strategy.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The first delay.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = Seconds::Exact(delay);
        self
    }

    /// The first delay in seconds (checked: finite and non-negative).
    pub fn initial_delay_secs(mut self, secs: f64) -> Self {
        self.initial_delay = Seconds::Float(secs);
        self
    }

    /// The growth factor of exponential backoff (default 2; at least 1).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m;
        self
    }

    /// The hard cap on any one delay, jitter and retry-after hints included (default 30 s).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = Seconds::Exact(delay);
        self
    }

    /// The cap in seconds (checked: finite and non-negative).
    pub fn max_delay_secs(mut self, secs: f64) -> Self {
        self.max_delay = Seconds::Float(secs);
        self
    }

    /// The jitter fraction: each delay is scaled by a random factor in `[1 − j, 1 + j]`
    /// (default 0.25; 0 turns jitter off).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// Turns jitter off.
    pub fn no_jitter(self) -> Self {
        self.jitter(0.0)
    }

    /// A total budget for all attempts and waits: one wall-clock deadline, measured from the
    /// first attempt. Time spent in attempts counts; each wait is clamped to what is left; no
    /// retry is scheduled once it has passed, and the call then fails with
    /// [`ErrorKind::RetryTimeout`](crate::ErrorKind::RetryTimeout). An attempt already running
    /// is not cut at the deadline: bound each attempt with
    /// [`attempt_timeout`](Self::attempt_timeout).
    pub fn retry_timeout(mut self, budget: Duration) -> Self {
        self.retry_timeout = Some(Seconds::Exact(budget));
        self
    }

    /// A limit on each attempt: an attempt that runs longer fails with
    /// [`AttemptTimeout`](crate::AttemptTimeout), which is retried unless filtered out.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = Some(Seconds::Exact(limit));
        self
    }

    /// Turns retries on or off.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Retries only errors of type `E` (anywhere in the cause chain) and others named by the
    /// retry-on list.
    pub fn retry_on<E: StdError + 'static>(mut self) -> Self {
        self.filter.retry_on_type::<E>();
        self
    }

    /// Retries only `io::Error`s of this kind (anywhere in the cause chain) and others named by
    /// the retry-on list.
    pub fn retry_on_kind(mut self, kind: io::ErrorKind) -> Self {
        self.filter.retry_on_kind(kind);
        self
    }

    /// Retries only errors for which `predicate` holds and others named by the retry-on list.
    pub fn retry_if(
        mut self,
        predicate: impl Fn(&(dyn StdError + 'static)) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter.retry_on_predicate(Arc::new(predicate));
        self
    }

    /// Never retries errors of type `E` (anywhere in the cause chain). Wins over every
    /// retry-on entry and transient mark.
    pub fn exclude<E: StdError + 'static>(mut self) -> Self {
        self.filter.exclude_type::<E>();
        self
    }

    /// Never retries `io::Error`s of this kind.
    pub fn exclude_kind(mut self, kind: io::ErrorKind) -> Self {
        self.filter.exclude_kind(kind);
        self
    }

    /// Never retries errors for which `predicate` holds.
    pub fn exclude_if(
        mut self,
        predicate: impl Fn(&(dyn StdError + 'static)) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter.exclude_predicate(Arc::new(predicate));
        self
    }

    /// Checks the settings and builds the policy.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] for zero attempts, a multiplier below 1, a jitter fraction outside
    /// `[0, 1]`, or a negative, infinite or NaN duration.
    pub fn build(self) -> Result<RetryPolicy, PolicyError> {
        if self.max_attempts == 0 {
            return Err(PolicyError::ZeroAttempts);
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(PolicyError::InvalidMultiplier(self.multiplier));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(PolicyError::InvalidJitter(self.jitter));
        }
        Ok(RetryPolicy {
            enabled: self.enabled,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            initial_delay: self.initial_delay.resolve("initial_delay")?,
            multiplier: self.multiplier,
            max_delay: self.max_delay.resolve("max_delay")?,
            jitter: self.jitter,
            retry_timeout: self
                .retry_timeout
                .map(|v| v.resolve("retry_timeout"))
                .transpose()?,
            attempt_timeout: self
                .attempt_timeout
                .map(|v| v.resolve("attempt_timeout"))
                .transpose()?,
            filter: self.filter,
        })
    }
}

/// The JSON form of a policy: durations in fractional seconds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_backoff")]
    backoff: Backoff,
    #[serde(default = "one")]
    initial_delay_secs: f64,
    #[serde(default = "two")]
    multiplier: f64,
    #[serde(default = "default_max_delay")]
    max_delay_secs: f64,
    #[serde(default = "default_jitter")]
    jitter: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_timeout_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt_timeout_secs: Option<f64>,
}

fn yes() -> bool {
    true
}
fn default_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_backoff() -> Backoff {
    Backoff::Exponential
}
fn one() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}
fn default_max_delay() -> f64 {
    DEFAULT_MAX_DELAY.as_secs_f64()
}
fn default_jitter() -> f64 {
    DEFAULT_JITTER
}

impl TryFrom<PolicySpec> for RetryPolicy {
    type Error = PolicyError;

    fn try_from(s: PolicySpec) -> Result<Self, PolicyError> {
        RetryPolicyBuilder {
            enabled: s.enabled,
            max_attempts: s.max_attempts,
            backoff: s.backoff,
            initial_delay: Seconds::Float(s.initial_delay_secs),
            multiplier: s.multiplier,
            max_delay: Seconds::Float(s.max_delay_secs),
            jitter: s.jitter,
            retry_timeout: s.retry_timeout_secs.map(Seconds::Float),
            attempt_timeout: s.attempt_timeout_secs.map(Seconds::Float),
            filter: RetryFilter::default(),
        }
        .build()
    }
}

impl From<RetryPolicy> for PolicySpec {
    fn from(p: RetryPolicy) -> Self {
        Self {
            enabled: p.enabled,
            max_attempts: p.max_attempts,
            backoff: p.backoff,
            initial_delay_secs: p.initial_delay.as_secs_f64(),
            multiplier: p.multiplier,
            max_delay_secs: p.max_delay.as_secs_f64(),
            jitter: p.jitter,
            retry_timeout_secs: p.retry_timeout.map(|d| d.as_secs_f64()),
            attempt_timeout_secs: p.attempt_timeout.map(|d| d.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_are_rejected_at_build() {
        let b = || RetryPolicy::exponential(Duration::from_secs(1));
        assert_eq!(
            b().max_attempts(0).build().unwrap_err(),
            PolicyError::ZeroAttempts
        );
        assert!(matches!(
            b().multiplier(0.9).build(),
            Err(PolicyError::InvalidMultiplier(_))
        ));
        assert!(matches!(
            b().multiplier(f64::NAN).build(),
            Err(PolicyError::InvalidMultiplier(_))
        ));
        assert!(matches!(
            b().jitter(1.5).build(),
            Err(PolicyError::InvalidJitter(_))
        ));
        assert!(matches!(
            b().initial_delay_secs(-1.0).build(),
            Err(PolicyError::InvalidDuration {
                field: "initial_delay",
                ..
            })
        ));
        assert!(matches!(
            b().max_delay_secs(f64::NAN).build(),
            Err(PolicyError::InvalidDuration {
                field: "max_delay",
                ..
            })
        ));
    }

    #[test]
    fn json_round_trip_and_validation() {
        let p = RetryPolicy::fibonacci(Duration::from_millis(500))
            .max_attempts(5)
            .retry_timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        let back: RetryPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back.max_attempts(), 5);
        assert_eq!(back.backoff(), Backoff::Fibonacci);
        assert_eq!(back.initial_delay(), Duration::from_millis(500));
        assert_eq!(back.retry_timeout(), Some(Duration::from_secs(20)));
        let bad = serde_json::from_str::<RetryPolicy>(r#"{"max_attempts":0}"#).unwrap_err();
        assert!(
            bad.to_string().contains("max_attempts must be at least 1"),
            "{bad}"
        );
    }

    #[test]
    fn huge_durations_are_kept_and_huge_seconds_get_a_clear_error() {
        let p = RetryPolicy::constant(Duration::ZERO)
            .retry_timeout(Duration::MAX)
            .max_delay(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(p.retry_timeout(), Some(Duration::MAX));
        let err = RetryPolicy::constant(Duration::ZERO)
            .initial_delay_secs(1e30)
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "initial_delay is too large: at most 18446744073709551615 seconds, got 1000000000000000000000000000000"
        );
    }

    #[test]
    fn disabled_means_one_attempt() {
        assert_eq!(RetryPolicy::disabled().max_attempts(), 1);
        let p = RetryPolicy::constant(Duration::ZERO)
            .max_attempts(4)
            .enabled(false)
            .build()
            .unwrap();
        assert_eq!(p.max_attempts(), 1);
    }
}
