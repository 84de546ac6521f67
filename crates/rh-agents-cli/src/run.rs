//! Running a validated pipeline: its steps in file order, each a call in the state the
//! caller built, each template rendered from the outputs the earlier calls returned.
//!
//! The state comes from the caller so that a durable one (a store, a resumed run) runs the
//! same code: outputs are read from the values the calls return, which a store can replay.

use std::time::Duration;

use rh_agents::{ExecutionState, ExecutionStateBuilder, InterruptSignal, Severity};
use serde_json::{Map, Value};

use crate::exit::Exit;
use crate::pipeline::{Outputs, Pipeline};
use crate::steps::{self, Caller, StepEnv};

/// The state's grace period: longer than a command's SIGTERM → SIGKILL grace
/// ([`steps::command::TERM_GRACE`]), so that a command stops its child itself before the
/// runtime gives up on it.
pub const GRACE_PERIOD: Duration = Duration::from_secs(4);

/// A state builder with the settings pipelines need; add subscribers (printer, JSON lines,
/// a store) and build.
pub fn state_builder() -> ExecutionStateBuilder {
    ExecutionState::builder().grace_period(GRACE_PERIOD)
}

/// What the caller asked for besides the pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Labels for the run (`--tag`), recorded in the run's first log record.
    pub tags: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum RunStatus {
    /// Every step completed.
    Completed,
    /// A step failed; the run stopped there.
    Failed {
        /// The step.
        step: String,
        /// Why, with causes, on one line.
        message: String,
    },
    /// The run was interrupted.
    Interrupted {
        /// The step that was running or about to run, if any.
        step: Option<String>,
        /// The interrupt.
        signal: InterruptSignal,
    },
}

/// The result of [`run_pipeline`].
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The state's id.
    pub run_id: String,
    /// How it ended.
    pub status: RunStatus,
    /// The output of each step that completed.
    pub outputs: Outputs,
}

impl RunOutcome {
    /// The exit code for this outcome.
    pub fn exit(&self) -> Exit {
        match self.status {
            RunStatus::Completed => Exit::Success,
            RunStatus::Failed { .. } => Exit::Failed,
            RunStatus::Interrupted { .. } => Exit::Interrupted,
        }
    }
}

/// The run could not start.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

/// Runs `pipeline` in `state`: each step in file order, stopping at the first failure or
/// at an interrupt.
///
/// # Errors
///
/// [`RunError`] when the run cannot start (the HTTP client failed to initialise); a failed
/// step is an [`RunStatus::Failed`] outcome, not an error.
///
/// # Cancel safety
///
/// Dropping the future drops the running call, which records INTERRUPTED and kills its
/// command's process group.
pub async fn run_pipeline(
    state: &ExecutionState,
    pipeline: &Pipeline,
    options: &RunOptions,
) -> Result<RunOutcome, RunError> {
    let env = StepEnv::new().map_err(|e| RunError(format!("cannot set up HTTP: {e}")))?;
    let mut meta = Map::new();
    meta.insert("pipeline".into(), Value::from(pipeline.name.clone()));
    meta.insert(
        "file".into(),
        Value::from(pipeline.file.display().to_string()),
    );
    meta.insert("tags".into(), Value::from(options.tags.clone()));
    state.log_with(
        Severity::Debug,
        format!("pipeline \"{}\" started", pipeline.name),
        meta,
    );

    let mut outputs = Outputs::new();
    let status = 'run: {
        for step in &pipeline.steps {
            if let Some(signal) = state.interrupt_signal() {
                break 'run RunStatus::Interrupted {
                    step: Some(step.name.clone()),
                    signal,
                };
            }
            let input = match steps::render(step, &outputs) {
                Ok(input) => input,
                Err(message) => {
                    break 'run RunStatus::Failed {
                        step: step.name.clone(),
                        message,
                    }
                }
            };
            match steps::call(Caller::State(state), &env, step, input).await {
                Ok(value) => {
                    outputs.insert(step.name.clone(), value);
                }
                Err(e) => {
                    let signal = e.interrupt().cloned().or_else(|| state.interrupt_signal());
                    break 'run match signal {
                        Some(signal) => RunStatus::Interrupted {
                            step: Some(step.name.clone()),
                            signal,
                        },
                        None => RunStatus::Failed {
                            step: step.name.clone(),
                            message: e.report(),
                        },
                    };
                }
            }
        }
        RunStatus::Completed
    };
    Ok(RunOutcome {
        run_id: state.id().to_owned(),
        status,
        outputs,
    })
}
