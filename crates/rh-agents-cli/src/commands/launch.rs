//! `rh-agents run` and `rh-agents resume`: a pipeline run on a durable state, watched by the
//! printer or JSON lines, stoppable by signals, `--timeout` and `rh-agents interrupt`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rh_agents::observe::jsonl::JsonLines;
use rh_agents::observe::printer::Printer;
use rh_agents::store::{interrupt_checker, ReplayMode, RunMetadata};
use rh_agents::{Event, ExecutionState, ExecutionStateBuilder, Subscriber};
use serde_json::Value;

use super::StoreArg;
use crate::cli::{ResumeArgs, RunArgs, Watch};
use crate::exit::Exit;
use crate::output::{line, To};
use crate::pipeline::{self, Pipeline};
use crate::run::{self, RunOptions, RunOutcome, RunStatus};
use crate::signals;

/// Where a run keeps the pipeline it runs, so `resume` runs the same one even if the file
/// changed or moved since.
const SOURCE_KEY: &str = "pipeline_source";
const FILE_KEY: &str = "pipeline_file";
const WORKDIR_KEY: &str = "working_dir";

/// `rh-agents run FILE`.
pub fn run(store: &StoreArg, args: &RunArgs) -> Exit {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => {
            line(
                To::Stderr,
                &format!("error: cannot read {}: {e}", args.file.display()),
            );
            return Exit::BadInput;
        }
    };
    // Diagnostics name the file as the user typed it.
    let mut pipeline = match parse(&text, &args.file, &args.file) {
        Ok(p) => p,
        Err(exit) => return exit,
    };
    // Kept with the run, absolute, so a resume from another directory reads the file's
    // relative `cwd`s the same way and runs the other commands where they ran first.
    let file = std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone());
    let workdir = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(e) => {
            line(
                To::Stderr,
                &format!("error: cannot read the working directory: {e}"),
            );
            return Exit::Internal;
        }
    };
    pipeline.default_cwd(&workdir);
    let store_handle = match store.open() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let mut metadata = RunMetadata::new().pipeline(pipeline.name.clone());
    metadata.tags.clone_from(&args.tags);
    metadata = metadata
        .custom(FILE_KEY, Value::from(file.display().to_string()))
        .custom(WORKDIR_KEY, Value::from(workdir.display().to_string()))
        .custom(SOURCE_KEY, Value::from(text));
    let options = RunOptions {
        tags: args.tags.clone(),
    };
    execute(store, &args.watch, &pipeline, &options, |builder| {
        builder.metadata(metadata).start(store_handle)
    })
}

/// `rh-agents resume RUN_ID`.
pub fn resume(store: &StoreArg, args: &ResumeArgs) -> Exit {
    let (store_handle, snapshot) = match store.load(&args.run_id) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    if snapshot.status == rh_agents::store::RunStatus::Completed {
        // With --json, stdout carries JSON lines only.
        let to = if args.watch.json {
            To::Stderr
        } else {
            To::Stdout
        };
        line(
            to,
            &format!(
                "run {} already completed; nothing to resume",
                snapshot.state_id
            ),
        );
        return Exit::Success;
    }
    let custom = &snapshot.metadata.custom;
    let (Some(text), Some(file)) = (
        custom.get(SOURCE_KEY).and_then(Value::as_str),
        custom.get(FILE_KEY).and_then(Value::as_str),
    ) else {
        line(
            To::Stderr,
            &format!(
                "error: run {} was not started by `rh-agents run` (it holds no pipeline); \
                 resume it from the program that started it",
                args.run_id
            ),
        );
        return Exit::BadInput;
    };
    let file = PathBuf::from(file);
    let mut pipeline = match parse(text, &file, &file) {
        Ok(p) => p,
        Err(exit) => return exit,
    };
    // Commands without a `cwd` run where the run was started, wherever it is resumed from.
    if let Some(dir) = custom.get(WORKDIR_KEY).and_then(Value::as_str) {
        pipeline.default_cwd(std::path::Path::new(dir));
    }
    let options = RunOptions {
        tags: snapshot.metadata.tags.clone(),
    };
    let id = args.run_id.clone();
    execute(store, &args.watch, &pipeline, &options, move |builder| {
        // Replayed steps are published, so the tree shows them as recovered.
        builder.resume(store_handle, &id, ReplayMode::RepublishAll)
    })
}

