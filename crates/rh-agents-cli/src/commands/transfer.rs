//! `rh-agents export` and `rh-agents import`: one run as a JSON file (artifacts included).
//!
//! An export file is data from elsewhere once it is shared: `import` checks the run's id,
//! marks the run as imported (`trust.rs`) and runs nothing; `export` writes only where
//! `target.rs` allows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rh_agents::observe::escape::escape_control;
use rh_agents::store::{json, StoreError};

use super::{io_exit, target, trust, StoreArg};
use crate::cli::{ExportArgs, ImportArgs};
use crate::exit::Exit;
use crate::output::{line, To};

/// `rh-agents export RUN_ID [-o FILE] [--force]`.
pub fn export(store: &StoreArg, args: &ExportArgs) -> Exit {
    let path = match &args.output {
        Some(path) => path.clone(),
        None => {
            // The default name is built from the id: only a plain one may name a file here.
            if let Err(why) = trust::check_run_id(&args.run_id) {
                line(
                    To::Stderr,
                    &format!(
                        "error: run id {:?} cannot name a file ({why}); choose one with -o FILE",
                        escape_control(&args.run_id)
                    ),
                );
                return Exit::BadInput;
            }
            PathBuf::from(format!("{}.json", args.run_id))
        }
    };
    let target = match target::choose(&path, args.force) {
        Ok(target) => target,
        Err(refused) => return refuse(&refused),
    };
    let (store_handle, snapshot) = match store.load_read_only(&args.run_id) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let mut blobs = BTreeMap::new();
    for artifact in snapshot.artifacts.values() {
        if !blobs.contains_key(&artifact.sha256) {
            match store_handle.get_blob(artifact) {
                Ok(bytes) => {
                    blobs.insert(artifact.sha256.clone(), bytes);
                }
                Err(e) => return store.fail(&e),
            }
        }
    }
    let text = match json::to_text(&snapshot, &blobs) {
        Ok(text) => text,
        Err(e) => return store.fail(&e),
    };
    if let Err(refused) = target::write(&target, text.as_bytes()) {
        return refuse(&refused);
    }
    // Written to stdout, or through a FIFO or device that may be stdout (`/dev/stdout`):
    // stdout carries the file alone, so the line goes to stderr.
    let (to, shown) = match target {
        target::Target::Stdout => (To::Stderr, "standard output".to_owned()),
        target::Target::Through { .. } => (To::Stderr, path.display().to_string()),
        target::Target::New(_) | target::Target::Replace(_) => {
            (To::Stdout, path.display().to_string())
        }
    };
    line(
        to,
        &format!(
            "exported run {} ({} records) to {}",
            escape_control(&snapshot.state_id),
            snapshot.events.len(),
            escape_control(&shown)
        ),
    );
    Exit::Success
}

fn refuse(refused: &target::Refused) -> Exit {
    line(To::Stderr, &format!("error: {}", refused.message));
    refused.exit
}

/// `rh-agents import FILE`.
pub fn import(store: &StoreArg, args: &ImportArgs) -> Exit {
    // The file is read and checked before the store is opened: a bad file makes no store.
    let (mut snapshot, blobs) = match json::read_file(&args.file) {
        Ok(read) => read,
        Err(e) => return not_imported(&args.file, &e.report(), file_exit(&e)),
    };
    if let Err(why) = trust::check_run_id(&snapshot.state_id) {
        let reason = format!(
            "its run id {:?} is not a valid run id ({why})",
            snapshot.state_id
        );
        return not_imported(&args.file, &reason, Exit::BadInput);
    }
    trust::mark_imported(&mut snapshot.metadata, &args.file, SystemTime::now());
    let store_handle = match store.open() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let saved = (|| {
        if store_handle.exists(&snapshot.state_id)? {
            return Err(StoreError::AlreadyExists {
                id: snapshot.state_id.clone(),
            });
        }
        for artifact in snapshot.artifacts.values() {
            let bytes = blobs
                .get(&artifact.sha256)
                .ok_or_else(|| StoreError::ArtifactMissing {
                    sha256: artifact.sha256.clone(),
                })?;
            store_handle.put_blob(artifact, bytes)?;
        }
        store_handle.save(&snapshot)
    })();
    match saved {
        Ok(()) => {}
        // The file lacks the bytes of an artifact it names: the file is at fault.
        Err(e @ StoreError::ArtifactMissing { .. }) => {
            return not_imported(&args.file, &e.report(), Exit::BadInput)
        }
        Err(e) => return store.fail(&e),
    }
    line(
        To::Stdout,
        &format!(
            "imported run {} ({} records, status {}), marked as imported: `rh-agents show {}` \
             shows the pipeline it holds, which `resume` runs only with --trust-imported",
            snapshot.state_id,
            snapshot.events.len(),
            snapshot.status,
            snapshot.state_id,
        ),
    );
    line(To::Stdout, &format!("run id: {}", snapshot.state_id));
    Exit::Success
}

/// Every problem with the file itself (malformed, another version, misnumbered records, an
/// artifact whose bytes do not match its hash) is bad input; a failed read is classed by its
/// error.
fn file_exit(e: &StoreError) -> Exit {
    match e {
        StoreError::Io { source, .. } => io_exit(source),
        _ => Exit::BadInput,
    }
}

fn not_imported(file: &Path, reason: &str, exit: Exit) -> Exit {
    line(
        To::Stderr,
        &format!(
            "error: {} was not imported: {}",
            escape_control(&file.display().to_string()),
            escape_control(reason)
        ),
    );
    exit
}
