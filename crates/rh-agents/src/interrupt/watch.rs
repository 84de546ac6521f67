//! The watcher: one background task per state that does all external interrupt checking.
//!
//! It polls the registered [checkers](super::InterruptChecker) every `check_interval` and the
//! run's mailbox in its store (requests left by `StateStore::request_interrupt`, from this
//! process or another), and calls `request_interrupt` when one of them says stop. Waits never
//! poll anything themselves: they select only on the interrupt token, so a slow checker or a
//! busy store delays no wait and no parallel group's scheduling.
//!
//! The mailbox is watched cheaply: a store that keeps a change counter
//! ([`StateStore::mailbox_version`]; SQLite's `PRAGMA data_version`) is asked for it every
//! `mailbox_interval` (a few milliseconds), and the request row is read only when the counter
//! moved. A store without one has its row read every `check_interval`. Store calls run on
//! the blocking pool, one at a time: a store waiting on a lock never holds up an async thread.
//!
//! A checkpoint that must consult the checkers waits for the round in progress, or asks the
//! watcher for one and waits for it: concurrent checkpoints share a round, and a checkpoint
//! costs at most one check timeout however slow a checker is. The periodic rounds are timed
//! from the end of the last round.
//!
//! Invariant: the task holds only a `Weak` reference to the state between rounds. It ends when
//! the state is dropped (the `stop` token is cancelled by `Watcher`'s drop), when the run was
//! finished, or once the run is interrupted (there is nothing left to watch for).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::checker::InterruptChecker;
use super::signal::InterruptSignal;
use crate::event::Severity;
use crate::panic::{catch, CatchUnwind};
use crate::state::{ExecutionState, StateInner};
use crate::store::{StateStore, StoreError};
use crate::BoxError;

/// A run's mailbox: the store and the run's id in it.
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) id: Arc<str>,
}

impl Mailbox {
    pub(crate) fn new(store: &Arc<dyn StateStore>, id: &str) -> Self {
        Self {
            store: Arc::clone(store),
            id: Arc::from(id),
        }
    }
}

/// The parts of the watcher the state keeps: how to reach the task and how to stop it.
#[derive(Debug)]
pub(crate) struct Watcher {
    pub(crate) mailbox: Option<Mailbox>,
    pub(crate) mailbox_interval: Duration,
    /// Cancelled when the state is dropped or the run finished: the task ends.
    pub(crate) stop: CancellationToken,
    /// Wakes the task for a round out of turn (a checkpoint asked).
    poke: Arc<Notify>,
    /// How many rounds have begun.
    begun: Arc<AtomicU64>,
    /// How many rounds have finished; `None` until the task runs. The task owns the sender,
    /// so a waiter learns that the task has ended (it reads the sender dropped).
    finished: parking_lot::Mutex<Option<watch::Receiver<u64>>>,
}

