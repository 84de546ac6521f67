//! The command line: `rh-agents run | resume | interrupt | runs | show | export | import`.
//!
//! Glue only: the arguments (clap) and the dispatch to [`crate::commands`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{EnumValueParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand, ValueEnum};
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
    /// The state store (an SQLite file, created if missing). Without it: `$RH_AGENTS_STORE`
    /// when that is set and not empty, else `.rh-agents/state.db`.
    #[arg(long, global = true, value_name = "PATH")]
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
    /// Why the run is stopped.
    #[arg(
        long,
        default_value = "user_cancelled",
        value_parser = EnumValueParser::<Reason>::new().map(InterruptReason::from)
    )]
    pub reason: InterruptReason,
    /// A message for whoever reads the run.
    #[arg(long)]
    pub message: Option<String>,
}

/// `rh-agents runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs with this status.
    #[arg(long, value_parser = EnumValueParser::<Status>::new().map(RunStatus::from))]
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

/// `--reason`: the values of [`InterruptReason`] as clap parses and lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Reason {
    /// A person asked to stop.
    UserCancelled,
    /// A time limit was reached.
    Timeout,
    /// A budget (tokens, money, memory) was spent.
    ResourceLimit,
    /// Too many errors.
    ErrorThreshold,
    /// More important work needs the resources.
    PriorityOverride,
    /// The process or machine is shutting down.
    SystemShutdown,
    /// Anything else; `--message` says what.
    Custom,
}

impl From<Reason> for InterruptReason {
    fn from(reason: Reason) -> Self {
        match reason {
            Reason::UserCancelled => Self::UserCancelled,
            Reason::Timeout => Self::Timeout,
            Reason::ResourceLimit => Self::ResourceLimit,
            Reason::ErrorThreshold => Self::ErrorThreshold,
            Reason::PriorityOverride => Self::PriorityOverride,
            Reason::SystemShutdown => Self::SystemShutdown,
            Reason::Custom => Self::Custom,
        }
    }
}

/// `--status`: the values of [`RunStatus`] as clap parses and lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Status {
    /// Running now (or its process died without saying so).
    Running,
    /// Stopped to be resumed.
    Paused,
    /// Every step completed.
    Completed,
    /// A step failed.
    Failed,
    /// Stopped by an interrupt.
    Interrupted,
}

impl From<Status> for RunStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Running => Self::Running,
            Status::Paused => Self::Paused,
            Status::Completed => Self::Completed,
            Status::Failed => Self::Failed,
            Status::Interrupted => Self::Interrupted,
        }
    }
}

/// The store named by `RH_AGENTS_STORE`: none when it is unset or empty (`RH_AGENTS_STORE=`
/// in a script means "no store of my own", not a store at the path "").
fn store_from_env() -> Option<PathBuf> {
    std::env::var_os("RH_AGENTS_STORE")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// Parses the process's arguments, runs the command, and returns the exit code. Usage errors
/// are printed on stderr and exit with 2; `--help` and `--version` print on stdout and exit
/// with 0 (clap's codes).
pub fn main() -> ExitCode {
    match main_from(std::env::args_os()) {
        Ok(code) => code,
        Err(usage) => {
            // Nothing more can be said if stdout or stderr is closed.
            let _ = usage.print();
            ExitCode::from(u8::try_from(usage.exit_code()).unwrap_or(Exit::BadInput.code()))
        }
    }
}

/// [`main`] with the given arguments (the first is the program name), for programs that
/// embed the command: it never exits the process.
///
/// # Errors
///
/// The arguments were not valid, or asked for `--help` or `--version`: nothing ran. The
/// [`clap::Error`] holds the text to show ([`clap::Error::print`] writes help and version to
/// stdout and errors to stderr, [`clap::Error::render`] gives the text) and the exit code
/// ([`clap::Error::exit_code`]: 0 for help and version, 2 otherwise); [`clap::Error::kind`]
/// tells which.
pub fn main_from<I, T>(args: I) -> Result<ExitCode, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    let store = commands::StoreArg::new(cli.store.or_else(store_from_env));
    let exit: Exit = match &cli.command {
        Command::Run(args) => commands::launch::run(&store, args),
        Command::Resume(args) => commands::launch::resume(&store, args),
        Command::Interrupt(args) => commands::interrupt::interrupt(&store, args),
        Command::Runs(args) => commands::inspect::runs(&store, args),
        Command::Show(args) => commands::inspect::show(&store, args),
        Command::Export(args) => commands::transfer::export(&store, args),
        Command::Import(args) => commands::transfer::import(&store, args),
    };
    Ok(exit.into())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn help_version_and_usage_errors_come_back_to_the_caller() {
        let help = main_from(["rh-agents", "--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert_eq!(help.exit_code(), 0);
        assert!(help.render().to_string().contains("Usage: rh-agents"));
        let version = main_from(["rh-agents", "--version"]).unwrap_err();
        assert_eq!(version.kind(), ErrorKind::DisplayVersion);
        assert_eq!(version.exit_code(), 0);
        let usage = main_from(["rh-agents", "run"]).unwrap_err();
        assert_eq!(usage.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(usage.exit_code(), 2);
        let unknown = main_from(["rh-agents", "frobnicate"]).unwrap_err();
        assert_eq!(unknown.exit_code(), 2);
    }

    #[test]
    fn every_reason_parses_to_the_library_reason_of_the_same_name() {
        assert_eq!(Reason::value_variants().len(), 7);
        for reason in Reason::value_variants() {
            let name = reason.to_possible_value().unwrap().get_name().to_owned();
            let Command::Interrupt(args) =
                parse(&["rh-agents", "interrupt", "r1", "--reason", &name]).command
            else {
                panic!("not interrupt");
            };
            assert_eq!(args.reason, InterruptReason::from(*reason));
            assert_eq!(args.reason.as_str(), name);
        }
        let Command::Interrupt(args) = parse(&["rh-agents", "interrupt", "r1"]).command else {
            panic!("not interrupt");
        };
        assert_eq!(args.reason, InterruptReason::UserCancelled);
    }

    #[test]
    fn every_status_parses_to_the_library_status_of_the_same_name() {
        assert_eq!(Status::value_variants().len(), 5);
        for status in Status::value_variants() {
            let name = status.to_possible_value().unwrap().get_name().to_owned();
            let Command::Runs(args) = parse(&["rh-agents", "runs", "--status", &name]).command
            else {
                panic!("not runs");
            };
            assert_eq!(args.status, Some(RunStatus::from(*status)));
            assert_eq!(RunStatus::parse(&name), args.status);
        }
    }

    #[test]
    fn an_unknown_reason_or_status_lists_the_possible_values() {
        let e =
            Cli::try_parse_from(["rh-agents", "interrupt", "r1", "--reason", "bored"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        let text = e.render().to_string();
        assert!(
            text.contains(
                "[possible values: user_cancelled, timeout, resource_limit, error_threshold, \
                 priority_override, system_shutdown, custom]"
            ),
            "{text}"
        );
        let e = Cli::try_parse_from(["rh-agents", "runs", "--status", "done"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        let text = e.render().to_string();
        assert!(
            text.contains("[possible values: running, paused, completed, failed, interrupted]"),
            "{text}"
        );
    }
}
