//! Benches for the hot path of the runtime.
//!
//! - `call/noop_first_time`: a tool that succeeds at once, no subscriber (histories of up to
//!   1,000 calls).
//! - `call/noop_history_10k`: the same with histories of up to 10,000 calls, where the memory
//!   the history takes starts to show.
//! - `call/fail4_then_ok_zero_delay`: a tool that fails four times then succeeds, with zero
//!   delays (no timer may be touched: PITFALLS #14).
//! - `call/bare_closure`: the same no-op future awaited without the runtime, for scale.
//!
//! Run with `cargo bench --bench call`.
#![allow(missing_docs, clippy::unwrap_used)] // a bench binary: criterion's macros define main

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rh_agents::{Actor, Ctx, ExecutionState, RetryPolicy};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Times `iters` calls of `actor`, in batches of `batch` calls on a fresh state each (state
/// creation and drop are not timed).
fn timed_in_batches<I, O>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    batch: u64,
    actor: &Actor<I, O>,
    input: impl Fn(u64) -> I,
) -> Duration
where
    I: serde::Serialize + Clone + Send + Sync + 'static,
    O: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    rt.block_on(async {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let size = left.min(batch);
            let state = ExecutionState::new();
            let start = std::time::Instant::now();
            for i in 0..size {
                black_box(state.call(actor, black_box(input(i))).await.unwrap());
            }
            total += start.elapsed();
            left -= size;
        }
        total
    })
}

fn bench_calls(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("call");

    group.bench_function("bare_closure", |b| {
        let f = |x: u32| async move { Ok::<u32, std::io::Error>(x) };
        b.iter(|| rt.block_on(async { black_box(f(black_box(1)).await.unwrap()) }));
    });

    // A fresh state every batch of calls: the history grows with each call, and over millions
    // of iterations its memory (not the runtime) would dominate. `noop_history_10k` shows the
    // cost with longer histories.
    let noop = Actor::tool("noop", |x: u32, _ctx: Ctx| async move {
        Ok::<u32, std::io::Error>(x)
    });
    group.bench_function("noop_first_time", |b| {
        b.iter_custom(|iters| timed_in_batches(&rt, iters, 1_000, &noop, |i| i as u32));
    });
    group.bench_function("noop_history_10k", |b| {
        b.iter_custom(|iters| timed_in_batches(&rt, iters, 10_000, &noop, |i| i as u32));
    });

    group.bench_function("fail4_then_ok_zero_delay", |b| {
        let failures = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&failures);
        let flaky = Actor::tool("flaky", move |(): (), _ctx: Ctx| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                if n % 5 < 4 {
                    Err(std::io::Error::other("transient"))
                } else {
                    Ok(())
                }
            }
        })
        .retry(
            RetryPolicy::constant(Duration::ZERO)
                .max_attempts(5)
                .build()
                .unwrap(),
        );
        b.iter_custom(|iters| timed_in_batches(&rt, iters, 100, &flaky, |_| ()));
    });
    group.finish();
}

criterion_group!(benches, bench_calls);
criterion_main!(benches);
