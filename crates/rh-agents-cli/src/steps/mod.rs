//! Steps as actors: each kind renders its templates into a recorded input, then runs as an
//! [`rh_agents::Actor`] call, so it gets the runtime's retries, records and interrupts.
//!
//! - [`command`]: a child process (SIGTERM, then SIGKILL after a grace, on interrupt);
//! - [`http`]: one request (5xx, 429 and connection errors are transient, `Retry-After`
//!   honoured, other 4xx permanent);
//! - [`parallel`]: an agent whose handler runs its children in a parallel group.
//!
//! The output of every call is a JSON value; the runner keeps these by step name and renders
//! later templates from them (see [`crate::pipeline::Template::render`]).

pub mod command;
pub mod http;
pub mod parallel;

use std::fmt;

use rh_agents::{Actor, Ctx, ExecutionState, InterruptReason, InterruptSignal};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::pipeline::{Action, Outputs, Step};

/// How long an HTTP step waits for a connection to be accepted before the attempt fails.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub use command::{CommandInput, CommandOutput};
pub use http::{HttpInput, HttpOutput};
pub use parallel::{ChildInput, ParallelInput};

/// A step's input with its templates rendered: what the call records as its input.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepInput {
    /// For a command step.
    Command(CommandInput),
    /// For an http step.
    Http(HttpInput),
    /// For a parallel step (its children's inputs).
    Parallel(ParallelInput),
}

/// Renders a step's templates from the outputs recorded so far.
///
/// # Errors
///
/// A message naming the template that could not be rendered.
pub fn render(step: &Step, outputs: &Outputs) -> Result<StepInput, String> {
    Ok(match &step.action {
        Action::Command(spec) => StepInput::Command(command::render(spec, outputs)?),
        Action::Http(spec) => StepInput::Http(http::render(spec, outputs)?),
        Action::Parallel(spec) => StepInput::Parallel(parallel::render(spec, outputs)?),
    })
}

/// What a step's call runs in: the state (top-level steps) or a parent's context (children
/// of a parallel step).
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A top-level call.
    State(&'a ExecutionState),
    /// A call nested under a handler or group task.
    Ctx(&'a Ctx),
}

impl Caller<'_> {
    async fn call<I, O>(&self, actor: &Actor<I, O>, input: I) -> Result<O, rh_agents::Error>
    where
        I: Serialize + Clone + Send + Sync + 'static,
        O: Serialize + DeserializeOwned + Send + 'static,
    {
        match self {
            Caller::State(state) => state.call(actor, input).await,
            Caller::Ctx(ctx) => ctx.call(actor, input).await,
        }
    }
}

/// Shared by every step of a run: the HTTP client (one connection pool).
#[derive(Debug, Clone)]
pub struct StepEnv {
    http: reqwest::Client,
}

impl StepEnv {
    /// A fresh environment.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be set up (its TLS backend failed to initialise).
    pub fn new() -> Result<StepEnv, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("rh-agents/", env!("CARGO_PKG_VERSION")))
            // A server that never accepts the connection is a failed attempt (retried), not
            // a step that hangs when it has no `timeout`.
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(StepEnv { http })
    }
}

/// Calls a step with its rendered input and returns its output as JSON.
///
/// # Errors
///
/// The call's error: failed after its retries, not retryable, or interrupted.
pub async fn call(
    caller: Caller<'_>,
    env: &StepEnv,
    step: &Step,
    input: StepInput,
) -> Result<Value, rh_agents::Error> {
    let output = match (&step.action, input) {
        (Action::Command(spec), StepInput::Command(input)) => {
            let actor = command::actor(&step.name, spec).retry(step.retry.clone());
            to_json(caller.call(&actor, input).await?)
        }
        (Action::Http(_), StepInput::Http(input)) => {
            let actor = http::actor(&step.name, env.http.clone()).retry(step.retry.clone());
            to_json(caller.call(&actor, input).await?)
        }
        (Action::Parallel(spec), StepInput::Parallel(input)) => {
            let actor = parallel::actor(&step.name, spec, env).retry(step.retry.clone());
            caller.call(&actor, input).await?
        }
        // `render` builds the input from the same step, so the kinds always agree.
        _ => Value::Null,
    };
    Ok(output)
}

fn to_json<T: Serialize>(value: T) -> Value {
    // Our output types are plain structs of strings and numbers: they always serialize.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// A step failure for people: the message shown in the `FAILED` record (and mark it
/// permanent or transient with [`rh_agents::ErrorExt`]).
#[derive(Debug, Clone)]
pub struct StepError(pub String);

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StepError {}

/// The interrupt error a handler returns when it stops because the run was interrupted.
pub(crate) fn interrupted(ctx: &Ctx) -> rh_agents::Error {
    let signal = ctx
        .interrupt_signal()
        .unwrap_or_else(|| InterruptSignal::new(InterruptReason::Custom));
    ctx.interrupt(signal)
}

/// The last lines of `text`, on one line, at most `limit` characters (for error messages).
pub(crate) fn tail(text: &str, lines: usize, limit: usize) -> String {
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = kept[kept.len().saturating_sub(lines)..].join(" | ");
    let count = joined.chars().count();
    if count <= limit {
        joined
    } else {
        let skip = count - limit;
        format!("…{}", joined.chars().skip(skip + 1).collect::<String>())
    }
}

/// The first `limit` characters of `text`, on one line (for error messages).
pub(crate) fn head(text: &str, limit: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= limit {
        flat
    } else {
        let mut cut: String = flat.chars().take(limit.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_and_heads_fit_on_one_line() {
        assert_eq!(tail("a\n\nb\nc\n", 2, 100), "b | c");
        assert_eq!(tail("", 3, 100), "");
        assert_eq!(tail("0123456789", 1, 5), "…6789");
        assert_eq!(head("  x \n y  ", 10), "x y");
        assert_eq!(head("abcdefgh", 4), "abc…");
    }
}
