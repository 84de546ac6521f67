//! The run summary: what a run did, in numbers — as a value for programs and tests, and as
//! text for people.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::actor::ActorKind;
use crate::address::Address;
use crate::event::{Event, EventStatus};
use crate::interrupt::InterruptSignal;
use crate::serde_time::{self, Human};
use crate::state::ExecutionState;

/// Retry statistics of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryStats {
    /// Calls that needed at least one retry.
    pub calls_retried: usize,
    /// Retries scheduled in all (RETRYING records).
    pub retry_attempts: usize,
    /// Calls that completed after at least one retry.
    pub succeeded_after_retry: usize,
    /// Calls whose every allowed attempt failed.
    pub failed_after_retries: usize,
}

/// What a run did: totals by status and by actor kind, time, retries and interrupts.
///
/// # Examples
///
/// ```
/// # use rh_agents::{Actor, ExecutionState};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = ExecutionState::new();
/// let echo = Actor::tool("echo", |s: String, _ctx| async move { Ok::<_, std::io::Error>(s) });
/// state.call(&echo, "hi".into()).await.unwrap();
/// let summary = state.summary();
/// assert_eq!(summary.calls, 1);
/// assert_eq!(summary.by_status["completed"], 1);
/// assert_eq!(summary.retries.calls_retried, 0);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunSummary {
    /// Records in the history.
    pub events: usize,
    /// Actor calls (distinct addresses) that a user would call a step: tools, LLM calls and
    /// agents. The parallel groups and their tasks, which the runtime adds around the calls
    /// made in parallel, are counted apart in [`groups`](Self::groups) and
    /// [`tasks`](Self::tasks).
    pub calls: usize,
    /// Parallel groups run (not counted in [`calls`](Self::calls)).
    pub groups: usize,
    /// Tasks of those groups (not counted in [`calls`](Self::calls)); the calls a task makes
    /// are.
    pub tasks: usize,
    /// Records per status (wire names).
    pub by_status: BTreeMap<&'static str, usize>,
    /// Calls per actor kind (wire names), groups and tasks included.
    pub by_kind: BTreeMap<&'static str, usize>,
    /// How each of the [`calls`](Self::calls) ended: calls per final status (or
    /// `started`/`retrying` if it is still running).
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Wall-clock time from the first record to the last.
    #[serde(with = "serde_time::duration_ms", rename = "elapsed_ms")]
    pub elapsed: Duration,
    /// Retry statistics.
    pub retries: RetryStats,
    /// The interrupts requested during the run.
    pub interrupts: Vec<InterruptSignal>,
}

impl RunSummary {
    /// Summarises records (in history order).
    pub fn from_events(events: &[Arc<Event>]) -> Self {
        let mut summary = Self {
            events: events.len(),
            ..Self::default()
        };
        // Per call: its kind, whether it was retried, and its latest record.
        let mut calls: HashMap<&Address, (ActorKind, bool, &Event)> = HashMap::new();
        let mut order: Vec<&Address> = Vec::new();
        for event in events {
            *summary.by_status.entry(event.status.as_str()).or_default() += 1;
            if event.kind == ActorKind::System {
                if event.status == EventStatus::Interrupted {
                    if let Some(signal) = &event.interrupt {
                        summary.interrupts.push((**signal).clone());
                    }
                }
                continue;
            }
            if event.status == EventStatus::Log {
                continue;
            }
            if event.status == EventStatus::Retrying {
                summary.retries.retry_attempts += 1;
            }
            let entry = calls.entry(&event.address).or_insert_with(|| {
                order.push(&event.address);
                (event.kind, false, event)
            });
            entry.1 |= event.status == EventStatus::Retrying;
            entry.2 = event;
        }
        for address in order {
            let (kind, retried, last) = calls[address];
            *summary.by_kind.entry(kind.as_str()).or_default() += 1;
            match kind {
                ActorKind::Group => {
                    summary.groups += 1;
                    continue;
                }
                ActorKind::Task => {
                    summary.tasks += 1;
                    continue;
                }
                ActorKind::Tool | ActorKind::Llm | ActorKind::Agent | ActorKind::System => {
                    summary.calls += 1;
                }
            }
            *summary.outcomes.entry(last.status.as_str()).or_default() += 1;
            if retried {
                summary.retries.calls_retried += 1;
                if last.status == EventStatus::Completed {
                    summary.retries.succeeded_after_retry += 1;
                }
            }
            // Every allowed attempt failed (not: one attempt failed with an error that is not
            // retried).
            let exhausted = last.status == EventStatus::Failed
                && last.is_final
                && last.retry.max_attempts > 1
                && last.retry.attempt.saturating_add(1) >= last.retry.max_attempts;
            if exhausted {
                summary.retries.failed_after_retries += 1;
            }
        }
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            summary.elapsed = last
                .timestamp
                .duration_since(first.timestamp)
                .unwrap_or_default();
        }
        summary
    }

    /// The summary as text, with Unicode or ASCII rules, with or without the elapsed time.
    pub fn render(&self, ascii: bool, time: bool) -> String {
        let rule = if ascii { "-" } else { "─" };
        let dot = if ascii { "," } else { " ·" };
        let mut text = String::new();
        let _ = writeln!(text, "{} Summary {}", rule.repeat(2), rule.repeat(30));
        let _ = write!(text, "calls: {}   ", self.calls);
        if self.groups > 0 || self.tasks > 0 {
            let _ = write!(
                text,
                "groups: {} ({} task{})   ",
                self.groups,
                self.tasks,
                if self.tasks == 1 { "" } else { "s" }
            );
        }
        let _ = writeln!(text, "records: {}", self.events);
        let join = |map: &BTreeMap<&'static str, usize>| {
            map.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(&format!("{dot} "))
        };
        if !self.outcomes.is_empty() {
            let _ = writeln!(text, "outcomes: {}", join(&self.outcomes));
        }
        if !self.by_kind.is_empty() {
            let _ = writeln!(text, "by kind: {}", join(&self.by_kind));
        }
        let _ = writeln!(text, "by status: {}", join(&self.by_status));
        if time {
            let _ = writeln!(text, "time: {}", Human(self.elapsed));
        }
        let r = &self.retries;
        let _ = writeln!(
            text,
            "retries: {} call{} retried, {} retr{}, {} succeeded after retrying, {} failed after exhausting retries",
            r.calls_retried,
            if r.calls_retried == 1 { "" } else { "s" },
            r.retry_attempts,
            if r.retry_attempts == 1 { "y" } else { "ies" },
            r.succeeded_after_retry,
            r.failed_after_retries
        );
        for signal in &self.interrupts {
            let _ = write!(text, "interrupted: {}", signal.reason);
            if let Some(message) = &signal.message {
                let _ = write!(text, " ({})", super::escape::escape_control(message));
            }
            if let Some(who) = &signal.triggered_by {
                let _ = write!(text, " by {who}");
            }
            text.push('\n');
        }
        text
    }
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(false, true))
    }
}

impl ExecutionState {
    /// The summary of the run so far.
    pub fn summary(&self) -> RunSummary {
        RunSummary::from_events(&self.history().events())
    }
}
