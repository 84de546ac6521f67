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

use futures_core::Stream;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::breaker::{CircuitBreaker, Permit};
use super::record::{GroupOutcome, GroupRecord, GroupStatus, TaskError};
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
            // The receiver is gone only when the stream was dropped, which also stops the
            // group: nothing to deliver to.
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
        // One deadline, checked before anything starts: a limit already spent (zero) starts
        // nothing, in virtual and in real time alike. Too large to add means no limit.
        let deadline = timeout.and_then(|limit| started.checked_add(limit).map(|at| (limit, at)));

        let mut tally = Tally::default();
        let mut pending = tasks.into_iter().enumerate();
        // The running tasks and their bookkeeping; if this future is dropped before the end,
        // dropping it aborts the tasks first, then closes their records and the group's.
        let mut open = Unclosed {
            group: &group,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            closed: false,
        };
        let mut stop: Option<Stop> = None;

        loop {
            if stop.is_none() {
                if let Some(signal) = state.interrupt_signal() {
                    stop = Some(Stop::Interrupt(signal));
                } else if let Some((limit, at)) = deadline {
                    if Instant::now() >= at {
                        stop = Some(Stop::Timeout(limit));
                    }
                }
                if stop.is_some() {
                    open.tasks.abort_all();
                }
            }
            while stop.is_none() && open.tasks.len() < max_workers {
                let Some((index, (task_name, task))) = pending.next() else {
                    break;
                };
                let task_ref = group.task_ref(index);
                let task_address = group.task_address(&task_name, index);
                let permit = match &breaker {
                    None => None,
                    Some(breaker) => match breaker.try_acquire() {
                        Some(permit) => Some(permit),
                        None => {
                            let error =
                                group.circuit_open(&task_name, &task_ref, &task_address, breaker);
                            tally.fail(index, &error);
                            emit(index, Err(error));
                            if strategy == ErrorStrategy::FailFast {
                                stop = Some(Stop::FailFast(index));
                                open.tasks.abort_all();
                            }
                            continue;
                        }
                    },
                };
                group.task_started(&task_name, &task_ref, &task_address);
                let ctx = Ctx {
                    state: state.clone(),
                    node: Arc::new(Node::new(task_address.clone())),
                    actor: Arc::clone(&task_name),
                    kind: ActorKind::Task,
                    attempt: 0,
                    group: Some(Arc::clone(&task_ref)),
                };
                let handle = open.tasks.spawn(async move {
                    match catch(|| task(ctx)) {
                        Ok(fut) => CatchUnwind(fut)
                            .await
                            .map_err(BoxError::from)
                            .and_then(|r| r),
                        Err(panic) => Err(BoxError::from(panic)),
                    }
                });
                open.running.insert(
                    handle.id(),
                    Running {
                        index,
                        name: task_name,
                        task_ref,
                        address: task_address,
                        started: Instant::now(),
                        permit,
                    },
                );
            }
            if open.tasks.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                joined = open.tasks.join_next_with_id() => {
                    let Some(joined) = joined else { continue };
                    let (id, outcome) = match joined {
                        Ok((id, outcome)) => (id, Ok(outcome)),
                        Err(join_error) => (join_error.id(), Err(join_error)),
                    };
                    let Some(task) = open.running.remove(&id) else { continue };
                    let index = task.index;
                    let result = match outcome {
                        Ok(Ok(value)) => {
                            if let Some(permit) = task.permit {
                                permit.success();
                            }
                            group.completed(&task.name, &task.task_ref, &task.address, task.started, &value);
                            tally.completed += 1;
                            Ok(value)
                        }
                        // The task saw the interrupt (through a call): stopped, not failed.
                        Ok(Err(error)) if interrupt_in(&*error).is_some() => {
                            let signal = interrupt_in(&*error).cloned();
                            let why = signal.map_or(Stop::Dropped, Stop::Interrupt);
                            let error = group.cancelled(&task.name, &task.task_ref, &task.address, &why);
                            tally.cancel(index, &error);
                            Err(error)
                        }
                        Ok(Err(error)) => {
                            if let Some(permit) = task.permit {
                                permit.failure();
                            }
                            let error = group.failed(&task.name, &task.task_ref, &task.address, task.started, error);
                            tally.fail(index, &error);
                            if strategy == ErrorStrategy::FailFast && stop.is_none() {
                                stop = Some(Stop::FailFast(index));
                                open.tasks.abort_all();
                            }
                            Err(error)
                        }
                        // The task's own guard turns panics into errors; a panic here escaped
                        // it (e.g. in a drop): a failure all the same.
                        Err(join_error) if join_error.is_panic() => {
                            if let Some(permit) = task.permit {
                                permit.failure();
                            }
                            let panic = BoxError::from(format!("task panicked: {join_error}"));
                            let error = group.failed(&task.name, &task.task_ref, &task.address, task.started, panic);
                            tally.fail(index, &error);
                            Err(error)
                        }
                        // Aborted because the group is stopping.
                        Err(_) => {
                            let why = stop.clone().unwrap_or(Stop::Dropped);
                            let error = group.cancelled(&task.name, &task.task_ref, &task.address, &why);
                            tally.cancel(index, &error);
                            Err(error)
                        }
                    };
                    emit(index, result);
                }
                () = until(deadline), if stop.is_none() && deadline.is_some() => {
                    // The top of the loop sees the deadline passed and stops the group.
                }
                signal = state.interrupted(), if stop.is_none() => {
                    stop = Some(Stop::Interrupt(signal));
                    open.tasks.abort_all();
                }
                // External checkers are polled by the state's watcher, which raises the
                // interrupt above: the group's scheduling never waits for a checker.
            }
        }

        // Tasks never started: stopped without records of their own.
        for (index, (task_name, _)) in pending {
            let task_address = group.task_address(&task_name, index);
            let error = match &stop {
                Some(Stop::Interrupt(signal)) => Error::interrupted(signal.clone()),
                other => {
                    let why = other.as_ref().map_or_else(String::new, Stop::describe);
                    Error::new(ErrorKind::Cancelled).detail(format!("never started: {why}"))
                }
            }
            .at(&task_name, ActorKind::Task, &task_address);
            tally.cancel(index, &error);
            emit(index, Err(error));
        }

        let status = match &stop {
            Some(Stop::Timeout(_) | Stop::Interrupt(_) | Stop::Dropped) => GroupStatus::Cancelled,
            Some(Stop::FailFast(_)) => GroupStatus::Failed,
            None if tally.failed > 0 => GroupStatus::Failed,
            None if tally.cancelled > 0 => GroupStatus::Cancelled,
            None => GroupStatus::Completed,
        };
        tally.errors.sort_by_key(|e| e.index);
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
        // Groups nested in tasks that were aborted left their own aborted tasks behind: wait
        // until they are gone too, so nothing this group started outlives it.
        state.inner.orphans.drain().await;
        open.closed = true;
        group.end(&record, stop.as_ref());
        // The group's outcome is reported only once its records have reached the store (in
        // sync commit mode) and the subscribers that keep up.
        state.settle(true).await;
        record
    }
}

