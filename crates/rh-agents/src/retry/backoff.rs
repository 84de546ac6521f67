//! Backoff formulas. For retry `k` (1-based: the wait before the second attempt is `k = 1`)
//! with initial delay `d` and multiplier `m`:
//!
//! | strategy    | delay            | first five with `d = 1s`, `m = 2` |
//! |-------------|------------------|-----------------------------------|
//! | constant    | `d`              | 1, 1, 1, 1, 1                     |
//! | linear      | `d·k`            | 1, 2, 3, 4, 5                     |
//! | exponential | `d·m^(k−1)`      | 1, 2, 4, 8, 16                    |
//! | fibonacci   | `d·fib(k)`       | 1, 1, 2, 3, 5                     |
//!
//! Then jitter scales the delay by a factor in `[1 − j, 1 + j]`, a retry-after hint raises it,
//! and `max_delay` caps it — in that order, so the cap is hard whatever jitter or hint say.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shape of the delays between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay each time: `d`.
    Constant,
    /// Growing by `d` each time: `d·k`.
    Linear,
    /// Multiplying by `m` each time: `d·m^(k−1)`.
    Exponential,
    /// Following the Fibonacci numbers 1, 1, 2, 3, 5…: `d·fib(k)`.
    Fibonacci,
}

/// The `k`-th Fibonacci number with fib(1) = fib(2) = 1, saturating.
fn fib(k: u32) -> f64 {
    let (mut a, mut b) = (0.0_f64, 1.0_f64);
    for _ in 0..k.min(1_500) {
        let next = a + b;
        a = b;
        b = next;
    }
    a
}

/// The delay before retry `k` (1-based) without jitter or cap, in seconds (may be infinite).
pub(crate) fn base_secs(backoff: Backoff, initial: Duration, multiplier: f64, k: u32) -> f64 {
    let d = initial.as_secs_f64();
    let k = k.max(1);
    match backoff {
        Backoff::Constant => d,
        Backoff::Linear => d * f64::from(k),
        Backoff::Exponential => d * multiplier.powi(i32::try_from(k - 1).unwrap_or(i32::MAX)),
        Backoff::Fibonacci => d * fib(k),
    }
}

/// Applies jitter (`random` in `[0, 1)`, `jitter` the fraction), the retry-after hint and the
/// cap, in that order.
pub(crate) fn finish(
    base_secs: f64,
    jitter: f64,
    random: f64,
    retry_after: Option<Duration>,
    max_delay: Duration,
) -> Duration {
    let factor = 1.0 + jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
    let jittered = base_secs * factor;
    let mut delay = if jittered.is_finite() && jittered >= 0.0 {
        Duration::try_from_secs_f64(jittered).unwrap_or(max_delay)
    } else if jittered.is_nan() || jittered < 0.0 {
        Duration::ZERO
    } else {
        max_delay
    };
    if let Some(hint) = retry_after {
        delay = delay.max(hint);
    }
    delay.min(max_delay)
}

/// The delays a policy would wait between its attempts, as an iterator: one item per retry,
/// `max_attempts − 1` in all. Retry-after hints and the retry budget are not known in advance,
/// so they are not applied here.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::{RetryPolicy, FixedRandom};
///
/// let policy = RetryPolicy::fibonacci(Duration::from_secs(1)).max_attempts(6).jitter(0.0).build().unwrap();
/// let secs: Vec<u64> = policy.delays(&FixedRandom(0.5)).map(|d| d.as_secs()).collect();
/// assert_eq!(secs, [1, 1, 2, 3, 5]);
/// ```
#[derive(Debug)]
#[must_use]
pub struct Delays<'a> {
    pub(crate) policy: &'a crate::RetryPolicy,
    pub(crate) random: &'a dyn crate::RandomSource,
    pub(crate) next_retry: u32,
}

impl Iterator for Delays<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next_retry >= self.policy.max_attempts() {
            return None;
        }
        let delay = self
            .policy
            .delay_for(self.next_retry, self.random.next_f64(), None);
        self.next_retry += 1;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn first_five(backoff: Backoff, m: f64) -> Vec<f64> {
        (1..=5).map(|k| base_secs(backoff, S, m, k)).collect()
    }

    #[test]
    fn first_five_delays_of_each_strategy() {
        assert_eq!(
            first_five(Backoff::Constant, 2.0),
            [1.0, 1.0, 1.0, 1.0, 1.0]
        );
        assert_eq!(first_five(Backoff::Linear, 2.0), [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(
            first_five(Backoff::Exponential, 2.0),
            [1.0, 2.0, 4.0, 8.0, 16.0]
        );
        assert_eq!(
            first_five(Backoff::Exponential, 3.0),
            [1.0, 3.0, 9.0, 27.0, 81.0]
        );
        assert_eq!(
            first_five(Backoff::Fibonacci, 2.0),
            [1.0, 1.0, 2.0, 3.0, 5.0]
        );
    }

    #[test]
    fn huge_retry_numbers_saturate_at_the_cap() {
        let cap = Duration::from_secs(30);
        for backoff in [Backoff::Linear, Backoff::Exponential, Backoff::Fibonacci] {
            let base = base_secs(backoff, S, 10.0, u32::MAX);
            assert_eq!(finish(base, 0.25, 0.99, None, cap), cap);
        }
    }

    #[test]
    fn retry_after_raises_the_delay_but_not_past_the_cap() {
        let cap = Duration::from_secs(30);
        let hint = Some(Duration::from_secs(7));
        assert_eq!(finish(1.0, 0.0, 0.5, hint, cap), Duration::from_secs(7));
        assert_eq!(
            finish(1.0, 0.0, 0.5, Some(Duration::from_secs(90)), cap),
            cap
        );
    }

    proptest! {
        #[test]
        fn jittered_delay_stays_within_bounds_and_under_the_cap(
            strategy in prop_oneof![
                Just(Backoff::Constant), Just(Backoff::Linear),
                Just(Backoff::Exponential), Just(Backoff::Fibonacci)
            ],
            initial_ms in 0u64..10_000,
            multiplier in 1.0f64..5.0,
            k in 1u32..40,
            jitter in 0.0f64..=1.0,
            random in 0.0f64..1.0,
            cap_ms in 0u64..120_000,
        ) {
            let initial = Duration::from_millis(initial_ms);
            let cap = Duration::from_millis(cap_ms);
            let base = base_secs(strategy, initial, multiplier, k);
            let delay = finish(base, jitter, random, None, cap);
            prop_assert!(delay <= cap, "delay {delay:?} over cap {cap:?}");
            let low = (base * (1.0 - jitter)).min(cap.as_secs_f64());
            let high = (base * (1.0 + jitter)).min(cap.as_secs_f64());
            let got = delay.as_secs_f64();
            prop_assert!(got >= low - 1e-6 && got <= high + 1e-6,
                "delay {got} outside [{low}, {high}]");
        }
    }
}
