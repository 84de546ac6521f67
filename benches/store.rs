//! Benches for durable state.
//!
//! - `append/<store>_log/<N>`: one log record (`state.log`) appended to a state whose history
//!   already holds `N` records (0, 10,000, 50,000), for a durable SQLite state (a file in a
//!   temporary directory, one commit per record), a `MemoryStore` state and a state with no
//!   store. `append/<store>_call/<N>`: a tiny tool call instead (2 records: STARTED,
//!   COMPLETED). The history grows as the bench runs: a state is replaced by a fresh one
//!   holding `N` records (not timed) before it grows by more than `max(1,000, N/5)` records,
//!   so it always holds between `N` and `N + max(1,000, N/5)` (0–1,000, 10,000–12,000,
//!   50,000–60,000).
//! - `save/<store>/<N>`, `load/<store>/<N>`, `resume/<store>/<N>`: `store.save(&snapshot)`
//!   (replacing the stored run), `store.load(id)`, and
//!   `ExecutionState::builder().resume(store, id, ReplayMode::Normal)` (dropping the state is
//!   not timed), for runs of 1,000, 10,000 and 50,000 records. (A resume may append a record
//!   noting itself: the run is saved again, untimed, before it grows by 1 %.)
//!
//! Histories are realistic: STARTED/COMPLETED pairs of a tool call with a small JSON input and
//! output, recorded by the runtime itself (about 300 bytes of JSON per record). Each SQLite
//! bench has a database file of its own, holding that one run.
//!
//! Run with `cargo bench --bench store`.
#![allow(missing_docs, clippy::unwrap_used)] // a bench binary: criterion's macros define main

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode,
    Throughput,
};
use rh_agents::store::{MemoryStore, ReplayMode, Snapshot, SqliteStore, StateStore};
use rh_agents::{Actor, Ctx, ExecutionState, Severity};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fetch {
    url: String,
    max_bytes: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Page {
    status: u16,
    title: String,
    words: u32,
}

/// A run `id` whose history holds `records` realistic records: STARTED/COMPLETED pairs of tool
/// `fetch`, recorded by the runtime.
fn realistic_run(rt: &tokio::runtime::Runtime, id: &str, records: usize) -> Snapshot {
    let state = ExecutionState::builder().id(id).build();
    let fetch = Actor::tool("fetch", |f: Fetch, _ctx: Ctx| async move {
        Ok::<_, std::io::Error>(Page {
            status: 200,
            title: format!("Page at {}", f.url),
            words: f.max_bytes / 8,
        })
    });
    rt.block_on(async {
        for i in 0..records / 2 {
            let input = Fetch {
                url: format!("https://example.com/docs/page-{i}"),
                max_bytes: 4_096,
            };
            state.call(&fetch, input).await.unwrap();
        }
    });
    let snapshot = state.snapshot();
    assert_eq!(snapshot.events.len(), records);
    snapshot
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Memory,
    NoStore,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Memory => "memory",
            Self::NoStore => "none",
        }
    }

    /// A fresh store (an SQLite file of its own in `dir`).
    fn store(self, dir: &TempDir, file: &str) -> Option<Arc<dyn StateStore>> {
        match self {
            Self::Sqlite => Some(Arc::new(
                SqliteStore::open(dir.path().join(format!("{file}.db"))).unwrap(),
            )),
            Self::Memory => Some(Arc::new(MemoryStore::new())),
            Self::NoStore => None,
        }
    }
}

/// A state whose history holds `template`'s records plus at most `slack` more: replaced by a
/// fresh one (not timed) before it would grow further. (Criterion's warm-up counts the wall
/// time of a replacement, which only makes it plan fewer iterations; the times reported are
/// the timed appends alone.)
struct Grower {
    template: Snapshot,
    store: Option<Arc<dyn StateStore>>,
    state: Option<ExecutionState>,
    grown: u64,
    slack: u64,
}

impl Grower {
    fn new(template: Snapshot, store: Option<Arc<dyn StateStore>>) -> Self {
        let slack = (template.events.len() as u64 / 5).max(1_000);
        let mut grower = Self {
            template,
            store,
            state: None,
            grown: 0,
            slack,
        };
        // The first state is made now, so criterion's warm-up does not count its making.
        grower.state(0);
        grower
    }

    /// A state that can take `records` more records.
    fn state(&mut self, records: u64) -> &ExecutionState {
        assert!(records <= self.slack);
        if self.state.is_none() || self.grown + records > self.slack {
            // Dropped first: a durable state holds the run's writer lock.
            self.state = None;
            let id = &self.template.state_id;
            let state = match &self.store {
                None => ExecutionState::builder()
                    .restore(self.template.clone(), ReplayMode::Normal)
                    .unwrap(),
                Some(store) => {
                    store.save(&self.template).unwrap();
                    // Resumed on a runtime of its own that ends here: the state's mailbox
                    // watcher goes with it, so the appends measured are the records alone.
                    runtime()
                        .block_on(ExecutionState::builder().resume(
                            Arc::clone(store),
                            id,
                            ReplayMode::Normal,
                        ))
                        .unwrap()
                }
            };
            // (A resume may add a record of its own, noting that it resumed.)
            assert!(state.history().len() >= self.template.events.len());
            self.state = Some(state);
            self.grown = 0;
        }
        self.grown += records;
        self.state.as_ref().unwrap()
    }
}

