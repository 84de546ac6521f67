//! Real-time interrupt latency during a 10 s backoff: from `request_interrupt` on another task
//! to the caller holding its error. Prints p50/p99/max over many runs after criterion's own
//! figure.
//!
//! Run with `cargo bench --bench interrupt`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)] // a bench binary prints its figures

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rh_agents::{Actor, Ctx, ExecutionState, InterruptReason, RetryPolicy};
use tokio::sync::oneshot;

/// One run: a tool fails, its 10 s backoff starts, another task interrupts; returns the time
/// from the request to the caller's error.
async fn one_run(actor: &Actor<(), ()>) -> Duration {
    let state = ExecutionState::new();
    let (armed_tx, armed_rx) = oneshot::channel::<()>();
    let armed = std::sync::Mutex::new(Some(armed_tx));
    // The RETRYING record is delivered just before the backoff sleep starts.
    state.subscribe(move |e: &rh_agents::Event| {
        if e.status == rh_agents::EventStatus::Retrying {
            if let Some(tx) = armed.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    });
    let stopper = state.clone();
    let requested = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mark = Arc::clone(&requested);
    let interrupter = tokio::spawn(async move {
        armed_rx.await.unwrap();
        // Let the caller reach its sleep.
        tokio::task::yield_now().await;
        *mark.lock().unwrap() = Some(Instant::now());
        stopper.request_interrupt(InterruptReason::UserCancelled);
    });
    let err = state.call(actor, ()).await.unwrap_err();
    let done = Instant::now();
    assert!(err.is_interrupted());
    interrupter.await.unwrap();
    let at = requested.lock().unwrap().unwrap();
    done.saturating_duration_since(at)
}

fn bench_interrupt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let actor = Actor::tool("down", |(): (), _ctx: Ctx| async move {
        Err::<(), _>(std::io::Error::other("down"))
    })
    .retry(
        RetryPolicy::constant(Duration::from_secs(10))
            .max_attempts(3)
            .no_jitter()
            .build()
            .unwrap(),
    );

    c.bench_function("interrupt/latency_during_10s_backoff", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += one_run(&actor).await;
                }
                total
            })
        });
    });

    let mut samples: Vec<Duration> = rt.block_on(async {
        let mut v = Vec::with_capacity(2_000);
        for _ in 0..2_000 {
            v.push(one_run(&actor).await);
        }
        v
    });
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "interrupt latency over {} runs: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, bench_interrupt);
criterion_main!(benches);
