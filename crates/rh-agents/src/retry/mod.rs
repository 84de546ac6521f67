//! Retry policies: how many attempts, how long to wait between them, and which errors deserve
//! another try.
//!
//! - [`policy`]: the [`RetryPolicy`] value and its validating builder.
//! - [`backoff`]: the delay formulas, jitter and caps (pure arithmetic).
//! - [`filter`]: which errors are retried.
//! - [`jitter`]: the injectable random source.
//! - [`config`]: the five configuration levels and which one decides.

pub mod backoff;
pub mod config;
pub mod filter;
pub mod jitter;
pub mod policy;

pub use backoff::{Backoff, Delays};
pub use config::{PolicySource, RetryConfig};
pub use filter::RetryFilter;
pub use jitter::{FixedRandom, RandomSource, SeededRandom, ThreadRandom};
pub use policy::{PolicyError, RetryPolicy, RetryPolicyBuilder};
