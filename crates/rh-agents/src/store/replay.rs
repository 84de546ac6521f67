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

/// A call whose result differs from the recorded one (validation mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The call.
    pub address: Address,
    /// The actor.
    pub actor: String,
    /// The recorded result.
    pub expected: Value,
    /// The result of running it again.
    pub actual: Value,
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

/// The replay plan of a resumed state.
#[derive(Debug)]
pub(crate) struct Replay {
    mode: ReplayMode,
    /// The completed record of each address that may be replayed (compared, in validation).
    done: FxHashMap<Address, Arc<Event>>,
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
        let mut done: FxHashMap<Address, Arc<Event>> = FxHashMap::default();
        for event in &events[..cutoff] {
            if let Some(from) = resumed_from(event) {
                if let Some(first) = first_record(from) {
                    done.retain(|_, completed| (completed.id as usize) < first);
                }
                continue;
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
                    done.insert(event.address.clone(), Arc::clone(event));
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

    pub(crate) fn lookup(&self, address: &Address) -> Option<&Arc<Event>> {
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
