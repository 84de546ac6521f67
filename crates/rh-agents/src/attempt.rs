//! One attempt: the handler, then the postconditions, under the per-attempt timeout, with
//! panics caught and an interrupt (plus grace period) able to end it.

use std::time::Duration;

use crate::actor::{Actor, Post};
use crate::context::Ctx;
use crate::error::{interrupt_in, AttemptTimeout, BoxError, ConditionFailed};
use crate::interrupt::InterruptSignal;
use crate::panic::{catch, CatchUnwind};
use crate::state::ExecutionState;

/// How an attempt ended.
pub(crate) enum Outcome<O> {
    /// The handler returned and every postcondition held.
    Done(O),
    /// The handler, a postcondition, the timeout or a panic failed the attempt.
    Failed(BoxError),
    /// An interrupt ended it (the handler was aborted, or returned an error after it).
    Interrupted(InterruptSignal),
}

async fn handler_and_postconditions<I, O>(
    actor: &Actor<I, O>,
    input: &I,
    ctx: Ctx,
) -> Result<O, BoxError>
where
    I: Clone,
{
    let fut = catch(|| (actor.handler)(input.clone(), ctx)).map_err(BoxError::from)?;
    let output = CatchUnwind(fut).await.map_err(BoxError::from)??;
    for post in &actor.post {
        let verdict = match post {
            Post::Sync(check) => catch(|| check(input, &output)).map_err(BoxError::from),
            Post::Async(check) => match catch(|| check(input, &output)) {
                Ok(fut) => CatchUnwind(fut).await.map_err(BoxError::from),
                Err(p) => Err(BoxError::from(p)),
            },
        };
        if let Err(source) = verdict.and_then(|r: Result<(), BoxError>| r) {
            return Err(Box::new(ConditionFailed {
                which: "postcondition",
                source,
            }));
        }
    }
    Ok(output)
}

async fn with_timeout<O>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = Result<O, BoxError>>,
) -> Result<O, BoxError> {
    match limit {
        None => fut.await,
        Some(after) => match tokio::time::timeout(after, fut).await {
            Ok(result) => result,
            Err(_) => Err(Box::new(AttemptTimeout { after })),
        },
    }
}

/// Runs one attempt. If an interrupt arrives while the handler runs, the handler has the
/// state's grace period to finish: a result it returns in time is kept (the work is done), an
/// error or no answer ends the attempt as interrupted and the handler future is dropped.
pub(crate) async fn run<I: Clone, O>(
    state: &ExecutionState,
    actor: &Actor<I, O>,
    input: &I,
    ctx: Ctx,
    timeout: Option<Duration>,
) -> Outcome<O> {
    let attempt = with_timeout(timeout, handler_and_postconditions(actor, input, ctx));
    tokio::pin!(attempt);
    let result = match state.until_interrupted(&mut attempt).await {
        Ok(result) => result,
        Err(signal) => {
            let grace = state.grace_period();
            if grace.is_zero() {
                return Outcome::Interrupted(signal);
            }
            match tokio::time::timeout(grace, &mut attempt).await {
                Ok(Ok(output)) => return Outcome::Done(output),
                Ok(Err(_)) | Err(_) => return Outcome::Interrupted(signal),
            }
        }
    };
    match result {
        Ok(output) => Outcome::Done(output),
        Err(error) => {
            // An interrupt is never a retryable failure: not when a nested call reports it,
            // and not when the handler saw it and returned an error of its own.
            if let Some(signal) = interrupt_in(&*error).cloned() {
                return Outcome::Interrupted(signal);
            }
            if let Some(signal) = state.interrupt_signal() {
                return Outcome::Interrupted(signal);
            }
            Outcome::Failed(error)
        }
    }
}
