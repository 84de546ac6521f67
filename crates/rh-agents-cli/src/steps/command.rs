//! `command` steps: a child process with captured output.
//!
//! The child runs in its own process group, so that stopping it also stops what it started
//! (`sh -c "a | b"`). On an interrupt the group gets SIGTERM, then SIGKILL after
//! [`TERM_GRACE`] (also when the runtime drops the attempt after an interrupt, as it does
//! with a parallel step's tasks); when the attempt is dropped for another reason (attempt
//! timeout, fail-fast group) the group gets SIGKILL at once. A child that exits normally leaves its background processes alone,
//! but their hold on stdout/stderr is cut after [`PIPE_DRAIN`].

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rh_agents::{Actor, BoxError, Ctx, ErrorExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::{interrupted, tail, StepError};
use crate::pipeline::{CommandSpec, Outputs};

/// How long a child has to exit after SIGTERM before it gets SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How long output is still read after the child exited (a background process it started may
/// keep the pipe open).
pub const PIPE_DRAIN: Duration = Duration::from_millis(500);
/// At most this much of each stream is kept.
pub const MAX_CAPTURE: usize = 16 * 1024 * 1024;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// The exit code (0).
    pub exit_code: i32,
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

/// Sends signals to the child's process group, and stops it when dropped while armed: after
/// an interrupt (the runtime dropped the attempt: a parallel step's task is stopped at once)
/// with SIGTERM, then SIGKILL after [`TERM_GRACE`]; otherwise (an attempt timeout, a
/// fail-fast group) with SIGKILL at once.
struct Group {
    pgid: Option<Pid>,
    state: rh_agents::ExecutionState,
}

impl Group {
    fn disarm(mut self) {
        self.pgid = None;
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // The group may be gone already (ESRCH): nothing left to stop.
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else {
            return;
        };
        if self.state.is_interrupted() {
            self.signal(Signal::SIGTERM);
            self.signal(Signal::SIGCONT);
            reaper::kill_after(pgid, TERM_GRACE);
        } else {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// Process groups given SIGTERM by a dropped attempt, killed after their grace unless gone
/// by then. The command waits for them before it exits ([`wait_for_stragglers`]).
mod reaper {
    use std::sync::Mutex;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;

    static WATCHERS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

    pub(super) fn kill_after(pgid: Pid, grace: Duration) {
        let deadline = Instant::now() + grace;
        let watcher = std::thread::spawn(move || {
            // Signal "none" only asks whether the group still exists.
            while killpg(pgid, None::<Signal>).is_ok() {
                if Instant::now() >= deadline {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut watchers = WATCHERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        watchers.retain(|w| !w.is_finished());
        watchers.push(watcher);
    }

    pub(super) fn wait() {
        let watchers: Vec<_> = std::mem::take(
            &mut *WATCHERS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for watcher in watchers {
            let _ = watcher.join();
        }
    }
}

/// Waits until every command stopped by an interrupt has exited or been killed (at most
/// [`TERM_GRACE`]): called before the process exits, which would otherwise leave a command
/// that ignores SIGTERM running.
pub fn wait_for_stragglers() {
    reaper::wait();
}

/// A task reading one stream into a shared buffer, aborted when dropped.
struct Reader {
    buffer: Arc<Mutex<Vec<u8>>>,
    task: Option<JoinHandle<()>>,
}

impl Reader {
    fn spawn<R: AsyncRead + Unpin + Send + 'static>(stream: Option<R>) -> Reader {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let task = stream.map(|mut stream| {
            let sink = Arc::clone(&buffer);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 8192];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    let mut buf = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    let room = MAX_CAPTURE.saturating_sub(buf.len());
                    buf.extend_from_slice(&chunk[..n.min(room)]);
                }
            })
        });
        Reader { buffer, task }
    }

    async fn finish(&mut self) -> String {
        if let Some(task) = &mut self.task {
            if tokio::time::timeout(PIPE_DRAIN, task).await.is_err() {
                // A background process still holds the pipe: keep what was read.
                self.stop();
            }
            self.task = None;
        }
        let buf = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
    }
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
    const EINTR: i32 = 4;
    const EAGAIN: i32 = 11;
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ETXTBSY: i32 = 26;
    match e.raw_os_error() {
        Some(EINTR | EAGAIN | ENOMEM | ENFILE | EMFILE | ETXTBSY) => {
            StepError(message).transient().into()
        }
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
        .env("RH_AGENTS_RUN_ID", ctx.state().id())
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
        // The child leads its own group; the `Group` guard below stops the whole group when
        // the attempt ends early, gracefully after an interrupt (so no `kill_on_drop`, which
        // would SIGKILL the child at once).
        .process_group(0);
    if let Some(dir) = &input.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| spawn_error(&input.program, input.cwd.as_deref(), &e))?;
    let group = Group {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
        state: ctx.state().clone(),
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
            group.signal(Signal::SIGTERM);
            // A process stopped (e.g. by SIGTTIN, reading the terminal from the background)
            // would keep the SIGTERM pending until the SIGKILL: wake it to take it.
            group.signal(Signal::SIGCONT);
            if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_err() {
                group.signal(Signal::SIGKILL);
                let _ = child.wait().await;
            }
            // Stopped here, within its grace: nothing left for the drop to do.
            group.disarm();
            return Err(interrupted(ctx).into());
        }
    };
    // Exited normally: what it left running in the background is its business.
    group.disarm();
    // Drained together: each may wait out the short grace for background writers.
    let (stdout, stderr) = tokio::join!(stdout.finish(), stderr.finish());
    match status.code() {
        Some(0) => Ok(CommandOutput {
            stdout,
            stderr,
            exit_code: 0,
        }),
        Some(code) => {
            let mut message = format!("`{}` exited with code {code}", input.program);
            let last = tail(&stderr, 3, 300);
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
