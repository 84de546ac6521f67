//! The replay side of a call in a resumed run: deciding whether a recorded result may stand
//! for the call (same actor, same input), returning it, comparing a new one with it
//! (validation), and keeping results as artifacts.
//!
//! Invariant: a recorded result is only replayed for a call with the same actor and the same
//! input hash as the recorded call (decision 12: the address is the key, the input's hash
//! guards it). Records without a hash (written before hashes were) replay as they did.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::actor::{Actor, ActorKind};
use crate::address::Address;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventStatus, GroupRef, Severity};
use crate::state::{ExecutionState, LogSite};
use crate::store::replay::Recorded;
use crate::store::{ArtifactRef, Mismatch, MismatchKind, StoreError};

/// What a call does about replay.
pub(super) enum Plan<O> {
    /// The recorded result stands for the call (or could not be read: the error).
    Replayed(Result<O, Error>),
    /// The call runs.
    Run {
        /// The recorded completion to compare its result with (validation).
        expected: Option<Arc<Event>>,
        /// Its input's hash, for its STARTED records.
        input_hash: Option<Arc<str>>,
    },
}

/// Decides how a call at `address` runs: replayed from the record, or run (compared with the
/// record in validation mode). A record of another actor or of another input is not replayed:
/// normal modes run the call again with a warning record; validation reports a mismatch.
pub(super) fn plan<I: Serialize, O: DeserializeOwned>(
    state: &ExecutionState,
    address: &Address,
    actor: &Actor<I, O>,
    input: &I,
    group: Option<&GroupRef>,
) -> Plan<O> {
    // Hashed only where a resume can read it back: a state with a store, or a restored one
    // (an in-memory state keeps the cost of a call without a store as it was).
    let hashes = state.inner.durable.is_some() || state.inner.replay.is_some();
    let input_hash = if hashes { input_hash(input) } else { None };
    let Some(replay) = &state.inner.replay else {
        return Plan::Run {
            expected: None,
            input_hash,
        };
    };
    let Some(recorded) = replay.lookup(address) else {
        return Plan::Run {
            expected: None,
            input_hash,
        };
    };
    if let Some(change) = changed(recorded, &actor.name, input_hash.as_ref()) {
        report_change(state, replay.validates(), recorded, actor, &change, group);
        return Plan::Run {
            expected: None,
            input_hash,
        };
    }
    // After an interrupt nothing is replayed either: the call takes the normal path, which
    // records how the interrupt stopped it, like every other call.
    if !replay.validates() && !state.is_interrupted() {
        return Plan::Replayed(self::recorded(state, address, actor, recorded, group));
    }
    Plan::Run {
        expected: Some(Arc::clone(&recorded.event)),
        input_hash,
    }
}

/// How a call differs from the recorded one.
struct Change {
    kind: MismatchKind,
    recorded: Value,
    now: Value,
}

/// Whether the call (its actor, its input's hash) differs from the recorded call.
fn changed(recorded: &Recorded, actor: &Arc<str>, input_hash: Option<&Arc<str>>) -> Option<Change> {
    if recorded.event.actor != *actor {
        return Some(Change {
            kind: MismatchKind::Actor,
            recorded: Value::from(&*recorded.event.actor),
            now: Value::from(&**actor),
        });
    }
    match (&recorded.input_hash, input_hash) {
        (Some(then), Some(now)) if then != now => Some(Change {
            kind: MismatchKind::Input,
            recorded: Value::from(&**then),
            now: Value::from(&**now),
        }),
        // The same input, or a record from before hashes (or an input that could not be
        // hashed): replayed as before.
        _ => None,
    }
}

