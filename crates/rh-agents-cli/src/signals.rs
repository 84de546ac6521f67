//! Signals become interrupts: SIGINT (Ctrl-C) asks with reason `user_cancelled`, SIGTERM with
//! `system_shutdown`; both ask for a checkpoint. The run then stops where it is, also in the
//! middle of a backoff or a command (which gets SIGTERM, then SIGKILL).

use std::io;

use rh_agents::{ExecutionState, InterruptReason, InterruptSignal};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

/// Listens for SIGINT and SIGTERM until the returned task is aborted. The first signal wins;
/// later ones are recorded by nothing (the run is already stopping).
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub fn install(state: &ExecutionState) -> io::Result<JoinHandle<()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let state = state.clone();
    Ok(tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(()) = interrupt.recv() => InterruptSignal::new(InterruptReason::UserCancelled)
                    .message("SIGINT (Ctrl-C)"),
                Some(()) = terminate.recv() => InterruptSignal::new(InterruptReason::SystemShutdown)
                    .message("SIGTERM"),
                else => break,
            };
            state.request_interrupt(signal.triggered_by("rh-agents").save_checkpoint(true));
        }
    }))
}
