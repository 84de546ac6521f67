//! Actors: the tools, LLM calls and agents a pipeline calls.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::Ctx;
use crate::interrupt::BoxFuture;
use crate::retry::RetryPolicy;
use crate::BoxError;

/// What kind of thing an actor is. Each kind can have its own state-level retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActorKind {
    /// An API, a command, a function with side effects. Retried by default.
    Tool,
    /// A call to a language model. Retried by default.
    Llm,
    /// Something that calls other actors. Not retried by default (its children are).
    Agent,
    /// Records the runtime makes itself: interrupt notices and logs outside any actor.
    System,
    /// A parallel group (its start and end).
    Group,
    /// One task of a parallel group.
    Task,
}

impl ActorKind {
    /// The wire name, e.g. `"llm"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tool => "tool",
            Self::Llm => "llm",
            Self::Agent => "agent",
            Self::System => "system",
            Self::Group => "group",
            Self::Task => "task",
        }
    }
}

impl fmt::Display for ActorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Handler<I, O> = Arc<dyn Fn(I, Ctx) -> BoxFuture<'static, Result<O, BoxError>> + Send + Sync>;

type Verdict = Result<(), BoxError>;
type SyncPre<I> = Arc<dyn Fn(&I) -> Verdict + Send + Sync>;
type AsyncPre<I> = Arc<dyn Fn(I) -> BoxFuture<'static, Verdict> + Send + Sync>;
type SyncPost<I, O> = Arc<dyn Fn(&I, &O) -> Verdict + Send + Sync>;
type AsyncPost<I, O> = Arc<dyn Fn(&I, &O) -> BoxFuture<'static, Verdict> + Send + Sync>;

/// A precondition: checked once, before the first attempt.
pub(crate) enum Pre<I> {
    Sync(SyncPre<I>),
    Async(AsyncPre<I>),
}

/// A postcondition: checked after each successful handler run; a failure fails the attempt.
pub(crate) enum Post<I, O> {
    Sync(SyncPost<I, O>),
    Async(AsyncPost<I, O>),
}

impl<I> Clone for Pre<I> {
    fn clone(&self) -> Self {
        match self {
            Self::Sync(f) => Self::Sync(Arc::clone(f)),
            Self::Async(f) => Self::Async(Arc::clone(f)),
        }
    }
}

impl<I, O> Clone for Post<I, O> {
    fn clone(&self) -> Self {
        match self {
            Self::Sync(f) => Self::Sync(Arc::clone(f)),
            Self::Async(f) => Self::Async(Arc::clone(f)),
        }
    }
}

/// Something that can be called inside an [`ExecutionState`](crate::ExecutionState): a name, a
/// kind, an async handler from `I` to `O`, optional pre/postconditions and retry policy.
///
/// The handler may fail with any error type that converts into a boxed
/// `std::error::Error + Send + Sync` (every such error does, as do `String` and `anyhow`).
/// Inputs must be `Clone` (each attempt gets its own copy) and `Serialize` (recorded as
/// detail); outputs `Serialize + DeserializeOwned` (recorded as the result, and read back on
/// resume).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use rh_agents::{Actor, Ctx, RetryPolicy};
///
/// let search = Actor::tool("search", |query: String, _ctx: Ctx| async move {
///     Ok::<_, std::io::Error>(vec![format!("result for {query}")])
/// })
/// .description("Searches the web")
/// .precondition(|q: &String| if q.is_empty() { Err("empty query") } else { Ok(()) })
/// .retry(RetryPolicy::fibonacci(Duration::from_millis(500)).max_attempts(5).build().unwrap());
/// assert_eq!(search.name(), "search");
/// ```
pub struct Actor<I, O> {
    pub(crate) name: Arc<str>,
    pub(crate) description: Option<Arc<str>>,
    pub(crate) kind: ActorKind,
    pub(crate) handler: Handler<I, O>,
    pub(crate) pre: Vec<Pre<I>>,
    pub(crate) post: Vec<Post<I, O>>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) artifact_output: bool,
}