/// Resolves at the deadline (never without one).
async fn until(deadline: Option<(Duration, Instant)>) {
    match deadline {
        Some((_, at)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A task that is running, with what its records need.
struct Running {
    index: usize,
    name: Arc<str>,
    task_ref: Arc<GroupRef>,
    address: Address,
    started: Instant,
    permit: Option<Permit>,
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

#[derive(Default)]
struct Tally {
    completed: usize,
    failed: usize,
    cancelled: usize,
    errors: Vec<TaskError>,
}

impl Tally {
    fn fail(&mut self, index: usize, error: &Error) {
        self.failed += 1;
        self.errors.push(TaskError {
            index,
            error: error.report(),
        });
    }

    fn cancel(&mut self, index: usize, error: &Error) {
        self.cancelled += 1;
        self.errors.push(TaskError {
            index,
            error: error.report(),
        });
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
        // Its span, for the spans of its tasks (with a tracing bridge subscribed).
        let _ = self
            .state
            .inner
            .journal
            .open_span(self.address, self.name, ActorKind::Group);
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

    /// A task's record: its address, name and group tag.
    fn task_event(
        &self,
        name: &Arc<str>,
        task: &GroupRef,
        address: &Address,
        status: EventStatus,
    ) -> Event {
        let mut event = Event::new(address.clone(), Arc::clone(name), ActorKind::Task, status);
        event.group = Some(task.clone());
        event.is_parallel = true;
        event
    }

    /// A task begins: it counts as running until its final record.
    fn task_started(&self, name: &Arc<str>, task: &GroupRef, address: &Address) {
        // Its span, for the spans of the calls it makes (with a tracing bridge subscribed).
        let _ = self
            .state
            .inner
            .journal
            .open_span(address, name, ActorKind::Task);
        self.state.inner.journal.begin_call();
        self.state
            .record(self.task_event(name, task, address, EventStatus::Started));
    }

    /// A task's final record.
    fn task_finished(
        &self,
        name: &Arc<str>,
        task: &GroupRef,
        address: &Address,
        status: EventStatus,
        fill: impl FnOnce(&mut Event),
    ) {
        let mut event = self.task_event(name, task, address, status);
        fill(&mut event);
        event.is_final = true;
        self.state.record_final(event);
    }

    fn completed<T: Serialize>(
        &self,
        name: &Arc<str>,
        task: &GroupRef,
        address: &Address,
        started: Instant,
        value: &T,
    ) {
        let result = catch(|| serde_json::to_value(value))
            .ok()
            .and_then(Result::ok);
        self.task_finished(name, task, address, EventStatus::Completed, |e| {
            e.duration = Some(started.elapsed());
            e.detail = result.as_ref().and_then(|v| self.state.detail_of(v));
            e.result = result;
        });
    }

    fn failed(
        &self,
        name: &Arc<str>,
        task: &GroupRef,
        address: &Address,
        started: Instant,
        error: BoxError,
    ) -> Error {
        let message = describe(&*error);
        self.task_finished(name, task, address, EventStatus::Failed, |e| {
            e.duration = Some(started.elapsed());
            e.message = Some(message);
        });
        match error.downcast::<Error>() {
            // A call's own error (retries exhausted, …) says the most: hand it on as it is.
            Ok(error) => *error,
            Err(error) => Error::new(ErrorKind::TaskFailed)
                .at(name, ActorKind::Task, address)
                .cause(error),
        }
    }

    fn cancelled(&self, name: &Arc<str>, task: &GroupRef, address: &Address, why: &Stop) -> Error {
        let detail = why.describe();
        self.task_finished(name, task, address, EventStatus::Interrupted, |e| {
            e.detail = Some(Arc::from(format!("Cancelled: {detail}")));
            if let Stop::Interrupt(signal) = why {
                e.interrupt = Some(Box::new(signal.clone()));
            }
        });
        match why {
            Stop::Interrupt(signal) => Error::interrupted(signal.clone()),
            _ => Error::new(ErrorKind::Cancelled).detail(detail),
        }
        .at(name, ActorKind::Task, address)
    }

    fn circuit_open(
        &self,
        name: &Arc<str>,
        task: &GroupRef,
        address: &Address,
        breaker: &CircuitBreaker,
    ) -> Error {
        let detail = format!(
            "not run: the circuit breaker is open after {} consecutive failures",
            breaker.threshold()
        );
        // A task that never ran still gets its one (final) record, so the history says why.
        self.state.inner.journal.begin_call();
        self.task_finished(name, task, address, EventStatus::Failed, |e| {
            e.message = Some(Arc::from(detail.as_str()));
        });
        Error::new(ErrorKind::CircuitOpen)
            .detail(detail)
            .at(name, ActorKind::Task, address)
    }
}

/// What a group still has to close if its future is dropped before the end: its running
/// tasks (aborted first, so nothing they do lands after their records) and the records of
/// those tasks and of the group.
struct Unclosed<'a, 'b, T: Send + 'static> {
    group: &'a Records<'b>,
    tasks: JoinSet<Result<T, BoxError>>,
    running: HashMap<tokio::task::Id, Running>,
    closed: bool,
}

impl<T: Send + 'static> Drop for Unclosed<'_, '_, T> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // Aborting cannot be awaited here: each task stops at its next await point, and its
        // permit (if any) is given back as the bookkeeping below is dropped. The aborted set is
        // handed to the state, so an enclosing group waits for it to be gone before it returns.
        self.tasks.abort_all();
        self.group
            .state
            .inner
            .orphans
            .adopt(std::mem::take(&mut self.tasks));
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
        let mut running: Vec<Running> = self.running.drain().map(|(_, task)| task).collect();
        running.sort_by_key(|task| task.index);
        for task in running {
            let _ = self
                .group
                .cancelled(&task.name, &task.task_ref, &task.address, &why);
        }
        self.group.dropped(&why);
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
