//! Which errors are retried.
//!
//! The decision, in order:
//! 1. an interrupt is never retried (checked by the runtime before any filter);
//! 2. an error marked [permanent](crate::ErrorExt::permanent) is not retried;
//! 3. an error matching the exclude list is not retried (exclude always wins);
//! 4. an error marked [transient](crate::ErrorExt::transient) is retried;
//! 5. if a retry-on list is set, only errors matching it are retried;
//! 6. otherwise every error is retried.
//!
//! Matching is by type (looking through the whole cause chain, the Rust counterpart of
//! `isinstance`), by [`std::io::ErrorKind`], or by predicate — never by the error's text.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

use crate::error::{chain, class_of, ErrorClass};

type Predicate = Arc<dyn Fn(&(dyn StdError + 'static)) -> bool + Send + Sync>;

#[derive(Clone)]
enum Matcher {
    Type {
        name: &'static str,
        test: fn(&(dyn StdError + 'static)) -> bool,
    },
    Kind(io::ErrorKind),
    Predicate(Predicate),
}

fn has_type<E: StdError + 'static>(error: &(dyn StdError + 'static)) -> bool {
    chain(error).any(|e| e.is::<E>())
}

impl Matcher {
    fn of_type<E: StdError + 'static>() -> Self {
        Self::Type {
            name: std::any::type_name::<E>(),
            test: has_type::<E>,
        }
    }

    fn matches(&self, error: &(dyn StdError + 'static)) -> bool {
        match self {
            Self::Type { test, .. } => test(error),
            Self::Kind(kind) => chain(error)
                .filter_map(|e| e.downcast_ref::<io::Error>())
                .any(|e| e.kind() == *kind),
            Self::Predicate(p) => p(error),
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Type { name, .. } => write!(f, "type {name}"),
            Self::Kind(kind) => write!(f, "io kind {kind:?}"),
            Self::Predicate(_) => f.write_str("predicate"),
        }
    }
}

/// The error filter of a [`RetryPolicy`](crate::RetryPolicy). Built through the policy's
/// builder (`retry_on::<E>()`, `exclude_kind(..)`, …).
#[derive(Clone, Default)]
pub struct RetryFilter {
    retry_on: Vec<Matcher>,
    exclude: Vec<Matcher>,
}

impl fmt::Debug for RetryFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFilter")
            .field("retry_on", &self.retry_on)
            .field("exclude", &self.exclude)
            .finish()
    }
}

impl RetryFilter {
    pub(crate) fn retry_on_type<E: StdError + 'static>(&mut self) {
        self.retry_on.push(Matcher::of_type::<E>());
    }

    pub(crate) fn retry_on_kind(&mut self, kind: io::ErrorKind) {
        self.retry_on.push(Matcher::Kind(kind));
    }

    pub(crate) fn retry_on_predicate(&mut self, p: Predicate) {
        self.retry_on.push(Matcher::Predicate(p));
    }

    pub(crate) fn exclude_type<E: StdError + 'static>(&mut self) {
        self.exclude.push(Matcher::of_type::<E>());
    }

    pub(crate) fn exclude_kind(&mut self, kind: io::ErrorKind) {
        self.exclude.push(Matcher::Kind(kind));
    }

    pub(crate) fn exclude_predicate(&mut self, p: Predicate) {
        self.exclude.push(Matcher::Predicate(p));
    }

    /// Whether the filter is the default one (retry everything).
    pub fn is_empty(&self) -> bool {
        self.retry_on.is_empty() && self.exclude.is_empty()
    }

    /// Decides whether `error` is retried: `Ok(())` if so, otherwise why not.
    ///
    /// # Errors
    ///
    /// Returns the reason, as a short phrase, when the error must not be retried.
    pub fn check(&self, error: &(dyn StdError + 'static)) -> Result<(), &'static str> {
        let class = class_of(error);
        if class == Some(ErrorClass::Permanent) {
            return Err("error marked permanent");
        }
        if self.exclude.iter().any(|m| m.matches(error)) {
            return Err("error excluded by the retry filter");
        }
        if class == Some(ErrorClass::Transient) || self.retry_on.is_empty() {
            return Ok(());
        }
        if self.retry_on.iter().any(|m| m.matches(error)) {
            Ok(())
        } else {
            Err("error not in the retry-on list")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxError, ErrorExt};

    #[derive(Debug, thiserror::Error)]
    #[error("rate limited")]
    struct RateLimited;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapper(#[source] RateLimited);

    fn boxed(e: impl Into<BoxError>) -> BoxError {
        e.into()
    }

    #[test]
    fn default_retries_everything_but_permanent() {
        let f = RetryFilter::default();
        assert!(f.check(&*boxed(RateLimited)).is_ok());
        assert!(f.check(&*boxed(RateLimited.permanent())).is_err());
    }

    #[test]
    fn retry_on_type_looks_through_the_chain() {
        let mut f = RetryFilter::default();
        f.retry_on_type::<RateLimited>();
        assert!(f.check(&*boxed(Wrapper(RateLimited))).is_ok());
        assert!(f.check(&*boxed(io::Error::other("x"))).is_err());
        assert!(f.check(&*boxed(io::Error::other("x").transient())).is_ok());
    }

    #[test]
    fn exclude_wins_over_retry_on_and_transient() {
        let mut f = RetryFilter::default();
        f.retry_on_kind(io::ErrorKind::TimedOut);
        f.exclude_kind(io::ErrorKind::TimedOut);
        let e = boxed(io::Error::from(io::ErrorKind::TimedOut).transient());
        assert_eq!(f.check(&*e), Err("error excluded by the retry filter"));
    }
}
