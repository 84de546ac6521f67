//! The command line: `rh-agents run FILE [--json] [--timeout DUR] [--tag T]...`.
//!
//! Glue only: parse arguments, load the pipeline, build the state with its observers, run,
//! report, and map the outcome to an [`Exit`] code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rh_agents::observe::jsonl::JsonLines;
use rh_agents::observe::printer::Printer;
use rh_agents::{Event, ExecutionState, Subscriber};

use crate::exit::Exit;
use crate::output::{line, To};
use crate::pipeline::{self, parse_duration, LoadError};
use crate::run::{self, RunOptions, RunOutcome, RunStatus};
use crate::signals;

/// Run pipelines of commands and HTTP requests with retries, backoff and instant interrupts.
#[derive(Debug, Parser)]
#[command(name = "rh-agents", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline file.
    Run(RunArgs),
}

/// `rh-agents run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file (TOML).
    pub file: PathBuf,
    /// Write every event as a JSON line to stdout instead of the tree (the summary and run id
    /// go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Interrupt the run after this long (e.g. "30s", "5m"); exits with code 3.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// A label for the run (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

/// Parses the arguments, runs, and returns the exit code. Usage errors exit with 2 (clap).
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run_command(&args).into(),
    }
}

/// `rh-agents run`: load, run, report.
pub fn run_command(args: &RunArgs) -> Exit {
    let pipeline = match pipeline::load(&args.file) {
        Ok(p) => p,
        Err(LoadError::Invalid(diagnostics)) => {
            for d in &diagnostics {
                line(To::Stderr, &format!("error: {d}"));
            }
            return Exit::BadInput;
        }
        Err(e @ LoadError::Read { .. }) => {
            line(To::Stderr, &format!("error: {e}"));
            return Exit::BadInput;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            line(To::Stderr, &format!("error: cannot start the runtime: {e}"));
            return Exit::Internal;
        }
    };
    let options = RunOptions {
        tags: args.tags.clone(),
    };
    runtime.block_on(async {
        let printer = (!args.json).then(|| Arc::new(Printer::builder().detail(true).stdout()));
        let builder = match &printer {
            Some(printer) => {
                let printer = Arc::clone(printer);
                run::state_builder().subscriber(move |e: &Event| {
                    // A failed write (closed stdout) must not stop the run.
                    let _ = printer.on_event(e);
                })
            }
            None => run::state_builder().subscriber(JsonLines::stdout()),
        };
        let state = builder.build();
        if let Some(after) = args.timeout {
            if let Err(e) = state.set_timeout(after) {
                line(To::Stderr, &format!("error: {e}"));
                return Exit::Internal;
            }
        }
        let listener = match signals::install(&state) {
            Ok(task) => task,
            Err(e) => {
                line(
                    To::Stderr,
                    &format!("error: cannot listen for signals: {e}"),
                );
                return Exit::Internal;
            }
        };
        let outcome = run::run_pipeline(&state, &pipeline, &options).await;
        listener.abort();
        match outcome {
            Ok(outcome) => report(&state, &outcome, printer.as_deref()),
            Err(e) => {
                line(To::Stderr, &format!("error: {e}"));
                Exit::Internal
            }
        }
    })
}

/// Prints the summary, how the run ended and its id; returns the exit code.
fn report(
    state: &ExecutionState,
    outcome: &RunOutcome,
    printer: Option<&Printer<std::io::Stdout>>,
) -> Exit {
    let summary = state.summary();
    let to = match printer {
        Some(printer) => {
            let _ = printer.print_summary(&summary);
            To::Stdout
        }
        None => {
            line(To::Stderr, summary.render(false, true).trim_end());
            To::Stderr
        }
    };
    match &outcome.status {
        RunStatus::Completed => line(to, "run completed"),
        RunStatus::Failed { step, message } => {
            line(
                To::Stderr,
                &format!("error: step \"{step}\" failed: {message}"),
            );
        }
        RunStatus::Interrupted { step, signal } => {
            let mut text = format!("run interrupted ({})", signal.reason);
            if let Some(message) = &signal.message {
                text.push_str(&format!(": {message}"));
            }
            if let Some(step) = step {
                text.push_str(&format!(" at step \"{step}\""));
            }
            line(to, &text);
        }
    }
    line(to, &format!("run id: {}", outcome.run_id));
    outcome.exit()
}
