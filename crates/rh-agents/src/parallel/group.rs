//! A parallel group: tasks run on a bounded number of workers, in their own Tokio tasks.
//!
//! Invariants:
//! - a task is spawned only when a worker is free, so queued tasks cost their closure only;
//! - a task's address is the group's address plus its name and its index in add order, so
//!   addresses never depend on completion order;
//! - when the group returns (or its stream ends), every task it spawned has finished or has
//!   been aborted and joined: nothing it started is still running.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::Stream;

use super::breaker::CircuitBreaker;
use super::record::{GroupOutcome, GroupRecord, GroupStatus};
use crate::actor::ActorKind;
use crate::address::{Address, Node};
use crate::context::Ctx;
use crate::error::{describe, interrupt_in, BoxError, Error, ErrorKind};
use crate::event::{Event, EventStatus, GroupRef};
use crate::interrupt::{BoxFuture, InterruptSignal};
use crate::panic::{catch, CatchUnwind};
use crate::serde_time::Human;
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

type TaskFn<T> = Box<dyn FnOnce(Ctx) -> BoxFuture<'static, Result<T, BoxError>> + Send>;

/// A group of tasks run in parallel with bounded workers. Open one with
/// [`ExecutionState::group`] or, inside a handler or task, [`Ctx::group`].
///
/// Each task is a closure that gets its own [`Ctx`] (address `group#n/task#i`) and returns a
/// future; every actor call it makes is an ordinary event, tagged with the group and the
/// task's index.
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
    state: ExecutionState,
    address: Address,
    name: Arc<str>,
    max_workers: usize,
    strategy: ErrorStrategy,
    timeout: Option<Duration>,
    breaker: Option<Arc<CircuitBreaker>>,
    /// The group the parent call runs in (for the group's own records).
    parent_group: Option<Arc<GroupRef>>,
    tasks: Vec<(Arc<str>, TaskFn<T>)>,
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
            // A receiver that went away wants no more results; the tasks still finish.
            let _ = tx.send((index, result));
        }));
        Ok(GroupStream { rx, driver })
    }

    /// Runs the group, handing each result to `emit` as it arrives.
    async fn drive(self, mut emit: impl FnMut(usize, Result<T, Error>) + Send) -> GroupRecord {
        let ParallelGroup {
            state,
            address,
            name,
            max_workers,
            strategy,
            timeout,
            breaker,
            parent_group,
            tasks,
        } = self;
        let total = tasks.len();
        let group = Records {
            state: &state,
            address: &address,
            name: &name,
            parent_group: parent_group.as_deref(),
            id: Arc::from(address.as_str()),
        };
        group.begin(total, max_workers, strategy);
        let started = Instant::now();

        let mut tally = Tally::default();
        let mut pending = tasks.into_iter().enumerate();
        let mut running: JoinSet<(usize, Result<T, BoxError>)> = JoinSet::new();
        // Closes the records of the group and its running tasks if this future is dropped
        // before the end (the JoinSet, dropped with it, aborts the tasks themselves).
        let mut open = Unclosed {
            group: &group,
            running: HashMap::new(),
            closed: false,
        };
        let mut stop: Option<Stop> = None;
        let mut timer = timeout.map(|limit| (limit, Box::pin(tokio::time::sleep(limit))));

        loop {
            if stop.is_none() {
                if let Some(signal) = state.interrupt_signal() {
                    stop = Some(Stop::Interrupt(signal));
                    running.abort_all();
                }
            }
            while stop.is_none() && running.len() < max_workers {
                let Some((index, (task_name, task))) = pending.next() else {
                    break;
                };
                let task_ref = group.task_ref(index);
                if let Some(breaker) = &breaker {
                    if !breaker.try_acquire() {
                        let error = group.circuit_open(&task_name, &task_ref, breaker);
                        tally.fail(index, &error);
                        emit(index, Err(error));
                        if strategy == ErrorStrategy::FailFast {
                            stop = Some(Stop::FailFast(index));
                            running.abort_all();
                        }
                        continue;
                    }
                }
                group.task(&task_name, &task_ref, EventStatus::Started, false, |_| {});
                let ctx = Ctx {
                    state: state.clone(),
                    node: Arc::new(Node::new(group.task_address(&task_name, index))),
                    actor: Arc::clone(&task_name),
                    kind: ActorKind::Task,
                    attempt: 0,
                    group: Some(task_ref),
                };
                let handle = running.spawn(async move {
                    let outcome = match catch(|| task(ctx)) {
                        Ok(fut) => CatchUnwind(fut)
                            .await
                            .map_err(BoxError::from)
                            .and_then(|r| r),
                        Err(panic) => Err(BoxError::from(panic)),
                    };
                    (index, outcome)
                });
                open.running.insert(handle.id(), (index, task_name));
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                joined = running.join_next_with_id() => {
                    let Some(joined) = joined else { continue };
                    let (id, outcome) = match joined {
                        Ok((id, (_, outcome))) => (id, Some(outcome)),
                        Err(join_error) => (join_error.id(), None),
                    };
                    let Some((index, task_name)) = open.running.remove(&id) else { continue };
                    let task_ref = group.task_ref(index);
                    let result = match outcome {
                        Some(Ok(value)) => {
                            if let Some(breaker) = &breaker {
                                breaker.record(true);
                            }
                            group.completed(&task_name, &task_ref, &value);
                            tally.completed += 1;
                            Ok(value)
                        }
                        Some(Err(error)) => {
                            if let Some(signal) = interrupt_in(&*error).cloned() {
                                if let Some(breaker) = &breaker {
                                    breaker.release();
                                }
                                let error = group.cancelled(&task_name, &task_ref, &Stop::Interrupt(signal));
                                tally.cancel(index, &error);
                                Err(error)
                            } else {
                                if let Some(breaker) = &breaker {
                                    breaker.record(false);
                                }
                                let error = group.failed(&task_name, &task_ref, error);
                                tally.fail(index, &error);
                                if strategy == ErrorStrategy::FailFast && stop.is_none() {
                                    stop = Some(Stop::FailFast(index));
                                    running.abort_all();
                                }
                                Err(error)
                            }
                        }
                        // Aborted (the group stopped), or a panic the task's guard missed.
                        None => {
                            if let Some(breaker) = &breaker {
                                breaker.release();
                            }
                            let why = stop.clone().unwrap_or(Stop::Dropped);
                            let error = group.cancelled(&task_name, &task_ref, &why);
                            tally.cancel(index, &error);
                            Err(error)
                        }
                    };
                    emit(index, result);
                }
                () = expiry(&mut timer), if stop.is_none() && timer.is_some() => {
                    let limit = timer.as_ref().map_or(Duration::ZERO, |(limit, _)| *limit);
                    stop = Some(Stop::Timeout(limit));
                    running.abort_all();
                }
                signal = state.interrupted(), if stop.is_none() => {
                    stop = Some(Stop::Interrupt(signal));
                    running.abort_all();
                }
            }
        }

        // Tasks never started: cancelled without records of their own.
        for (index, _) in pending {
            let detail = stop.as_ref().map_or_else(String::new, Stop::describe);
            let error = Error::new(ErrorKind::Cancelled).detail(format!("never started: {detail}"));
            tally.cancel(index, &error);
            emit(index, Err(error));
        }

        let status = match &stop {
            Some(Stop::Timeout(_) | Stop::Interrupt(_) | Stop::Dropped) => GroupStatus::Cancelled,
            Some(Stop::FailFast(_)) => GroupStatus::Failed,
            None if tally.failed > 0 => GroupStatus::Failed,
            None => GroupStatus::Completed,
        };
        tally.errors.sort_by_key(|(index, _)| *index);
        let record = GroupRecord {
            id: address.to_string(),
            name: name.to_string(),
            total,
            completed: tally.completed,
            failed: tally.failed,
            cancelled: tally.cancelled,
            status,
            success_rate: if total == 0 {
                1.0
            } else {
                tally.completed as f64 / total as f64
            },
            execution_time: started.elapsed(),
            errors: tally.errors,
        };
        open.closed = true;
        group.end(&record, stop.as_ref());
        record
    }
}

