//! The execution state: one run's history, bus, storage, interrupt handle and retry
//! configuration. Cheap to clone (an `Arc` inside) and safe to share between tasks.

mod builder;
mod persist;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

pub use builder::{
    ExecutionStateBuilder, DEFAULT_BUS_CAPACITY, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT,
    DEFAULT_DETAIL_LIMIT, DEFAULT_GRACE_PERIOD, DEFAULT_MAILBOX_INTERVAL, DEFAULT_WRITER_WAIT,
};

use crate::actor::{Actor, ActorKind};
use crate::address::{Address, Node};
use crate::bus::{EventStream, Subscriber};
use crate::call::Call;
use crate::error::Error;
use crate::event::{Event, EventStatus, GroupRef, Severity};
use crate::history::{History, Journal};
use crate::interrupt::wait::Interrupts;
use crate::interrupt::{InterruptChecker, InterruptReason, InterruptSignal};
use crate::panic::CatchUnwind;
use crate::recording::log::on_consumer_thread;
use crate::recording::reader::{Next, Reader};
use crate::recording::writer::Writer;
use crate::retry::{RandomSource, RetryConfig};
use crate::storage::Storage;
use crate::store::durable::Durable;
use crate::store::replay::Replay;

/// Settings that shape how events are recorded and interrupts are handled.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) grace_period: Duration,
    pub(crate) detail_limit: usize,
    pub(crate) record_io: bool,
}

#[derive(Debug)]
pub(crate) struct StateInner {
    pub(crate) id: String,
    pub(crate) journal: Journal,
    pub(crate) storage: Storage,
    pub(crate) retry: RetryConfig,
    pub(crate) interrupts: Interrupts,
    pub(crate) settings: Settings,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) root: Node,
    /// Task sets of groups dropped before they finished (aborted, not yet gone): the group
    /// that dropped them waits for them before it returns (see `parallel::group`).
    pub(crate) orphans: crate::parallel::Orphans,
    /// The run's header, status and artifacts.
    pub(crate) run: persist::RunRecord,
    /// The store a durable state writes to as it goes.
    pub(crate) durable: Option<Arc<Durable>>,
    /// What a resumed state replays.
    pub(crate) replay: Option<Replay>,
}

impl Drop for StateInner {
    /// Writes what is left to the store and lets go of the run, then ends the readers and
    /// gives the sync subscribers that keep up the last records (boundedly).
    fn drop(&mut self) {
        let journal = &self.journal;
        if let Some(writer) = &journal.writer {
            writer.close(&journal.log);
            writer.durable.release();
        }
        journal.log.close();
        if !on_consumer_thread() {
            journal.delivery.wait(
                &journal.log,
                journal.log.len(),
                &self.interrupts.token,
                None,
                true,
            );
        }
    }
}

/// One run of a pipeline: where actors are called and everything they do is recorded.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::{Actor, ExecutionState, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let state = ExecutionState::builder()
///     .default_retry(RetryPolicy::constant(Duration::ZERO).max_attempts(3).build()?)
///     .build();
/// let double = Actor::tool("double", |x: u32, _ctx| async move { Ok::<_, std::io::Error>(x * 2) });
/// assert_eq!(state.call(&double, 21).await?, 42);
/// assert_eq!(state.history().len(), 2); // started, completed
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ExecutionState {
    pub(crate) inner: Arc<StateInner>,
}