impl Watcher {
    pub(crate) fn new(mailbox: Option<Mailbox>, mailbox_interval: Duration) -> Self {
        Self {
            mailbox,
            mailbox_interval,
            stop: CancellationToken::new(),
            poke: Arc::new(Notify::new()),
            begun: Arc::new(AtomicU64::new(0)),
            finished: parking_lot::Mutex::new(None),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ExecutionState {
    /// Starts the watcher if there is something to watch (a mailbox or a checker), it has not
    /// been started, and a Tokio runtime is at hand (otherwise the next checkpoint or wait
    /// tries again). Cheap when it is running.
    pub(crate) fn start_watcher(&self) {
        let interrupts = &self.inner.interrupts;
        let watcher = &interrupts.watcher;
        if watcher.mailbox.is_none() && !interrupts.has_checkers() {
            return;
        }
        let mut finished = watcher.finished.lock();
        if watcher.stop.is_cancelled() || interrupts.current().is_some() {
            return;
        }
        // Running already; a task that ended without being stopped went with the runtime it
        // ran on (a state used on one runtime, then another): it is started again here.
        if finished.as_ref().is_some_and(|rx| rx.has_changed().is_ok()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Counting on from the rounds of an earlier task, so no round seems under way.
        let (tx, rx) = watch::channel(watcher.begun.load(Ordering::Acquire));
        *finished = Some(rx);
        let task = Task {
            state: Arc::downgrade(&self.inner),
            stop: watcher.stop.clone(),
            token: interrupts.token.clone(),
            poke: Arc::clone(&watcher.poke),
            begun: Arc::clone(&watcher.begun),
            finished: tx,
            mailbox: watcher.mailbox.clone().map(MailboxState::new),
            check_period: interrupts.poll_period(),
            mailbox_period: watcher.mailbox_interval.max(Duration::from_millis(1)),
        };
        runtime.spawn(task.run());
    }

    /// Stops the watcher: the run is over, nothing more is watched for.
    pub(crate) fn stop_watcher(&self) {
        self.inner.interrupts.watcher.stop.cancel();
    }

    /// Waits for the watcher's round in progress, or asks for one and waits for it (or for
    /// the interrupt). Returns at once when no watcher runs.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a round asked for and not waited for is simply done.
    pub(crate) async fn fresh_round(&self) {
        self.start_watcher();
        let watcher = &self.inner.interrupts.watcher;
        let Some(mut finished) = watcher.finished.lock().clone() else {
            return;
        };
        let begun = watcher.begun.load(Ordering::Acquire);
        let target = if begun > *finished.borrow() {
            // A round is under way: its answer is recent enough.
            begun
        } else {
            watcher.poke.notify_one();
            begun + 1
        };
        tokio::select! {
            biased;
            () = self.inner.interrupts.token.cancelled() => {}
            // An error means the task ended: nobody will check, so there is nothing to wait for.
            _ = finished.wait_for(|done| *done >= target) => {}
        }
    }
}

/// The background task.
struct Task {
    state: Weak<StateInner>,
    stop: CancellationToken,
    token: CancellationToken,
    poke: Arc<Notify>,
    begun: Arc<AtomicU64>,
    finished: watch::Sender<u64>,
    mailbox: Option<MailboxState>,
    check_period: Duration,
    mailbox_period: Duration,
}

impl Task {
    async fn run(mut self) {
        let start = tokio::time::Instant::now();
        let mut checks = tokio::time::interval_at(start + self.check_period, self.check_period);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The mailbox is read at once: a request may be waiting already.
        let mut mailbox_ticks = tokio::time::interval(self.mailbox_period);
        mailbox_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let has_checkers = match self.state.upgrade() {
                Some(inner) => inner.interrupts.has_checkers(),
                None => return,
            };
            let counted = self
                .mailbox
                .as_ref()
                .is_some_and(|m| m.counted != Some(false));
            let uncounted = self
                .mailbox
                .as_ref()
                .is_some_and(|m| m.counted == Some(false));
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                () = self.token.cancelled() => return,
                () = self.poke.notified() => {
                    if !self.round(true, true).await {
                        return;
                    }
                    checks.reset();
                }
                _ = checks.tick(), if has_checkers || uncounted => {
                    if !self.round(has_checkers, uncounted).await {
                        return;
                    }
                    checks.reset();
                }
                _ = mailbox_ticks.tick(), if counted => {
                    if !self.round(false, true).await {
                        return;
                    }
                }
            }
        }
    }

    /// One round: the checkers (if asked) and the mailbox (if asked and there is one).
    /// `false` when the state is gone or interrupted: the task ends.
    ///
    /// No strong reference to the state is held across an await: dropping the state (which
    /// lets go of its store's writer lock) is never delayed by a check in progress.
    async fn round(&mut self, checkers: bool, mailbox: bool) -> bool {
        if !checkers {
            return self.checks(false, mailbox).await;
        }
        // Rounds that consult the checkers are numbered, for the checkpoints that wait on them.
        let number = self.begun.fetch_add(1, Ordering::AcqRel) + 1;
        let go_on = self.checks(true, mailbox).await;
        self.finished.send_replace(number);
        go_on
    }

    async fn checks(&mut self, checkers: bool, mailbox: bool) -> bool {
        if checkers {
            let Some((list, limit)) = self.with_state(|state| {
                let interrupts = &state.inner.interrupts;
                (interrupts.checkers(), interrupts.check_timeout)
            }) else {
                return false;
            };
            for checker in list.iter() {
                let outcome = tokio::select! {
                    biased;
                    () = self.token.cancelled() => return false,
                    () = self.stop.cancelled() => return false,
                    outcome = consult(checker, limit) => outcome,
                };
                if !self.act(outcome, "interrupt checker failed") {
                    return false;
                }
            }
        }
        if let (true, Some(watched)) = (mailbox, self.mailbox.as_mut()) {
            let answer = tokio::select! {
                biased;
                () = self.token.cancelled() => return false,
                () = self.stop.cancelled() => return false,
                answer = watched.check() => answer.map_err(BoxError::from),
            };
            if !self.act(answer, "the run's interrupt requests could not be read") {
                return false;
            }
        }
        true
    }

    /// Runs `f` on the state, if it is still there.
    fn with_state<T>(&self, f: impl FnOnce(&ExecutionState) -> T) -> Option<T> {
        let inner = self.state.upgrade()?;
        Some(f(&ExecutionState { inner }))
    }

    /// Acts on one answer: a signal raises the interrupt; a failure is reported as a warning
    /// log record (at most one per `WARNING_EVERY`) and otherwise ignored. `false` when the
    /// task should end (the state is gone or interrupted).
    fn act(&self, answer: Result<Option<InterruptSignal>, BoxError>, failed: &str) -> bool {
        self.with_state(|state| {
            match answer {
                Ok(Some(signal)) => {
                    state.request_interrupt(signal);
                }
                Ok(None) => {}
                Err(e) => {
                    if state.inner.interrupts.should_warn() {
                        let cause = crate::error::describe(&*e);
                        state.log(Severity::Warning, format!("{failed}: {cause}"));
                    }
                }
            }
            // A checker may also have requested the interrupt itself.
            !state.is_interrupted()
        })
        .unwrap_or(false)
    }
}

/// Consults one checker, within `limit`. A checker that panics or does not answer in time is
/// a failure.
async fn consult(
    checker: &InterruptChecker,
    limit: Duration,
) -> Result<Option<InterruptSignal>, BoxError> {
    let started = match catch(|| checker.start()) {
        Ok(fut) => fut,
        Err(p) => return Err(BoxError::from(p)),
    };
    match tokio::time::timeout(limit, CatchUnwind(started)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(p)) => Err(BoxError::from(p)),
        Err(_) => Err(BoxError::from(format!(
            "no answer within {}",
            crate::serde_time::Human(limit)
        ))),
    }
}

/// What the task knows of the mailbox: the counter it last saw.
struct MailboxState {
    mailbox: Mailbox,
    /// Whether the store keeps a change counter (`None` until it was asked).
    counted: Option<bool>,
    /// The counter when the request row was last read.
    seen: Option<u64>,
}

impl MailboxState {
    fn new(mailbox: Mailbox) -> Self {
        Self {
            mailbox,
            counted: None,
            seen: None,
        }
    }

    /// Reads the counter and, when it moved (or there is none), the request.
    async fn check(&mut self) -> Result<Option<InterruptSignal>, StoreError> {
        let store = Arc::clone(&self.mailbox.store);
        let version = blocking(move || store.mailbox_version()).await?;
        self.counted = Some(version.is_some());
        if version.is_some() && version == self.seen {
            return Ok(None);
        }
        let store = Arc::clone(&self.mailbox.store);
        let id = Arc::clone(&self.mailbox.id);
        let pending = blocking(move || store.pending_interrupt(&id)).await?;
        // Only a successful read counts as seen: a failed one is read again next time.
        self.seen = version;
        Ok(pending)
    }
}

/// Runs a store call on the blocking pool (it may wait on a lock for seconds).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend {
            context: "checking the run's mailbox".into(),
            source: Box::new(e),
        })?
}
