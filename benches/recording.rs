//! Benches for the recording core (sequencer, store writer, delivery).
//!
//! - `recording/sqlite_call_sync` and `recording/sqlite_call_batched`: one tiny tool call (2
//!   records) on a durable SQLite state (a file in a temporary directory) in
//!   `CommitMode::Sync` (both records committed before the call returns: the STARTED before
//!   the handler runs, the COMPLETED before the result is reported) and
//!   `CommitMode::batched()` (up to 256 records or 50 ms per commit). A fresh run every
//!   1,000 calls (not timed; a batched state's last commit is part of its untimed drop).
//! - `recording/none_call`: the same call with no store, for scale.
//! - `interrupt/bare_token_wake`: a task awaiting a tokio-util `CancellationToken`, from
//!   `cancel()` to the task running again; `interrupt/local` the same for a call whose handler
//!   waits, from `request_interrupt` to the caller holding its error; `interrupt/local_blocked`
//!   the same with a sync subscriber that is blocked for good (after the runtime has marked it
//!   slow). After criterion's figures, p50/p99/max over many runs are printed for the three.
//!
//! Run with `cargo bench -p rh-agents --bench recording -- --warm-up-time 1
//! --measurement-time 3`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)] // a bench binary prints its figures

use std::hint::black_box;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rh_agents::store::{SqliteStore, StateStore};
use rh_agents::{Actor, CommitMode, Ctx, Event, ExecutionState, InterruptReason, Severity};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// How states are made for the call benches.
#[derive(Clone, Copy)]
enum Kind {
    None,
    Sqlite(CommitMode),
}

fn bench_calls(c: &mut Criterion) {
    let rt = current_thread();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> =
        Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
    let noop = Actor::tool("noop", |x: u32, _ctx: Ctx| async move {
        Ok::<u32, std::io::Error>(x)
    });
    let mut group = c.benchmark_group("recording");
    for (name, kind) in [
        ("none_call", Kind::None),
        ("sqlite_call_sync", Kind::Sqlite(CommitMode::Sync)),
        ("sqlite_call_batched", Kind::Sqlite(CommitMode::batched())),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let batch = left.min(1_000);
                    let state = match kind {
                        Kind::None => ExecutionState::new(),
                        Kind::Sqlite(mode) => rt
                            .block_on(
                                ExecutionState::builder()
                                    .commit_mode(mode)
                                    .start(Arc::clone(&store)),
                            )
                            .unwrap(),
                    };
                    total += rt.block_on(async {
                        let start = Instant::now();
                        for i in 0..batch {
                            black_box(state.call(&noop, black_box(i as u32)).await.unwrap());
                        }
                        start.elapsed()
                    });
                    // Untimed: a batched state commits its last records as it goes.
                    let id = state.id().to_owned();
                    drop(state);
                    if let Kind::Sqlite(_) = kind {
                        store.delete(&id).unwrap();
                    }
                    left -= batch;
                }
                total
            });
        });
    }
    group.finish();
}

/// From `cancel()` to a waiting task running again.
async fn bare_token_wake() -> Duration {
    let token = CancellationToken::new();
    let waiting = Arc::new(Notify::new());
    let task = {
        let (token, waiting) = (token.clone(), Arc::clone(&waiting));
        tokio::spawn(async move {
            let cancelled = token.cancelled();
            waiting.notify_one();
            cancelled.await;
            Instant::now()
        })
    };
    waiting.notified().await;
    tokio::task::yield_now().await;
    let asked = Instant::now();
    token.cancel();
    task.await.unwrap().saturating_duration_since(asked)
}

/// A sync subscriber that blocks for good on the first record it gets, until `release`
/// sends (or is dropped).
fn blocked() -> (impl Fn(&Event) + Send + Sync + 'static, mpsc::Sender<()>) {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(Some(gate));
    let subscriber = move |_: &Event| {
        if let Some(gate) = gate.lock().unwrap().take() {
            let _ = gate.recv();
        }
    };
    (subscriber, release)
}

/// From `request_interrupt` to the caller of a waiting handler holding its error.
async fn local_interrupt(with_blocked_subscriber: bool) -> Duration {
    let mut builder = ExecutionState::builder().grace_period(Duration::ZERO);
    let mut release = None;
    if with_blocked_subscriber {
        let (subscriber, tx) = blocked();
        builder = builder.subscriber(subscriber);
        release = Some(tx);
    }
    let state = builder.build();
    if with_blocked_subscriber {
        // The subscriber blocks on this record; the runtime waits for it once, notices, and
        // stops waiting for it (not timed). Then some calls, so that the runtime's threads are
        // as awake as in the runs without a subscriber.
        state.log(Severity::Info, "the subscriber blocks here");
        let noop = Actor::tool("noop", |(): (), _ctx: Ctx| async move {
            Ok::<(), std::io::Error>(())
        });
        for _ in 0..200 {
            state.call(&noop, ()).await.unwrap();
        }
    }
    let running = Arc::new(Notify::new());
    let handler_running = Arc::clone(&running);
    let waits = Actor::tool("waits", move |(): (), _ctx: Ctx| {
        let running = Arc::clone(&handler_running);
        async move {
            running.notify_one();
            std::future::pending::<()>().await;
            Ok::<(), std::io::Error>(())
        }
    });
    let task = {
        let state = state.clone();
        tokio::spawn(async move {
            let err = state.call(&waits, ()).await.unwrap_err();
            assert!(err.is_interrupted());
            Instant::now()
        })
    };
    running.notified().await;
    tokio::task::yield_now().await;
    let asked = Instant::now();
    state.request_interrupt(InterruptReason::UserCancelled);
    let latency = task.await.unwrap().saturating_duration_since(asked);
    drop(release);
    latency
}

fn bench_interrupts(c: &mut Criterion) {
    let rt = two_workers();
    let mut group = c.benchmark_group("interrupt");
    group.bench_function("bare_token_wake", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += bare_token_wake().await;
                }
                total
            })
        });
    });
    group.bench_function("local", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += local_interrupt(false).await;
                }
                total
            })
        });
    });
    group.finish();

    let runs: [(&str, usize, u8); 3] = [
        ("bare_token_wake", 2_000, 0),
        ("local", 2_000, 1),
        // Each run's setup waits for the blocked subscriber once (half a second, untimed).
        ("local_blocked", 20, 2),
    ];
    for (name, n, which) in runs {
        let mut samples: Vec<Duration> = rt.block_on(async {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(match which {
                    0 => bare_token_wake().await,
                    1 => local_interrupt(false).await,
                    _ => local_interrupt(true).await,
                });
            }
            v
        });
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "interrupt/{name}: n={n} p50={:?} p99={:?} max={:?}",
            at(0.5),
            at(0.99),
            samples[samples.len() - 1]
        );
    }
}

criterion_group!(benches, bench_calls, bench_interrupts);
criterion_main!(benches);