/// A summary, never the history: a state can hold thousands of records.
impl std::fmt::Debug for ExecutionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionState")
            .field("id", &self.inner.id)
            .field("records", &self.history().len())
            .field("status", &self.status())
            .field("interrupted", &self.is_interrupted())
            .field("durable", &self.inner.durable.is_some())
            .field("resumed", &self.inner.replay.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ExecutionState {
    fn default() -> Self {
        Self::new()
    }
}

impl ExecutionState {
    /// A state with default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a configured state.
    pub fn builder() -> ExecutionStateBuilder {
        ExecutionStateBuilder::default()
    }

    /// The state's unique id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Calls an actor at the top level. Await the returned [`Call`]; set a per-call retry
    /// policy, tag or metadata on it first if needed.
    pub fn call<'a, I, O>(&'a self, actor: &'a Actor<I, O>, input: I) -> Call<'a, I, O> {
        Call::new(self, &self.inner.root, actor, input)
    }

    /// The history of this run.
    pub fn history(&self) -> History<'_> {
        History::new(&self.inner.journal)
    }

    /// The key-value store.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The retry configuration (levels 3 and 4).
    pub fn retry_config(&self) -> &RetryConfig {
        &self.inner.retry
    }

    /// Adds a sync subscriber; it sees events recorded from now on, on a thread of its own
    /// (see [`bus`](crate::Subscriber) for the delivery policy).
    pub fn subscribe(&self, subscriber: impl Subscriber) {
        self.inner.journal.subscribe(Arc::new(subscriber));
    }

    /// Adds an async subscriber, run on its own task: `f` is awaited for each event in order.
    /// A callback that fails or panics is counted and logged, never propagated, and delivery
    /// goes on. The task ends when the state is dropped (or when the returned handle is
    /// aborted).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Runtime`](crate::ErrorKind::Runtime) when called outside a Tokio runtime.
    pub fn subscribe_async<F, Fut, E>(&self, f: F) -> Result<tokio::task::JoinHandle<()>, Error>
    where
        F: Fn(Arc<Event>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::runtime("subscribe_async needs a Tokio runtime: call it from async code")
        })?;
        let log = &self.inner.journal.log;
        let mut reader = Reader::new(Arc::clone(log), log.len(), false);
        let failures = self.inner.journal.delivery.failure_counter();
        Ok(handle.spawn(async move {
            while let Some(next) = std::future::poll_fn(|cx| reader.poll(cx)).await {
                let Next::Record(entry) = next else {
                    continue;
                };
                // A panicking callback is a failure like an error: counted, logged, and
                // delivery goes on.
                let outcome = match crate::panic::catch(|| f(entry.event)) {
                    Ok(fut) => CatchUnwind(Box::pin(fut))
                        .await
                        .map_err(|panic| panic.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string())),
                    Err(panic) => Err(panic.to_string()),
                };
                if let Err(failure) = outcome {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(%failure, "async event subscriber failed");
                }
            }
        }))
    }

    /// A stream of the events recorded from now on. It ends once the run is interrupted and
    /// every running call has recorded how it ended (see [`EventStream`]).
    pub fn stream(&self) -> EventStream {
        let log = &self.inner.journal.log;
        EventStream::new(Reader::new(Arc::clone(log), log.len(), false))
    }

    /// A stream of the records from number `seq` on (the record ids: `0` is the first), then
    /// of the live ones as they are made: nothing missed, nothing twice. What a client that
    /// reconnects needs (an SSE client's `Last-Event-ID` + 1). The records before the stream
    /// was made are all given, however many; after them, the stream falls behind and skips
    /// like any other (see [`EventStream`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use rh_agents::{ExecutionState, Severity};
    /// use tokio_stream::StreamExt;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let state = ExecutionState::new();
    /// state.log(Severity::Info, "zero");
    /// state.log(Severity::Info, "one");
    /// let mut stream = state.subscribe_from(1);
    /// state.log(Severity::Info, "two");
    /// assert_eq!(stream.next().await.unwrap().id, 1);
    /// assert_eq!(stream.next().await.unwrap().id, 2);
    /// # }
    /// ```
    pub fn subscribe_from(&self, seq: u64) -> EventStream {
        EventStream::new(Reader::new(Arc::clone(&self.inner.journal.log), seq, false))
    }

    /// How many times a subscriber failed (returned an error or panicked).
    pub fn subscriber_failures(&self) -> u64 {
        self.inner.journal.delivery.failures()
    }

    /// Asks the run to stop. Every wait (backoff, precondition, running handler) wakes
    /// at once. The first signal wins: it is published once as an interrupt record
    /// (kind `system`, status `interrupted`) and later requests return `false`.
    ///
    /// The run stops before this returns; the return itself waits until a durable state's
    /// store has the notice and the status `interrupted`, and the sync subscribers that keep
    /// up have seen the notice — boundedly: a store or subscriber stuck on one call for 50 ms
    /// is not waited for, and nothing for longer than a second.
    pub fn request_interrupt(&self, signal: impl Into<InterruptSignal>) -> bool {
        let signal = signal.into();
        let interrupts = &self.inner.interrupts;
        if interrupts.current().is_some() {
            return false;
        }
        // Built before the critical section, which only decides, numbers and signals.
        let mut event = Event::new(
            Address::root(),
            Arc::from("interrupt"),
            ActorKind::System,
            EventStatus::Interrupted,
        );
        event.message = Some(Arc::from(signal.to_string()));
        event.interrupt = Some(Box::new(signal.clone()));
        let journal = &self.inner.journal;
        // The signal is set, the notice numbered and the token cancelled in one critical
        // section: a call that wakes and records its INTERRUPTED is numbered after the notice.
        let Some(notice) = journal.log.append_with(
            event,
            || interrupts.set(signal),
            || interrupts.token.cancel(),
        ) else {
            return false;
        };
        journal.appended(&notice);
        // Queued for the writer, after the notice: no store I/O here.
        self.save_status(crate::store::RunStatus::Interrupted);
        // Waiters for delivery or commit stop waiting.
        journal.delivery.notify();
        // The store takes the notice and the status, and the subscribers are given the notice,
        // before this returns — boundedly: a stuck store or subscriber is not waited for, and
        // a subscriber's own thread never waits (it would wait for itself).
        if !on_consumer_thread() {
            journal.delivery.wait(
                &journal.log,
                journal.log.len(),
                &interrupts.token,
                journal.writer.as_deref(),
                false,
            );
        }
        true
    }

    /// The interrupt signal, once one was requested.
    pub fn interrupt_signal(&self) -> Option<InterruptSignal> {
        self.inner.interrupts.current().cloned()
    }

    /// Whether an interrupt was requested.
    pub fn is_interrupted(&self) -> bool {
        self.inner.interrupts.current().is_some()
    }

    /// Resolves when an interrupt is requested.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it loses nothing.
    pub async fn interrupted(&self) -> InterruptSignal {
        self.inner.interrupts.token.cancelled().await;
        self.interrupt_signal()
            .unwrap_or_else(|| InterruptSignal::new(InterruptReason::Custom))
    }

    /// Checks for an interrupt now: when external checkers are registered, waits for the
    /// state's watcher to consult them (the round under way, or a new one); fails if the run
    /// is interrupted. Nothing is saved (that is [`save_checkpoint`](Self::save_checkpoint)).
    ///
    /// # Errors
    ///
    /// The interrupt error, when an interrupt was requested.
    pub async fn check_interrupt(&self) -> Result<(), Error> {
        match self.check_now().await {
            Some(signal) => Err(Error::interrupted(signal)),
            None => Ok(()),
        }
    }

    /// Adds an external interrupt checker.
    pub fn add_checker(&self, checker: InterruptChecker) {
        self.inner.interrupts.add_checker(checker);
        self.start_watcher();
    }

    /// Interrupts the run with reason `timeout` after `after`, replacing an earlier timeout.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Runtime`](crate::ErrorKind::Runtime) when called outside a Tokio runtime.
    pub fn set_timeout(&self, after: Duration) -> Result<(), Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::runtime("set_timeout needs a Tokio runtime: call it from async code")
        })?;
        // A weak reference, so a pending timeout does not keep a dropped state alive.
        let weak = Arc::downgrade(&self.inner);
        let task = handle.spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(inner) = weak.upgrade() {
                let message = format!("run timed out after {}", crate::serde_time::Human(after));
                ExecutionState { inner }.request_interrupt(
                    InterruptSignal::new(InterruptReason::Timeout)
                        .message(message)
                        .triggered_by("timeout"),
                );
            }
        });
        if let Some(old) = self
            .inner
            .interrupts
            .timeout
            .lock()
            .replace(task.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }

    /// Cancels a timeout set with [`set_timeout`](Self::set_timeout); `true` if one was set.
    pub fn cancel_timeout(&self) -> bool {
        match self.inner.interrupts.timeout.lock().take() {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    /// Publishes a log record at the root address. In [`CommitMode::Sync`](crate::CommitMode)
    /// it is committed, and given to the subscribers that keep up, before this returns.
    pub fn log(&self, level: Severity, message: impl Into<String>) {
        self.log_at(LogSite::root(), level, message.into(), None);
        self.settle_now();
    }

    /// Publishes a log record with metadata at the root address.
    pub fn log_with(
        &self,
        level: Severity,
        message: impl Into<String>,
        metadata: Map<String, Value>,
    ) {
        self.log_at(LogSite::root(), level, message.into(), Some(metadata));
        self.settle_now();
    }

    pub(crate) fn log_at(
        &self,
        site: LogSite<'_>,
        level: Severity,
        message: String,
        metadata: Option<Map<String, Value>>,
    ) {
        let mut event = Event::new(
            site.address.clone(),
            Arc::from(site.actor),
            site.kind,
            EventStatus::Log,
        );
        if let Some(group) = site.group {
            event.group = Some(group.clone());
            event.is_parallel = true;
        }
        event.level = Some(level);
        event.message = Some(Arc::from(message));
        event.metadata = metadata.map(Arc::new);
        self.record(event);
    }

    /// Appends a record to the history (subscribers, streams and the store writer read it
    /// from there).
    pub(crate) fn record(&self, event: Event) -> Arc<Event> {
        let event = self.inner.journal.append(event, false, true);
        self.check_store();
        event
    }

    /// Appends a call's final record (the call stops counting as running).
    pub(crate) fn record_final(&self, event: Event) -> Arc<Event> {
        let event = self.inner.journal.append(event, true, true);
        self.check_store();
        event
    }

    /// Appends a replayed record, published only when the replay mode asks for it.
    pub(crate) fn record_replayed(&self, event: Event, publish: bool) -> Arc<Event> {
        let event = self.inner.journal.append(event, false, publish);
        self.check_store();
        event
    }

    /// Waits until what was recorded so far has reached those who must have it before a call
    /// goes on: the sync subscribers that keep up and, with `commit` in
    /// [`CommitMode::Sync`](crate::CommitMode::Sync), the store. Costs two atomic loads when
    /// there is neither. The wait ends at once on an interrupt.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the delivery and the commit go on without the waiter.
    pub(crate) async fn settle(&self, commit: bool) {
        let journal = &self.inner.journal;
        let writer = journal
            .writer
            .as_ref()
            .filter(|w| commit && w.mode() == crate::CommitMode::Sync);
        if writer.is_none() && !journal.delivery.has_workers() {
            return;
        }
        let target = journal.log.len();
        if writer.is_none_or(|w| w.settled(target, false))
            && journal.delivery.settled(&journal.log, target)
        {
            return;
        }
        if on_consumer_thread() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Boxed: only calls that really wait need the wait's state.
        Box::pin(self.settle_slow(handle, target, writer.cloned())).await;
    }

    async fn settle_slow(
        &self,
        handle: tokio::runtime::Handle,
        target: u64,
        writer: Option<Arc<Writer>>,
    ) {
        let token = &self.inner.interrupts.token;
        let journal = &self.inner.journal;
        // On the blocking pool: the commit is store I/O, and the delivery wait blocks on a
        // condition variable. (In a paused-time test, the runtime also does not jump its clock
        // ahead while a blocking job runs, so delivery takes no virtual time, as it should.)
        if !token.is_cancelled() {
            let (log, delivery, job_token) = (
                Arc::clone(&journal.log),
                Arc::clone(&journal.delivery),
                token.clone(),
            );
            let job_writer = writer.clone();
            let mut job = handle.spawn_blocking(move || {
                if let Some(writer) = &job_writer {
                    // A failure is noted by the writer, which stops the run.
                    let _ = writer.flush(&log, target);
                }
                delivery.wait(&log, target, &job_token, job_writer.as_deref(), false);
            });
            tokio::select! {
                biased;
                _ = &mut job => return,
                () = token.cancelled() => {}
            }
        }
        // Interrupted: the commit may be stuck in the store, and an interrupt waits for
        // nothing that is stuck. A flush is queued (it may take what the stuck one could
        // not), and the wait is the brief one of an interrupted run.
        if let Some(writer) = &writer {
            writer.schedule(&journal.log);
        }
        let (log, delivery, token) = (
            Arc::clone(&journal.log),
            Arc::clone(&journal.delivery),
            token.clone(),
        );
        let _ = handle
            .spawn_blocking(move || {
                delivery.wait(&log, target, &token, writer.as_deref(), false);
            })
            .await;
    }

    /// After a root log record in sync commit mode: commits it and hands it to the
    /// subscribers that keep up before `log` returns, on the caller's thread.
    fn settle_now(&self) {
        let journal = &self.inner.journal;
        let writer = journal
            .writer
            .as_ref()
            .filter(|w| w.mode() == crate::CommitMode::Sync);
        if (writer.is_none() && !journal.delivery.has_workers()) || on_consumer_thread() {
            return;
        }
        let target = journal.log.len();
        if let Some(writer) = writer {
            let _ = writer.flush(&journal.log, target);
        }
        journal.delivery.wait(
            &journal.log,
            target,
            &self.inner.interrupts.token,
            writer.map(|w| &**w),
            false,
        );
    }

    /// Stops the run when its store failed to save something: going on would do work that a
    /// resume could not know about.
    pub(crate) fn check_store(&self) {
        let Some(durable) = &self.inner.durable else {
            return;
        };
        if let Some(failure) = durable.take_failure() {
            self.request_interrupt(
                InterruptSignal::new(InterruptReason::Custom)
                    .message(format!(
                        "the state store failed ({failure}); the run stops so that no work \
                         goes unrecorded"
                    ))
                    .triggered_by(crate::store::StoreError::STOPPED_THE_RUN),
            );
        }
    }

    /// The detail text of a value: its JSON, truncated to the configured length.
    pub(crate) fn detail_of<T: Serialize + ?Sized>(&self, value: &T) -> Option<Arc<str>> {
        if !self.inner.settings.record_io {
            return None;
        }
        thread_local! {
            // Serialized into a reused buffer, then copied once at its exact size: a detail
            // stays in the history for the life of the state, so its capacity matters.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            // A user's `Serialize` may fail or panic: the record then has no detail.
            crate::panic::catch(|| serde_json::to_writer(&mut *buf, value))
                .ok()?
                .ok()?;
            // serde_json writes valid UTF-8.
            let text = std::str::from_utf8(buf).ok()?;
            Some(truncate(text, self.inner.settings.detail_limit))
        })
    }

    pub(crate) fn random(&self) -> f64 {
        self.inner.random.next_f64()
    }

    pub(crate) fn grace_period(&self) -> Duration {
        self.inner.settings.grace_period
    }
}

/// Where a log record is written: the call it belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogSite<'a> {
    pub(crate) address: &'a Address,
    pub(crate) actor: &'a str,
    pub(crate) kind: ActorKind,
    pub(crate) group: Option<&'a GroupRef>,
}

static ROOT: std::sync::LazyLock<Address> = std::sync::LazyLock::new(Address::root);

impl LogSite<'static> {
    /// The root: logs written on the state itself.
    fn root() -> Self {
        Self {
            address: &ROOT,
            actor: "log",
            kind: ActorKind::System,
            group: None,
        }
    }
}

/// Cuts `text` to at most `limit` characters, marking the cut with `…`.
pub(crate) fn truncate(text: &str, limit: usize) -> Arc<str> {
    if text.len() <= limit {
        return Arc::from(text);
    }
    match text.char_indices().nth(limit) {
        Some((cut, _)) => Arc::from(format!("{}…", &text[..cut])),
        None => Arc::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(&*truncate("héllo", 2), "hé…");
        assert_eq!(&*truncate("abc", 5), "abc");
    }
}
