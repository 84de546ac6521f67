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

fn bench_calls(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("call");

    group.bench_function("bare_closure", |b| {
        let f = |x: u32| async move { Ok::<u32, std::io::Error>(x) };
        b.iter(|| rt.block_on(async { black_box(f(black_box(1)).await.unwrap()) }));
    });

    // A fresh state every 1,000 calls: the history grows with each call, and over millions of
    // iterations its memory (not the runtime) would dominate. The note in README.md gives the
    // figure for long histories too (`history_10k` below).
    group.bench_function("noop_first_time", |b| {
        let noop = Actor::tool("noop", |x: u32, _ctx: Ctx| async move {
            Ok::<u32, std::io::Error>(x)
        });
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(1_000);
                    let state = ExecutionState::new();
                    let start = std::time::Instant::now();
                    for i in 0..batch {
                        black_box(state.call(&noop, black_box(i as u32)).await.unwrap());
                    }
                    total += start.elapsed();
                    left -= batch;
                }
                total
            })
        });
    });

    group.bench_function("noop_history_10k", |b| {
        let noop = Actor::tool("noop", |x: u32, _ctx: Ctx| async move {
            Ok::<u32, std::io::Error>(x)
        });
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(10_000);
                    let state = ExecutionState::new();
                    let start = std::time::Instant::now();
                    for i in 0..batch {
                        black_box(state.call(&noop, black_box(i as u32)).await.unwrap());
                    }
                    total += start.elapsed();
                    left -= batch;
                }
                total
            })
        });
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
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(100);
                    let state = ExecutionState::new();
                    let start = std::time::Instant::now();
                    for _ in 0..batch {
                        state.call(&flaky, ()).await.unwrap();
                    }
                    total += start.elapsed();
                    left -= batch;
                }
                total
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench_calls);
criterion_main!(benches);