/// Reports a call that differs from the recorded one: a warning record at the call, and in
/// validation mode a mismatch in the state's list.
fn report_change<I, O>(
    state: &ExecutionState,
    validation: bool,
    recorded: &Recorded,
    actor: &Actor<I, O>,
    change: &Change,
    group: Option<&GroupRef>,
) {
    let (what, code) = match change.kind {
        MismatchKind::Actor => ("the actor called at this address", "actor_changed"),
        _ => ("the input", "input_changed"),
    };
    let message = if validation {
        format!(
            "validation: {what} differs from the recorded call's (record #{})",
            recorded.event.id
        )
    } else {
        format!(
            "not replayed: {what} differs from the recorded call's (record #{}); the call runs              again",
            recorded.event.id
        )
    };
    let mut metadata = Map::new();
    metadata.insert(
        if validation { "validation" } else { "replay" }.into(),
        Value::from(if validation { "mismatch" } else { code }),
    );
    metadata.insert("expected".into(), change.recorded.clone());
    metadata.insert("actual".into(), change.now.clone());
    state.log_at(
        LogSite {
            address: &recorded.event.address,
            actor: &actor.name,
            kind: actor.kind,
            group,
        },
        Severity::Warning,
        message,
        Some(metadata),
    );
    if validation {
        if let Some(replay) = &state.inner.replay {
            replay.add_mismatch(Mismatch::new(
                recorded.event.address.clone(),
                &*actor.name,
                change.kind,
                change.recorded.clone(),
                change.now.clone(),
            ));
        }
    }
}

/// The input's hash: 16 hex digits of the SHA-256 of its canonical JSON (object keys in
/// sorted order, whatever order the type serializes them in). `None` when the input cannot
/// be serialized (its `Serialize` fails or panics): the call is then not guarded.
pub(crate) fn input_hash<I: Serialize + ?Sized>(input: &I) -> Option<Arc<str>> {
    let value = crate::panic::catch(|| serde_json::to_value(input))
        .ok()?
        .ok()?;
    let mut hasher = Sha256::new();
    canonical(&value, &mut hasher);
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(16);
    for byte in &digest[..8] {
        use std::fmt::Write as _;
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    Some(Arc::from(hex))
}

/// Feeds `value`'s canonical JSON to `hasher`: objects with their keys sorted, no spaces.
fn canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            hasher.update(b"{");
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                canonical(&Value::String(key.clone()), hasher);
                hasher.update(b":");
                if let Some(item) = map.get(key) {
                    canonical(item, hasher);
                }
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        // Scalars have one JSON form.
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

/// The JSON result a completed record holds, inline or as an artifact.
fn recorded_value(state: &ExecutionState, recorded: &Event) -> Result<Value, String> {
    if let Some(value) = &recorded.result {
        return Ok(value.clone());
    }
    let artifact = recorded
        .artifact
        .as_deref()
        .ok_or("the record holds no result")?;
    let bytes = state.artifact_bytes(artifact).map_err(|e| e.report())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("artifact {}: {e}", artifact.sha256))
}

/// Returns the recorded result of a completed call without running it, and records that as
/// RECOVERED (published only when the replay mode says so).
fn recorded<I, O: DeserializeOwned>(
    state: &ExecutionState,
    address: &Address,
    actor: &Actor<I, O>,
    guarded: &Recorded,
    group: Option<&GroupRef>,
) -> Result<O, Error> {
    let recorded = &*guarded.event;
    let fail = |detail: String| {
        // Recorded, so the history shows where and why the resumed run stopped.
        let mut event = Event::new(
            address.clone(),
            Arc::clone(&actor.name),
            actor.kind,
            EventStatus::Failed,
        );
        event.message = Some(Arc::from(format!(
            "the recorded result cannot be replayed: {detail}"
        )));
        if let Some(group) = group {
            event.group = Some(group.clone());
            event.is_parallel = true;
        }
        event.is_final = true;
        state.record(event);
        Error::new(ErrorKind::Replay)
            .at(&actor.name, actor.kind, address)
            .detail(detail)
    };
    let value = recorded_value(state, recorded)
        .map_err(|reason| fail(format!("record #{}: {reason}", recorded.id)))?;
    let output = serde_json::from_value::<O>(value).map_err(|e| {
        fail(format!(
            "record #{} does not fit this actor's output type ({e}); resume from this address \
             (ReplayMode::FromAddress) to run it again",
            recorded.id
        ))
    })?;
    let mut event = Event::new(
        address.clone(),
        Arc::clone(&actor.name),
        actor.kind,
        EventStatus::Recovered,
    );
    event.result.clone_from(&recorded.result);
    event.artifact.clone_from(&recorded.artifact);
    event.detail.clone_from(&recorded.detail);
    event.tag.clone_from(&recorded.tag);
    event.metadata.clone_from(&recorded.metadata);
    event.retry = recorded.retry.clone();
    if let Some(group) = group {
        event.group = Some(group.clone());
        event.is_parallel = true;
    }
    event.message = Some(Arc::from(format!(
        "replayed from the saved state (completed in record #{})",
        recorded.id
    )));
    event.is_final = true;
    event.is_replayed = true;
    // The call's only record in this resume: it carries the hash that guarded it, for the
    // next resume.
    event.input_hash.clone_from(&guarded.input_hash);
    let publish = state.inner.replay.as_ref().is_some_and(|r| r.publishes());
    state.record_replayed(event, publish);
    Ok(output)
}

