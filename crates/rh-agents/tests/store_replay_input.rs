#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Replay knows when the code changed: a completed call is replayed only for a call with the
//! same actor and the same input (its hash is on the STARTED record). A changed input runs
//! again with a warning record (normal modes) or is a reported mismatch (validation); records
//! from before hashes replay as they did.

mod support;

use std::sync::Arc;

use rh_agents::store::{MismatchKind, ReplayMode, Snapshot, StateStore};
use rh_agents::{Event, EventStatus, ExecutionState, Severity};
use serde_json::json;
use support::store::{counted, resume, TestStore};

use EventStatus::{Completed, Log, Recovered, Started};

/// A finished run in `store` that called `double` once with `input`.
async fn ran_with(store: &Arc<dyn StateStore>, input: u32) -> (String, u32) {
    let double = counted("double", |x| x * 2);
    let state = ExecutionState::builder()
        .start(Arc::clone(store))
        .await
        .unwrap();
    let out = state.call(&double.actor, input).await.unwrap();
    state.finish_ok().unwrap();
    (state.id().to_owned(), out)
}

fn records(state: &ExecutionState, status: EventStatus) -> Vec<Arc<Event>> {
    state
        .history()
        .events()
        .into_iter()
        .filter(|e| e.status == status && e.address.as_str() == "double#0")
        .collect()
}

fn warnings(state: &ExecutionState) -> Vec<Arc<Event>> {
    records(state, Log)
        .into_iter()
        .filter(|e| e.level == Some(Severity::Warning))
        .collect()
}

async fn the_same_input_replays_and_the_hash_is_recorded(backend: TestStore) {
    let store = backend.store();
    let (id, _) = ran_with(&store, 21).await;
    let stored = store.load(&id).unwrap();
    let started = stored.events.iter().find(|e| e.status == Started).unwrap();
    let hash = started.input_hash.as_deref().unwrap();
    assert_eq!(hash.len(), 16);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");

    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    let double = counted("double", |x| x * 2);
    assert_eq!(resumed.call(&double.actor, 21).await.unwrap(), 42);
    assert_eq!(double.calls(), 0, "replayed, not run");
    let recovered = records(&resumed, Recovered);
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].input_hash.as_deref(), Some(hash));
    assert!(warnings(&resumed).is_empty());

    // Resumed again: the RECOVERED record guards the address as the STARTED one did.
    drop(resumed);
    let again = resume(&store, &id, ReplayMode::Normal).await;
    assert_eq!(again.call(&double.actor, 22).await.unwrap(), 44);
    assert_eq!(double.calls(), 1, "a changed input is not replayed");
}

async fn a_changed_input_runs_again_with_a_warning(backend: TestStore) {
    let store = backend.store();
    let (id, first) = ran_with(&store, 21).await;
    assert_eq!(first, 42);

    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    let double = counted("double", |x| x * 2);
    assert_eq!(resumed.call(&double.actor, 5).await.unwrap(), 10);
    assert_eq!(double.calls(), 1, "the changed call runs again");
    assert!(records(&resumed, Recovered).is_empty());
    assert_eq!(records(&resumed, Completed).len(), 2, "the old and the new");

    let warned = warnings(&resumed);
    assert_eq!(warned.len(), 1, "{warned:?}");
    let message = warned[0].message.as_deref().unwrap();
    assert!(
        message.starts_with("not replayed: the input differs from the recorded call's"),
        "{message}"
    );
    let metadata = warned[0].metadata.as_deref().unwrap();
    assert_eq!(metadata["replay"], json!("input_changed"));
    assert_ne!(metadata["expected"], metadata["actual"]);
    assert!(
        resumed.mismatches().is_empty(),
        "only validation reports mismatches"
    );

    // The new STARTED record carries the new input's hash: a later resume replays it.
    drop(resumed);
    let again = resume(&store, &id, ReplayMode::Normal).await;
    assert_eq!(again.call(&double.actor, 5).await.unwrap(), 10);
    assert_eq!(double.calls(), 1, "replayed this time");
}

async fn validation_reports_a_changed_input_as_a_mismatch(backend: TestStore) {
    let store = backend.store();
    let (id, _) = ran_with(&store, 21).await;

    let resumed = resume(&store, &id, ReplayMode::Validation).await;
    let double = counted("double", |x| x * 2);
    assert_eq!(resumed.call(&double.actor, 5).await.unwrap(), 10);
    assert_eq!(double.calls(), 1);

    let mismatches = resumed.mismatches();
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    let mismatch = &mismatches[0];
    assert_eq!(mismatch.kind, MismatchKind::Input);
    assert_eq!(mismatch.address.as_str(), "double#0");
    assert_eq!(mismatch.actor, "double");
    assert!(mismatch.expected.is_string() && mismatch.actual.is_string());
    assert_ne!(mismatch.expected, mismatch.actual);
    // The results of different inputs are not compared: one mismatch, the input's.
    let warned = warnings(&resumed);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0]
        .message
        .as_deref()
        .unwrap()
        .starts_with("validation: the input differs"));

    // The same input in validation (the latest run's, 5): results compared as before,
    // nothing to report.
    drop(resumed);
    let same = resume(&store, &id, ReplayMode::Validation).await;
    assert_eq!(same.call(&double.actor, 5).await.unwrap(), 10);
    assert!(same.mismatches().is_empty());
}

on_both_stores!(
    the_same_input_replays_and_the_hash_is_recorded,
    a_changed_input_runs_again_with_a_warning,
    validation_reports_a_changed_input_as_a_mismatch,
);

#[tokio::test]
async fn records_without_a_hash_replay_as_before() {
    // A run recorded before input hashes: its records are the same without `input_hash`.
    let store = TestStore::memory().store();
    let (id, _) = ran_with(&store, 21).await;
    let text = store.load(&id).unwrap().to_json();
    let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
    old["schema_version"] = json!("1.0");
    for event in old["events"].as_array_mut().unwrap() {
        event.as_object_mut().unwrap().remove("input_hash");
    }
    let snapshot = Snapshot::from_json(&old.to_string()).unwrap();
    assert!(snapshot.events.iter().all(|e| e.input_hash.is_none()));

    let restored = ExecutionState::builder()
        .restore(snapshot, ReplayMode::Normal)
        .unwrap();
    let double = counted("double", |x| x * 2);
    // Another input, but nothing to tell: the recorded result stands, as it always did.
    assert_eq!(restored.call(&double.actor, 5).await.unwrap(), 42);
    assert_eq!(double.calls(), 0);
    assert!(warnings(&restored).is_empty());
}

#[tokio::test]
async fn a_state_without_a_store_records_no_hash() {
    // Hashing costs a serialization per call: only states a resume can read back pay it.
    let state = ExecutionState::new();
    let double = counted("double", |x| x * 2);
    state.call(&double.actor, 1).await.unwrap();
    assert!(records(&state, Started)[0].input_hash.is_none());
}
