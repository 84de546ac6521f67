//! Explicit marks on errors: transient or permanent, and a retry-after hint.
//!
//! Retry filters classify errors by type, by `io::ErrorKind`, by predicate, or by these marks,
//! never by the error's name as a string.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::BoxError;

/// An explicit classification for retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth retrying (a time-out, a 503, a dropped connection).
    Transient,
    /// Retrying cannot help (bad input, a 404, a refused permission).
    Permanent,
}

/// An error with an explicit class and/or retry-after hint attached.
///
/// It is transparent: it displays as the wrapped error, and type filters look through it to
/// the wrapped error. Build one with [`ErrorExt`].
pub struct Marked {
    inner: BoxError,
    class: Option<ErrorClass>,
    retry_after: Option<Duration>,
}

impl Marked {
    fn wrap(error: BoxError) -> Self {
        match error.downcast::<Marked>() {
            Ok(marked) => *marked,
            Err(inner) => Self {
                inner,
                class: None,
                retry_after: None,
            },
        }
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }

    /// The explicit class, if one was given.
    pub fn class(&self) -> Option<ErrorClass> {
        self.class
    }

    /// The retry-after hint, if one was given.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Marks the error transient.
    #[must_use]
    pub fn transient(mut self) -> Self {
        self.class = Some(ErrorClass::Transient);
        self
    }

    /// Marks the error permanent.
    #[must_use]
    pub fn permanent(mut self) -> Self {
        self.class = Some(ErrorClass::Permanent);
        self
    }

    /// Attaches a retry-after hint (as from an HTTP `Retry-After` header).
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }
}

impl fmt::Debug for Marked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Marked")
            .field("inner", &self.inner)
            .field("class", &self.class)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl fmt::Display for Marked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl StdError for Marked {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source()
    }
}

/// Adds retry marks to any error.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::{ErrorClass, ErrorExt};
///
/// let e = std::io::Error::other("HTTP 429").with_retry_after(Duration::from_secs(2));
/// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
/// let e = std::io::Error::other("HTTP 404").permanent();
/// assert_eq!(e.class(), Some(ErrorClass::Permanent));
/// ```
pub trait ErrorExt: Sized {
    /// Marks the error permanent: it is never retried.
    fn permanent(self) -> Marked;
    /// Marks the error transient: it is retried even when a retry-on list does not name it
    /// (an exclude list still wins).
    fn transient(self) -> Marked;
    /// Attaches a retry-after hint: the next wait is at least this long (still capped by the
    /// policy's `max_delay` and retry budget).
    fn with_retry_after(self, delay: Duration) -> Marked;
}

impl<E: Into<BoxError>> ErrorExt for E {
    fn permanent(self) -> Marked {
        Marked::wrap(self.into()).permanent()
    }

    fn transient(self) -> Marked {
        Marked::wrap(self.into()).transient()
    }

    fn with_retry_after(self, delay: Duration) -> Marked {
        Marked::wrap(self.into()).with_retry_after(delay)
    }
}

/// Iterates an error and its causes, looking through [`Marked`] wrappers (whose `source()`
/// skips the wrapped error to keep `Display` from repeating it).
pub(crate) fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<Marked>() {
            Some(marked) => Some(marked.inner() as &(dyn StdError + 'static)),
            None => current.source(),
        };
        Some(current)
    })
}

/// The first explicit class found in the error's chain.
pub(crate) fn class_of(error: &(dyn StdError + 'static)) -> Option<ErrorClass> {
    chain(error).find_map(|e| e.downcast_ref::<Marked>().and_then(Marked::class))
}

/// The first retry-after hint found in the error's chain.
pub(crate) fn retry_after_of(error: &(dyn StdError + 'static)) -> Option<Duration> {
    chain(error).find_map(|e| e.downcast_ref::<Marked>().and_then(Marked::retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_stack_and_chain_reaches_the_wrapped_error() {
        let e: BoxError = std::io::Error::other("boom")
            .transient()
            .with_retry_after(Duration::from_secs(1))
            .into();
        assert_eq!(class_of(&*e), Some(ErrorClass::Transient));
        assert_eq!(retry_after_of(&*e), Some(Duration::from_secs(1)));
        assert!(chain(&*e).any(|e| e.is::<std::io::Error>()));
        assert_eq!(e.to_string(), "boom");
    }
}
