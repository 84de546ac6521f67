//! Replay on resume: which calls return their recorded result instead of running.

use std::sync::Arc;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StoreError;
use crate::actor::ActorKind;
use crate::address::Address;
use crate::event::{Event, EventStatus};

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
    pub(crate) fn new(
        id: &str,
        events: &[Arc<Event>],
        mode: ReplayMode,
    ) -> Result<Self, StoreError> {
        let cutoff = match &mode {
            ReplayMode::FromAddress(address) => events
                .iter()
                .position(|e| e.address.as_str() == address)
                .ok_or_else(|| StoreError::NotFound {
                    id: format!("{id} (address {address:?} is not in its history)"),
                })?,
            _ => events.len(),
        };
        let mut done = FxHashMap::default();
        for event in &events[..cutoff] {
            // A RECOVERED record carries the result too, so a run resumed several times
            // still finds what to replay whichever record came last.
            let completed = matches!(
                event.status,
                EventStatus::Completed | EventStatus::Recovered
            ) && event.is_final
                && !matches!(event.kind, ActorKind::Group | ActorKind::Task)
                && (event.result.is_some() || event.artifact.is_some());
            if completed {
                done.insert(event.address.clone(), Arc::clone(event));
            }
        }
        Ok(Self {
            mode,
            done,
            mismatches: Mutex::new(Vec::new()),
        })
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
