//! Test doubles shared by the integration tests: a scripted actor whose every call follows
//! the next step of a script, and helpers to read histories.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test file uses a subset

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rh_agents::{Actor, ActorKind, Ctx, ErrorExt, Event, EventStatus, ExecutionState};
pub mod store;

/// What one call of a scripted actor does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Returns this text.
    Ok(&'static str),
    /// Fails with a retryable `io::Error` of kind `Other` and this message.
    Fail(&'static str),
    /// Fails with an `io::Error` of this kind.
    FailKind(io::ErrorKind),
    /// Fails with an error marked permanent.
    Permanent(&'static str),
    /// Fails with a 429-style error carrying a retry-after hint.
    RetryAfter(Duration),
    /// Never finishes and ignores interrupts (must be aborted).
    Hang,
    /// Waits for the interrupt, then returns an error (a cooperative handler).
    HangCooperative,
    /// Sleeps this long (virtual time), then returns "slept".
    Sleep(Duration),
    /// Panics.
    Panic,
}

/// A scripted actor and its call counter. Calls past the end of the script repeat the last
/// step.
pub struct Scripted {
    pub actor: Actor<(), String>,
    pub calls: Arc<AtomicU32>,
}

impl Scripted {
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

pub fn scripted(name: &str, steps: Vec<Step>) -> Scripted {
    scripted_kind(ActorKind::Tool, name, steps)
}

pub fn scripted_kind(kind: ActorKind, name: &str, steps: Vec<Step>) -> Scripted {
    assert!(!steps.is_empty(), "a script needs at least one step");
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let steps = Arc::new(steps);
    let actor = Actor::new(kind, name, move |(): (), ctx: Ctx| {
        let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
        let step = steps[n.min(steps.len() - 1)].clone();
        async move { run_step(step, ctx).await }
    });
    Scripted { actor, calls }
}

async fn run_step(step: Step, ctx: Ctx) -> Result<String, rh_agents::BoxError> {
    match step {
        Step::Ok(text) => Ok(text.to_owned()),
        Step::Fail(message) => Err(io::Error::other(message).into()),
        Step::FailKind(kind) => Err(io::Error::new(kind, format!("{kind:?}")).into()),
        Step::Permanent(message) => Err(io::Error::other(message).permanent().into()),
        Step::RetryAfter(after) => Err(io::Error::other("HTTP 429").with_retry_after(after).into()),
        Step::Hang => std::future::pending().await,
        Step::HangCooperative => {
            ctx.interrupted().await;
            Err(io::Error::other("stopped cooperatively").into())
        }
        Step::Sleep(d) => {
            tokio::time::sleep(d).await;
            Ok("slept".to_owned())
        }
        Step::Panic => panic!("scripted panic"),
    }
}

/// Collects every event a state delivers to sync subscribers.
pub fn collect(state: &ExecutionState) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    state.subscribe(move |e: &Event| sink.lock().unwrap().push(e.clone()));
    seen
}

/// The statuses of every record at `address`, logs excluded.
pub fn statuses(state: &ExecutionState, address: &str) -> Vec<EventStatus> {
    state.history().statuses(address)
}

/// The records at `address` with the given status.
pub fn with_status(state: &ExecutionState, address: &str, status: EventStatus) -> Vec<Arc<Event>> {
    state
        .history()
        .at(address)
        .into_iter()
        .filter(|e| e.status == status)
        .collect()
}

/// Constant backoff without jitter: delays are exact.
pub fn constant(delay: Duration, attempts: u32) -> rh_agents::RetryPolicy {
    rh_agents::RetryPolicy::constant(delay)
        .no_jitter()
        .max_attempts(attempts)
        .build()
        .unwrap()
}

/// Runs the call on its own task (so the test can interrupt it); the task also reports the
/// (virtual) time the call returned.
pub fn spawn_call(
    state: &ExecutionState,
    actor: Actor<(), String>,
) -> tokio::task::JoinHandle<(Result<String, rh_agents::Error>, tokio::time::Instant)> {
    let state = state.clone();
    tokio::spawn(async move {
        let result = state.call(&actor, ()).await;
        (result, tokio::time::Instant::now())
    })
}
