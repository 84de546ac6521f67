//! Errors the runtime creates for a failed attempt. Each is its own type, so retry filters can
//! match them by type like any handler error.

use std::time::Duration;

use crate::BoxError;

/// An attempt ran longer than the policy's per-attempt timeout. Retryable by default.
#[derive(Debug, thiserror::Error)]
#[error("attempt timed out after {}", crate::serde_time::Human(*.after))]
pub struct AttemptTimeout {
    /// The per-attempt timeout that was exceeded.
    pub after: Duration,
}

/// A handler, condition or checker panicked. Counted as a failed attempt (or a failed
/// condition); the runtime keeps going.
#[derive(Debug, thiserror::Error)]
#[error("panicked: {message}")]
pub struct HandlerPanic {
    /// The panic payload, when it was a string.
    pub message: String,
}

impl HandlerPanic {
    pub(crate) fn from_payload(payload: &(dyn std::any::Any + Send)) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_owned()
        };
        Self { message }
    }
}

/// A postcondition rejected an attempt's output; the reason is its `source()`. (A failed
/// precondition ends the call with [`ErrorKind::PreconditionFailed`](crate::ErrorKind) and the
/// precondition's own error as the cause.)
#[derive(Debug, thiserror::Error)]
#[error("{which} failed")]
pub struct ConditionFailed {
    /// `"postcondition"`.
    pub which: &'static str,
    /// Why the condition failed.
    #[source]
    pub source: BoxError,
}
