//! A parallel group: tasks run on a bounded number of workers, in their own Tokio tasks.
//!
//! Invariants:
//! - a task is spawned only when a worker is free, so queued tasks cost their closure only;
//! - a task's address is the group's address plus its name and its index in add order, so
//!   addresses never depend on completion order;
//! - when the group returns (or its stream ends), every task it spawned has finished or has
//!   been aborted and joined: nothing it started is still running.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use serde::Serialize;
use tokio::sync::mpsc;

use super::breaker::CircuitBreaker;
use super::record::{GroupOutcome, GroupRecord};
use crate::address::{Address, Node};
use crate::context::Ctx;
use crate::error::{BoxError, Error, ErrorKind};
use crate::event::GroupRef;
use crate::interrupt::BoxFuture;
use crate::state::ExecutionState;

/// How many tasks of a group run at once, by default.
pub const DEFAULT_MAX_WORKERS: usize = 8;

/// What a group does when a task fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorStrategy {
    /// Run every task; report all errors at the end.
    #[default]
    FailSlow,
    /// On the first failure, stop every running task and start no more.
    FailFast,
}

pub(super) type TaskFn<T> = Box<dyn FnOnce(Ctx) -> BoxFuture<'static, Result<T, BoxError>> + Send>;

/// A group of tasks run in parallel with bounded workers. Open one with
/// [`ExecutionState::group`] or, inside a handler or task, [`Ctx::group`].
///
/// Each task is a closure that gets its own [`Ctx`] (address `group#n/task#i`) and returns a
/// future; every actor call it makes is an ordinary event, tagged with the group and the
/// task's index. Tasks not yet started are only kept as closures; at most `max_workers` are
/// spawned at a time.
///
/// # Cancellation
///
/// Fail-fast, the group timeout and an interrupt (local, or from an external checker, polled
/// while the group waits) abort every running task at once and start no more: a call inside an
/// aborted task records INTERRUPTED, and the state's grace period does not apply inside groups,
/// so that the stop takes effect in the same tick. Work that finished before is kept. The group
/// waits until its aborted tasks are gone before it returns, the tasks of groups nested in
/// them included.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::{Actor, Ctx, ExecutionState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = ExecutionState::new();
/// let square = Actor::tool("square", |x: u64, _ctx| async move { Ok::<_, std::io::Error>(x * x) });
///
/// let mut group = state.group("squares").max_workers(4).fail_fast();
/// for x in 0..10u64 {
///     let square = square.clone();
///     group.add(move |ctx: Ctx| async move { ctx.call(&square, x).await });
/// }
/// let outcome = group.run().await;
/// let squares: Vec<u64> = outcome.successes().copied().collect();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// assert_eq!(outcome.record.completed, 10);
/// # }
/// ```
#[must_use = "a group does nothing until `.run()` or `.stream()`"]
pub struct ParallelGroup<T> {
    pub(super) state: ExecutionState,
    pub(super) address: Address,
    pub(super) name: Arc<str>,
    pub(super) max_workers: usize,
    pub(super) strategy: ErrorStrategy,
    pub(super) timeout: Option<Duration>,
    pub(super) breaker: Option<Arc<CircuitBreaker>>,
    /// The group the parent call runs in (for the group's own records).
    pub(super) parent_group: Option<Arc<GroupRef>>,
    pub(super) tasks: Vec<(Arc<str>, TaskFn<T>)>,
}

impl<T> std::fmt::Debug for ParallelGroup<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelGroup")
            .field("address", &self.address)
            .field("max_workers", &self.max_workers)
            .field("strategy", &self.strategy)
            .field("timeout", &self.timeout)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl ExecutionState {
    /// Opens a parallel group at the top level.
    pub fn group<T>(&self, name: impl Into<String>) -> ParallelGroup<T> {
        ParallelGroup::new(self.clone(), &self.inner.root, name.into(), None)
    }
}

impl Ctx {
    /// Opens a parallel group nested under this call (or task).
    pub fn group<T>(&self, name: impl Into<String>) -> ParallelGroup<T> {
        ParallelGroup::new(
            self.state.clone(),
            &self.node,
            name.into(),
            self.group.clone(),
        )
    }
}