/// The records a group still has to close: its own and its running tasks'.
struct Unclosed<'a, 'b> {
    group: &'a Records<'b>,
    running: HashMap<tokio::task::Id, (usize, Arc<str>)>,
    closed: bool,
}

impl Drop for Unclosed<'_, '_> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let journal = &self.group.state.inner.journal;
        if std::thread::panicking() {
            // As for calls: no delivery while unwinding; just stop counting them as running.
            for _ in 0..=self.running.len() {
                journal.abandon_call();
            }
            return;
        }
        let why = match self.group.state.interrupt_signal() {
            Some(signal) => Stop::Interrupt(signal),
            None => Stop::Dropped,
        };
        let mut running: Vec<_> = self.running.drain().map(|(_, task)| task).collect();
        running.sort_by_key(|(index, _)| *index);
        for (index, name) in running {
            let task_ref = self.group.task_ref(index);
            let _ = self.group.cancelled(&name, &task_ref, &why);
        }
        self.group.dropped(&why);
    }
}

/// Why a group stopped early.
#[derive(Debug, Clone)]
enum Stop {
    FailFast(usize),
    Timeout(Duration),
    Interrupt(InterruptSignal),
    /// The group's future was dropped (its caller stopped waiting), or a task was aborted
    /// while nothing asked the group to stop (not expected).
    Dropped,
}

