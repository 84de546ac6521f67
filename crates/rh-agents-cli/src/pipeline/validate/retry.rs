//! Retry settings: each level (a step, `[defaults]`) checked where it is written, then a
//! step's settings merged field by field over `[defaults]` and built into a [`RetryPolicy`].

use std::time::Duration;

use rh_agents::{Backoff, PolicyError, RetryPolicy, RetryPolicyBuilder};
use toml::Spanned;

use super::Validator;
use crate::pipeline::duration::HumanDuration;
use crate::pipeline::raw::{RawRetry, RetryTable};

/// Retry settings given at one level (a step or `[defaults]`); `None` falls through.
#[derive(Debug, Clone, Default)]
pub(super) struct Level {
    enabled: Option<bool>,
    strategy: Option<Backoff>,
    base: Option<Duration>,
    multiplier: Option<f64>,
    max_attempts: Option<u32>,
    max_delay: Option<Duration>,
    jitter: Option<f64>,
    retry_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
}

impl Level {
    /// These settings, each one left out taken from `under`. A multiplier is inherited only
    /// where it applies: a step that chooses another strategy does not carry the default's.
    pub(super) fn over(&self, under: &Level) -> Level {
        let strategy = self.strategy.or(under.strategy);
        let exponential = strategy.unwrap_or(Backoff::Exponential) == Backoff::Exponential;
        Level {
            enabled: self.enabled.or(under.enabled),
            strategy,
            base: self.base.or(under.base),
            multiplier: self.multiplier.or(under.multiplier.filter(|_| exponential)),
            max_attempts: self.max_attempts.or(under.max_attempts),
            max_delay: self.max_delay.or(under.max_delay),
            jitter: self.jitter.or(under.jitter),
            retry_timeout: self.retry_timeout.or(under.retry_timeout),
            attempt_timeout: self.attempt_timeout.or(under.attempt_timeout),
        }
    }

    /// The merged strategy, when `own` (the step's level) gives a multiplier that it does not
    /// apply to: a multiplier whose step inherits a strategy other than exponential.
    pub(super) fn own_multiplier_misapplied(&self, own: &Level) -> Option<Backoff> {
        let strategy = self.strategy.unwrap_or(Backoff::Exponential);
        (own.multiplier.is_some() && strategy != Backoff::Exponential).then_some(strategy)
    }

    /// The policy: the settings given, the library's defaults for the rest.
    pub(super) fn policy(&self) -> Result<RetryPolicy, PolicyError> {
        RetryPolicy::builder()
            .backoff(self.strategy.unwrap_or(Backoff::Exponential))
            .enabled(self.enabled.unwrap_or(true))
            .set(self.base, RetryPolicyBuilder::initial_delay)
            .set(self.multiplier, RetryPolicyBuilder::multiplier)
            .set(self.max_attempts, RetryPolicyBuilder::max_attempts)
            .set(self.max_delay, RetryPolicyBuilder::max_delay)
            .set(self.jitter, RetryPolicyBuilder::jitter)
            .set(self.retry_timeout, RetryPolicyBuilder::retry_timeout)
            .set(self.attempt_timeout, RetryPolicyBuilder::attempt_timeout)
            .build()
    }
}

/// A strategy's name as written in the file.
pub(super) fn strategy_name(strategy: Backoff) -> &'static str {
    match strategy {
        Backoff::Constant => "constant",
        Backoff::Linear => "linear",
        Backoff::Exponential => "exponential",
        Backoff::Fibonacci => "fibonacci",
    }
}

/// A builder setting applied only when it was given.
trait SetGiven: Sized {
    fn set<T>(self, value: Option<T>, setter: fn(Self, T) -> Self) -> Self {
        match value {
            Some(value) => setter(self, value),
            None => self,
        }
    }
}

impl SetGiven for RetryPolicyBuilder {}

