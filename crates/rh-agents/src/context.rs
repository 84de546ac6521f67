//! The per-call context handed to a handler.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::actor::{Actor, ActorKind};
use crate::address::{Address, Node};
use crate::call::Call;
use crate::error::Error;
use crate::event::{GroupRef, Severity};
use crate::interrupt::InterruptSignal;
use crate::state::{ExecutionState, LogSite};
use crate::storage::Storage;

/// What a handler knows about its call: where it is, which attempt, the run's storage, and the
/// interrupt. Calls made through it are nested under this call's address. It does not hand
/// out the [`ExecutionState`]: calls made on that from inside a handler would land at root
/// addresses numbered in scheduling order, which a resume could not replay.
///
/// Cheap to clone. Each call gets its own context; nothing is kept in a global or a shared
/// stack, so parallel tasks never race on it.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) state: ExecutionState,
    pub(crate) node: Arc<Node>,
    pub(crate) actor: Arc<str>,
    pub(crate) kind: ActorKind,
    pub(crate) attempt: u32,
    /// The parallel group task this call runs in, if any (inherited by nested calls).
    pub(crate) group: Option<Arc<GroupRef>>,
}

/// The call's own facts and the run's id; the state's history is not printed.
impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("address", &self.node.address)
            .field("actor", &self.actor)
            .field("kind", &self.kind)
            .field("attempt", &self.attempt)
            .field("group", &self.group)
            .field("run", &self.state.id())
            .field("interrupted", &self.state.is_interrupted())
            .finish()
    }
}

impl Ctx {
    /// This call's address.
    pub fn address(&self) -> &Address {
        &self.node.address
    }

    /// Zero-based attempt number.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether this attempt is a retry.
    pub fn is_retry(&self) -> bool {
        self.attempt > 0
    }

    /// The name of the actor being run.
    pub fn actor_name(&self) -> &str {
        &self.actor
    }

    /// The id of the run the call is part of.
    pub fn run_id(&self) -> &str {
        self.state.id()
    }

    /// The run as a snapshot, now (e.g. to keep a checkpoint elsewhere from inside a long
    /// handler).
    ///
    /// The state itself is not handed out: a call made on it from inside a handler would get
    /// an address at the root, numbered in whatever order concurrent handlers reach it, and a
    /// resume could not replay it. Nested calls go through [`call`](Self::call).
    pub fn snapshot(&self) -> crate::store::Snapshot {
        self.state.snapshot()
    }

    /// The state's key-value store.
    pub fn storage(&self) -> &Storage {
        self.state.storage()
    }

    /// Calls another actor as a child of this call (address `this/child#n`).
    pub fn call<'a, I, O>(&'a self, actor: &'a Actor<I, O>, input: I) -> Call<'a, I, O> {
        let mut call = Call::new(&self.state, &self.node, actor, input);
        call.group.clone_from(&self.group);
        call
    }

    /// The parallel group and task index this call runs in, if any.
    pub fn group_ref(&self) -> Option<&GroupRef> {
        self.group.as_deref()
    }

    /// Whether an interrupt was requested. Long handlers can check it between steps.
    pub fn is_interrupted(&self) -> bool {
        self.state.is_interrupted()
    }

    /// The interrupt signal, once one was requested.
    pub fn interrupt_signal(&self) -> Option<InterruptSignal> {
        self.state.interrupt_signal()
    }

    /// Resolves when an interrupt is requested: `select!` on it to stop cooperatively.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub fn interrupted(&self) -> WaitForCancellationFutureOwned {
        self.state.inner.interrupts.token.clone().cancelled_owned()
    }

    /// Checks for an interrupt inside the handler: consults the external checkers (when any
    /// are registered) and returns the interrupt error if the run was interrupted (propagate
    /// it with `?`). Nothing is saved (that is
    /// [`ExecutionState::save_checkpoint`]).
    ///
    /// # Errors
    ///
    /// The interrupt error.
    pub async fn check_interrupt(&self) -> Result<(), Error> {
        self.state.check_interrupt().await
    }

    /// Requests an interrupt from inside the handler and returns the error to return with:
    /// `return Err(ctx.interrupt(signal).into())`.
    pub fn interrupt(&self, signal: impl Into<InterruptSignal>) -> Error {
        self.state.request_interrupt(signal);
        let signal = self
            .state
            .interrupt_signal()
            .unwrap_or_else(|| InterruptSignal::new(crate::InterruptReason::Custom));
        Error::interrupted(signal).at(&self.actor, self.kind, &self.node.address)
    }

    fn log_site(&self) -> LogSite<'_> {
        LogSite {
            address: &self.node.address,
            actor: &self.actor,
            kind: self.kind,
            group: self.group.as_deref(),
        }
    }

    /// Adds `key: value` to the metadata of this call's final record (COMPLETED, FAILED or
    /// INTERRUPTED): an LLM call's token usage and cost, say. A later value for a key
    /// replaces an earlier one, also one the call's own metadata had. Kept across the call's
    /// attempts.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rh_agents::{Actor, Ctx, ExecutionState};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let llm = Actor::llm("answer", |q: String, ctx: Ctx| async move {
    ///     ctx.annotate("tokens", 42);
    ///     Ok::<_, std::io::Error>(format!("re: {q}"))
    /// });
    /// let state = ExecutionState::new();
    /// state.call(&llm, "hi".to_owned()).await.unwrap();
    /// let done = state.history().latest("answer#0").unwrap();
    /// assert_eq!(done.metadata.as_ref().unwrap()["tokens"], 42);
    /// # }
    /// ```
    pub fn annotate(&self, key: impl Into<String>, value: impl Into<Value>) {
        self.node.annotate(key.into(), value.into());
    }

    /// Reports progress (a streamed token, a percentage) to whoever watches: sync subscribers
    /// ([`Subscriber::on_progress`](crate::Subscriber::on_progress)) and streams made with
    /// [`EventStream::with_progress`](crate::EventStream::with_progress), in order with the
    /// records. Progress is not a record: it is not in the history, never stored and not
    /// replayed. Readers that fall behind skip the oldest updates.
    pub fn progress(&self, value: impl Into<Value>) {
        let value = value.into();
        self.state
            .inner
            .journal
            .log
            .push_progress(|after| crate::recording::progress::Progress {
                address: self.node.address.clone(),
                actor: Arc::clone(&self.actor),
                kind: self.kind,
                attempt: self.attempt,
                after,
                value,
            });
    }

    /// Publishes a log record under this call's address.
    pub fn log(&self, level: Severity, message: impl Into<String>) {
        self.state
            .log_at(self.log_site(), level, message.into(), None);
    }

    /// Publishes a log record with metadata under this call's address.
    pub fn log_with(
        &self,
        level: Severity,
        message: impl Into<String>,
        metadata: Map<String, Value>,
    ) {
        self.state
            .log_at(self.log_site(), level, message.into(), Some(metadata));
    }
}
