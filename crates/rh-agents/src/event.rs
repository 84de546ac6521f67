//! The event record: one immutable value per step of an actor call.
//!
//! Every record appended to a history is a new value that never changes afterwards (the
//! original Python runtime appended one mutable object twice, so its history showed the final
//! status at both places). The JSON form is stable: field names below are the wire names.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actor::ActorKind;
use crate::address::Address;
use crate::interrupt::InterruptSignal;
use crate::retry::PolicySource;
use crate::serde_time;
use crate::store::ArtifactRef;

/// Version of the JSON form of [`Event`]. Bumped on any incompatible change.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// The schema version an event's JSON carries as `"v"`. Takes no memory: it writes
/// [`EVENT_SCHEMA_VERSION`], and reading refuses any other version with an error naming both
/// (a record without `"v"` is read as the current version).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventVersion;

impl Serialize for EventVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(EVENT_SCHEMA_VERSION)
    }
}

impl<'de> Deserialize<'de> for EventVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u32::deserialize(d)?;
        if v == EVENT_SCHEMA_VERSION {
            Ok(Self)
        } else {
            Err(serde::de::Error::custom(format!(
                "event schema version {v} is not supported (this build reads version {EVENT_SCHEMA_VERSION}); \
                 use a matching version of rh-agents"
            )))
        }
    }
}

/// What step of an actor call an [`Event`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventStatus {
    /// An attempt began (attempt 0 is the first; later ones are retries).
    Started,
    /// The call produced its result.
    Completed,
    /// An attempt failed; a [`Retrying`](Self::Retrying) record follows if another is allowed.
    Failed,
    /// A retry was scheduled: the record carries the delay and the error that caused it.
    Retrying,
    /// The call was stopped by an interrupt, or (for the runtime's own record) an interrupt
    /// was requested.
    Interrupted,
    /// The result came from a saved state instead of running the handler.
    Recovered,
    /// The call is being cancelled. Read from records written elsewhere; this runtime does
    /// not produce it (a cancelled call ends INTERRUPTED).
    Cancelling,
    /// The call is waiting on something outside the runtime. Reserved for human input (a
    /// question a run asks): the runtime does not produce it yet.
    Awaiting,
    /// The call waits for a person. Reserved for human input: the runtime does not produce
    /// it yet.
    HumanIntervention,
    /// A log record published with `log`.
    Log,
}

impl EventStatus {
    /// The wire name, e.g. `"retrying"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Interrupted => "interrupted",
            Self::Recovered => "recovered",
            Self::Cancelling => "cancelling",
            Self::Awaiting => "awaiting",
            Self::HumanIntervention => "human_intervention",
            Self::Log => "log",
        }
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// Detail for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that did not stop the run.
    Warning,
    /// Something failed.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// Where a record stands in a parallel group: the group's id (its address) and the index of
/// the task (in the order tasks were added).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    /// The group's id: its address.
    pub id: Arc<str>,
    /// The task's index in the group.
    pub index: u32,
}

/// Retry bookkeeping carried by every actor event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryInfo {
    /// Zero-based attempt number this record belongs to.
    pub attempt: u32,
    /// How many attempts the deciding policy allows in all.
    #[serde(default)]
    pub max_attempts: u32,
    /// Whether this attempt is a retry (attempt > 0).
    pub is_retry: bool,
    /// The wait before this attempt (on `started` of a retry) or the scheduled wait (on
    /// `retrying`).
    #[serde(with = "serde_time::option_duration_ms", default, rename = "delay_ms")]
    pub delay: Option<Duration>,
    /// The error that caused the retry, as text (shared by the records of one retry).
    #[serde(default)]
    pub original_error: Option<Arc<str>>,
    /// Which configuration level decided the retry policy.
    #[serde(default)]
    pub policy_source: Option<PolicySource>,
}

