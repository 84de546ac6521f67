//! `command` steps: a child process with captured output.
//!
//! The child runs in its own process group, so that stopping it also stops what it started
//! (`sh -c "a | b"`). One `ProcessGroup` (`command/group.rs`) owns that group and sends each
//! signal at most once: on an interrupt SIGTERM, then SIGKILL after [`TERM_GRACE`] (also when
//! the runtime drops the attempt after an interrupt, as it does with a parallel step's tasks);
//! when the attempt is dropped for another reason (attempt timeout, fail-fast group) SIGKILL
//! at once. A child that exits normally leaves its background processes alone, but their hold
//! on stdout/stderr is cut after [`PIPE_DRAIN`].
//!
//! Output is kept up to [`MAX_CAPTURE`] bytes per stream (`command/capture.rs`); the output
//! value says how many bytes were dropped beyond that, and carries the exact bytes (base64)
//! when they are not UTF-8.

mod capture;
mod group;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use rh_agents::{Actor, BoxError, Ctx, ErrorExt, Severity};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use self::capture::Reader;
use self::group::ProcessGroup;
use super::{interrupted, tail, StepError};
use crate::pipeline::{CommandSpec, Outputs};

pub(super) use self::capture::Captured;
pub use self::capture::MAX_CAPTURE;
pub use self::group::wait_for_stragglers;

/// How long a child has to exit after SIGTERM before it gets SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long output is still read after the child exited (a background process it started may
/// keep the pipe open).
pub const PIPE_DRAIN: Duration = Duration::from_millis(500);

/// A command with its templates rendered: the recorded input of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInput {
    /// The program.
    pub program: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Text for standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// What a successful command produced: the recorded result of the call.
///
/// The optional fields appear only when they say something: a stream cut at [`MAX_CAPTURE`]
/// bytes, or one that is not UTF-8 (its text then has U+FFFD in place of the bad bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// Standard output as text (bytes that are not UTF-8 replaced by U+FFFD).
    pub stdout: String,
    /// Standard error as text (bytes that are not UTF-8 replaced by U+FFFD).
    pub stderr: String,
    /// The exit code (0).
    pub exit_code: i32,
    /// The kept standard output exactly, in base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_base64: Option<String>,
    /// The kept standard error exactly, in base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_base64: Option<String>,
    /// How many bytes of standard output were dropped past [`MAX_CAPTURE`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stdout_truncated_bytes: u64,
    /// How many bytes of standard error were dropped past [`MAX_CAPTURE`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stderr_truncated_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CommandOutput {
    fn new(stdout: Captured, stderr: Captured) -> CommandOutput {
        CommandOutput {
            stdout: stdout.text,
            stderr: stderr.text,
            exit_code: 0,
            stdout_base64: stdout.base64,
            stderr_base64: stderr.base64,
            stdout_truncated_bytes: stdout.truncated_bytes,
            stderr_truncated_bytes: stderr.truncated_bytes,
        }
    }
}

/// Says in the run's records what the output value does not show at a glance: a stream cut
/// short, or one that is not text.
fn warn_about(ctx: &Ctx, stream: &str, captured: &Captured) {
    if captured.truncated_bytes > 0 {
        ctx.log(
            Severity::Warning,
            format!(
                "{stream} cut at {MAX_CAPTURE} bytes: {} more bytes dropped",
                captured.truncated_bytes
            ),
        );
    }
    if captured.base64.is_some() {
        ctx.log(
            Severity::Warning,
            format!("{stream} is not UTF-8: its exact bytes are in `{stream}_base64`"),
        );
    }
}

/// Renders a command's templates.
///
/// # Errors
///
/// A referenced output is missing.
pub fn render(spec: &CommandSpec, outputs: &Outputs) -> Result<CommandInput, String> {
    Ok(CommandInput {
        program: spec.program.render(outputs)?,
        args: spec
            .args
            .iter()
            .map(|a| a.render(outputs))
            .collect::<Result<_, _>>()?,
        env: spec
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.render(outputs)?)))
            .collect::<Result<_, String>>()?,
        cwd: spec.cwd.clone(),
        stdin: spec.stdin.as_ref().map(|s| s.render(outputs)).transpose()?,
    })
}

/// The actor of a command step (without its retry policy).
pub fn actor(name: &str, spec: &CommandSpec) -> Actor<CommandInput, CommandOutput> {
    let retryable: Option<Arc<[i32]>> = spec.retryable_exit_codes.as_deref().map(Arc::from);
    let step: Arc<str> = Arc::from(name);
    Actor::tool(name, move |input: CommandInput, ctx: Ctx| {
        let retryable = retryable.clone();
        let step = Arc::clone(&step);
        async move { run(input, &ctx, &step, retryable.as_deref()).await }
    })
    .description("runs a command")
}

