//! One attempt: the handler, then the postconditions, under the per-attempt timeout, with
//! panics caught and an interrupt (plus grace period) able to end it.
//!
//! The attempt's future is a single boxed future (the handler's own box when there are no
//! postconditions and no timeout), so the per-call future stays small and cheap to allocate.

use std::time::Duration;

use crate::actor::{Actor, Post};
use crate::context::Ctx;
use crate::error::{interrupt_in, AttemptTimeout, BoxError, ConditionFailed};
use crate::interrupt::{BoxFuture, InterruptSignal};
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

type Attempt<'a, O> = BoxFuture<'a, Result<O, BoxError>>;

async fn then_postconditions<I, O>(
    actor: &Actor<I, O>,
    input: &I,
    handler: Attempt<'_, O>,
) -> Result<O, BoxError> {
    let output = handler.await?;
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

/// Builds the attempt's future: the handler, then postconditions if any, under the timeout
/// if any. Extra boxes are paid only by actors that use those features.
fn build<'a, I: Clone + Sync, O: Send + 'a>(
    actor: &'a Actor<I, O>,
    input: &'a I,
    ctx: Ctx,
    timeout: Option<Duration>,
) -> Result<Attempt<'a, O>, BoxError> {
    let handler: Attempt<'a, O> = catch(|| (actor.handler)(input.clone(), ctx))?;
    let checked = if actor.post.is_empty() {
        handler
    } else {
        Box::pin(then_postconditions(actor, input, handler))
    };
    Ok(match timeout {
        None => checked,
        Some(after) => Box::pin(async move {
            match tokio::time::timeout(after, checked).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(AttemptTimeout { after }) as BoxError),
            }
        }),
    })
}

/// Runs one attempt. If an interrupt arrives while the handler runs, the handler has the
/// state's grace period to finish: a result it returns in time is kept (the work is done), an
/// error or no answer ends the attempt as interrupted and the handler future is dropped.
pub(crate) async fn run<I: Clone + Sync, O: Send>(
    state: &ExecutionState,
    actor: &Actor<I, O>,
    input: &I,
    ctx: Ctx,
    timeout: Option<Duration>,
) -> Outcome<O> {
    // An interrupt that came before the handler started (e.g. from a subscriber of the
    // STARTED record) stops it from starting: the grace period is for handlers already at
    // work, not a licence to begin.
    if let Some(signal) = state.interrupt_signal() {
        return Outcome::Interrupted(signal);
    }
    let mut attempt = match build(actor, input, ctx, timeout) {
        Ok(fut) => CatchUnwind(fut),
        Err(panic) => return Outcome::Failed(panic),
    };
    let result = match state.until_interrupted(&mut attempt).await {
        Ok(result) => result,
        Err(signal) => {
            let grace = state.grace_period();
            if grace.is_zero() {
                return Outcome::Interrupted(signal);
            }
            match Box::pin(tokio::time::timeout(grace, &mut attempt)).await {
                Ok(Ok(Ok(output))) => return Outcome::Done(output),
                _ => return Outcome::Interrupted(signal),
            }
        }
    };
    match result.map_err(BoxError::from).and_then(|r| r) {
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
