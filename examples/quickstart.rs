//! Quickstart: the runtime at work in two scenes.
//!
//! 1. A flaky tool times out twice and is retried with exponential backoff until it answers.
//! 2. A tool whose retry waits 10 s is interrupted from another task: the backoff ends at once.
//!
//! Every record the runtime makes is printed as it happens, then the history is summarised.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example quickstart
//! ```
#![allow(clippy::print_stdout)] // an example prints what happens: that is its job

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rh_agents::{
    Actor, Ctx, Event, EventStatus, ExecutionState, InterruptReason, InterruptSignal, RetryPolicy,
};

/// Prints one record as a line, indented by call depth.
fn print_event(event: &Event) {
    let indent = "  ".repeat(event.address.depth().saturating_sub(1));
    let (mark, what) = match event.status {
        EventStatus::Started if event.retry.is_retry => {
            ("▶", format!("started (retry {})", event.retry.attempt))
        }
        EventStatus::Started => ("▶", "started".to_owned()),
        EventStatus::Completed => (
            "✔",
            format!("completed → {}", event.detail.as_deref().unwrap_or("")),
        ),
        EventStatus::Failed => (
            "✖",
            format!("failed: {}", event.message.as_deref().unwrap_or("")),
        ),
        EventStatus::Retrying => ("↻", event.message.as_deref().unwrap_or("").to_owned()),
        EventStatus::Interrupted if event.address.is_root() => (
            "■",
            format!(
                "interrupt requested: {}",
                event.message.as_deref().unwrap_or("")
            ),
        ),
        EventStatus::Interrupted => (
            "■",
            format!(
                "{} ({})",
                event.detail.as_deref().unwrap_or("interrupted"),
                event.message.as_deref().unwrap_or("")
            ),
        ),
        other => ("·", other.to_string()),
    };
    let took = event
        .duration
        .map(|d| format!(" [{d:.1?}]"))
        .unwrap_or_default();
    if event.address.is_root() {
        println!("{indent}{mark} {what}");
    } else {
        println!(
            "{indent}{mark} {} {} {what}{took}",
            event.kind, event.address
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let state = ExecutionState::builder().subscriber(print_event).build();

    println!("── Scene 1: a flaky tool, retried until it answers ──");
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let flaky = Actor::tool("weather", move |city: String, _ctx: Ctx| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "upstream timed out",
                ))
            } else {
                Ok(format!("sunny in {city}"))
            }
        }
    })
    .retry(
        RetryPolicy::exponential(Duration::from_millis(200))
            .max_attempts(4)
            .build()?,
    );
    let forecast = state.call(&flaky, "Lisbon".to_owned()).await?;
    println!(
        "→ {forecast} after {} attempts\n",
        calls.load(Ordering::SeqCst)
    );

    println!("── Scene 2: a 10 s backoff, interrupted from another task ──");
    let down = Actor::tool("billing-api", |_: (), _ctx: Ctx| async move {
        Err::<(), _>(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "connection refused",
        ))
    })
    .retry(
        RetryPolicy::constant(Duration::from_secs(10))
            .max_attempts(5)
            .no_jitter()
            .build()?,
    );
    let stopper = state.clone();
    let requested = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mark = Arc::clone(&requested);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        *mark.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        stopper.request_interrupt(
            InterruptSignal::new(InterruptReason::UserCancelled)
                .message("stop button pressed")
                .triggered_by("quickstart"),
        );
    });
    let err = match state.call(&down, ()).await {
        Ok(()) => return Err("the interrupted call unexpectedly succeeded".into()),
        Err(err) => err,
    };
    let latency = requested
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map(|at| at.elapsed())
        .unwrap_or_default();
    println!("→ {err}");
    println!("→ stopped {latency:.1?} after the request, not 10 s later\n");

    println!("── History ──");
    let history = state.history();
    for event in history.latest_by_address() {
        let address = event.address.to_string();
        let attempts = history
            .statuses(&address)
            .iter()
            .filter(|s| **s == EventStatus::Started)
            .count();
        println!(
            "{address:<16} {:<12} attempts run: {attempts}",
            event.status.to_string()
        );
    }
    println!("{} records in all", history.len());
    Ok(())
}
