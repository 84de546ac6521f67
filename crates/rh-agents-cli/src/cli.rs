//! The command line: `rh-agents run | resume | interrupt | runs | show | export | import`.
//!
//! Glue only: the arguments (clap) and the dispatch to [`crate::commands`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rh_agents::store::RunStatus;
use rh_agents::InterruptReason;

use crate::commands;
use crate::exit::Exit;
use crate::pipeline::parse_duration;

/// Where runs are kept unless `--store` says otherwise (relative to the working directory).
pub const DEFAULT_STORE: &str = ".rh-agents/state.db";

/// Run pipelines of commands and HTTP requests with retries, backoff and instant interrupts;
/// stop them from anywhere and resume them.
#[derive(Debug, Parser)]
#[command(name = "rh-agents", version, about, long_about = None)]
pub struct Cli {
    /// The state store (an SQLite file, created if missing).
    #[arg(long, global = true, env = "RH_AGENTS_STORE", value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline file; its state is saved to the store as it runs.
    Run(RunArgs),
    /// Continue an interrupted, failed or crashed run; completed steps are not run again.
    Resume(ResumeArgs),
    /// Ask a running run to stop (from any terminal or machine sharing the store).
    Interrupt(InterruptArgs),
    /// List the runs in the store, newest first.
    Runs(RunsArgs),
    /// Show a run's history as a tree, with its summary.
    Show(ShowArgs),
    /// Write a run to a JSON file (with its artifacts).
    Export(ExportArgs),
    /// Read a run from a JSON file written by `export`.
    Import(ImportArgs),
}

/// How a run is shown while it runs.
#[derive(Debug, Clone, Args)]
pub struct Watch {
    /// Write every event as a JSON line to stdout instead of the tree (the summary and run id
    /// go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Interrupt the run after this long (e.g. "30s", "5m"); exits with code 3.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// `rh-agents run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file (TOML).
    pub file: PathBuf,
    /// Output and time limit.
    #[command(flatten)]
    pub watch: Watch,
    /// A label for the run (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

/// `rh-agents resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run's id (see `rh-agents runs`).
    pub run_id: String,
    /// Output and time limit.
    #[command(flatten)]
    pub watch: Watch,
    /// Run the pipeline in this file (yours) instead of the one the run recorded; commands
    /// without a `cwd` run in the current directory. Steps that completed are still replayed.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Resume an imported run with the pipeline its file carries: its commands run on this
    /// machine. Without this (or --pipeline), an imported run is not resumed.
    #[arg(long, conflicts_with = "pipeline")]
    pub trust_imported: bool,
}

/// `rh-agents interrupt`.
#[derive(Debug, Args)]
pub struct InterruptArgs {
    /// The run's id.
    pub run_id: String,
    /// Why: user_cancelled, timeout, resource_limit, error_threshold, priority_override,
    /// system_shutdown or custom.
    #[arg(long, default_value = "user_cancelled", value_parser = parse_reason)]
    pub reason: InterruptReason,
    /// A message for whoever reads the run.
    #[arg(long)]
    pub message: Option<String>,
}

/// `rh-agents runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs with this status (running, paused, completed, failed, interrupted).
    #[arg(long, value_parser = parse_status)]
    pub status: Option<RunStatus>,
    /// Only runs with this tag (repeatable: all must be present).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only runs of this pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// At most this many runs.
    #[arg(long)]
    pub limit: Option<usize>,
    /// A JSON array instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `rh-agents show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's id.
    pub run_id: String,
    /// The whole snapshot as JSON instead of the tree.
    #[arg(long)]
    pub json: bool,
}

/// `rh-agents export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run's id.
    pub run_id: String,
    /// The file to write (default: `<RUN_ID>.json`; `-` for standard output). An existing
    /// file is not replaced without --force; a FIFO or device is written to.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing file (atomically; through a symbolic link, the file it points to).
    #[arg(long)]
    pub force: bool,
}

/// `rh-agents import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file written by `rh-agents export`.
    pub file: PathBuf,
}

fn parse_reason(text: &str) -> Result<InterruptReason, String> {
    serde_json::from_value(serde_json::Value::from(text)).map_err(|_| {
        format!(
            "unknown reason {text:?}; use one of user_cancelled, timeout, resource_limit, \
             error_threshold, priority_override, system_shutdown, custom"
        )
    })
}

fn parse_status(text: &str) -> Result<RunStatus, String> {
    RunStatus::parse(text).ok_or_else(|| {
        format!(
            "unknown status {text:?}; use one of running, paused, completed, failed, interrupted"
        )
    })
}

/// Parses the process's arguments, runs the command, and returns the exit code. Usage errors
/// exit with 2 (clap).
pub fn main() -> std::process::ExitCode {
    main_from(std::env::args_os())
}

/// [`main`] with the given arguments (the first is the program name), for programs that
/// embed the command.
pub fn main_from<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let store = commands::StoreArg::new(cli.store);
    let exit: Exit = match &cli.command {
        Command::Run(args) => commands::launch::run(&store, args),
        Command::Resume(args) => commands::launch::resume(&store, args),
        Command::Interrupt(args) => commands::interrupt::interrupt(&store, args),
        Command::Runs(args) => commands::inspect::runs(&store, args),
        Command::Show(args) => commands::inspect::show(&store, args),
        Command::Export(args) => commands::transfer::export(&store, args),
        Command::Import(args) => commands::transfer::import(&store, args),
    };
    exit.into()
}