/// One immutable record of a step of an actor call (or of a log line or interrupt).
///
/// # Examples
///
/// ```
/// # use rh_agents::{ActorKind, Event, EventStatus};
/// let json = r#"{"id":3,"address":"search#0","actor":"search","kind":"tool",
///   "status":"completed","timestamp":"2026-11-27T10:00:00.000000Z",
///   "retry":{"attempt":0,"is_retry":false}}"#;
/// let event: Event = serde_json::from_str(json).unwrap();
/// assert_eq!(event.status, EventStatus::Completed);
/// assert_eq!(event.kind, ActorKind::Tool);
///
/// // Records from an unknown schema version are refused, not misread.
/// let future = json.replacen("{", r#"{"v":99,"#, 1);
/// let err = serde_json::from_str::<Event>(&future).unwrap_err();
/// assert!(err.to_string().contains("event schema version 99 is not supported"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// The JSON schema version (`"v"`).
    #[serde(rename = "v", default)]
    pub version: EventVersion,
    /// Sequence number in the state's history: unique within a state, starting at 0.
    pub id: u64,
    /// The deterministic address of the call.
    pub address: Address,
    /// The actor's name.
    pub actor: Arc<str>,
    /// The actor's kind.
    pub kind: ActorKind,
    /// What step this records.
    pub status: EventStatus,
    /// Wall-clock time the record was made.
    #[serde(with = "serde_time::timestamp")]
    pub timestamp: SystemTime,
    /// How long the attempt took (on `completed` and `failed`).
    #[serde(
        with = "serde_time::option_duration_ms",
        default,
        rename = "duration_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
    /// A one-line description, e.g. the error on `failed` or "Attempt 2/3 in 1.0s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Arc<str>>,
    /// The input (on `started`) or output (on `completed`) as JSON text, truncated. Shared:
    /// the retries of a call point at one copy of its input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Arc<str>>,
    /// A free tag given at the call site (shared by the records of one call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Arc<str>>,
    /// Free metadata given at the call site or with a log record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Arc<Map<String, Value>>>,
    /// The call's result as JSON (on `completed` and `recovered`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The result kept as an artifact instead of inline (actors built with
    /// [`Actor::output_as_artifact`](crate::Actor::output_as_artifact)); `result` is then
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Box<ArtifactRef>>,
    /// Retry bookkeeping.
    pub retry: RetryInfo,
    /// The interrupt, on `interrupted` records (boxed: rare, and records stay small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<Box<InterruptSignal>>,
    /// The parallel group and task the record belongs to (the innermost, for nested groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRef>,
    /// Whether the record belongs to a task of a parallel group.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_parallel: bool,
    /// Severity, on `log` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Severity>,
    /// Whether this is the call's final record: how the call ended (COMPLETED, INTERRUPTED,
    /// or a FAILED that no retry follows).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_final: bool,
    /// Whether the record was replayed from a saved state rather than run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_replayed: bool,
    /// A short hash of the call's input (on `started` and `recovered`, in a state with a
    /// store or a replay plan): a resume replays a completed call only when the call made at
    /// its address has the same actor and this same hash. 16 hex digits of the SHA-256 of
    /// the input's canonical JSON (object keys sorted). Absent in records written before
    /// snapshot schema 1.1, which replay without the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_hash: Option<Arc<str>>,
}

impl Event {
    /// A blank record for `actor` at `address`; the runtime fills the rest.
    pub(crate) fn new(
        address: Address,
        actor: Arc<str>,
        kind: ActorKind,
        status: EventStatus,
    ) -> Self {
        Self {
            version: EventVersion,
            id: 0,
            address,
            actor,
            kind,
            status,
            timestamp: crate::serde_time::now(),
            duration: None,
            message: None,
            detail: None,
            tag: None,
            metadata: None,
            result: None,
            artifact: None,
            retry: RetryInfo::default(),
            interrupt: None,
            group: None,
            is_parallel: false,
            level: None,
            is_final: false,
            is_replayed: false,
            input_hash: None,
        }
    }

    /// The record as one line of stable JSON.
    pub fn to_json(&self) -> String {
        // Serializing this type cannot fail: every field has a JSON form and map keys are text.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
