//! The builder of an [`ExecutionState`].

use std::sync::Arc;
use std::time::Duration;

use super::{ExecutionState, Settings, StateInner};
use crate::actor::ActorKind;
use crate::address::{Address, Node};
use crate::bus::{Bus, Subscriber};
use crate::history::Journal;
use crate::interrupt::wait::Interrupts;
use crate::interrupt::InterruptChecker;
use crate::retry::{RandomSource, RetryConfig, RetryPolicy, ThreadRandom};
use crate::storage::Storage;

/// How often external checkers are polled while something waits, by default.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How long one external checker may take to answer, by default.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a handler that ignores an interrupt may run on before it is aborted, by default.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(1);
/// How many characters of input/output a record keeps as detail, by default.
pub const DEFAULT_DETAIL_LIMIT: usize = 2_000;
/// How many events an async subscriber or stream may fall behind, by default.
pub const DEFAULT_BUS_CAPACITY: usize = 1_024;

/// Configures an [`ExecutionState`].
#[must_use = "a builder does nothing until `.build()`"]
pub struct ExecutionStateBuilder {
    id: Option<String>,
    retry: RetryConfig,
    checkers: Vec<InterruptChecker>,
    subscribers: Vec<Arc<dyn Subscriber>>,
    check_interval: Duration,
    check_timeout: Duration,
    grace_period: Duration,
    detail_limit: usize,
    record_io: bool,
    bus_capacity: usize,
    random: Arc<dyn RandomSource>,
}

impl std::fmt::Debug for ExecutionStateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionStateBuilder")
            .field("id", &self.id)
            .field("retry", &self.retry)
            .field("checkers", &self.checkers.len())
            .field("subscribers", &self.subscribers.len())
            .field("check_interval", &self.check_interval)
            .field("grace_period", &self.grace_period)
            .finish_non_exhaustive()
    }
}

impl Default for ExecutionStateBuilder {
    fn default() -> Self {
        Self {
            id: None,
            retry: RetryConfig::default(),
            checkers: Vec::new(),
            subscribers: Vec::new(),
            check_interval: DEFAULT_CHECK_INTERVAL,
            check_timeout: DEFAULT_CHECK_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            detail_limit: DEFAULT_DETAIL_LIMIT,
            record_io: true,
            bus_capacity: DEFAULT_BUS_CAPACITY,
            random: Arc::new(ThreadRandom),
        }
    }
}

impl ExecutionStateBuilder {
    /// Uses this id instead of a fresh UUID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The global default policy (level 4).
    pub fn default_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry.default = Some(policy);
        self
    }

    /// The policy for one actor kind (level 3). `System`, `Group` and `Task` name records the
    /// runtime makes itself, which are never retried: a policy for them is ignored.
    pub fn kind_retry(mut self, kind: ActorKind, policy: RetryPolicy) -> Self {
        self.retry.set_kind(kind, policy);
        self
    }

    /// Adds an external interrupt checker.
    pub fn checker(mut self, checker: InterruptChecker) -> Self {
        self.checkers.push(checker);
        self
    }

    /// How often checkers are polled while something waits (default 100 ms).
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval;
        self
    }

    /// How long one external checker may take to answer (default 1 s). A checker that takes
    /// longer is reported as failed for that check and does not hold the run up.
    pub fn check_timeout(mut self, limit: Duration) -> Self {
        self.check_timeout = limit;
        self
    }

    /// How long a running handler may go on after an interrupt before it is aborted
    /// (default 1 s; zero aborts at once).
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How many characters of input/output records keep as detail (default 2,000).
    pub fn detail_limit(mut self, chars: usize) -> Self {
        self.detail_limit = chars;
        self
    }

    /// Whether records carry the input/output detail (default on). Results are recorded
    /// either way.
    pub fn record_io(mut self, on: bool) -> Self {
        self.record_io = on;
        self
    }

    /// How far an async subscriber or stream may fall behind before it skips events
    /// (default 1,024).
    pub fn bus_capacity(mut self, events: usize) -> Self {
        self.bus_capacity = events;
        self
    }

    /// The random source for jitter (for reproducible delays in tests, a
    /// [`SeededRandom`](crate::SeededRandom) or [`FixedRandom`](crate::FixedRandom)).
    pub fn random(mut self, random: impl RandomSource + 'static) -> Self {
        self.random = Arc::new(random);
        self
    }

    /// Adds a sync subscriber.
    pub fn subscriber(mut self, subscriber: impl Subscriber) -> Self {
        self.subscribers.push(Arc::new(subscriber));
        self
    }

    /// Builds the state.
    pub fn build(self) -> ExecutionState {
        ExecutionState {
            inner: Arc::new(StateInner {
                id: self.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                journal: Journal::default(),
                bus: Bus::new(self.bus_capacity, self.subscribers),
                storage: Storage::default(),
                retry: self.retry,
                interrupts: Interrupts::new(self.checkers, self.check_interval, self.check_timeout),
                settings: Settings {
                    grace_period: self.grace_period,
                    detail_limit: self.detail_limit,
                    record_io: self.record_io,
                },
                random: self.random,
                root: Node::new(Address::root()),
                orphans: crate::parallel::Orphans::default(),
            }),
        }
    }
}
