//! Progress for long runs: how many calls are done, failed and running, and for how long —
//! and, while a parallel group runs, how many of its tasks (completed/failed/total).
//!
//! Two forms: plain lines, at most one per interval, for logs and pipes (no dependency); and,
//! with the `progress` feature, a live line on a terminal drawn by `indicatif`.

use std::io::Write;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::actor::ActorKind;
use crate::bus::Subscriber;
use crate::event::{Event, EventStatus};
use crate::serde_time::Human;
use crate::BoxError;

/// Call counts of a run, as progress sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls that started.
    pub started: u64,
    /// Calls that completed.
    pub completed: u64,
    /// Calls that failed for good.
    pub failed: u64,
    /// Calls stopped by an interrupt.
    pub interrupted: u64,
}

impl Counts {
    /// Calls that ended, however.
    pub fn done(&self) -> u64 {
        self.completed + self.failed + self.interrupted
    }

    /// Calls still running.
    pub fn running(&self) -> u64 {
        self.started.saturating_sub(self.done())
    }

    /// Updates the counts with one record; `true` if a call started or ended.
    fn apply(&mut self, event: &Event) -> bool {
        // Calls of actors only: groups and tasks are followed on their own (see `Inner`).
        if matches!(
            event.kind,
            ActorKind::System | ActorKind::Group | ActorKind::Task
        ) {
            return false;
        }
        self.apply_step(event)
    }

    /// Updates the counts with one record of a call (or task) that starts or ends.
    fn apply_step(&mut self, event: &Event) -> bool {
        match event.status {
            EventStatus::Started if !event.retry.is_retry => self.started += 1,
            // A FAILED followed by a retry is not the end of the call: only final records count.
            EventStatus::Completed | EventStatus::Recovered if event.is_final => {
                self.completed += 1;
            }
            EventStatus::Failed if event.is_final => self.failed += 1,
            EventStatus::Interrupted if event.is_final => self.interrupted += 1,
            _ => return false,
        }
        true
    }

    /// The progress text: `3/10 done (30%) · 1 failed · 2 running · 1.2s`.
    pub fn describe(&self, total: Option<u64>, elapsed: Option<Duration>) -> String {
        let done = self.done();
        let mut text = match total {
            Some(total) if total > 0 => {
                format!("{done}/{total} done ({}%)", done * 100 / total)
            }
            _ => format!("{done} done"),
        };
        if self.failed > 0 {
            text.push_str(&format!(" · {} failed", self.failed));
        }
        if self.interrupted > 0 {
            text.push_str(&format!(" · {} interrupted", self.interrupted));
        }
        text.push_str(&format!(" · {} running", self.running()));
        if let Some(elapsed) = elapsed {
            text.push_str(&format!(" · {}", Human(elapsed)));
        }
        text
    }
}

enum Sink<W> {
    Lines {
        out: W,
        interval: Duration,
        last: Option<Instant>,
        /// The last line written: the same line twice in a row says nothing new.
        last_text: String,
    },
    #[cfg(feature = "progress")]
    Live(indicatif::ProgressBar),
}

struct Inner<W> {
    counts: Counts,
    /// Parallel groups running now, outermost first, with their tasks' counts.
    groups: Vec<GroupProgress>,
    sink: Sink<W>,
}

/// The tasks of one running parallel group.
struct GroupProgress {
    id: String,
    name: String,
    total: u64,
    tasks: Counts,
}

impl GroupProgress {
    fn line(&self, elapsed: Option<Duration>) -> String {
        format!(
            "{}: {}",
            self.name,
            self.tasks.describe(Some(self.total), elapsed)
        )
    }
}

impl<W> Inner<W> {
    /// Follows parallel groups; the line to show if a group's task counts changed.
    fn apply_group(&mut self, event: &Event, elapsed: Option<Duration>) -> Option<String> {
        match event.kind {
            ActorKind::Group if event.status == EventStatus::Started => {
                let total = event
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("total"))
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                let group = GroupProgress {
                    id: event.address.to_string(),
                    name: event.actor.to_string(),
                    total,
                    tasks: Counts::default(),
                };
                let line = group.line(elapsed);
                self.groups.push(group);
                Some(line)
            }
            ActorKind::Group if event.is_final => {
                let at = self
                    .groups
                    .iter()
                    .position(|g| g.id == event.address.as_str())?;
                let group = self.groups.remove(at);
                Some(group.line(elapsed))
            }
            ActorKind::Task => {
                let id = &event.group.as_ref()?.id;
                let group = self.groups.iter_mut().find(|g| g.id == **id)?;
                group.tasks.apply_step(event).then(|| group.line(elapsed))
            }
            _ => None,
        }
    }
}