fn parse(text: &str, file: &Path, shown: &Path) -> Result<Pipeline, Exit> {
    pipeline::parse(text, file).map_err(|diagnostics| {
        for d in &diagnostics {
            line(To::Stderr, &format!("error: {d}"));
        }
        if diagnostics.is_empty() {
            line(
                To::Stderr,
                &format!("error: {} is not a valid pipeline", shown.display()),
            );
        }
        Exit::BadInput
    })
}

/// Builds the state (`make` starts or resumes it on the store), runs the pipeline, saves
/// how it ended, and reports.
fn execute(
    store: &StoreArg,
    watch: &Watch,
    pipeline: &Pipeline,
    options: &RunOptions,
    make: impl FnOnce(ExecutionStateBuilder) -> Result<ExecutionState, rh_agents::store::StoreError>,
) -> Exit {
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
    runtime.block_on(async {
        let printer = (!watch.json).then(|| Arc::new(Printer::builder().detail(true).stdout()));
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
        // Signals are taken over before the run exists: a Ctrl-C while it is being set up is
        // kept and interrupts it as soon as it is, instead of killing the process.
        let signals = match signals::Signals::listen() {
            Ok(signals) => signals,
            Err(e) => {
                line(
                    To::Stderr,
                    &format!("error: cannot listen for signals: {e}"),
                );
                return Exit::Internal;
            }
        };
        let state = match make(builder) {
            Ok(state) => state,
            Err(e) => return store.fail(&e),
        };
        let listener = signals.attach(&state);
        let to = if watch.json { To::Stderr } else { To::Stdout };
        line(to, &format!("run id: {}", state.id()));
        if let Some(store_handle) = state.store() {
            state.add_checker(interrupt_checker(Arc::clone(store_handle), state.id()));
        }
        if let Some(after) = watch.timeout {
            if let Err(e) = state.set_timeout(after) {
                line(To::Stderr, &format!("error: {e}"));
                return Exit::Internal;
            }
        }
        let outcome = run::run_pipeline(&state, pipeline, options).await;
        // Commands an interrupt stopped mid-group get their grace before the process exits
        // (leaving would leave one that ignores SIGTERM running).
        let _ = tokio::task::spawn_blocking(crate::steps::command::wait_for_stragglers).await;
        listener.abort();
        state.cancel_timeout();
        let status = match &outcome {
            Ok(outcome) => match outcome.status {
                RunStatus::Completed => rh_agents::store::RunStatus::Completed,
                RunStatus::Failed { .. } => rh_agents::store::RunStatus::Failed,
                RunStatus::Interrupted { .. } => rh_agents::store::RunStatus::Interrupted,
            },
            Err(_) => rh_agents::store::RunStatus::Failed,
        };
        if let Err(e) = state.set_status(status) {
            line(
                To::Stderr,
                &format!(
                    "error: the run's final state could not be saved: {e}; what was saved \
                     can be resumed"
                ),
            );
            return Exit::Internal;
        }
        match outcome {
            Ok(outcome) => report(store, &state, &outcome, printer.as_deref()),
            Err(e) => {
                line(To::Stderr, &format!("error: {e}"));
                Exit::Internal
            }
        }
    })
}

/// Prints the summary, how the run ended, its id and (when it stopped early) how to resume;
/// returns the exit code.
fn report(
    store: &StoreArg,
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
    let resume_hint = format!(
        "resume with: rh-agents resume {}{}",
        outcome.run_id,
        store.hint()
    );
    match &outcome.status {
        RunStatus::Completed => line(to, "run completed"),
        RunStatus::Failed { step, message } => {
            line(
                To::Stderr,
                &format!("error: step \"{step}\" failed: {message}"),
            );
            line(to, &resume_hint);
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
            line(to, &resume_hint);
        }
    }
    line(to, &format!("run id: {}", outcome.run_id));
    outcome.exit()
}