impl Stop {
    fn describe(&self) -> String {
        match self {
            Self::FailFast(index) => format!("fail-fast after task {index} failed"),
            Self::Timeout(limit) => format!("group timed out after {}", Human(*limit)),
            Self::Interrupt(signal) => format!("interrupted: {signal}"),
            Self::Dropped => "the group was dropped before it finished".to_owned(),
        }
    }
}

/// Resolves when the group's timer (if any) expires.
async fn expiry(timer: &mut Option<(Duration, Pin<Box<tokio::time::Sleep>>)>) {
    match timer {
        Some((_, sleep)) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

#[derive(Default)]
struct Tally {
    completed: usize,
    failed: usize,
    cancelled: usize,
    errors: Vec<(usize, String)>,
}

impl Tally {
    fn fail(&mut self, index: usize, error: &Error) {
        self.failed += 1;
        self.errors.push((index, error.report()));
    }

    fn cancel(&mut self, index: usize, error: &Error) {
        self.cancelled += 1;
        self.errors.push((index, error.report()));
    }
}

/// Makes the records of a group and its tasks.
struct Records<'a> {
    state: &'a ExecutionState,
    address: &'a Address,
    name: &'a Arc<str>,
    parent_group: Option<&'a GroupRef>,
    id: Arc<str>,
}

impl Records<'_> {
    fn task_ref(&self, index: usize) -> Arc<GroupRef> {
        Arc::new(GroupRef {
            id: Arc::clone(&self.id),
            index: u32::try_from(index).unwrap_or(u32::MAX),
        })
    }

    fn task_address(&self, name: &str, index: usize) -> Address {
        self.address
            .child(name, u32::try_from(index).unwrap_or(u32::MAX))
    }

    fn group_event(&self, status: EventStatus) -> Event {
        let mut event = Event::new(
            self.address.clone(),
            Arc::clone(self.name),
            ActorKind::Group,
            status,
        );
        if let Some(parent) = self.parent_group {
            event.group = Some(parent.clone());
            event.is_parallel = true;
        }
        event
    }

    fn begin(&self, total: usize, workers: usize, strategy: ErrorStrategy) {
        let mut event = self.group_event(EventStatus::Started);
        let strategy = match strategy {
            ErrorStrategy::FailFast => "fail-fast",
            ErrorStrategy::FailSlow => "fail-slow",
        };
        event.message = Some(Arc::from(format!(
            "{total} task{}, up to {workers} at a time, {strategy}",
            if total == 1 { "" } else { "s" }
        )));
        // The same as data, for progress displays.
        let mut metadata = serde_json::Map::new();
        metadata.insert("total".to_owned(), total.into());
        metadata.insert("max_workers".to_owned(), workers.into());
        metadata.insert("strategy".to_owned(), strategy.into());
        event.metadata = Some(Arc::new(metadata));
        self.state.inner.journal.begin_call();
        self.state.record(event);
    }

    fn end(&self, record: &GroupRecord, stop: Option<&Stop>) {
        let status = match record.status {
            GroupStatus::Completed => EventStatus::Completed,
            GroupStatus::Failed => EventStatus::Failed,
            _ => EventStatus::Interrupted,
        };
        let mut event = self.group_event(status);
        event.duration = Some(record.execution_time);
        let mut message = format!(
            "{}/{} completed, {} failed, {} cancelled",
            record.completed, record.total, record.failed, record.cancelled
        );
        if let Some(stop) = stop {
            message.push_str(&format!(" ({})", stop.describe()));
        }
        event.message = Some(Arc::from(message));
        if let Some(Stop::Interrupt(signal)) = stop {
            event.interrupt = Some(Box::new(signal.clone()));
        }
        event.result = serde_json::to_value(record).ok();
        event.is_final = true;
        self.state.record_final(event);
    }

    /// The group's final record when its future was dropped before the end.
    fn dropped(&self, why: &Stop) {
        let mut event = self.group_event(EventStatus::Interrupted);
        event.detail = Some(Arc::from(format!("Cancelled: {}", why.describe())));
        if let Stop::Interrupt(signal) = why {
            event.interrupt = Some(Box::new(signal.clone()));
        }
        event.is_final = true;
        self.state.record_final(event);
    }

    /// Records one step of a task (the final one closes it).
    fn task(
        &self,
        name: &Arc<str>,
        task: &GroupRef,
        status: EventStatus,
        last: bool,
        fill: impl FnOnce(&mut Event),
    ) {
        let index = task.index as usize;
        let mut event = Event::new(
            self.task_address(name, index),
            Arc::clone(name),
            ActorKind::Task,
            status,
        );
        event.group = Some(task.clone());
        event.is_parallel = true;
        fill(&mut event);
        let journal = &self.state.inner.journal;
        if last {
            event.is_final = true;
            self.state.record_final(event);
        } else {
            journal.begin_call();
            self.state.record(event);
        }
    }

    fn completed<T: Serialize>(&self, name: &Arc<str>, task: &GroupRef, value: &T) {
        let result = catch(|| serde_json::to_value(value))
            .ok()
            .and_then(Result::ok);
        self.task(name, task, EventStatus::Completed, true, |e| {
            e.detail = result.as_ref().and_then(|v| self.state.detail_of(v));
            e.result = result;
        });
    }

    fn failed(&self, name: &Arc<str>, task: &GroupRef, error: BoxError) -> Error {
        let message = describe(&*error);
        self.task(name, task, EventStatus::Failed, true, |e| {
            e.message = Some(message);
        });
        let address = self.task_address(name, task.index as usize);
        match error.downcast::<Error>() {
            // A call's own error (retries exhausted, …) says the most: hand it on as it is.
            Ok(error) => *error,
            Err(error) => Error::new(ErrorKind::TaskFailed)
                .at(name, ActorKind::Task, &address)
                .cause(error),
        }
    }

    fn cancelled(&self, name: &Arc<str>, task: &GroupRef, why: &Stop) -> Error {
        let detail = why.describe();
        self.task(name, task, EventStatus::Interrupted, true, |e| {
            e.detail = Some(Arc::from(format!("Cancelled: {detail}")));
            if let Stop::Interrupt(signal) = why {
                e.interrupt = Some(Box::new(signal.clone()));
            }
        });
        let address = self.task_address(name, task.index as usize);
        match why {
            Stop::Interrupt(signal) => Error::interrupted(signal.clone()),
            _ => Error::new(ErrorKind::Cancelled).detail(detail),
        }
        .at(name, ActorKind::Task, &address)
    }

    fn circuit_open(&self, name: &Arc<str>, task: &GroupRef, breaker: &CircuitBreaker) -> Error {
        let detail = format!(
            "not run: the circuit breaker is open after {} consecutive failures",
            breaker.threshold()
        );
        // A task that never ran still gets its one (final) record, so the history says why.
        let journal = &self.state.inner.journal;
        journal.begin_call();
        self.task(name, task, EventStatus::Failed, true, |e| {
            e.message = Some(Arc::from(detail.as_str()));
        });
        let address = self.task_address(name, task.index as usize);
        Error::new(ErrorKind::CircuitOpen)
            .detail(detail)
            .at(name, ActorKind::Task, &address)
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