impl Validator<'_> {
    /// The retry settings of one level, checking each value where it is written.
    pub(super) fn level(
        &mut self,
        timeout: Option<&Spanned<HumanDuration>>,
        retry: Option<&Spanned<RawRetry>>,
    ) -> Level {
        let mut level = Level::default();
        if let Some(t) = timeout {
            level.attempt_timeout = self.positive(t, "timeout");
        }
        match retry.map(Spanned::get_ref) {
            None => {}
            Some(RawRetry::Switch(on)) => level.enabled = Some(*on),
            Some(RawRetry::Table(table)) => {
                level.enabled = Some(true);
                self.table(table, &mut level);
                if let (Some(_), Some(a)) = (timeout, &table.attempt_timeout) {
                    self.error(
                        &a.span(),
                        "`retry.attempt_timeout` and `timeout` are the same setting: keep one",
                    );
                }
            }
        }
        level
    }

    /// The duration, unless it is zero (reported).
    pub(super) fn positive(&mut self, d: &Spanned<HumanDuration>, field: &str) -> Option<Duration> {
        let value = d.get_ref().0;
        if value.is_zero() {
            self.error(&d.span(), format!("`{field}` must be greater than zero"));
            return None;
        }
        Some(value)
    }

    fn table(&mut self, t: &RetryTable, level: &mut Level) {
        level.strategy = t.strategy.as_ref().map(|s| *s.get_ref());
        level.base = t.base.as_ref().map(|d| d.get_ref().0);
        level.max_delay = t.max_delay.as_ref().map(|d| d.get_ref().0);
        if let Some(d) = &t.retry_timeout {
            level.retry_timeout = self.positive(d, "retry_timeout");
        }
        if let Some(d) = &t.attempt_timeout {
            level.attempt_timeout = self.positive(d, "attempt_timeout");
        }
        if let Some(n) = &t.max_attempts {
            match u32::try_from(*n.get_ref()) {
                Ok(v) if v >= 1 => level.max_attempts = Some(v),
                _ => self.error(
                    &n.span(),
                    format!(
                        "max_attempts must be between 1 and {} (it counts the first attempt), got {}",
                        u32::MAX,
                        n.get_ref()
                    ),
                ),
            }
        }
        if let Some(m) = &t.multiplier {
            let value = *m.get_ref();
            let strategy = level.strategy.unwrap_or(Backoff::Exponential);
            if strategy != Backoff::Exponential {
                self.error(
                    &m.span(),
                    "`multiplier` applies only to strategy = \"exponential\"",
                );
            } else if !(value.is_finite() && value >= 1.0) {
                self.error(
                    &m.span(),
                    format!("multiplier must be a number >= 1, got {value}"),
                );
            } else {
                level.multiplier = Some(value);
            }
        }
        if let Some(j) = &t.jitter {
            let value = j.get_ref().0;
            if (0.0..=1.0).contains(&value) {
                level.jitter = Some(value);
            } else {
                self.error(
                    &j.span(),
                    format!("jitter must be true, false or a fraction between 0 and 1 (0.25 means ±25 %), got {value}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use rh_agents::{Backoff, RetryPolicy};

    use crate::pipeline::{parse, Pipeline};

    fn pipeline(text: &str) -> Pipeline {
        parse(text, Path::new("p.toml")).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn step_retry_settings_fall_back_field_by_field_to_defaults() {
        let p = pipeline(
            r#"name = "x"
[defaults]
timeout = "5s"
retry = { strategy = "linear", base = "200ms", max_attempts = 5, jitter = false }
[[steps]]
name = "a"
kind = "command"
program = "true"
retry = { max_attempts = 2, jitter = 0.1 }
[[steps]]
name = "b"
kind = "command"
program = "true"
retry = false
timeout = "1s"
"#,
        );
        let a = &p.steps[0].retry;
        assert_eq!(a.backoff(), Backoff::Linear);
        assert_eq!(a.initial_delay(), Duration::from_millis(200));
        assert_eq!(a.max_attempts(), 2);
        assert!((a.jitter() - 0.1).abs() < f64::EPSILON);
        assert_eq!(a.attempt_timeout(), Some(Duration::from_secs(5)));
        let b = &p.steps[1].retry;
        assert!(!b.is_enabled());
        assert_eq!(b.max_attempts(), 1);
        assert_eq!(b.attempt_timeout(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_multiplier_applies_only_under_an_exponential_strategy_across_levels() {
        // Inherited from [defaults] by a step that chose another strategy: not carried.
        let p = pipeline(
            r#"name = "x"
[defaults]
retry = { strategy = "exponential", multiplier = 3 }
[[steps]]
name = "a"
kind = "command"
program = "true"
retry = { strategy = "linear" }
"#,
        );
        assert_eq!(p.steps[0].retry.backoff(), Backoff::Linear);
        // Given by a step that inherits another strategy: an error, not silently ignored.
        let err = parse(
            r#"name = "x"
[defaults]
retry = { strategy = "linear" }
[[steps]]
name = "a"
kind = "command"
program = "true"
retry = { multiplier = 3 }
"#,
            Path::new("p.toml"),
        )
        .unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].to_string().contains("`multiplier` applies only"),
            "{}",
            err[0]
        );
    }

    #[test]
    fn without_settings_the_library_defaults_apply() {
        let p = pipeline(
            "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\n",
        );
        let d = RetryPolicy::default();
        let a = &p.steps[0].retry;
        assert_eq!(a.max_attempts(), d.max_attempts());
        assert_eq!(a.initial_delay(), d.initial_delay());
        assert_eq!(a.max_delay(), d.max_delay());
        assert_eq!(a.attempt_timeout(), None);
    }
}
