//! Benches for parallel groups.
//!
//! - `parallel/noop_10k_tasks_64_workers`: a group of 10,000 tasks that return at once, run
//!   with `max_workers(64)` on a multi-thread runtime with 2 worker threads (the group's driver
//!   runs on a worker too). One iteration is one whole group: a fresh state, adding the 10,000
//!   tasks, and `run()` (every task records STARTED and COMPLETED). Criterion's throughput line
//!   gives tasks per second; the time per task is the iteration time divided by 10,000.
//! - Memory of 100,000 queued tasks (printed after criterion's figures, not a criterion bench):
//!   `VmRSS` and `VmHWM` from `/proc/self/status` before building the group, after adding
//!   100,000 tasks (none run yet: a queued task costs only its closure), and after running it
//!   (which also holds the 200,002 records of the run in the history). The peak (`VmHWM`) is
//!   reset through `/proc/self/clear_refs` first where the kernel allows it, so criterion's own
//!   peak does not hide the figure. Linux only; elsewhere it prints nothing.
//!
//! Run with `cargo bench --bench parallel`
//! (quicker: `cargo bench --bench parallel -- --warm-up-time 1 --measurement-time 3`).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)] // a bench binary prints its figures

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use rh_agents::{Ctx, ExecutionState};

const TASKS: usize = 10_000;
const WORKERS: usize = 64;
const QUEUED: usize = 100_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Adds `n` no-op tasks to a fresh group of `state`.
fn noop_group(state: &ExecutionState, n: usize) -> rh_agents::parallel::ParallelGroup<u32> {
    let mut group = state.group::<u32>("bench").max_workers(WORKERS);
    for i in 0..n {
        let i = i as u32;
        group.add(move |_ctx: Ctx| async move { Ok::<_, std::io::Error>(i) });
    }
    group
}

fn bench_groups(c: &mut Criterion) {
    let rt = runtime();
    let mut bench = c.benchmark_group("parallel");
    bench.throughput(Throughput::Elements(TASKS as u64));
    // An iteration takes tens of milliseconds: 50 samples fit a short measurement time.
    bench.sample_size(50);
    bench.bench_function("noop_10k_tasks_64_workers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                // On a worker, so the driver shares the two workers with its tasks.
                tokio::spawn(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let state = ExecutionState::new();
                        let outcome = noop_group(&state, TASKS).run().await;
                        total += start.elapsed();
                        assert_eq!(outcome.record.completed, TASKS);
                        black_box(outcome);
                    }
                    total
                })
                .await
                .unwrap()
            })
        });
    });
    bench.finish();
}

/// `VmRSS` and `VmHWM` in KiB, from `/proc/self/status`.
fn memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn report_memory() {
    // Resets the peak to the current figure (Linux 4.0+); without it VmHWM is the process's
    // peak so far, criterion's included.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let Some((rss_before, hwm_before)) = memory() else {
        println!("parallel memory: /proc/self/status not readable, no figures");
        return;
    };
    let rt = runtime();
    let state = ExecutionState::new();
    let group = noop_group(&state, QUEUED);
    let (rss_built, hwm_built) = memory().unwrap();
    let outcome = rt.block_on(async move { tokio::spawn(group.run()).await.unwrap() });
    assert_eq!(outcome.record.completed, QUEUED);
    let (rss_run, hwm_run) = memory().unwrap();
    let records = state.history().len();
    drop(outcome);
    drop(state);
    let (rss_dropped, _) = memory().unwrap();

    println!(
        "parallel memory, {QUEUED} tasks, max_workers {WORKERS} (VmHWM reset: {}):",
        if reset { "yes" } else { "no" }
    );
    println!(
        "  before:          VmRSS {:8.1} MiB  VmHWM {:8.1} MiB",
        mib(rss_before),
        mib(hwm_before)
    );
    println!(
        "  queued (built):  VmRSS {:8.1} MiB  VmHWM {:8.1} MiB  (+{:.0} bytes per queued task)",
        mib(rss_built),
        mib(hwm_built),
        rss_built.saturating_sub(rss_before) as f64 * 1024.0 / QUEUED as f64
    );
    println!(
        "  after run:       VmRSS {:8.1} MiB  VmHWM {:8.1} MiB  ({records} records in the history, {} results)",
        mib(rss_run),
        mib(hwm_run),
        QUEUED
    );
    println!(
        "  peak over before: +{:.1} MiB; state and results dropped: VmRSS {:.1} MiB",
        mib(hwm_run.saturating_sub(rss_before)),
        mib(rss_dropped)
    );
}

criterion_group!(benches, bench_groups);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report_memory();
}
