//! The interrupt signal: why, who, and whether to save a checkpoint.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::serde_time;

/// Why a run was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InterruptReason {
    /// A person asked to stop (Ctrl-C, a cancel button).
    UserCancelled,
    /// A time limit was reached.
    Timeout,
    /// A budget (tokens, money, memory) was spent.
    ResourceLimit,
    /// Too many errors.
    ErrorThreshold,
    /// More important work needs the resources.
    PriorityOverride,
    /// The process or machine is shutting down.
    SystemShutdown,
    /// Anything else; the message says what.
    Custom,
}

impl InterruptReason {
    /// The wire name, e.g. `"user_cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCancelled => "user_cancelled",
            Self::Timeout => "timeout",
            Self::ResourceLimit => "resource_limit",
            Self::ErrorThreshold => "error_threshold",
            Self::PriorityOverride => "priority_override",
            Self::SystemShutdown => "system_shutdown",
            Self::Custom => "custom",
        }
    }
}

impl fmt::Display for InterruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to stop a run.
///
/// # Examples
///
/// ```
/// use rh_agents::{InterruptReason, InterruptSignal};
///
/// let signal = InterruptSignal::new(InterruptReason::UserCancelled)
///     .message("stop button")
///     .triggered_by("alice")
///     .save_checkpoint(true);
/// assert_eq!(signal.reason, InterruptReason::UserCancelled);
/// let json = serde_json::to_string(&signal).unwrap();
/// assert!(json.contains(r#""reason":"user_cancelled""#));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InterruptSignal {
    /// Why.
    pub reason: InterruptReason,
    /// A message for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who or what asked (a user, a process, a checker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// Whether the state should be saved before the caller gets its error.
    #[serde(default)]
    pub save_checkpoint: bool,
    /// When the interrupt was requested.
    #[serde(with = "serde_time::timestamp")]
    pub timestamp: SystemTime,
}

impl InterruptSignal {
    /// A signal with a reason and nothing else.
    pub fn new(reason: InterruptReason) -> Self {
        Self {
            reason,
            message: None,
            triggered_by: None,
            save_checkpoint: false,
            timestamp: crate::serde_time::now(),
        }
    }

    /// Sets the message.
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets who triggered it.
    #[must_use]
    pub fn triggered_by(mut self, who: impl Into<String>) -> Self {
        self.triggered_by = Some(who.into());
        self
    }

    /// Asks for a checkpoint to be saved.
    #[must_use]
    pub fn save_checkpoint(mut self, save: bool) -> Self {
        self.save_checkpoint = save;
        self
    }
}

impl From<InterruptReason> for InterruptSignal {
    fn from(reason: InterruptReason) -> Self {
        Self::new(reason)
    }
}

impl fmt::Display for InterruptSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason.as_str())?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}
