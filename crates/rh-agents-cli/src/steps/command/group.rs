//! The one owner of a command's process group.
//!
//! Invariant: each process group gets SIGTERM at most once and SIGKILL at most once, and only
//! this type sends them. The attempt that spawned the child and the drop of that attempt (the
//! runtime drops a parallel step's tasks at once after an interrupt, possibly while the attempt
//! is already waiting out the grace it gave) both go through the same [`ProcessGroup`], whose
//! state remembers what was sent: a second stop request only waits for the deadline of the
//! first. The child itself is reaped once, by whoever holds its `tokio::process::Child`: the
//! attempt's `wait()`, or tokio's orphan reaper when the attempt is dropped.

use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// What has been done to the group so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Running, nothing sent.
    Running,
    /// SIGTERM sent; SIGKILL due at the deadline unless the group is gone by then.
    Terminating { deadline: Instant },
    /// Nothing more to do: killed, or left alone because the child exited by itself.
    Done,
}

/// A child's process group and what has been sent to it.
///
/// Dropped while running: after an interrupt it gets SIGTERM, then SIGKILL after the grace
/// (watched by a thread that [`wait_for_stragglers`] joins); otherwise (an attempt timeout, a
/// fail-fast group) SIGKILL at once. Dropped while terminating: the SIGKILL of the grace
/// already given is still owed, so the watcher takes over the same deadline.
pub(super) struct ProcessGroup {
    pgid: Option<Pid>,
    grace: Duration,
    stage: Stage,
    /// Whether the run was interrupted (the call's `Ctx::is_interrupted`).
    interrupted: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("pgid", &self.pgid)
            .field("grace", &self.grace)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl ProcessGroup {
    /// Owns the group led by the child `pid` (`None`: the child is already gone);
    /// `interrupted` tells whether the run was interrupted.
    pub(super) fn new(
        pid: Option<u32>,
        grace: Duration,
        interrupted: impl Fn() -> bool + Send + Sync + 'static,
    ) -> ProcessGroup {
        ProcessGroup {
            pgid: pid.and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw),
            grace,
            stage: Stage::Running,
            interrupted: Box::new(interrupted),
        }
    }

    /// Asks the group to stop: SIGTERM (the first time only) and SIGCONT; returns when the
    /// grace ends.
    pub(super) fn terminate(&mut self) -> Instant {
        match self.stage {
            Stage::Terminating { deadline } => deadline,
            Stage::Done => Instant::now(),
            Stage::Running => {
                let deadline = Instant::now() + self.grace;
                self.send(Signal::SIGTERM);
                // A process stopped (e.g. by SIGTTIN, reading the terminal from the
                // background) would keep the SIGTERM pending until the SIGKILL: wake it.
                self.send(Signal::SIGCONT);
                self.stage = Stage::Terminating { deadline };
                deadline
            }
        }
    }

    /// SIGKILL (once): the grace is over.
    pub(super) fn kill(&mut self) {
        if self.stage != Stage::Done {
            self.send(Signal::SIGKILL);
            self.stage = Stage::Done;
        }
    }

    /// The child exited by itself: what it left running in the background is its business.
    pub(super) fn release(&mut self) {
        if self.stage == Stage::Running {
            self.stage = Stage::Done;
        }
    }

    fn send(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // The group may be gone already (ESRCH): nothing left to stop.
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else {
            return;
        };
        match self.stage {
            Stage::Done => {}
            Stage::Running if !(self.interrupted)() => self.kill(),
            Stage::Running | Stage::Terminating { .. } => {
                let deadline = self.terminate();
                self.stage = Stage::Done;
                kill_after(pgid, deadline);
            }
        }
    }
}

/// Watchers of groups that were given SIGTERM by a dropped attempt.
static WATCHERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Kills the group at `deadline` unless it is gone by then, from a thread (the attempt is
/// gone, and the runtime may be shutting down), then waits (at most [`KILL_WAIT`] more) until
/// the killed processes are gone, so that nothing of the group outlives the command.
fn kill_after(pgid: Pid, deadline: Instant) {
    let watcher = std::thread::spawn(move || {
        let mut killed = false;
        // Signal "none" only asks whether the group still exists. No event says when the last
        // process of a group exits (we are not the parent of all of them), hence the poll.
        while killpg(pgid, None::<Signal>).is_ok() {
            let now = Instant::now();
            if !killed && now >= deadline {
                let _ = killpg(pgid, Signal::SIGKILL);
                killed = true;
            } else if now >= deadline + KILL_WAIT {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut watchers = WATCHERS.lock().unwrap_or_else(PoisonError::into_inner);
    watchers.retain(|w| !w.is_finished());
    watchers.push(watcher);
}

/// How long a watcher waits for a group it killed to be gone (a process in uninterruptible
/// sleep dies only when it wakes).
const KILL_WAIT: Duration = Duration::from_secs(1);

/// Waits until every command stopped by an interrupt has exited or been killed (at most
/// the grace): called before the process exits, which would otherwise leave a command that
/// ignores SIGTERM running.
pub fn wait_for_stragglers() {
    let watchers: Vec<_> =
        std::mem::take(&mut *WATCHERS.lock().unwrap_or_else(PoisonError::into_inner));
    for watcher in watchers {
        let _ = watcher.join();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::{Child, ChildStdout, Command, Stdio};

    use rh_agents::{ExecutionState, InterruptReason, InterruptSignal};

    use super::*;

    /// A shell leading its own group that prints `ready` once its TERM trap (which prints
    /// `term`) is set, then loops until killed.
    fn trapping_child() -> (Child, BufReader<ChildStdout>) {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "trap 'echo term' TERM; echo ready; while :; do sleep 0.01; done",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        (child, out)
    }

    /// The rest of the child's output, once the group is gone (its pipe closes).
    fn rest(mut child: Child, out: BufReader<ChildStdout>) -> Vec<String> {
        let lines = out.lines().map_while(Result::ok).collect();
        child.wait().unwrap();
        lines
    }

    #[test]
    fn a_group_dropped_in_its_grace_gets_no_second_sigterm_and_is_killed_at_the_deadline() {
        let state = ExecutionState::new();
        state.request_interrupt(InterruptSignal::new(InterruptReason::UserCancelled));
        let (child, mut out) = trapping_child();
        let mut group =
            ProcessGroup::new(Some(child.id()), Duration::from_millis(200), move || {
                state.is_interrupted()
            });
        group.terminate();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "term\n");
        // Asked again, then dropped (as the runtime drops an interrupted parallel task):
        // nothing more is sent until the SIGKILL at the same deadline.
        group.terminate();
        drop(group);
        assert!(rest(child, out).is_empty());
        wait_for_stragglers();
    }

    #[test]
    fn a_group_dropped_without_an_interrupt_is_killed_at_once() {
        let (child, out) = trapping_child();
        drop(ProcessGroup::new(
            Some(child.id()),
            Duration::from_secs(60),
            || false,
        ));
        assert!(rest(child, out).is_empty(), "no SIGTERM first");
    }

    #[test]
    fn a_child_that_exited_by_itself_is_left_alone() {
        let (child, out) = trapping_child();
        let mut group = ProcessGroup::new(Some(child.id()), Duration::from_secs(60), || false);
        group.release();
        drop(group);
        // Still running, trap and all: stop it here.
        let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let mut out = out;
        killpg(pgid, Signal::SIGTERM).unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "term\n");
        killpg(pgid, Signal::SIGKILL).unwrap();
        assert!(rest(child, out).is_empty());
    }
}
