//! The attempt loop: preconditions once, then attempts until success, a final failure or an
//! interrupt, recording every step.
//!
//! ```text
//! STARTED(0) → FAILED → RETRYING(delay, original error) → STARTED(1, is_retry) → COMPLETED
//!                                                          … or a final FAILED
//! … → INTERRUPTED(reason, message)        at any checkpoint, during the handler or the backoff
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::actor::{Actor, ActorKind, Pre};
use crate::address::{Address, Node};
use crate::attempt::{self, Outcome};
use crate::call::Call;
use crate::context::Ctx;
use crate::error::{describe, retry_after_of, BoxError, Error, ErrorKind};
use crate::event::{Event, EventStatus, GroupRef, RetryInfo};
use crate::interrupt::{InterruptReason, InterruptSignal};
use crate::panic::{catch, CatchUnwind};
use crate::retry::{PolicySource, RetryPolicy};
use crate::serde_time::Human;
use crate::state::ExecutionState;
use crate::text;

mod replay;

/// Makes the records of one call.
struct Recorder<'a> {
    state: &'a ExecutionState,
    address: Address,
    actor: &'a Arc<str>,
    kind: ActorKind,
    tag: Option<Arc<str>>,
    metadata: Option<Arc<Map<String, Value>>>,
    max_attempts: u32,
    source: PolicySource,
    group: Option<Arc<GroupRef>>,
    /// The recorded completion to compare the result with (validation replay).
    expected: Option<Arc<Event>>,
    /// The call's node: its children's addresses, and the annotations of its handler.
    node: Arc<Node>,
    /// The input's hash, carried by the STARTED records (see `replay::plan`).
    input_hash: Option<Arc<str>>,
}

impl Recorder<'_> {
    /// Records a step that the call goes on from.
    fn emit(&self, status: EventStatus, attempt: u32, fill: impl FnOnce(&mut Event)) {
        self.state.record(self.event(status, attempt, fill));
    }

    /// Records the call's final step.
    fn finish(&self, status: EventStatus, attempt: u32, fill: impl FnOnce(&mut Event)) {
        let mut event = self.event(status, attempt, fill);
        event.is_final = true;
        // What the handler annotated goes into the final record's metadata, over the call's
        // own metadata under the same key (the handler's word is the later one).
        if let Some(annotations) = self.node.take_annotations() {
            let mut metadata = event.metadata.as_deref().cloned().unwrap_or_default();
            metadata.extend(annotations);
            event.metadata = Some(Arc::new(metadata));
        }
        self.state.record_final(event);
    }

    fn event(&self, status: EventStatus, attempt: u32, fill: impl FnOnce(&mut Event)) -> Event {
        let mut event = Event::new(
            self.address.clone(),
            Arc::clone(self.actor),
            self.kind,
            status,
        );
        event.tag.clone_from(&self.tag);
        event.metadata.clone_from(&self.metadata);
        event.retry = RetryInfo {
            attempt,
            max_attempts: self.max_attempts,
            is_retry: attempt > 0,
            delay: None,
            original_error: None,
            policy_source: Some(self.source),
        };
        if let Some(group) = &self.group {
            event.group = Some(GroupRef::clone(group));
            event.is_parallel = true;
        }
        fill(&mut event);
        event
    }

    fn error(&self, kind: ErrorKind, attempts: u32) -> Error {
        Error::new(kind)
            .at(self.actor, self.kind, &self.address)
            .attempts_made(attempts)
    }

    /// Records INTERRUPTED and builds the interrupt error.
    fn interrupted(
        &self,
        signal: InterruptSignal,
        attempt: u32,
        attempts: u32,
        during: &str,
        original_error: Option<&Arc<str>>,
    ) -> Error {
        self.finish(EventStatus::Interrupted, attempt, |e| {
            e.message = signal.message.as_deref().map(Arc::from);
            e.detail = Some(Arc::from(format!(
                "Interrupted {during}: {}",
                signal.reason
            )));
            e.retry.original_error = original_error.cloned();
            e.interrupt = Some(Box::new(signal.clone()));
        });
        Error::interrupted(signal)
            .at(self.actor, self.kind, &self.address)
            .attempts_made(attempts)
    }
}

