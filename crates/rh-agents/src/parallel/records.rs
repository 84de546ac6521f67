//! The records of a group and of its tasks: the group's STARTED and final record, each task's
//! STARTED and how it ended.

use std::sync::Arc;

use serde::Serialize;
use tokio::time::Instant;

use super::breaker::CircuitBreaker;
use super::record::{GroupRecord, GroupStatus};
use crate::actor::ActorKind;
use crate::address::Address;
use crate::error::{describe, BoxError, Error, ErrorKind};
use crate::event::{Event, EventStatus, GroupRef};
use crate::panic::catch;
use crate::state::ExecutionState;

use super::drive::Stop;
use super::group::ErrorStrategy;

/// Makes the records of a group and its tasks.
pub(super) struct Records<'a> {
    pub(super) state: &'a ExecutionState,
    pub(super) address: &'a Address,
    pub(super) name: &'a Arc<str>,
    pub(super) parent_group: Option<&'a GroupRef>,
    pub(super) id: Arc<str>,
}

impl Records<'_> {
    pub(super) fn task_ref(&self, index: usize) -> Arc<GroupRef> {
        Arc::new(GroupRef {
            id: Arc::clone(&self.id),
            index: u32::try_from(index).unwrap_or(u32::MAX),
        })
    }

    pub(super) fn task_address(&self, name: &str, index: usize) -> Address {
        self.address
            .child(name, u32::try_from(index).unwrap_or(u32::MAX))
    }

    pub(super) fn group_event(&self, status: EventStatus) -> Event {
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

    pub(super) fn begin(&self, total: usize, workers: usize, strategy: ErrorStrategy) {
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

    pub(super) fn end(&self, record: &GroupRecord, stop: Option<&Stop>) {
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
    pub(super) fn dropped(&self, why: &Stop) {
        let mut event = self.group_event(EventStatus::Interrupted);
        event.detail = Some(Arc::from(format!("Cancelled: {}", why.describe())));
        if let Stop::Interrupt(signal) = why {
            event.interrupt = Some(Box::new(signal.clone()));
        }
        event.is_final = true;
        self.state.record_final(event);
    }

    /// A task's record: its address, name and group tag.
    pub(super) fn task_event(
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
    pub(super) fn task_started(&self, name: &Arc<str>, task: &GroupRef, address: &Address) {
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
    pub(super) fn task_finished(
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

    pub(super) fn completed<T: Serialize>(
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

    pub(super) fn failed(
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

    pub(super) fn cancelled(
        &self,
        name: &Arc<str>,
        task: &GroupRef,
        address: &Address,
        why: &Stop,
    ) -> Error {
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

    pub(super) fn circuit_open(
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
