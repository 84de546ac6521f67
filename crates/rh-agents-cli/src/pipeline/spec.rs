//! The validated pipeline: what the runner executes. Every value here was checked; templates
//! are parsed and refer only to earlier steps.

use std::path::PathBuf;
use std::time::Duration;

use rh_agents::RetryPolicy;

use super::template::Template;

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The pipeline's name.
    pub name: String,
    /// The file it was read from, as the user named it.
    pub file: PathBuf,
    /// The steps, in the order they run.
    pub steps: Vec<Step>,
}

impl Pipeline {
    /// Runs commands that name no `cwd` in `dir`: the directory the run was started in, kept
    /// with the run so that a resume from elsewhere runs them where they ran first.
    pub fn default_cwd(&mut self, dir: &std::path::Path) {
        fn walk(steps: &mut [Step], dir: &std::path::Path) {
            for step in steps {
                match &mut step.action {
                    Action::Command(spec) if spec.cwd.is_none() => {
                        spec.cwd = Some(dir.to_path_buf());
                    }
                    Action::Parallel(group) => walk(&mut group.steps, dir),
                    Action::Command(_) | Action::Http(_) => {}
                }
            }
        }
        walk(&mut self.steps, dir);
    }
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique among its siblings; the actor's name.
    pub name: String,
    /// The retry policy of the step's call (for a parallel step: disabled, its children
    /// retry on their own).
    pub retry: RetryPolicy,
    /// What the step does.
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Run a program.
    Command(CommandSpec),
    /// Send an HTTP request.
    Http(HttpSpec),
    /// Run child steps side by side.
    Parallel(ParallelSpec),
}

impl Action {
    /// The kind's name, as in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Command(_) => "command",
            Action::Http(_) => "http",
            Action::Parallel(_) => "parallel",
        }
    }
}

/// A `command` step.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// The program (looked up on `PATH` when it has no `/`).
    pub program: Template,
    /// Its arguments.
    pub args: Vec<Template>,
    /// Extra environment variables.
    pub env: Vec<(String, Template)>,
    /// The working directory (absolute; resolved against the pipeline file's directory).
    pub cwd: Option<PathBuf>,
    /// Text written to the program's standard input.
    pub stdin: Option<Template>,
    /// When set, only these nonzero exit codes are retried; others fail at once.
    pub retryable_exit_codes: Option<Vec<i32>>,
}

/// An `http` step.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// The method, upper case.
    pub method: String,
    /// The URL.
    pub url: Template,
    /// Request headers.
    pub headers: Vec<(String, Template)>,
    /// The request body.
    pub body: Option<Template>,
}

/// A `parallel` step.
#[derive(Debug, Clone)]
pub struct ParallelSpec {
    /// How many children run at once.
    pub max_workers: usize,
    /// Stop the others at the first failure (otherwise run all and report every failure).
    pub fail_fast: bool,
    /// A time limit for the whole group.
    pub timeout: Option<Duration>,
    /// The children (commands and HTTP requests).
    pub steps: Vec<Step>,
}
