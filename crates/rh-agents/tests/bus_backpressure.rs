#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! A slow stream reader never stalls the runtime: past its buffer it skips the oldest events,
//! and the skip is counted; the history stays complete.
mod support;

use rh_agents::{ExecutionState, InterruptReason};
use support::{scripted, Step};
use tokio_stream::StreamExt;

#[tokio::test(start_paused = true)]
async fn a_reader_behind_its_buffer_skips_the_oldest_events_and_counts_them() {
    let state = ExecutionState::builder().bus_capacity(4).build();
    let mut stream = state.stream();
    let tool = scripted("quick", vec![Step::Ok("done")]);

    // Ten calls (twenty records) while nobody reads: the runtime does not wait.
    for _ in 0..10 {
        state.call(&tool.actor, ()).await.unwrap();
    }
    state.request_interrupt(InterruptReason::UserCancelled);

    let mut ids = Vec::new();
    while let Some(event) = stream.next().await {
        ids.push(event.id);
    }
    // The last four records (the buffer) arrive; the seventeen before them were skipped.
    assert_eq!(ids, [17, 18, 19, 20]);
    assert_eq!(stream.lagged(), 17);
    assert_eq!(state.history().len(), 21);
}

#[tokio::test(start_paused = true)]
async fn storage_keeps_typed_values_shared_by_every_clone_of_a_state() {
    let state = ExecutionState::new();
    let clone = state.clone();
    clone.storage().set("pages", &vec![1, 2, 3]).unwrap();

    let pages: Vec<u32> = state.storage().get("pages").unwrap().unwrap();
    assert_eq!(pages, [1, 2, 3]);
    assert!(state.storage().contains("pages"));
    // A value that does not fit the type asked for is an error, not a silent default.
    assert!(state.storage().get::<String>("pages").is_err());
    assert_eq!(state.storage().get::<u32>("missing").unwrap(), None);
    assert_eq!(
        state.storage().remove("pages"),
        Some(serde_json::json!([1, 2, 3]))
    );
    assert!(state.storage().snapshot().is_empty());
}
