//! Signals become interrupts: SIGINT (Ctrl-C) and SIGQUIT ask with reason `user_cancelled`,
//! SIGTERM and SIGHUP (the terminal went away) with `system_shutdown`; all ask for a
//! checkpoint. Left to their default action, they would end the process at once and leave a
//! step's command running in its own process group. The run then stops where it is, also in the
//! middle of a backoff or a command (which gets SIGTERM, then SIGKILL).

use std::io;

use rh_agents::{ExecutionState, InterruptReason, InterruptSignal};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

/// SIGINT and SIGTERM taken over from the default action (which ends the process at once).
/// Made before the run is created, so a signal that comes while it is being set up is kept
/// and delivered to it by [`Signals::attach`].
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    quit: Signal,
}

impl Signals {
    /// Starts listening.
    ///
    /// # Errors
    ///
    /// When the signal handlers cannot be installed.
    pub fn listen() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Turns signals into interrupts of `state` until the returned task is aborted. The
    /// first signal wins; later ones change nothing (the run is already stopping).
    pub fn attach(self, state: &ExecutionState) -> JoinHandle<()> {
        let Self {
            mut interrupt,
            mut terminate,
            mut hangup,
            mut quit,
        } = self;
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let signal = tokio::select! {
                    Some(()) = interrupt.recv() => InterruptSignal::new(InterruptReason::UserCancelled)
                        .message("SIGINT (Ctrl-C)"),
                    Some(()) = terminate.recv() => InterruptSignal::new(InterruptReason::SystemShutdown)
                        .message("SIGTERM"),
                    Some(()) = hangup.recv() => InterruptSignal::new(InterruptReason::SystemShutdown)
                        .message("SIGHUP (the terminal went away)"),
                    Some(()) = quit.recv() => InterruptSignal::new(InterruptReason::UserCancelled)
                        .message("SIGQUIT"),
                    else => break,
                };
                state.request_interrupt(signal.triggered_by("rh-agents").save_checkpoint(true));
            }
        })
    }
}

/// Listens for SIGINT and SIGTERM and interrupts `state` on them, until the returned task is
/// aborted.
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub fn install(state: &ExecutionState) -> io::Result<JoinHandle<()>> {
    Ok(Signals::listen()?.attach(state))
}
