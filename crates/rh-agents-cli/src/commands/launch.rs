//! `rh-agents run` and `rh-agents resume`: a pipeline run on a durable state, watched by the
//! printer or JSON lines, stoppable by signals, `--timeout` and `rh-agents interrupt`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rh_agents::observe::jsonl::JsonLines;
use rh_agents::observe::printer::Printer;
use rh_agents::store::{ReplayMode, RunMetadata};
use rh_agents::{Event, ExecutionState, ExecutionStateBuilder, Subscriber};
use serde_json::Value;

use super::trust::{self, FILE_KEY, SOURCE_KEY, WORKDIR_KEY};
use super::StoreArg;
use crate::cli::{ResumeArgs, RunArgs, Watch};
use crate::exit::Exit;
use crate::output::{line, To};
use crate::pipeline::{self, Pipeline};
use crate::run::{self, RunOptions, RunOutcome, RunStatus};
use crate::signals;

/// A pipeline file the user named, read and checked, its commands set to run in the current
/// directory by default.
struct Local {
    pipeline: Pipeline,
    text: String,
    workdir: PathBuf,
}

fn read_local(path: &Path) -> Result<Local, Exit> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            line(
                To::Stderr,
                &format!("error: cannot read {}: {e}", path.display()),
            );
            return Err(Exit::BadInput);
        }
    };
    // Diagnostics name the file as the user typed it.
    let mut pipeline = parse(&text, path, path)?;
    let workdir = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(e) => {
            line(
                To::Stderr,
                &format!("error: cannot read the working directory: {e}"),
            );
            return Err(Exit::Internal);
        }
    };
    pipeline.default_cwd(&workdir);
    Ok(Local {
        pipeline,
        text,
        workdir,
    })
}

/// `rh-agents run FILE`.
pub fn run(store: &StoreArg, args: &RunArgs) -> Exit {
    let Local {
        pipeline,
        text,
        workdir,
    } = match read_local(&args.file) {
        Ok(local) => local,
        Err(exit) => return exit,
    };
    // Kept with the run, absolute, so a resume from another directory reads the file's
    // relative `cwd`s the same way and runs the other commands where they ran first.
    let file = std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone());
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
    let pipeline = match &args.pipeline {
        // The user's own file: run as `run FILE` would run it from here.
        Some(file) => match read_local(file) {
            Ok(local) => local.pipeline,
            Err(exit) => return exit,
        },
        None => match recorded_pipeline(&snapshot, args) {
            Ok(pipeline) => pipeline,
            Err(exit) => return exit,
        },
    };
    let options = RunOptions {
        tags: snapshot.metadata.tags.clone(),
    };
    let id = args.run_id.clone();
    execute(
        store,
        &args.watch,
        &pipeline,
        &options,
        move |builder| async move {
            // Replayed steps are published, so the tree shows them as recovered.
            builder
                .resume(store_handle, &id, ReplayMode::RepublishAll)
                .await
        },
    )
}

/// The pipeline the run recorded, unless the run was imported and the user has not said they
/// trust it: a file from elsewhere does not run commands here without consent.
fn recorded_pipeline(
    snapshot: &rh_agents::store::Snapshot,
    args: &ResumeArgs,
) -> Result<Pipeline, Exit> {
    if let Some(mark) = trust::imported(&snapshot.metadata) {
        if !args.trust_imported {
            line(
                To::Stderr,
                &format!(
                    "error: run {id} was imported (from {mark}): its pipeline comes from that \
                     file, so it is not run without consent; review it with `rh-agents show \
                     {id}`, then resume with --pipeline FILE (a pipeline file of yours) or \
                     --trust-imported",
                    id = args.run_id
                ),
            );
            return Err(Exit::BadInput);
        }
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
                 resume it from the program that started it, or with --pipeline FILE",
                args.run_id
            ),
        );
        return Err(Exit::BadInput);
    };
    let file = PathBuf::from(file);
    let mut pipeline = parse(text, &file, &file)?;
    // Commands without a `cwd` run where the run was started, wherever it is resumed from.
    if let Some(dir) = custom.get(WORKDIR_KEY).and_then(Value::as_str) {
        pipeline.default_cwd(Path::new(dir));
    }
    Ok(pipeline)
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
fn execute<Made>(
    store: &StoreArg,
    watch: &Watch,
    pipeline: &Pipeline,
    options: &RunOptions,
    make: impl FnOnce(ExecutionStateBuilder) -> Made,
) -> Exit
where
    Made: std::future::Future<Output = Result<ExecutionState, rh_agents::store::StoreError>>,
{
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
        // Starting or resuming waits (asynchronously) for a writer that was just interrupted
        // to let go of the run.
        let state = match make(builder).await {
            Ok(state) => state,
            Err(e) => return store.fail(&e),
        };
        let listener = signals.attach(&state);
        let to = if watch.json { To::Stderr } else { To::Stdout };
        line(to, &format!("run id: {}", state.id()));
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
        let saved = state.set_status(status);
        let exit = match outcome {
            Ok(outcome) => report_in_time(store, &state, outcome, printer),
            Err(e) => {
                line(To::Stderr, &format!("error: {e}"));
                Exit::Internal
            }
        };
        if let Err(e) = &saved {
            line(
                To::Stderr,
                &format!(
                    "error: the state store failed: the run's final state could not be saved: \
                     {}; what was saved can be resumed",
                    e.report()
                ),
            );
        }
        settle(exit, saved.err().as_ref(), stopped_by_store(&state))
    })
}