fn spawn_error(program: &str, cwd: Option<&std::path::Path>, e: &io::Error) -> BoxError {
    let message = match (e.kind(), cwd) {
        (io::ErrorKind::NotFound, Some(dir)) if !dir.is_dir() => format!(
            "cannot run `{program}`: its working directory {} does not exist",
            dir.display()
        ),
        (io::ErrorKind::NotFound, _) => format!("cannot run `{program}`: program not found"),
        (io::ErrorKind::PermissionDenied, _) => {
            format!("cannot run `{program}`: permission denied")
        }
        _ => format!("cannot run `{program}`: {e}"),
    };
    // Only a shortage of system resources may pass; anything else (not found, not
    // executable, a NUL byte or an argument list too long from a template) fails the same
    // way every time.
    match e.raw_os_error().map(Errno::from_raw) {
        Some(
            Errno::EINTR
            | Errno::EAGAIN
            | Errno::ENOMEM
            | Errno::ENFILE
            | Errno::EMFILE
            | Errno::ETXTBSY,
        ) => StepError(message).transient().into(),
        _ => StepError(message).permanent().into(),
    }
}

/// Aborts a helper task when the attempt ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run(
    input: CommandInput,
    ctx: &Ctx,
    step: &str,
    retryable: Option<&[i32]>,
) -> Result<CommandOutput, BoxError> {
    let mut cmd = Command::new(&input.program);
    cmd.args(&input.args)
        .envs(&input.env)
        .env("RH_AGENTS_RUN_ID", ctx.run_id())
        .env("RH_AGENTS_STEP", step)
        .env("RH_AGENTS_ADDRESS", ctx.address().as_str())
        .env("RH_AGENTS_ATTEMPT", (ctx.attempt() + 1).to_string())
        .stdin(if input.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The child leads its own group; the `ProcessGroup` below stops the whole group when
        // the attempt ends early, gracefully after an interrupt (so no `kill_on_drop`, which
        // would SIGKILL the child at once).
        .process_group(0);
    if let Some(dir) = &input.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| spawn_error(&input.program, input.cwd.as_deref(), &e))?;
    let mut group = {
        let ctx = ctx.clone();
        ProcessGroup::new(child.id(), TERM_GRACE, move || ctx.is_interrupted())
    };
    // A background process that keeps the input pipe open without reading it must not keep
    // the writer alive after the attempt.
    let _writer = match (child.stdin.take(), input.stdin) {
        (Some(mut pipe), Some(text)) => Some(AbortOnDrop(tokio::spawn(async move {
            // A child that exits without reading its input closes the pipe: not an error.
            let _ = pipe.write_all(text.as_bytes()).await;
        }))),
        _ => None,
    };
    let mut stdout = Reader::spawn(child.stdout.take());
    let mut stderr = Reader::spawn(child.stderr.take());

    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| {
            StepError(format!("waiting for `{}` failed: {e}", input.program)).transient()
        })?,
        () = ctx.interrupted() => {
            // If the runtime drops this attempt during the grace (a parallel step's task is
            // aborted on an interrupt), the group's drop keeps this deadline and sends nothing
            // twice.
            let deadline = group.terminate();
            let deadline = tokio::time::Instant::from_std(deadline);
            if tokio::time::timeout_at(deadline, child.wait()).await.is_err() {
                group.kill();
                let _ = child.wait().await;
            }
            return Err(interrupted(ctx).into());
        }
    };
    group.release();
    // Drained together: each may wait out the short grace for background writers.
    let (stdout, stderr) = tokio::join!(stdout.finish(), stderr.finish());
    warn_about(ctx, "stdout", &stdout);
    warn_about(ctx, "stderr", &stderr);
    match status.code() {
        Some(0) => Ok(CommandOutput::new(stdout, stderr)),
        Some(code) => {
            let mut message = format!("`{}` exited with code {code}", input.program);
            let last = tail(&stderr.text, 3, 300);
            if !last.is_empty() {
                message.push_str(": ");
                message.push_str(&last);
            }
            match retryable {
                Some(codes) if !codes.contains(&code) => {
                    message.push_str(" (exit code not in retryable_exit_codes)");
                    Err(StepError(message).permanent().into())
                }
                // The shell's "not executable" and "command not found": the same next time.
                None if code == 126 || code == 127 => {
                    message.push_str(" (the shell could not run the command: not retried)");
                    Err(StepError(message).permanent().into())
                }
                _ => Err(StepError(message).into()),
            }
        }
        None => {
            let signal = status.signal().unwrap_or_default();
            Err(StepError(format!("`{}` was killed by signal {signal}", input.program)).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use rh_agents::{ErrorClass, Marked};

    use super::*;

    fn class_of(errno: Errno) -> Option<ErrorClass> {
        let e = spawn_error("x", None, &io::Error::from_raw_os_error(errno as i32));
        e.downcast_ref::<Marked>().and_then(Marked::class)
    }

    #[test]
    fn only_a_shortage_of_resources_lets_a_failed_spawn_be_retried() {
        for errno in [
            Errno::EINTR,
            Errno::EAGAIN,
            Errno::ENOMEM,
            Errno::ENFILE,
            Errno::EMFILE,
            Errno::ETXTBSY,
        ] {
            assert_eq!(class_of(errno), Some(ErrorClass::Transient), "{errno}");
        }
        for errno in [Errno::ENOENT, Errno::EACCES, Errno::E2BIG, Errno::EINVAL] {
            assert_eq!(class_of(errno), Some(ErrorClass::Permanent), "{errno}");
        }
    }
}
