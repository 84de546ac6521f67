//! Real-time latency of an interrupt left in the SQLite store by another connection (as
//! `rh-agents interrupt` does from another process): from `request_interrupt` on the other
//! connection to the running call's caller holding its error. The run has no checker
//! registered by hand: its state watches its own mailbox (`PRAGMA data_version` every
//! `mailbox_interval`, 5 ms by default). Prints p50/p99/max over many runs after criterion's
//! own figure (the mean), then the same for the way it was done before the state watched its
//! mailbox: `store::interrupt_checker` registered by hand, polled every `check_interval`
//! (100 ms by default), on a state without a mailbox of its own.
//!
//! Run with `cargo bench --bench mailbox`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)] // a bench binary prints its figures

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rh_agents::store::{interrupt_checker, SqliteStore, StateStore};
use rh_agents::{Actor, Ctx, ExecutionState, InterruptReason, InterruptSignal};

/// One run: a call that waits for the interrupt starts; the other connection leaves a
/// request a little later (`settle`: past the state's first look at its mailbox, at a varying
/// phase of its polling); returns the time from the request to the caller's error.
async fn one_run(
    store: &Arc<dyn StateStore>,
    other: &SqliteStore,
    actor: &Actor<(), ()>,
    by_hand: bool,
    settle: Duration,
) -> Duration {
    let builder = ExecutionState::builder().grace_period(Duration::ZERO);
    let state = if by_hand {
        // The checker alone: a state kept in memory (no mailbox of its own), whose run is in
        // the store only so that requests can be left for it.
        let state = builder.build();
        store.save(&state.snapshot()).unwrap();
        state.add_checker(interrupt_checker(Arc::clone(store), state.id()));
        state
    } else {
        builder.start(Arc::clone(store)).await.unwrap()
    };
    let running = {
        let state = state.clone();
        let actor = actor.clone();
        tokio::spawn(async move { state.call(&actor, ()).await })
    };
    // The call has started (its STARTED record is in the history).
    while state.history().is_empty() {
        tokio::task::yield_now().await;
    }
    // Not a synchronisation: the measurement is of a run that has been going for a while.
    tokio::time::sleep(settle).await;
    let asked = Instant::now();
    other
        .request_interrupt(
            state.id(),
            &InterruptSignal::new(InterruptReason::UserCancelled),
        )
        .unwrap();
    let err = running.await.unwrap().unwrap_err();
    let took = asked.elapsed();
    assert!(err.is_interrupted());
    took
}

/// 20 ms and a varying part (0–9.7 ms): the request lands at every phase of the polling.
fn settle(i: usize) -> Duration {
    Duration::from_millis(20) + Duration::from_micros((i as u64 * 7_919) % 9_700)
}

fn bench_mailbox(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let other = SqliteStore::open(&path).unwrap();
    // A handler that waits for ever; the state aborts it at once when the interrupt comes
    // (no grace period).
    let actor = Actor::tool("waits", |(): (), _ctx: Ctx| async move {
        std::future::pending::<Result<(), std::io::Error>>().await
    });

    let mut group = c.benchmark_group("interrupt");
    group.sample_size(20);
    group.bench_function("store_request_from_another_connection", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    total += one_run(&store, &other, &actor, false, settle(i as usize)).await;
                }
                total
            })
        });
    });
    group.finish();

    let figures = |by_hand: bool, runs: usize| {
        let mut samples: Vec<Duration> = rt.block_on(async {
            let mut v = Vec::with_capacity(runs);
            for i in 0..runs {
                v.push(one_run(&store, &other, &actor, by_hand, settle(i)).await);
            }
            v
        });
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        println!(
            "store interrupt (another connection) → run stopped, {}, over {} runs: p50 {:?}, \
             p99 {:?}, max {:?}",
            if by_hand {
                "checker registered by hand (before)"
            } else {
                "the state's own mailbox watch"
            },
            samples.len(),
            pct(0.50),
            pct(0.99),
            samples[samples.len() - 1]
        );
    };
    figures(false, 300);
    figures(true, 100);
}

criterion_group!(benches, bench_mailbox);
criterion_main!(benches);
