//! The pipeline file as TOML gives it: every field optional where the kind decides, with
//! spans, so that validation can point at the exact line and column of a problem.
//!
//! Kinds are one flat struct rather than a tagged enum: serde buffers tagged enums, which loses
//! both the spans and `deny_unknown_fields`.

use std::collections::BTreeMap;
use std::fmt;

use rh_agents::Backoff;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::duration::HumanDuration;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) defaults: Option<RawDefaults>,
    #[serde(default)]
    pub(crate) steps: Vec<RawStep>,
}

/// `[defaults]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// One `[[steps]]` entry (or a child of a parallel step).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetryTable {
    pub(crate) strategy: Option<Spanned<Backoff>>,
    #[serde(alias = "delay")]
    pub(crate) base: Option<Spanned<HumanDuration>>,
    pub(crate) multiplier: Option<Spanned<f64>>,
    pub(crate) max_attempts: Option<Spanned<i64>>,
    pub(crate) max_delay: Option<Spanned<HumanDuration>>,
    pub(crate) jitter: Option<Spanned<Jitter>>,
    pub(crate) retry_timeout: Option<Spanned<HumanDuration>>,
    pub(crate) attempt_timeout: Option<Spanned<HumanDuration>>,
}

impl<'de> Deserialize<'de> for RawRetry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRetry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "`false` (no retries), `true` (the defaults) or a table of retry settings",
                )
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawRetry, E> {
                Ok(RawRetry::Switch(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRetry, A::Error> {
                let table = RetryTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRetry::Table(Box::new(table)))
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
