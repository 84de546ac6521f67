//! A call being set up: await it to run the actor.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::actor::Actor;
use crate::address::{Address, Node};
use crate::error::Error;
use crate::event::GroupRef;
use crate::retry::RetryPolicy;
use crate::state::ExecutionState;

/// A call of an actor, not yet started. `.await` it; before that, the call-level retry policy
/// (the most specific of the five levels), a tag and metadata can be set.
///
/// # Examples
///
/// ```
/// # use rh_agents::{Actor, ExecutionState, RetryPolicy};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = ExecutionState::new();
/// let fetch = Actor::tool("fetch", |url: String, _ctx| async move {
///     Err::<String, _>(std::io::Error::other(format!("{url} unreachable")))
/// });
/// // Single-shot for this call only, whatever the actor and state say.
/// let err = state.call(&fetch, "https://example.invalid".into())
///     .retry(RetryPolicy::disabled())
///     .tag("probe")
///     .await
///     .unwrap_err();
/// assert_eq!(err.attempts(), 1);
/// # }
/// ```
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<'a, I, O> {
    pub(crate) state: &'a ExecutionState,
    /// Reserved when the call is created, so addresses follow the order in which the program
    /// makes its calls, not the order in which their futures happen to be polled.
    pub(crate) address: Address,
    pub(crate) actor: &'a Actor<I, O>,
    pub(crate) input: I,
    // Boxed: a policy is large and most calls do not set one.
    pub(crate) retry: Option<Box<RetryPolicy>>,
    pub(crate) tag: Option<String>,
    pub(crate) metadata: Option<Map<String, Value>>,
    pub(crate) group: Option<Arc<GroupRef>>,
}

impl<I, O> std::fmt::Debug for Call<'_, I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("actor", &self.actor.name)
            .field("address", &self.address)
            .field("retry", &self.retry)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl<'a, I, O> Call<'a, I, O> {
    pub(crate) fn new(
        state: &'a ExecutionState,
        parent: &'a Node,
        actor: &'a Actor<I, O>,
        input: I,
    ) -> Self {
        Self {
            state,
            address: parent.next_child(&actor.name),
            actor,
            input,
            retry: None,
            tag: None,
            metadata: None,
            group: None,
        }
    }

    /// The retry policy for this call only (level 1). [`RetryPolicy::disabled`] makes it
    /// single-shot.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(Box::new(policy));
        self
    }

    /// A tag recorded on every event of this call.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Metadata recorded on every event of this call.
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

impl<'a, I, O> IntoFuture for Call<'a, I, O>
where
    I: Serialize + Clone + Send + Sync + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<O, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<O, Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(crate::run::run(self))
    }
}
