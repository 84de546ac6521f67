//! Quickstart: the runtime at work in two scenes.
//!
//! 1. A flaky tool times out twice and is retried with exponential backoff until it answers.
//! 2. A tool whose retry waits 10 s is interrupted from another task: the backoff ends at once.
//!
//! Every record the runtime makes is printed as it happens by the console printer, then the
//! run is summarised.
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

use rh_agents::observe::printer::Printer;
use rh_agents::{Actor, Ctx, ExecutionState, InterruptReason, InterruptSignal, RetryPolicy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The console printer is a subscriber: every record is printed as it happens.
    let state = ExecutionState::builder()
        .subscriber(Printer::builder().stdout())
        .build();

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

    // The run summary, from the history.
    print!("{}", state.summary());
    Ok(())
}
