#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Calls whose futures are dropped before they finish (a parent aborted after its grace
//! period, a caller that gives up) still end with a final record.
mod support;

use std::time::Duration;

use rh_agents::{Actor, Ctx, EventStatus, ExecutionState, InterruptReason};
use support::{scripted, Step};
use EventStatus::{Interrupted, Started};

#[tokio::test(start_paused = true)]
async fn a_call_dropped_by_its_caller_records_interrupted() {
    let state = ExecutionState::new();
    let hang = scripted("slow", vec![Step::Hang]);

    let gave_up = tokio::time::timeout(Duration::from_secs(1), state.call(&hang.actor, ())).await;

    assert!(
        gave_up.is_err(),
        "the call must still be running when the caller gives up"
    );
    assert_eq!(state.history().statuses("slow#0"), [Started, Interrupted]);
    let last = state.history().latest("slow#0").unwrap();
    assert_eq!(
        last.message.as_deref(),
        Some("the call was dropped before it finished")
    );
    assert_eq!(
        last.detail.as_deref(),
        Some(
            "Cancelled: its caller stopped waiting for it (a group that failed fast or timed \
             out, or a timeout around the call)"
        )
    );
}

#[tokio::test(start_paused = true)]
async fn children_of_an_aborted_agent_end_with_interrupted() {
    let state = ExecutionState::builder()
        .grace_period(Duration::from_millis(500))
        .build();
    let hang = scripted("search", vec![Step::Hang]);
    let child = hang.actor.clone();
    // An agent that ignores interrupts and waits on a child that ignores them too.
    let agent = Actor::agent("planner", move |(): (), ctx: Ctx| {
        let child = child.clone();
        async move {
            let _ = ctx.call(&child, ()).await;
            std::future::pending::<()>().await;
            Ok::<(), std::io::Error>(())
        }
    });
    let runner = state.clone();
    let call = tokio::spawn(async move { runner.call(&agent, ()).await });
    tokio::time::sleep(Duration::from_secs(1)).await;

    state.request_interrupt(InterruptReason::UserCancelled);
    let started = tokio::time::Instant::now();
    let err = call.await.unwrap().unwrap_err();

    assert!(err.is_interrupted());
    // Both handlers ignore the interrupt, so both are aborted when the grace period ends;
    // whichever is dropped first, the child ends with a final record.
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(
        state.history().statuses("planner#0/search#0"),
        [Started, Interrupted]
    );
    assert_eq!(
        state.history().statuses("planner#0"),
        [Started, Interrupted]
    );
}

#[tokio::test(start_paused = true)]
async fn a_finished_call_records_nothing_more_when_its_future_is_dropped() {
    let state = ExecutionState::new();
    let ok = scripted("ok", vec![Step::Ok("done")]);
    let fut = std::future::IntoFuture::into_future(state.call(&ok.actor, ()));
    assert_eq!(fut.await.unwrap(), "done");
    // A call future that is never polled records nothing.
    drop(std::future::IntoFuture::into_future(
        state.call(&ok.actor, ()),
    ));
    assert_eq!(state.history().statuses("ok#0").len(), 2);
    assert!(state.history().statuses("ok#1").is_empty());
}
