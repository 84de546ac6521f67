//! `rh-agents interrupt RUN_ID`: leaves an interrupt request in the store, whose running
//! process notices it by itself (its state watches the run's mailbox in the store).

use rh_agents::store::RunStatus;
use rh_agents::InterruptSignal;

use super::StoreArg;
use crate::cli::InterruptArgs;
use crate::exit::Exit;
use crate::output::{line, To};

/// `rh-agents interrupt RUN_ID [--reason R] [--message M]`.
pub fn interrupt(store: &StoreArg, args: &InterruptArgs) -> Exit {
    let id = &args.run_id;
    let (store_handle, snapshot) = match store.load(id) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    if snapshot.status != RunStatus::Running {
        line(
            To::Stderr,
            &format!(
                "error: run {id} is not running (status: {}); nothing to interrupt",
                snapshot.status
            ),
        );
        return Exit::BadInput;
    }
    match store_handle.is_writing(id) {
        Ok(true) => {}
        Ok(false) => {
            line(
                To::Stderr,
                &format!(
                    "error: run {id} is marked running but no process is running it (it was \
                     killed or crashed); resume it with: rh-agents resume {id}{}",
                    store.hint()
                ),
            );
            return Exit::BadInput;
        }
        Err(e) => return store.fail(&e),
    }
    let mut signal = InterruptSignal::new(args.reason)
        .triggered_by(format!(
            "rh-agents interrupt (process {})",
            std::process::id()
        ))
        .save_checkpoint(true);
    if let Some(message) = &args.message {
        signal = signal.message(message.clone());
    }
    if let Err(e) = store_handle.request_interrupt(id, &signal) {
        return store.fail(&e);
    }
    line(
        To::Stdout,
        &format!(
            "interrupt requested for run {id} ({}); it stops within a moment",
            args.reason
        ),
    );
    Exit::Success
}
