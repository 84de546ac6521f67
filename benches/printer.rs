//! Benches for the console printer: what it costs per event.
//!
//! The events come from one small scripted run (an agent whose tool fails once and is retried
//! with zero delay), taken from its history, so they carry what real records carry (nested
//! address, duration, message, retry information).
//!
//! - `printer/render/{started,completed,retrying,started_retry}`: `Printer::render` of one
//!   record into a new `String` (no colour, durations on). `started_retry` is a retry's
//!   STARTED, which adds the two retry detail lines.
//! - `printer/render/completed_color`: the same COMPLETED with ANSI colour.
//! - `printer/on_event/{started,completed,retrying}`: `Subscriber::on_event` of one record,
//!   i.e. render plus the lock and write to `std::io::sink()`.
//! - `printer/on_event/hidden_debug_log`: a debug log below the severity shown (nothing to
//!   write).
//! - `printer/on_event/whole_run`: every record of the run in turn (throughput per record).
//!
//! Run with `cargo bench --bench printer`
//! (quicker: `cargo bench --bench printer -- --warm-up-time 1 --measurement-time 3`).
#![allow(missing_docs, clippy::unwrap_used)] // a bench binary: criterion's macros define main

use std::hint::black_box;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rh_agents::observe::printer::Printer;
use rh_agents::observe::style::ColorChoice;
use rh_agents::{
    Actor, Ctx, Event, EventStatus, ExecutionState, RetryPolicy, Severity, Subscriber,
};

/// The records of one run: agent `planner` calls tool `search`, which fails once ("upstream
/// timed out") and then answers; one debug log in the agent.
fn recorded_run() -> Vec<Arc<Event>> {
    let failures = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&failures);
    let search = Actor::tool("search", move |q: String, _ctx: Ctx| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        async move {
            if n == 0 {
                Err(io::Error::other("upstream timed out"))
            } else {
                Ok(format!("results for {q}"))
            }
        }
    })
    .retry(
        RetryPolicy::constant(Duration::ZERO)
            .max_attempts(3)
            .no_jitter()
            .build()
            .unwrap(),
    );
    let planner = Actor::agent("planner", move |q: String, ctx: Ctx| {
        let search = search.clone();
        async move {
            ctx.log(Severity::Debug, "planning the search");
            ctx.call(&search, q).await
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let state = ExecutionState::new();
    rt.block_on(async { state.call(&planner, "rust retries".to_owned()).await })
        .unwrap();
    state.history().events()
}

/// The first record of `run` matching `pick`.
fn find(run: &[Arc<Event>], pick: impl Fn(&Event) -> bool) -> Arc<Event> {
    Arc::clone(run.iter().find(|e| pick(e)).unwrap())
}

fn bench_printer(c: &mut Criterion) {
    let run = recorded_run();
    let nested = |e: &Event| e.address.depth() == 2;
    let started = find(&run, |e| {
        nested(e) && e.status == EventStatus::Started && !e.retry.is_retry
    });
    let started_retry = find(&run, |e| {
        nested(e) && e.status == EventStatus::Started && e.retry.is_retry
    });
    let completed = find(&run, |e| nested(e) && e.status == EventStatus::Completed);
    let retrying = find(&run, |e| nested(e) && e.status == EventStatus::Retrying);
    let debug_log = find(&run, |e| e.status == EventStatus::Log);

    let plain = Printer::builder()
        .color(ColorChoice::Never)
        .build(io::sink());
    let colored = Printer::builder()
        .color(ColorChoice::Always)
        .build(io::sink());
    // What the benches measure, for the record.
    assert_eq!(
        plain.render(&retrying),
        "  ↻ tool search retrying: Attempt 2/3 in 0µs\n"
    );
    assert_eq!(plain.render(&debug_log), "");

    let mut group = c.benchmark_group("printer");
    for (name, event) in [
        ("started", &started),
        ("completed", &completed),
        ("retrying", &retrying),
        ("started_retry", &started_retry),
    ] {
        group.bench_function(format!("render/{name}"), |b| {
            b.iter(|| black_box(plain.render(black_box(event))));
        });
    }
    group.bench_function("render/completed_color", |b| {
        b.iter(|| black_box(colored.render(black_box(&completed))));
    });

    for (name, event) in [
        ("started", &started),
        ("completed", &completed),
        ("retrying", &retrying),
        ("hidden_debug_log", &debug_log),
    ] {
        group.bench_function(format!("on_event/{name}"), |b| {
            b.iter(|| plain.on_event(black_box(event)).unwrap());
        });
    }

    group.throughput(Throughput::Elements(run.len() as u64));
    group.bench_function("on_event/whole_run", |b| {
        b.iter(|| {
            for event in &run {
                plain.on_event(black_box(event)).unwrap();
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_printer);
criterion_main!(benches);
