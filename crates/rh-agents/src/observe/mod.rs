//! Seeing what a run did: subscribers that turn events into output.
//!
//! - [`escape`]: untrusted text made safe to show on a terminal.
//! - [`printer`]: the console printer (a tree of events, colour when it helps).
//! - [`style`]: symbols, colours, and when colour is on.
//! - [`summary`]: the run summary, as a value and as text.
//! - [`progress`]: a progress line for long runs.
//! - [`jsonl`]: one JSON object per event, in the stable event form.
//! - `tracing_bridge` (feature `tracing`): events as `tracing` events, calls as spans.

pub mod escape;
pub mod jsonl;
pub mod printer;
pub mod progress;
pub mod style;
pub mod summary;
#[cfg(feature = "tracing")]
pub mod tracing_bridge;
