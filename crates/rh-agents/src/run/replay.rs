//! The replay side of a call in a resumed run: returning a recorded result, comparing a new
//! one with it (validation), and keeping results as artifacts.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::actor::{Actor, ActorKind};
use crate::address::Address;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventStatus, GroupRef, Severity};
use crate::state::{ExecutionState, LogSite};
use crate::store::{ArtifactRef, Mismatch, StoreError};

/// The JSON result a completed record holds, inline or as an artifact.
fn recorded_value(state: &ExecutionState, recorded: &Event) -> Result<Value, String> {
    if let Some(value) = &recorded.result {
        return Ok(value.clone());
    }
    let artifact = recorded
        .artifact
        .as_deref()
        .ok_or("the record holds no result")?;
    let bytes = state.artifact_bytes(artifact).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("artifact {}: {e}", artifact.sha256))
}

/// Returns the recorded result of a completed call without running it, and records that as
/// RECOVERED (published only when the replay mode says so).
pub(super) fn recorded<I, O: DeserializeOwned>(
    state: &ExecutionState,
    address: &Address,
    actor: &Actor<I, O>,
    recorded: &Event,
    group: Option<&GroupRef>,
) -> Result<O, Error> {
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
    let mismatch = Mismatch {
        address: expected.address.clone(),
        actor: actor.to_string(),
        expected: recorded,
        actual: actual.clone(),
    };
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