/// The exit code of a run: the outcome's, unless the store failed. A store that could not
/// save the final state, or that stopped the run mid-way (the run then ends interrupted,
/// which would otherwise exit 3), is an I/O failure (74), or a temporary one (75) when it
/// was only busy at the end.
fn settle(
    outcome: Exit,
    final_save: Option<&rh_agents::store::StoreError>,
    stopped_by_store: bool,
) -> Exit {
    match final_save.map(super::exit_for) {
        Some(Exit::TempFail) => Exit::TempFail,
        Some(_) => Exit::IoError,
        None if stopped_by_store => Exit::IoError,
        None => outcome,
    }
}

/// Whether the run was stopped because its store failed to save (the state's own interrupt,
/// marked [`StoreError::STOPPED_THE_RUN`](rh_agents::store::StoreError::STOPPED_THE_RUN)).
fn stopped_by_store(state: &ExecutionState) -> bool {
    state.interrupt_signal().is_some_and(|signal| {
        signal.triggered_by.as_deref() == Some(rh_agents::store::StoreError::STOPPED_THE_RUN)
    })
}

/// How long the end of a run waits for its summary to be written. Stdout may be a full pipe
/// nobody reads: the process must still exit (Ctrl-C must work), without the summary then.
const REPORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// [`report`] on a thread of its own, waited for at most [`REPORT_PATIENCE`]; returns the
/// exit code either way.
fn report_in_time(
    store: &StoreArg,
    state: &ExecutionState,
    outcome: RunOutcome,
    printer: Option<Arc<Printer<std::io::Stdout>>>,
) -> Exit {
    let exit = outcome.exit();
    let (done, reported) = std::sync::mpsc::channel();
    let (store, state) = (store.clone(), state.clone());
    let spawned = std::thread::Builder::new()
        .name("rh-agents-report".to_owned())
        .spawn(move || {
            let exit = report(&store, &state, &outcome, printer.as_deref());
            // Let go of the state before saying so: the last clone dropped writes the run's
            // last records and releases its lock, which must not happen on a thread the
            // process may not wait for.
            drop(state);
            let _ = done.send(exit);
        });
    match spawned {
        Ok(_) => match reported.recv_timeout(REPORT_PATIENCE) {
            Ok(exit) => exit,
            Err(_) => {
                line(
                    To::Stderr,
                    "warning: stdout is not being read; the run's summary was not printed",
                );
                exit
            }
        },
        Err(e) => {
            line(To::Stderr, &format!("error: cannot print the summary: {e}"));
            exit
        }
    }
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
        RunStatus::Interrupted { step, signal } if stopped_by_store(state) => {
            // The state's own message says what failed and why the run stops.
            let mut text = format!(
                "error: {}",
                signal
                    .message
                    .as_deref()
                    .unwrap_or("the state store failed")
            );
            if let Some(step) = step {
                text.push_str(&format!("; stopped at step \"{step}\""));
            }
            text.push_str(" (exit 74: the store failed)");
            line(To::Stderr, &text);
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

#[cfg(test)]
mod tests {
    use super::{settle, stopped_by_store};
    use crate::exit::Exit;
    use rh_agents::store::StoreError;
    use rh_agents::{ExecutionState, InterruptReason, InterruptSignal};

    #[test]
    fn a_run_the_store_stopped_exits_74_even_when_its_end_was_saved() {
        let state = ExecutionState::new();
        assert!(!stopped_by_store(&state));
        state.request_interrupt(
            InterruptSignal::new(InterruptReason::Custom).triggered_by(StoreError::STOPPED_THE_RUN),
        );
        assert!(stopped_by_store(&state));
        assert_eq!(settle(Exit::Interrupted, None, true), Exit::IoError);
        assert_eq!(settle(Exit::Interrupted, None, false), Exit::Interrupted);
    }

    #[test]
    fn a_final_state_that_cannot_be_saved_is_a_store_failure() {
        let failed = StoreError::Backend {
            context: "saving the status".into(),
            source: Box::new(std::io::Error::other("disk I/O error")),
        };
        assert_eq!(settle(Exit::Success, Some(&failed), false), Exit::IoError);
        let held = StoreError::Locked {
            id: "r".into(),
            holder: "process 1".into(),
        };
        assert_eq!(settle(Exit::Success, Some(&held), false), Exit::TempFail);
        // A user's interrupt is not a store failure.
        let state = ExecutionState::new();
        state.request_interrupt(InterruptSignal::new(InterruptReason::UserCancelled));
        assert!(!stopped_by_store(&state));
    }
}
