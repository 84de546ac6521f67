//! The record of a parallel group: what happened to its tasks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Where a group is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum GroupStatus {
    /// Not started (for displays of groups in progress; a record is made when a group ends).
    Pending,
    /// Running (for displays of groups in progress).
    Running,
    /// Every task succeeded.
    Completed,
    /// At least one task failed (with fail-fast, the first failure also stopped the rest).
    Failed,
    /// Stopped early by the group timeout or an interrupt, or dropped before it finished.
    Cancelled,
}

/// The error of one task, by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskError {
    /// The task's index (add order).
    pub index: usize,
    /// What went wrong, with its causes.
    pub error: String,
}

/// What a group did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
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
    #[serde(with = "crate::serde_time::duration_ms", rename = "execution_time_ms")]
    pub execution_time: Duration,
    /// The error of each failed or cancelled task, in index order.
    pub errors: Vec<TaskError>,
}

/// The results of a group, in the order tasks were added, and its record.
#[derive(Debug)]
#[non_exhaustive]
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
