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