impl<I, O> Clone for Actor<I, O> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            description: self.description.clone(),
            kind: self.kind,
            handler: Arc::clone(&self.handler),
            pre: self.pre.clone(),
            post: self.post.clone(),
            retry: self.retry.clone(),
            artifact_output: self.artifact_output,
        }
    }
}

impl<I, O> fmt::Debug for Actor<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Actor")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("description", &self.description)
            .field("preconditions", &self.pre.len())
            .field("postconditions", &self.post.len())
            .field("retry", &self.retry)
            .finish()
    }
}

impl<I, O> Actor<I, O>
where
    I: Serialize + Clone + Send + Sync + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
{
    /// An actor of any kind.
    pub fn new<F, Fut, E>(kind: ActorKind, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(I, Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let handler: Handler<I, O> = Arc::new(move |input, ctx| {
            let fut = handler(input, ctx);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        Self {
            name: Arc::from(name.into()),
            description: None,
            kind,
            handler,
            pre: Vec::new(),
            post: Vec::new(),
            retry: None,
            artifact_output: false,
        }
    }

    /// A tool: an API, a command, a function with side effects.
    pub fn tool<F, Fut, E>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(I, Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Self::new(ActorKind::Tool, name, handler)
    }

    /// An LLM call.
    pub fn llm<F, Fut, E>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(I, Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Self::new(ActorKind::Llm, name, handler)
    }

    /// An agent: its handler calls other actors through its [`Ctx`].
    pub fn agent<F, Fut, E>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(I, Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Self::new(ActorKind::Agent, name, handler)
    }

    /// Keeps each result as an artifact (content-addressed JSON, stored once) instead of
    /// inline in the COMPLETED record: for large outputs (documents, embeddings) that would
    /// otherwise be copied into every snapshot. A resume loads it back.
    #[must_use]
    pub fn output_as_artifact(mut self) -> Self {
        self.artifact_output = true;
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(Arc::from(text.into()));
        self
    }

    /// Sets the actor-level retry policy (level 2). [`RetryPolicy::disabled`] makes the actor
    /// single-shot whatever the state's defaults say.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Adds a synchronous precondition, checked once before the first attempt. A failure
    /// ends the call with [`ErrorKind::PreconditionFailed`](crate::ErrorKind::PreconditionFailed)
    /// and is not retried.
    #[must_use]
    pub fn precondition<F, E>(mut self, check: F) -> Self
    where
        F: Fn(&I) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        self.pre
            .push(Pre::Sync(Arc::new(move |i| check(i).map_err(Into::into))));
        self
    }

    /// Adds an asynchronous precondition (it gets its own copy of the input). An interrupt
    /// ends the wait at once.
    #[must_use]
    pub fn precondition_async<F, Fut, E>(mut self, check: F) -> Self
    where
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.pre.push(Pre::Async(Arc::new(move |i| {
            let fut = check(i);
            Box::pin(async move { fut.await.map_err(Into::into) })
        })));
        self
    }

    /// Adds a synchronous postcondition on the input and output. A failure fails the attempt
    /// with [`ConditionFailed`](crate::ConditionFailed), which is retried like any error.
    #[must_use]
    pub fn postcondition<F, E>(mut self, check: F) -> Self
    where
        F: Fn(&I, &O) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        self.post.push(Post::Sync(Arc::new(move |i, o| {
            check(i, o).map_err(Into::into)
        })));
        self
    }

    /// Adds an asynchronous postcondition (it gets copies of the input and output).
    #[must_use]
    pub fn postcondition_async<F, Fut, E>(mut self, check: F) -> Self
    where
        O: Clone,
        F: Fn(I, O) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.post.push(Post::Async(Arc::new(move |i: &I, o: &O| {
            let fut = check(i.clone(), o.clone());
            Box::pin(async move { fut.await.map_err(Into::into) })
        })));
        self
    }
}

impl<I, O> Actor<I, O> {
    /// The actor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The actor's kind.
    pub fn kind(&self) -> ActorKind {
        self.kind
    }

    /// The description, if set.
    pub fn get_description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The actor-level retry policy, if set.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref()
    }
}