/// Times `iters` operations of `records` records each, in batches: `op(state, batch)` runs
/// `batch` of them on `state` and returns the time they took.
fn timed(
    grower: &mut Grower,
    iters: u64,
    records: u64,
    mut op: impl FnMut(&ExecutionState, u64) -> Duration,
) -> Duration {
    let per_state = grower.slack / records;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(per_state);
        let state = grower.state(batch * records);
        total += op(state, batch);
        left -= batch;
    }
    total
}

fn bench_append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let noop = Actor::tool("noop", |x: u32, _ctx: Ctx| async move {
        Ok::<u32, std::io::Error>(x)
    });

    let mut group = c.benchmark_group("append");
    group
        .warm_up_time(Duration::from_millis(500))
        // Measured time; a durable state with a long history adds its untimed replacements.
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    for n in [0, 10_000, 50_000] {
        let template = realistic_run(&rt, &format!("append-{n}"), n);
        for backend in [Backend::Sqlite, Backend::Memory, Backend::NoStore] {
            group.throughput(Throughput::Elements(1));
            let mut grower = Grower::new(
                template.clone(),
                backend.store(&dir, &format!("append-log-{n}")),
            );
            let id = BenchmarkId::new(format!("{}_log", backend.name()), n);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    timed(&mut grower, iters, 1, |state, batch| {
                        let start = Instant::now();
                        for _ in 0..batch {
                            state.log(Severity::Info, black_box("step done"));
                        }
                        start.elapsed()
                    })
                });
            });
            drop(grower);

            group.throughput(Throughput::Elements(2));
            let mut grower = Grower::new(
                template.clone(),
                backend.store(&dir, &format!("append-call-{n}")),
            );
            let id = BenchmarkId::new(format!("{}_call", backend.name()), n);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    timed(&mut grower, iters, 2, |state, batch| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for i in 0..batch {
                                let input = black_box(i as u32);
                                black_box(state.call(&noop, input).await.unwrap());
                            }
                            start.elapsed()
                        })
                    })
                });
            });
        }
    }
    group.finish();
}

/// Times `iters` runs of `f`, each result dropped untimed (a resumed state's drop also
/// releases the writer lock for the next one).
fn timed_each<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let value = black_box(f());
        total += start.elapsed();
        drop(value);
    }
    total
}

/// Few samples, each of a fixed number of iterations: a save of 50,000 records takes a good
/// fraction of a second.
fn few_samples(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500));
}

/// Enough for 10 samples of a save of `records` records (about 0.5 s at 50,000 on a small
/// machine).
fn measurement_time(records: usize) -> Duration {
    Duration::from_secs(if records >= 50_000 { 7 } else { 3 })
}

/// A run of `n` records, and the stores holding it.
struct StoredRun {
    n: usize,
    snapshot: Snapshot,
    stores: Vec<(Backend, Arc<dyn StateStore>)>,
}

fn bench_snapshots(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    // For each size: the run, and each store holding it (an SQLite file per size).
    let runs: Vec<StoredRun> = [1_000, 10_000, 50_000]
        .into_iter()
        .map(|n| {
            let snapshot = realistic_run(&rt, &format!("run-{n}"), n);
            let stores = [Backend::Sqlite, Backend::Memory]
                .into_iter()
                .map(|backend| {
                    let store = backend.store(&dir, &format!("snapshots-{n}")).unwrap();
                    store.save(&snapshot).unwrap();
                    assert_eq!(store.load(&snapshot.state_id).unwrap().events.len(), n);
                    (backend, store)
                })
                .collect();
            StoredRun {
                n,
                snapshot,
                stores,
            }
        })
        .collect();

    let mut group = c.benchmark_group("save");
    few_samples(&mut group);
    for StoredRun {
        n,
        snapshot,
        stores,
    } in &runs
    {
        group
            .throughput(Throughput::Elements(*n as u64))
            .measurement_time(measurement_time(*n));
        for (backend, store) in stores {
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                b.iter(|| store.save(black_box(snapshot)).unwrap());
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("load");
    few_samples(&mut group);
    for StoredRun {
        n,
        snapshot,
        stores,
    } in &runs
    {
        group
            .throughput(Throughput::Elements(*n as u64))
            .measurement_time(measurement_time(*n));
        for (backend, store) in stores {
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                b.iter_custom(|iters| {
                    timed_each(iters, || store.load(black_box(&snapshot.state_id)).unwrap())
                });
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("resume");
    few_samples(&mut group);
    for StoredRun {
        n,
        snapshot,
        stores,
    } in &runs
    {
        group
            .throughput(Throughput::Elements(*n as u64))
            .measurement_time(measurement_time(*n));
        for (backend, store) in stores {
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                // A resume may note itself in the run's history: the run is saved again
                // (untimed) before it grew by 1 %.
                let resaves = (*n / 100).max(1);
                let mut resumed = 0;
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if resumed == resaves {
                            store.save(snapshot).unwrap();
                            resumed = 0;
                        }
                        resumed += 1;
                        total += timed_each(1, || {
                            rt.block_on(ExecutionState::builder().resume(
                                Arc::clone(store),
                                &snapshot.state_id,
                                ReplayMode::Normal,
                            ))
                            .unwrap()
                        });
                    }
                    total
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_append, bench_snapshots);
criterion_main!(benches);
