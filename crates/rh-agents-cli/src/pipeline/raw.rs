//! The pipeline file as TOML gives it: every field optional where the kind decides, with
//! spans, so that validation can point at the exact line and column of a problem.
//!
//! The tables (the file, `[defaults]`, a step, `retry = { ... }`) are read field by field by
//! [`super::read`], so that every type error is reported rather than the first; only the
//! values inside them are deserialized with serde. Kinds are one flat struct rather than a
//! tagged enum, so that a field of another kind can be named where it is written.

use std::collections::BTreeMap;
use std::fmt;

use rh_agents::Backoff;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::duration::HumanDuration;

/// The whole file.
#[derive(Debug)]
pub(crate) struct RawPipeline {
    pub(crate) name: Spanned<String>,
    pub(crate) defaults: Option<RawDefaults>,
    pub(crate) steps: Vec<RawStep>,
}

/// The fields of the file.
pub(crate) const PIPELINE_FIELDS: &[&str] = &["name", "defaults", "steps"];

/// `[defaults]`.
#[derive(Debug, Default)]
pub(crate) struct RawDefaults {
    pub(crate) timeout: Option<Spanned<HumanDuration>>,
    pub(crate) retry: Option<Spanned<RawRetry>>,
}

/// The kind of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawKind {
    Command,
    Http,
    Parallel,
}

/// The fields of `[defaults]`.
pub(crate) const DEFAULTS_FIELDS: &[&str] = &["timeout", "retry"];

/// One `[[steps]]` entry (or a child of a parallel step).
#[derive(Debug)]
pub(crate) struct RawStep {
    pub(crate) name: Spanned<String>,
    pub(crate) kind: Spanned<RawKind>,
    // command
    pub(crate) program: Option<Spanned<String>>,
    pub(crate) args: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) env: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub(crate) cwd: Option<Spanned<String>>,
    pub(crate) stdin: Option<Spanned<String>>,
    pub(crate) retryable_exit_codes: Option<Spanned<Vec<i32>>>,
    // http
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub(crate) body: Option<Spanned<String>>,
    // parallel
    pub(crate) max_workers: Option<Spanned<i64>>,
    pub(crate) fail_fast: Option<Spanned<bool>>,
    pub(crate) steps: Option<Spanned<Vec<RawStep>>>,
    // every kind
    pub(crate) timeout: Option<Spanned<HumanDuration>>,
    pub(crate) retry: Option<Spanned<RawRetry>>,
}

/// The fields of a step, of every kind.
pub(crate) const STEP_FIELDS: &[&str] = &[
    "name",
    "kind",
    "program",
    "args",
    "env",
    "cwd",
    "stdin",
    "retryable_exit_codes",
    "method",
    "url",
    "headers",
    "body",
    "max_workers",
    "fail_fast",
    "steps",
    "timeout",
    "retry",
];

/// `retry = false`, `retry = true` or `retry = { ... }`.
#[derive(Debug)]
pub(crate) enum RawRetry {
    /// `false` turns retries off; `true` keeps the defaults.
    Switch(bool),
    /// The settings.
    Table(Box<RetryTable>),
}

/// The settings of `retry = { ... }`; each one left out falls back to `[defaults]`, then to
/// the library's defaults.
#[derive(Debug, Default)]
pub(crate) struct RetryTable {
    pub(crate) strategy: Option<Spanned<Backoff>>,
    /// `base`, or its other name `delay`.
    pub(crate) base: Option<Spanned<HumanDuration>>,
    pub(crate) multiplier: Option<Spanned<f64>>,
    pub(crate) max_attempts: Option<Spanned<i64>>,
    pub(crate) max_delay: Option<Spanned<HumanDuration>>,
    pub(crate) jitter: Option<Spanned<Jitter>>,
    pub(crate) retry_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) attempt_timeout: Option<Spanned<HumanDuration>>,
}

/// The fields of `retry = { ... }` (`delay` is another name for `base`).
pub(crate) const RETRY_FIELDS: &[&str] = &[
    "strategy",
    "base",
    "delay",
    "multiplier",
    "max_attempts",
    "max_delay",
    "jitter",
    "retry_timeout",
    "attempt_timeout",
];

/// `retry = true | false`; a table is read field by field by [`super::read`], so anything
/// else is a type error that names all three forms.
impl<'de> Deserialize<'de> for RawRetry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawRetry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "`false` (no retries), `true` (the defaults) or a table of retry settings",
                )
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawRetry, E> {
                Ok(RawRetry::Switch(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `jitter = true | false | 0.25`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Jitter(pub(crate) f64);

impl<'de> Deserialize<'de> for Jitter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Jitter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`true` (±25 %), `false` (none) or a fraction between 0 and 1")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Jitter, E> {
                Ok(Jitter(if v {
                    rh_agents::retry::policy::DEFAULT_JITTER
                } else {
                    0.0
                }))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Jitter, E> {
                Ok(Jitter(v))
            }
            #[allow(clippy::cast_precision_loss)] // small integers: 0 or 1
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Jitter, E> {
                Ok(Jitter(v as f64))
            }
        }
        deserializer.deserialize_any(V)
    }
}
