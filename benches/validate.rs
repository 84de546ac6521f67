//! Benches for pipeline-file validation (`rh_agents_cli::pipeline::parse`): what a large file
//! costs to check, valid or full of errors.
//!
//! - `validate/valid_40k`: 40,000 command steps, each one's `stdin` a template that refers to
//!   the step before it (so duplicate names and template references are both looked up for
//!   every step).
//! - `validate/missing_program_20k`: 20,000 command steps, each missing `program`: 20,000
//!   diagnostics, each placed at a line and column.
//!
//! Run with `cargo bench -p rh-agents-cli --bench validate`
//! (quicker: `cargo bench -p rh-agents-cli --bench validate -- --warm-up-time 1 --measurement-time 3`).
#![allow(missing_docs, clippy::unwrap_used)] // a bench binary: criterion's macros define main

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rh_agents_cli::pipeline::parse;

/// `steps` valid command steps, each reading the previous one's stdout.
fn valid(steps: usize) -> String {
    let mut text = String::from("name = \"big\"\n");
    for i in 0..steps {
        let _ = write!(
            text,
            "\n[[steps]]\nname = \"s{i}\"\nkind = \"command\"\nprogram = \"echo\"\nargs = [\"{i}\"]\n"
        );
        if i > 0 {
            let _ = writeln!(text, "stdin = \"{{{{ steps.s{}.stdout }}}}\"", i - 1);
        }
    }
    text
}

/// `steps` command steps, none with a `program`.
fn missing_program(steps: usize) -> String {
    let mut text = String::from("name = \"broken\"\n");
    for i in 0..steps {
        let _ = write!(text, "\n[[steps]]\nname = \"s{i}\"\nkind = \"command\"\n");
    }
    text
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1));
    let file = Path::new("big.toml");

    let text = valid(40_000);
    assert!(parse(&text, file).is_ok());
    group.throughput(Throughput::Elements(40_000));
    group.bench_function("valid_40k", |b| {
        b.iter(|| parse(black_box(&text), file).is_ok());
    });

    let text = missing_program(20_000);
    assert_eq!(parse(&text, file).unwrap_err().len(), 20_000);
    group.throughput(Throughput::Elements(20_000));
    group.bench_function("missing_program_20k", |b| {
        b.iter(|| parse(black_box(&text), file).is_err());
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