/// Keeps a result as a content-addressed artifact named after the call's address.
pub(super) fn keep_as_artifact(
    state: &ExecutionState,
    address: &Address,
    value: &Value,
) -> Result<ArtifactRef, StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Backend {
        context: "serializing an artifact".into(),
        source: Box::new(e),
    })?;
    state.put_artifact(address.as_str(), &bytes, Some("application/json"))
}

/// Validation replay: reports a result that differs from the recorded one, as a warning log
/// record at the call and in the state's list of mismatches.
pub(super) fn compare(
    state: &ExecutionState,
    actor: &Arc<str>,
    kind: ActorKind,
    expected: &Event,
    actual: &Value,
) {
    let recorded = match recorded_value(state, expected) {
        Ok(value) => value,
        Err(reason) => Value::String(format!("(unreadable: {reason})")),
    };
    if &recorded == actual {
        return;
    }
    let mismatch = Mismatch::new(
        expected.address.clone(),
        &**actor,
        MismatchKind::Result,
        recorded,
        actual.clone(),
    );
    let mut metadata = Map::new();
    metadata.insert("validation".into(), Value::from("mismatch"));
    metadata.insert("expected".into(), mismatch.expected.clone());
    metadata.insert("actual".into(), mismatch.actual.clone());
    state.log_at(
        LogSite {
            address: &expected.address,
            actor,
            kind,
            group: expected.group.as_ref(),
        },
        Severity::Warning,
        format!(
            "validation: the result differs from the recorded one (record #{})",
            expected.id
        ),
        Some(metadata),
    );
    if let Some(replay) = &state.inner.replay {
        replay.add_mismatch(mismatch);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed test

    use serde::Serialize;

    use super::input_hash;

    #[derive(Serialize)]
    struct Ab {
        a: u32,
        b: &'static str,
    }

    #[derive(Serialize)]
    struct Ba {
        b: &'static str,
        a: u32,
    }

    #[test]
    fn the_hash_ignores_the_order_fields_are_written_in() {
        let ab = input_hash(&Ab { a: 1, b: "x" }).unwrap();
        let ba = input_hash(&Ba { b: "x", a: 1 }).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab.len(), 16);
        let map: std::collections::HashMap<&str, serde_json::Value> =
            [("b", serde_json::json!("x")), ("a", serde_json::json!(1))].into();
        assert_eq!(input_hash(&map).unwrap(), ab);
    }

    #[test]
    fn the_hash_tells_inputs_apart() {
        assert_ne!(input_hash(&1u32), input_hash(&2u32));
        assert_ne!(input_hash(&"1"), input_hash(&1u32));
        assert_ne!(input_hash(&[1, 2]), input_hash(&[2, 1]));
        assert_eq!(input_hash(&()), input_hash(&()));
    }

    #[test]
    fn an_input_that_cannot_be_serialized_has_no_hash() {
        struct Broken;
        impl Serialize for Broken {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        assert!(input_hash(&Broken).is_none());
    }
}
