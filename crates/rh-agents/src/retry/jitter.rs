//! The random source behind jitter. Injectable, so tests can pin it.

use std::fmt;

use parking_lot::Mutex;

/// A source of uniform numbers in `[0, 1)` for jitter.
pub trait RandomSource: Send + Sync + fmt::Debug {
    /// The next number in `[0, 1)`.
    fn next_f64(&self) -> f64;
}

/// The default source: a fast thread-local generator, seeded from the OS.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    fn next_f64(&self) -> f64 {
        fastrand::f64()
    }
}

/// A seeded generator: the same seed gives the same jitter sequence.
#[derive(Debug)]
pub struct SeededRandom(Mutex<fastrand::Rng>);

impl SeededRandom {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(fastrand::Rng::with_seed(seed)))
    }
}

impl RandomSource for SeededRandom {
    fn next_f64(&self) -> f64 {
        self.0.lock().f64()
    }
}

/// Always the same number: `FixedRandom(0.5)` means no jitter offset, `0.0` the lowest delay
/// and values near `1.0` the highest.
#[derive(Debug, Clone, Copy)]
pub struct FixedRandom(pub f64);

impl RandomSource for FixedRandom {
    fn next_f64(&self) -> f64 {
        self.0
    }
}
