//! Driving a group: spawning tasks as workers free up, collecting their results, and
//! stopping them all on fail-fast, the group timeout, an interrupt or a drop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::breaker::Permit;
use super::record::{GroupRecord, GroupStatus, TaskError};
use crate::actor::ActorKind;
use crate::address::{Address, Node};
use crate::context::Ctx;
use crate::error::{interrupt_in, BoxError, Error, ErrorKind};
use crate::event::GroupRef;
use crate::interrupt::InterruptSignal;
use crate::panic::{catch, CatchUnwind};
use crate::serde_time::Human;

use super::group::{ErrorStrategy, ParallelGroup};
use super::records::Records;

impl<T: Serialize + Send + 'static> ParallelGroup<T> {
    /// Runs the group, handing each result to `emit` as it arrives.
    pub(super) async fn drive(
        self,
        mut emit: impl FnMut(usize, Result<T, Error>) + Send,
    ) -> GroupRecord {
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
pub(super) struct Running {
    pub(super) index: usize,
    pub(super) name: Arc<str>,
    pub(super) task_ref: Arc<GroupRef>,
    pub(super) address: Address,
    pub(super) started: Instant,
    pub(super) permit: Option<Permit>,
}

/// Why a group stopped early.
#[derive(Debug, Clone)]
pub(super) enum Stop {
    FailFast(usize),
    Timeout(Duration),
    Interrupt(InterruptSignal),
    /// The group's future was dropped (its caller stopped waiting), or a task was aborted
    /// while nothing asked the group to stop (not expected).
    Dropped,
}

impl Stop {
    pub(super) fn describe(&self) -> String {
        match self {
            Self::FailFast(index) => format!("fail-fast after task {index} failed"),
            Self::Timeout(limit) => format!("group timed out after {}", Human(*limit)),
            Self::Interrupt(signal) => format!("interrupted: {signal}"),
            Self::Dropped => "the group was dropped before it finished".to_owned(),
        }
    }
}

#[derive(Default)]
pub(super) struct Tally {
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

/// What a group still has to close if its future is dropped before the end: its running
/// tasks (aborted first, so nothing they do lands after their records) and the records of
/// those tasks and of the group.
pub(super) struct Unclosed<'a, 'b, T: Send + 'static> {
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
