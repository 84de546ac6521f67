//! Retry settings from fuzzed values, two ways: as a pipeline file's `retry` table (validation
//! never panics), and through the library's builder, where every policy that builds keeps
//! its promises: every delay is at most `max_delay`, whatever the jitter and the hint.
#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rh_agents::RetryPolicy;

/// Reads fuzz bytes as a sequence of small values.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |n, _| n << 8 | u64::from(self.u8()))
    }

    fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }

    /// A TOML value for a retry field: numbers, durations, booleans and odd strings.
    fn toml_value(&mut self) -> String {
        match self.u8() % 8 {
            0 => format!("{}", self.u64() as i64),
            1 => format!("{:?}", self.f64()),
            2 => format!("\"{}ms\"", self.u64()),
            3 => format!("\"{}\"", ["1s", "0s", "-1s", "1e400s", "", "5", "9999999h"][usize::from(self.u8() % 7)]),
            4 => String::from(if self.u8() % 2 == 0 { "true" } else { "false" }),
            5 => format!("\"{}\"", ["constant", "linear", "exponential", "fibonacci", "x"][usize::from(self.u8() % 5)]),
            6 => String::from("[]"),
            _ => String::from("{}"),
        }
    }
}

const FIELDS: &[&str] = &[
    "strategy",
    "base",
    "max_attempts",
    "max_delay",
    "multiplier",
    "jitter",
    "retry_timeout",
    "attempt_timeout",
    "delay",
    "unknown",
];

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);

    // As a pipeline file.
    let mut table = Vec::new();
    for _ in 0..(bytes.u8() % 6) {
        let field = FIELDS[usize::from(bytes.u8()) % FIELDS.len()];
        table.push(format!("{field} = {}", bytes.toml_value()));
    }
    let text = format!(
        "name = \"fuzz\"\n[defaults]\nretry = {{ {} }}\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\n",
        table.join(", ")
    );
    let _ = rh_agents_cli::pipeline::parse(&text, Path::new("fuzz.toml"));

    // Through the builder.
    let delay = Duration::from_nanos(bytes.u64());
    let start = match bytes.u8() % 4 {
        0 => RetryPolicy::constant(delay),
        1 => RetryPolicy::linear(delay),
        2 => RetryPolicy::exponential(delay),
        _ => RetryPolicy::fibonacci(delay),
    };
    let built = start
        .max_attempts(u32::from(bytes.u8()))
        .multiplier(bytes.f64())
        .max_delay(Duration::from_nanos(bytes.u64()))
        .jitter(bytes.f64())
        .build();
    if let Ok(policy) = built {
        let hint = Duration::from_nanos(bytes.u64());
        for k in 1..=policy.max_attempts().min(64) {
            for random in [0.0, 0.5, 0.999_999] {
                for retry_after in [None, Some(hint)] {
                    let d = policy.delay_for(k, random, retry_after);
                    assert!(d <= policy.max_delay(), "retry {k}: {d:?} > {:?}", policy.max_delay());
                }
            }
        }
    }
});