impl<T> ParallelGroup<T> {
    fn new(
        state: ExecutionState,
        parent: &Node,
        name: String,
        parent_group: Option<Arc<GroupRef>>,
    ) -> Self {
        let name: Arc<str> = Arc::from(name);
        Self {
            address: parent.next_child(&name),
            state,
            name,
            max_workers: DEFAULT_MAX_WORKERS,
            strategy: ErrorStrategy::FailSlow,
            timeout: None,
            breaker: None,
            parent_group,
            tasks: Vec::new(),
        }
    }

    /// How many tasks run at once (default 8; at least 1).
    pub fn max_workers(mut self, workers: usize) -> Self {
        self.max_workers = workers.max(1);
        self
    }

    /// What to do when a task fails (default fail-slow).
    pub fn strategy(mut self, strategy: ErrorStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Fail fast: the first failure stops every running task and starts no more.
    pub fn fail_fast(self) -> Self {
        self.strategy(ErrorStrategy::FailFast)
    }

    /// Fail slow: run everything and report all errors at the end (the default).
    pub fn fail_slow(self) -> Self {
        self.strategy(ErrorStrategy::FailSlow)
    }

    /// A time limit for the whole group: when it passes, running tasks are stopped and no
    /// more start.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// A circuit breaker consulted before each task (share one between groups to protect one
    /// service).
    pub fn circuit_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// The group's address (also its id).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// How many tasks were added.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task was added.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Adds a task named `task`.
    pub fn add<F, Fut, E>(&mut self, task: F) -> &mut Self
    where
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.add_named("task", task)
    }

    /// Adds a named task.
    pub fn add_named<F, Fut, E>(&mut self, name: impl Into<String>, task: F) -> &mut Self
    where
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let run: TaskFn<T> = Box::new(move |ctx| {
            let fut = task(ctx);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        self.tasks.push((Arc::from(name.into()), run));
        self
    }
}

impl<T: Serialize + Send + 'static> ParallelGroup<T> {
    /// Runs every task and returns their results in add order, with the group's record.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future aborts every running task.
    pub async fn run(self) -> GroupOutcome<T> {
        let total = self.tasks.len();
        let mut results: Vec<Option<Result<T, Error>>> = (0..total).map(|_| None).collect();
        let record = self
            .drive(|index, result| results[index] = Some(result))
            .await;
        let results = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::new(ErrorKind::Cancelled))))
            .collect();
        GroupOutcome { results, record }
    }

    /// Runs the tasks on a background task and streams their results as they complete
    /// (`(index, result)`); [`GroupStream::finish`] gives the record.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Runtime`] outside a Tokio runtime.
    pub fn stream(self) -> Result<GroupStream<T>, Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::runtime("a group stream needs a Tokio runtime: call it from async code")
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = handle.spawn(self.drive(move |index, result| {
            // The receiver is gone only when the stream was dropped, which also stops the
            // group: nothing to deliver to.
            let _ = tx.send((index, result));
        }));
        Ok(GroupStream { rx, driver })
    }
}

/// The results of a group as they complete: `(index, result)`. Dropping it stops the group
/// (every running task is aborted).
#[derive(Debug)]
#[must_use = "streams do nothing unless polled"]
pub struct GroupStream<T> {
    rx: mpsc::UnboundedReceiver<(usize, Result<T, Error>)>,
    driver: tokio::task::JoinHandle<GroupRecord>,
}

impl<T> GroupStream<T> {
    /// Waits for the group to end and returns its record.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Runtime`] if the group's driver task panicked or was aborted.
    pub async fn finish(mut self) -> Result<GroupRecord, Error> {
        (&mut self.driver)
            .await
            .map_err(|e| Error::runtime(format!("the group's driver task ended abnormally: {e}")))
    }
}

impl<T> Stream for GroupStream<T> {
    type Item = (usize, Result<T, Error>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl<T> Drop for GroupStream<T> {
    fn drop(&mut self) {
        // Dropping the driver drops its JoinSet, which aborts every running task.
        self.driver.abort();
    }
}
