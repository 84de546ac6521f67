//! `parallel` steps: an agent whose handler runs its children in a parallel group, each child
//! an ordinary call inside its task (its own retries and records).
//!
//! The output is an object of child name → child output. If a child fails, the step fails
//! with every child's error (fail-slow) or the first one (fail-fast, which also stops the
//! others).

use std::sync::Arc;

use rh_agents::{Actor, BoxError, Ctx, ErrorExt};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{call, interrupted, Caller, StepEnv, StepError, StepInput};
use crate::pipeline::{Outputs, ParallelSpec, Step};

/// The children's rendered inputs: the recorded input of a parallel step.
#[derive(Debug, Clone, Serialize)]
pub struct ParallelInput {
    /// One per child, in file order.
    pub steps: Vec<ChildInput>,
}

/// One child's rendered input.
#[derive(Debug, Clone, Serialize)]
pub struct ChildInput {
    /// The child's name.
    pub name: String,
    /// Its input.
    #[serde(flatten)]
    pub input: StepInput,
}

/// Renders every child's templates (children may only use steps before their parent).
///
/// # Errors
///
/// A referenced output is missing.
pub fn render(spec: &ParallelSpec, outputs: &Outputs) -> Result<ParallelInput, String> {
    let steps = spec
        .steps
        .iter()
        .map(|step| {
            Ok(ChildInput {
                name: step.name.clone(),
                input: super::render(step, outputs)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(ParallelInput { steps })
}

/// The actor of a parallel step (an agent; its retry policy is set by the caller).
pub fn actor(name: &str, spec: &ParallelSpec, env: &StepEnv) -> Actor<ParallelInput, Value> {
    let spec = Arc::new(spec.clone());
    let env = env.clone();
    let group_name: Arc<str> = Arc::from(name);
    Actor::agent(name, move |input: ParallelInput, ctx: Ctx| {
        let spec = Arc::clone(&spec);
        let env = env.clone();
        let group_name = Arc::clone(&group_name);
        async move { run(&spec, &env, &group_name, input, ctx).await }
    })
    .description("runs steps in parallel")
}

async fn run(
    spec: &ParallelSpec,
    env: &StepEnv,
    name: &str,
    input: ParallelInput,
    ctx: Ctx,
) -> Result<Value, BoxError> {
    let mut group = ctx.group::<Value>(name).max_workers(spec.max_workers);
    group = if spec.fail_fast {
        group.fail_fast()
    } else {
        group.fail_slow()
    };
    if let Some(limit) = spec.timeout {
        group = group.timeout(limit);
    }
    let children: Vec<Step> = spec.steps.clone();
    for (step, child) in children.into_iter().zip(input.steps) {
        let env = env.clone();
        group.add_named(step.name.clone(), move |ctx: Ctx| async move {
            call(Caller::Ctx(&ctx), &env, &step, child.input).await
        });
    }
    let outcome = group.run().await;
    if ctx.is_interrupted() {
        return Err(interrupted(&ctx).into());
    }
    let mut failures = Vec::new();
    let mut cancelled = 0;
    let mut output = Map::new();
    for (step, result) in spec.steps.iter().zip(outcome.results) {
        match result {
            Ok(value) => {
                output.insert(step.name.clone(), value);
            }
            Err(e) if e.is_cancelled() => cancelled += 1,
            Err(e) => failures.push(format!("{}: {}", step.name, e.report())),
        }
    }
    if failures.is_empty() && cancelled == 0 {
        return Ok(Value::Object(output));
    }
    let total = spec.steps.len();
    let mut message = format!("{} of {total} steps failed", failures.len());
    if cancelled > 0 {
        message.push_str(&format!(", {cancelled} cancelled"));
        if failures.is_empty() {
            message.push_str(" (group timeout)");
        }
    }
    if !failures.is_empty() {
        message.push_str(": ");
        message.push_str(&failures.join("; "));
    }
    Err(StepError(message).permanent().into())
}