/// A subscriber that reports progress: plain lines at most once per interval (and whenever
/// the last running call ends), or a live terminal line.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::observe::progress::Progress;
///
/// // One line per second at most, with 10 calls expected.
/// let progress = Progress::lines(Vec::new(), Duration::from_secs(1)).total(10);
/// # drop(progress);
/// ```
pub struct Progress<W> {
    total: Option<u64>,
    elapsed: bool,
    started: Instant,
    inner: Mutex<Inner<W>>,
}

impl<W> std::fmt::Debug for Progress<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("total", &self.total)
            .field("counts", &self.inner.lock().counts)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> Progress<W> {
    /// Plain progress lines to `out`, at most one per `interval` (zero: one per call that
    /// starts or ends), and one whenever no call is left running.
    pub fn lines(out: W, interval: Duration) -> Self {
        Self::with_sink(Sink::Lines {
            out,
            interval,
            last: None,
            last_text: String::new(),
        })
    }

    fn with_sink(sink: Sink<W>) -> Self {
        Self {
            total: None,
            elapsed: true,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                counts: Counts::default(),
                groups: Vec::new(),
                sink,
            }),
        }
    }

    /// How many calls the run will make, when known (for a percentage).
    #[must_use]
    pub fn total(mut self, calls: u64) -> Self {
        self.total = Some(calls);
        #[cfg(feature = "progress")]
        if let Sink::Live(bar) = &self.inner.get_mut().sink {
            bar.set_length(calls);
        }
        self
    }

    /// Whether lines show the elapsed time (default on; off gives output that does not vary
    /// between runs).
    #[must_use]
    pub fn elapsed(mut self, on: bool) -> Self {
        self.elapsed = on;
        self
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.inner.lock().counts
    }

    /// Runs `f` with the writer of a plain-lines progress (e.g. to read a `Vec<u8>`).
    pub fn with_writer<T>(&self, f: impl FnOnce(Option<&mut W>) -> T) -> T {
        match &mut self.inner.lock().sink {
            Sink::Lines { out, .. } => f(Some(out)),
            #[cfg(feature = "progress")]
            Sink::Live(_) => f(None),
        }
    }
}

#[cfg(feature = "progress")]
impl Progress<std::io::Sink> {
    /// A live progress line on standard error, redrawn in place (at most 20 times a second)
    /// when standard error is a terminal; hidden otherwise.
    pub fn live() -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        Self::with_sink(Sink::Live(bar))
    }

    /// Clears the live line (call when the run is over).
    pub fn finish(&self) {
        if let Sink::Live(bar) = &self.inner.lock().sink {
            bar.finish_and_clear();
        }
    }
}

impl<W: Write + Send + 'static> Subscriber for Progress<W> {
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        let mut inner = self.inner.lock();
        let elapsed = self.elapsed.then(|| self.started.elapsed());
        let in_group = !inner.groups.is_empty();
        let changed = inner.counts.apply(event);
        let group_line = inner.apply_group(event, elapsed);
        let counts = inner.counts;
        // While a parallel group runs, its tasks are what progress is about: show the group's
        // line (done/failed/total of its tasks) rather than every call inside it.
        let (text, last_one) = match group_line {
            Some(line) => (line, event.kind == ActorKind::Group && event.is_final),
            None if changed && !in_group => {
                (counts.describe(self.total, elapsed), counts.running() == 0)
            }
            None => return Ok(()),
        };
        match &mut inner.sink {
            Sink::Lines {
                out,
                interval,
                last,
                last_text,
            } => {
                let now = Instant::now();
                let due = due(*last, now, *interval) || last_one || counts.running() == 0;
                if due && *last_text != text {
                    *last = Some(now);
                    writeln!(out, "progress: {text}")?;
                    out.flush()?;
                    *last_text = text;
                }
            }
            #[cfg(feature = "progress")]
            Sink::Live(bar) => {
                bar.set_position(counts.done());
                bar.set_message(text);
                bar.tick();
            }
        }
        Ok(())
    }
}

/// Whether a line is due: none written yet, or the interval has passed since the last.
fn due(last: Option<Instant>, now: Instant, interval: Duration) -> bool {
    match last {
        None => true,
        Some(at) => now.saturating_duration_since(at) >= interval,
    }
}