async fn check_preconditions<I: Clone>(
    state: &ExecutionState,
    pre: &[Pre<I>],
    input: &I,
) -> Result<Result<(), BoxError>, InterruptSignal> {
    for check in pre {
        let verdict = match check {
            Pre::Sync(f) => catch(|| f(input)).map_err(BoxError::from),
            Pre::Async(f) => match catch(|| f(input.clone())) {
                Ok(fut) => state
                    .until_interrupted(CatchUnwind(fut))
                    .await?
                    .map_err(BoxError::from),
                Err(p) => Err(BoxError::from(p)),
            },
        };
        if let Err(e) = verdict.and_then(|r: Result<(), BoxError>| r) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

/// The wait before the next attempt, or why there is none.
///
/// A filtered-out error is reported as such even on the last attempt (and under a disabled
/// policy): it says more than "exhausted" about why nothing more was tried.
fn next_delay(
    policy: &RetryPolicy,
    error: &(dyn std::error::Error + 'static),
    attempts: u32,
    deadline: Option<Instant>,
    random: f64,
) -> Result<Duration, ErrorKind> {
    if policy.check_error(error).is_err() {
        return Err(ErrorKind::NotRetryable);
    }
    if attempts >= policy.max_attempts() {
        return Err(ErrorKind::RetriesExhausted);
    }
    let delay = policy.delay_for(attempts, random, retry_after_of(error));
    match deadline {
        None => Ok(delay),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(ErrorKind::RetryTimeout)
            } else {
                Ok(delay.min(left))
            }
        }
    }
}

/// "Attempt 2/3 in 1.0s", built without the formatting machinery for the common parts (this
/// runs on every retry, also the zero-delay ones that must stay cheap).
fn retry_message(attempt: u32, of: u32, delay: Duration) -> Arc<str> {
    text::build(|text| {
        text.push_str("Attempt ");
        text::push_decimal(text, attempt);
        text.push('/');
        text::push_decimal(text, of);
        text.push_str(" in ");
        if delay.is_zero() {
            text.push_str("0µs");
        } else {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(text, "{}", Human(delay));
        }
    })
}

/// Records INTERRUPTED for a call whose future is dropped before it finished (its parent
/// was aborted after the grace period, or the caller gave up on it), so no call is left
/// with a dangling STARTED.
struct Unfinished<'a, 'b> {
    rec: &'a Recorder<'b>,
    attempt: AtomicU32,
    armed: AtomicBool,
}

impl Unfinished<'_, '_> {
    fn set_attempt(&self, attempt: u32) {
        self.attempt.store(attempt, Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

impl Drop for Unfinished<'_, '_> {
    fn drop(&mut self) {
        // Nothing to record for a finished call. During a panic, record nothing either: the
        // runtime catches panics from every piece of user code it calls, so one unwinding
        // through here is the caller's own, and delivering a record to subscribers while
        // unwinding could turn it into an abort.
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        if std::thread::panicking() {
            self.rec.state.inner.journal.abandon_call();
            return;
        }
        let attempt = self.attempt.load(Ordering::Relaxed);
        match self.rec.state.interrupt_signal() {
            // The run was interrupted and this call was aborted (after its grace period).
            Some(signal) => {
                let _ = self
                    .rec
                    .interrupted(signal, attempt, attempt + 1, "while aborted", None);
            }
            // Nobody interrupted the run: whoever awaited the call stopped waiting (a group
            // that failed fast or timed out, a caller's own timeout).
            None => {
                let signal = InterruptSignal::new(InterruptReason::Custom)
                    .message("the call was dropped before it finished");
                self.rec.finish(EventStatus::Interrupted, attempt, |e| {
                    e.message = signal.message.as_deref().map(Arc::from);
                    e.detail = Some(Arc::from(
                        "Cancelled: its caller stopped waiting for it (a group that failed fast \
                         or timed out, or a timeout around the call)",
                    ));
                    e.interrupt = Some(Box::new(signal));
                });
            }
        }
    }
}

/// Runs a call to completion.
pub(crate) async fn run<I, O>(call: Call<'_, I, O>) -> Result<O, Error>
where
    I: Serialize + Clone + Send + Sync + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
{
    let Call {
        state,
        address,
        actor,
        input,
        retry,
        tag,
        metadata,
        group,
    } = call;
    // Replay (see `replay::plan`): the recorded result, or what to compare the new one with;
    // and the input's hash for the STARTED records.
    let (expected, input_hash) =
        match replay::plan(state, &address, actor, &input, group.as_deref()) {
            replay::Plan::Replayed(result) => {
                state.settle(true).await;
                return result;
            }
            replay::Plan::Run {
                expected,
                input_hash,
            } => (expected, input_hash),
        };
    let (policy, source) =
        state
            .inner
            .retry
            .resolve(retry.as_deref(), actor.retry.as_ref(), actor.kind);
    let address_of_node = address.clone();
    let rec = Recorder {
        state,
        address,
        actor: &actor.name,
        kind: actor.kind,
        tag: tag.map(Arc::from),
        metadata: metadata.map(Arc::new),
        max_attempts: policy.max_attempts(),
        source,
        group,
        expected,
        node: Arc::new(Node::new(address_of_node)),
        input_hash,
    };
    state.inner.journal.begin_call();
    let guard = Unfinished {
        rec: &rec,
        attempt: AtomicU32::new(0),
        armed: AtomicBool::new(true),
    };
    let result = match state
        .inner
        .journal
        .open_span(&rec.address, &actor.name, actor.kind)
    {
        // The handler runs inside its call's span (a tracing bridge is subscribed). Boxed:
        // the span is not part of every call's future.
        Some(span) => {
            use tracing::Instrument as _;
            Box::pin(attempts(&rec, &guard, actor, &input, policy).instrument(span)).await
        }
        None => attempts(&rec, &guard, actor, &input, policy).await,
    };
    guard.disarm();
    // The result is reported once the records that say so are committed (sync commit mode)
    // and delivered to the subscribers that keep up; an interrupt ends the wait at once.
    state.settle(true).await;
    result
}

async fn attempts<I, O>(
    rec: &Recorder<'_>,
    guard: &Unfinished<'_, '_>,
    actor: &Actor<I, O>,
    input: &I,
    policy: &RetryPolicy,
) -> Result<O, Error>
where
    I: Serialize + Clone + Send + Sync + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
{
    let state = rec.state;
    let node = &rec.node;

    if let Some(signal) = state.check_now().await {
        return Err(rec.interrupted(signal, 0, 0, "before preconditions", None));
    }
    if !actor.pre.is_empty() {
        match check_preconditions(state, &actor.pre, input).await {
            Err(signal) => {
                return Err(rec.interrupted(signal, 0, 0, "during preconditions", None));
            }
            Ok(Err(e)) => {
                rec.finish(EventStatus::Failed, 0, |ev| {
                    ev.message = Some(Arc::from(format!("precondition failed: {}", describe(&*e))));
                });
                return Err(rec.error(ErrorKind::PreconditionFailed, 0).cause(e));
            }
            Ok(Ok(())) => {}
        }
    }

    // The retry budget is measured from the first attempt, not from the preconditions.
    // A budget too large to add to the clock is no budget at all.
    let deadline = policy
        .retry_timeout()
        .and_then(|budget| Instant::now().checked_add(budget));
    let mut attempt: u32 = 0;
    // The wait before this attempt and the error that caused it.
    let mut previous: Option<(Duration, Arc<str>)> = None;
    // The input's detail, made once and shared by every attempt's STARTED record.
    let mut input_detail: Option<Arc<str>> = None;
    loop {
        guard.set_attempt(attempt);
        let original = previous.as_ref().map(|(_, e)| e);
        // The checkpoint before the handler. For the first attempt it is the one before the
        // preconditions, unless preconditions ran since.
        if attempt > 0 || !actor.pre.is_empty() {
            if let Some(signal) = state.check_now().await {
                return Err(rec.interrupted(signal, attempt, attempt, "before handler", original));
            }
        }
        if attempt == 0 {
            input_detail = state.detail_of(input);
        }
        rec.emit(EventStatus::Started, attempt, |e| {
            e.detail.clone_from(&input_detail);
            e.input_hash.clone_from(&rec.input_hash);
            if let Some((delay, error)) = &previous {
                e.retry.delay = Some(*delay);
                e.retry.original_error = Some(Arc::clone(error));
            }
        });
        // The handler runs once the store knows the attempt began (sync commit mode: no work
        // goes on that a resume could not know about) and the subscribers that keep up have
        // seen it (one may interrupt the run on it).
        state.settle(true).await;
        let started = Instant::now();
        let ctx = Ctx {
            state: state.clone(),
            node: Arc::clone(node),
            actor: Arc::clone(&actor.name),
            kind: actor.kind,
            attempt,
            group: rec.group.clone(),
        };
        let outcome = attempt::run(state, actor, input, ctx, policy.attempt_timeout()).await;
        let elapsed = started.elapsed();
        let attempts = attempt + 1;
        let error = match outcome {
            Outcome::Done(output) => {
                // A user's `Serialize` may panic: that is an output error, not a crash.
                let value = match catch(|| serde_json::to_value(&output)) {
                    Ok(Ok(value)) => value,
                    Ok(Err(e)) => {
                        rec.finish(EventStatus::Failed, attempt, |ev| {
                            ev.duration = Some(elapsed);
                            ev.message = Some(Arc::from(format!(
                                "output could not be recorded as JSON: {e}"
                            )));
                        });
                        return Err(rec.error(ErrorKind::Output, attempts).cause(Box::new(e)));
                    }
                    Err(panic) => {
                        rec.finish(EventStatus::Failed, attempt, |ev| {
                            ev.duration = Some(elapsed);
                            ev.message = Some(Arc::from(format!(
                                "output could not be recorded as JSON: {panic}"
                            )));
                        });
                        return Err(rec
                            .error(ErrorKind::Output, attempts)
                            .cause(Box::new(panic)));
                    }
                };
                // The checkpoint after the handler: an external stop noticed here takes effect
                // at the next checkpoint; this call's finished work is kept.
                if !state.is_interrupted() {
                    let _ = state.check_now().await;
                }
                let artifact = if actor.artifact_output {
                    match replay::keep_as_artifact(state, &rec.address, &value) {
                        Ok(artifact) => Some(Box::new(artifact)),
                        Err(e) => {
                            rec.finish(EventStatus::Failed, attempt, |ev| {
                                ev.duration = Some(elapsed);
                                ev.message = Some(Arc::from(format!(
                                    "the result could not be kept as an artifact: {}",
                                    e.report()
                                )));
                            });
                            return Err(rec.error(ErrorKind::Store, attempts).cause(Box::new(e)));
                        }
                    }
                } else {
                    None
                };
                if let Some(expected) = &rec.expected {
                    replay::compare(state, rec.actor, rec.kind, expected, &value);
                }
                rec.finish(EventStatus::Completed, attempt, |e| {
                    e.duration = Some(elapsed);
                    e.detail = state.detail_of(&value);
                    if artifact.is_some() {
                        e.artifact = artifact;
                    } else {
                        e.result = Some(value);
                    }
                });
                return Ok(output);
            }
            Outcome::Interrupted(signal) => {
                return Err(rec.interrupted(signal, attempt, attempts, "during handler", original));
            }
            Outcome::Failed(error) => error,
        };
        let message = describe(&*error);
        let verdict = next_delay(policy, &*error, attempts, deadline, state.random());
        let failed = |e: &mut Event| {
            e.duration = Some(elapsed);
            e.message = Some(Arc::clone(&message));
        };
        let delay = match verdict {
            Ok(delay) => {
                rec.emit(EventStatus::Failed, attempt, failed);
                delay
            }
            Err(kind) => {
                if let Some(expected) = &rec.expected {
                    // Validation: a call that completed before and fails now differs too.
                    let actual = serde_json::json!({ "error": &*message });
                    replay::compare(state, rec.actor, rec.kind, expected, &actual);
                }
                rec.finish(EventStatus::Failed, attempt, failed);
                return Err(rec.error(kind, attempts).cause(error));
            }
        };
        let next = attempt + 1;
        guard.set_attempt(next);
        rec.emit(EventStatus::Retrying, next, |e| {
            e.message = Some(retry_message(next + 1, policy.max_attempts(), delay));
            e.retry.delay = Some(delay);
            e.retry.original_error = Some(Arc::clone(&message));
        });
        // The next attempt starts only once the store knows about this one (sync commit mode).
        state.settle(true).await;
        if let Err(signal) = state.interruptible_sleep(delay).await {
            return Err(rec.interrupted(
                signal,
                next,
                attempts,
                "during retry backoff",
                Some(&message),
            ));
        }
        previous = Some((delay, message));
        attempt = next;
    }
}

#[cfg(test)]
mod tests {
    use super::retry_message;
    use std::time::Duration;

    #[test]
    fn retry_messages_read_naturally() {
        assert_eq!(
            &*retry_message(2, 3, Duration::from_secs(1)),
            "Attempt 2/3 in 1.0s"
        );
        assert_eq!(&*retry_message(5, 5, Duration::ZERO), "Attempt 5/5 in 0µs");
        assert_eq!(
            &*retry_message(3, 10, Duration::from_millis(250)),
            "Attempt 3/10 in 250.0ms"
        );
    }
}
