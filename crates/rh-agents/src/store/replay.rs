//! Replay on resume: which calls return their recorded result instead of running.

use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::StoreError;
use crate::actor::ActorKind;
use crate::address::Address;
use crate::event::{Event, EventStatus, Severity};

/// How a resumed run treats calls that completed before.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayMode {
    /// A call whose address completed returns its recorded result without running its
    /// handler or waiting any backoff; it is recorded as RECOVERED (`is_replayed`) without
    /// being published. Everything else (failed, interrupted, never reached) runs.
    Normal,
    /// As [`Normal`](Self::Normal), and every RECOVERED record is published on the bus, to
    /// rebuild a stream or a printer's view of the run.
    RepublishAll,
    /// Everything runs again, and each result is compared with the recorded one: every
    /// difference is recorded as a warning log record and kept in
    /// [`ExecutionState::mismatches`](crate::ExecutionState::mismatches).
    Validation,
    /// Calls that completed before the first record of this address are replayed; it and
    /// everything after it run again.
    FromAddress(String),
}

/// A call that differs from the recorded one (validation mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Mismatch {
    /// The call.
    pub address: Address,
    /// The actor.
    pub actor: String,
    /// What differs.
    #[serde(default)]
    pub kind: MismatchKind,
    /// What was recorded: the result, the input's hash, or the actor's name.
    pub expected: Value,
    /// What this run has: the result of running it again, its input's hash, or its actor.
    pub actual: Value,
}

impl Mismatch {
    /// A mismatch of `kind` at `address`.
    pub fn new(
        address: Address,
        actor: impl Into<String>,
        kind: MismatchKind,
        expected: Value,
        actual: Value,
    ) -> Self {
        Self {
            address,
            actor: actor.into(),
            kind,
            expected,
            actual,
        }
    }
}

/// What differs between a call and the recorded one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MismatchKind {
    /// The result of running it again.
    #[default]
    Result,
    /// The input (its hash differs from the one recorded on the call's STARTED record).
    Input,
    /// The actor called at the address.
    Actor,
}

/// The actor name of the record that marks a resume.
const RESUME_ACTOR: &str = "resume";

/// The address a resume marker says the run was resumed from, if it is one.
fn resumed_from(event: &Event) -> Option<&str> {
    if event.status != EventStatus::Log
        || event.kind != ActorKind::System
        || &*event.actor != RESUME_ACTOR
    {
        return None;
    }
    event
        .metadata
        .as_ref()?
        .get(RESUME_ACTOR)?
        .get("from_address")?
        .as_str()
}

/// A completed call that may be replayed, and the hash of the input it ran with.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    /// Its COMPLETED (or RECOVERED) record.
    pub(crate) event: Arc<Event>,
    /// The input hash of the call's last STARTED record (or the RECOVERED record's own);
    /// `None` for records written before input hashes were.
    pub(crate) input_hash: Option<Arc<str>>,
}

/// The replay plan of a resumed state.
#[derive(Debug)]
pub(crate) struct Replay {
    mode: ReplayMode,
    /// The completed record of each address that may be replayed (compared, in validation).
    done: FxHashMap<Address, Recorded>,
    mismatches: Mutex<Vec<Mismatch>>,
}

impl Replay {
    /// Plans replay over a restored history.
    ///
    /// The history is read in order, so what a later record says wins: a completion makes
    /// an address replayable; a later final failure (a re-run that failed) withdraws it; a
    /// resume from an address (its `resume` record) withdraws everything from that address
    /// on, as that resume did.
    pub(crate) fn new(
        id: &str,
        events: &[Arc<Event>],
        mode: ReplayMode,
    ) -> Result<Self, StoreError> {
        let first_record =
            |address: &str| events.iter().position(|e| e.address.as_str() == address);
        let cutoff = match &mode {
            ReplayMode::FromAddress(address) => {
                first_record(address).ok_or_else(|| StoreError::UnknownAddress {
                    id: id.to_owned(),
                    address: address.clone(),
                })?
            }
            _ => events.len(),
        };
        let mut done: FxHashMap<Address, Recorded> = FxHashMap::default();
        // The input hash of each address's latest STARTED record.
        let mut started: FxHashMap<&Address, Option<&Arc<str>>> = FxHashMap::default();
        for event in &events[..cutoff] {
            if let Some(from) = resumed_from(event) {
                if let Some(first) = first_record(from) {
                    done.retain(|_, completed| (completed.event.id as usize) < first);
                }
                continue;
            }
            if event.status == EventStatus::Started {
                started.insert(&event.address, event.input_hash.as_ref());
            }
            if !event.is_final || matches!(event.kind, ActorKind::Group | ActorKind::Task) {
                continue;
            }
            match event.status {
                // A RECOVERED record carries the result too, so a run resumed several times
                // still finds what to replay whichever record came last.
                EventStatus::Completed | EventStatus::Recovered
                    if event.result.is_some() || event.artifact.is_some() =>
                {
                    let input_hash = if event.status == EventStatus::Recovered {
                        event.input_hash.clone()
                    } else {
                        started.get(&event.address).copied().flatten().cloned()
                    };
                    let recorded = Recorded {
                        event: Arc::clone(event),
                        input_hash,
                    };
                    done.insert(event.address.clone(), recorded);
                }
                EventStatus::Failed => {
                    done.remove(&event.address);
                }
                _ => {}
            }
        }
        Ok(Self {
            mode,
            done,
            mismatches: Mutex::new(Vec::new()),
        })
    }

    /// The record that marks a resume in the history.
    pub(crate) fn marker(&self) -> Event {
        let mut event = Event::new(
            Address::root(),
            Arc::from(RESUME_ACTOR),
            ActorKind::System,
            EventStatus::Log,
        );
        let (mode, from) = match &self.mode {
            ReplayMode::Normal => ("normal", None),
            ReplayMode::RepublishAll => ("republish_all", None),
            ReplayMode::Validation => ("validation", None),
            ReplayMode::FromAddress(address) => ("from_address", Some(address.as_str())),
        };
        let mut detail = Map::new();
        detail.insert("mode".into(), Value::from(mode));
        if let Some(from) = from {
            detail.insert("from_address".into(), Value::from(from));
        }
        let mut metadata = Map::new();
        metadata.insert(RESUME_ACTOR.into(), Value::Object(detail));
        event.level = Some(Severity::Info);
        event.message = Some(Arc::from(match from {
            Some(from) => format!("resumed from the saved state ({mode}: {from})"),
            None => format!("resumed from the saved state ({mode} replay)"),
        }));
        event.metadata = Some(Arc::new(metadata));
        event
    }

    pub(crate) fn lookup(&self, address: &Address) -> Option<&Recorded> {
        self.done.get(address)
    }

    pub(crate) fn mode(&self) -> &ReplayMode {
        &self.mode
    }

    pub(crate) fn validates(&self) -> bool {
        self.mode == ReplayMode::Validation
    }

    pub(crate) fn publishes(&self) -> bool {
        self.mode == ReplayMode::RepublishAll
    }

    pub(crate) fn add_mismatch(&self, mismatch: Mismatch) {
        self.mismatches.lock().push(mismatch);
    }

    pub(crate) fn mismatches(&self) -> Vec<Mismatch> {
        self.mismatches.lock().clone()
    }
}
