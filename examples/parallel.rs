//! Parallel: fan a flaky tool out over twelve inputs with four workers, watch the group in the
//! console printer, then stop a second group with fail-fast on its first permanent error.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example parallel
//! ```
#![allow(clippy::print_stdout)] // an example prints what happens: that is its job

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::observe::printer::Printer;
use rh_agents::{Actor, Ctx, ErrorExt, ExecutionState, RetryPolicy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let state = ExecutionState::builder()
        .subscriber(Printer::builder().stdout())
        .build();

    // Every third call times out once; the tool's policy retries it after 50 ms.
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let fetch = Actor::tool("fetch", move |page: u32, _ctx: Ctx| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if n.is_multiple_of(3) {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "upstream timed out",
                ))
            } else {
                Ok(format!("page {page}"))
            }
        }
    })
    .retry(
        RetryPolicy::constant(Duration::from_millis(50))
            .max_attempts(3)
            .build()?,
    );

    println!("── A group of 6 pages, 3 at a time ──");
    let mut group = state.group("pages").max_workers(3);
    for page in 0..6u32 {
        let fetch = fetch.clone();
        group.add_named("page", move |ctx: Ctx| async move {
            ctx.call(&fetch, page).await
        });
    }
    let outcome = group.run().await;
    println!(
        "→ {}/{} pages, in add order: {:?}\n",
        outcome.record.completed,
        outcome.record.total,
        outcome.successes().collect::<Vec<_>>()
    );

    println!("── Fail-fast: the first permanent error stops the rest ──");
    let strict = Actor::tool("validate", |n: u32, _ctx: Ctx| async move {
        tokio::time::sleep(Duration::from_millis(10 * u64::from(n))).await;
        if n == 2 {
            Err(io::Error::other("schema mismatch").permanent())
        } else {
            Ok(n)
        }
    });
    let mut group = state.group("validation").max_workers(2).fail_fast();
    for n in 1..=5u32 {
        let strict = strict.clone();
        group.add(move |ctx: Ctx| async move { ctx.call(&strict, n).await });
    }
    let outcome = group.run().await;
    println!(
        "→ status {:?}: {} completed, {} failed, {} cancelled\n",
        outcome.record.status,
        outcome.record.completed,
        outcome.record.failed,
        outcome.record.cancelled
    );

    print!("{}", state.summary());
    Ok(())
}
