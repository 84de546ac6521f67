//! `rh-agents export` and `rh-agents import`: one run as a JSON file (artifacts included).

use std::path::PathBuf;

use rh_agents::store::json;

use super::StoreArg;
use crate::cli::{ExportArgs, ImportArgs};
use crate::exit::Exit;
use crate::output::{line, To};

/// `rh-agents export RUN_ID [-o FILE]`.
pub fn export(store: &StoreArg, args: &ExportArgs) -> Exit {
    let store_handle = match store.open_read_only() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.json", args.run_id)));
    match json::export(store_handle.as_ref(), &args.run_id, &path) {
        Ok(snapshot) => {
            line(
                To::Stdout,
                &format!(
                    "exported run {} ({} records) to {}",
                    snapshot.state_id,
                    snapshot.events.len(),
                    path.display()
                ),
            );
            Exit::Success
        }
        Err(e) => store.fail(&e),
    }
}

/// `rh-agents import FILE`.
pub fn import(store: &StoreArg, args: &ImportArgs) -> Exit {
    let store_handle = match store.open() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    match json::import(store_handle.as_ref(), &args.file) {
        Ok(snapshot) => {
            line(
                To::Stdout,
                &format!(
                    "imported run {} ({} records, status {})",
                    snapshot.state_id,
                    snapshot.events.len(),
                    snapshot.status
                ),
            );
            line(To::Stdout, &format!("run id: {}", snapshot.state_id));
            Exit::Success
        }
        Err(e) => store.fail(&e),
    }
}
