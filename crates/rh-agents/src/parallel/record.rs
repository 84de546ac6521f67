//! The record of a parallel group: what happened to its tasks.

use std::time::Duration;

use serde::Serialize;

use crate::error::Error;

/// Where a group is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupStatus {
    /// Not started.
    Pending,
    /// Running.
    Running,
    /// Every task succeeded.
    Completed,
    /// At least one task failed.
    Failed,
    /// Stopped early: fail-fast, the group timeout, or an interrupt.
    Cancelled,
}

/// What a group did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupRecord {
    /// The group's id (its address).
    pub id: String,
    /// The group's name.
    pub name: String,
    /// Tasks added.
    pub total: usize,
    /// Tasks that succeeded.
    pub completed: usize,
    /// Tasks that failed (their own error, a panic, or an open circuit).
    pub failed: usize,
    /// Tasks stopped before they finished, or never started.
    pub cancelled: usize,
    /// How the group ended.
    pub status: GroupStatus,
    /// Completed tasks over all tasks (1.0 for an empty group).
    pub success_rate: f64,
    /// How long the group ran.
    #[serde(serialize_with = "secs")]
    pub execution_time: Duration,
    /// The error of each failed or cancelled task, with its index, in index order.
    pub errors: Vec<(usize, String)>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The results of a group, in the order tasks were added, and its record.
#[derive(Debug)]
pub struct GroupOutcome<T> {
    /// One result per task, in add order.
    pub results: Vec<Result<T, Error>>,
    /// What the group did.
    pub record: GroupRecord,
}

impl<T> GroupOutcome<T> {
    /// The successful results, in add order.
    pub fn successes(&self) -> impl Iterator<Item = &T> {
        self.results.iter().filter_map(|r| r.as_ref().ok())
    }

    /// The errors with their task index, in add order.
    pub fn errors(&self) -> impl Iterator<Item = (usize, &Error)> {
        self.results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().err().map(|e| (i, e)))
    }
}
