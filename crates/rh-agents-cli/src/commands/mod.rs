//! What each subcommand does. Every command opens the store the same way and turns store
//! errors into the same exit codes.

pub mod inspect;
pub mod interrupt;
pub mod launch;
mod target;
pub mod transfer;
mod trust;

use std::path::PathBuf;
use std::sync::Arc;

use rh_agents::store::{Snapshot, SqliteStore, StateStore, StoreError};

use crate::cli::DEFAULT_STORE;
use crate::exit::Exit;
use crate::output::{line, To};

/// The `--store` argument: the path, and whether the user gave it (hints repeat it then).
#[derive(Debug, Clone)]
pub struct StoreArg {
    path: PathBuf,
    explicit: bool,
}

impl StoreArg {
    /// The store at `path`, or the default one.
    pub fn new(path: Option<PathBuf>) -> Self {
        match path {
            Some(path) => Self {
                path,
                explicit: true,
            },
            None => Self {
                path: PathBuf::from(DEFAULT_STORE),
                explicit: false,
            },
        }
    }

    /// Opens the store, reporting a failure.
    ///
    /// # Errors
    ///
    /// The exit code for the failure, which has been reported on stderr.
    pub fn open(&self) -> Result<Arc<dyn StateStore>, Exit> {
        match SqliteStore::open(&self.path) {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(fail(&e)),
        }
    }

    /// Opens the store only if it exists: for commands about runs already there, so a
    /// mistyped path (or another working directory) is reported, not made into an empty
    /// store.
    ///
    /// # Errors
    ///
    /// The exit code for the failure, which has been reported on stderr.
    pub fn open_existing(&self) -> Result<Arc<dyn StateStore>, Exit> {
        match SqliteStore::open_existing(&self.path) {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(fail_opening(&e)),
        }
    }

    /// Opens the store only if it exists, for reading only: for commands that only read
    /// (`runs`, `show`, `export`), which then work on a store the user may only read and
    /// change nothing in it (no upgrade, no checkpoint, no lock file).
    ///
    /// # Errors
    ///
    /// The exit code for the failure, which has been reported on stderr.
    pub fn open_read_only(&self) -> Result<Arc<dyn StateStore>, Exit> {
        match SqliteStore::open_read_only(&self.path) {
            Ok(store) => Ok(Arc::new(store)),
            Err(e) => Err(fail_opening(&e)),
        }
    }

    /// Opens the store (only if it exists) and loads the run `id` from it, reporting a
    /// failure: for commands about one run already there.
    ///
    /// # Errors
    ///
    /// The exit code for the failure, which has been reported on stderr.
    pub fn load(&self, id: &str) -> Result<(Arc<dyn StateStore>, Snapshot), Exit> {
        let store = self.open_existing()?;
        match store.load(id) {
            Ok(snapshot) => Ok((store, snapshot)),
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Opens the store read-only (only if it exists) and loads the run `id` from it,
    /// reporting a failure: for commands that only read one run (`export`).
    ///
    /// # Errors
    ///
    /// The exit code for the failure, which has been reported on stderr.
    pub fn load_read_only(&self, id: &str) -> Result<(Arc<dyn StateStore>, Snapshot), Exit> {
        let store = self.open_read_only()?;
        match store.load(id) {
            Ok(snapshot) => Ok((store, snapshot)),
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Reports a store error, naming the store when the error is about a run it lacks.
    pub fn fail(&self, e: &StoreError) -> Exit {
        match e {
            StoreError::NotFound { .. } => {
                line(
                    To::Stderr,
                    &format!(
                        "error: {} (store: {}); `rh-agents runs{}` lists the runs it holds",
                        e.report(),
                        self.path.display(),
                        self.hint()
                    ),
                );
                Exit::BadInput
            }
            _ => fail(e),
        }
    }

    /// Whether the store file exists.
    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// The store's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// ` --store PATH` when the user gave one, for commands printed as hints.
    pub fn hint(&self) -> String {
        if self.explicit {
            let path = self.path.display().to_string();
            // Quoted unless plainly safe, so the hint can be pasted into a shell as it is.
            let plain = path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
            if plain {
                format!(" --store {path}")
            } else {
                format!(" --store '{}'", path.replace('\'', r"'\''"))
            }
        } else {
            String::new()
        }
    }
}

/// Reports a store error and picks its exit code (see [`exit_for`]); the message says which
/// kind of failure it is when the error's own text does not.
pub fn fail(e: &StoreError) -> Exit {
    let exit = exit_for(e);
    // The error with its causes, each once (the library's messages do not repeat a source).
    let report = e.report();
    let text = match exit {
        Exit::IoError => format!("error: the state store failed: {report}"),
        // A held run's message already says to wait for its writer.
        Exit::TempFail if !matches!(e, StoreError::Locked { .. }) => {
            format!("error: {report} (the store is busy: try again in a moment)")
        }
        _ => match e {
            StoreError::NotFound { .. } => {
                format!("error: {report}; `rh-agents runs` lists the runs it holds")
            }
            StoreError::UnknownAddress { id, .. } => {
                format!("error: {report}; `rh-agents show {id}` lists its addresses")
            }
            _ => format!("error: {report}"),
        },
    };
    line(To::Stderr, &text);
    exit
}

/// Reports a failure to open a store that must exist: a missing file says where runs are
/// kept.
fn fail_opening(e: &StoreError) -> Exit {
    match e {
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            line(
                To::Stderr,
                &format!(
                    "error: {} (runs are kept where `rh-agents run` was started, in \
                     .rh-agents/state.db, unless --store says otherwise)",
                    e.report()
                ),
            );
            exit_for(e)
        }
        _ => fail(e),
    }
}

/// The exit code for a store error: what the user can fix (an unknown id, a file that is not
/// a store, a path that does not exist) is bad input (2); a run held by another process or a
/// busy store is a temporary failure (75); a failed read or write of the store is an I/O
/// error (74); anything else is internal (70).
pub fn exit_for(e: &StoreError) -> Exit {
    if e.is_temporary() {
        return Exit::TempFail;
    }
    match e {
        StoreError::NotFound { .. }
        | StoreError::UnknownAddress { .. }
        | StoreError::AlreadyExists { .. }
        | StoreError::Malformed { .. }
        | StoreError::IncompatibleVersion { .. }
        | StoreError::ForeignStore { .. } => Exit::BadInput,
        StoreError::Io { source, .. } => io_exit(source),
        StoreError::Corrupt { .. }
        | StoreError::Conflict { .. }
        | StoreError::ArtifactMissing { .. }
        | StoreError::ArtifactCorrupt { .. }
        | StoreError::Backend { .. } => Exit::IoError,
        _ => Exit::Internal,
    }
}

/// A path the user named that is missing, not allowed or of the wrong kind is theirs to fix
/// (2); a system call that timed out is temporary (75); any other I/O failure is 74.
pub(crate) fn io_exit(e: &std::io::Error) -> Exit {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound
        | ErrorKind::PermissionDenied
        | ErrorKind::AlreadyExists
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::InvalidInput
        | ErrorKind::InvalidFilename
        | ErrorKind::InvalidData
        | ErrorKind::ReadOnlyFilesystem => Exit::BadInput,
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted => Exit::TempFail,
        _ => Exit::IoError,
    }
}

#[cfg(test)]
mod tests {
    use super::exit_for;
    use crate::exit::Exit;
    use rh_agents::store::StoreError;
    use std::io::ErrorKind;

    fn io(kind: ErrorKind) -> StoreError {
        StoreError::Io {
            path: "state.db".into(),
            source: std::io::Error::from(kind),
        }
    }

    #[test]
    fn what_the_user_can_fix_is_bad_input() {
        assert_eq!(
            exit_for(&StoreError::NotFound { id: "r".into() }),
            Exit::BadInput
        );
        assert_eq!(
            exit_for(&StoreError::Malformed {
                what: "f.json".into(),
                reason: "no".into()
            }),
            Exit::BadInput
        );
        assert_eq!(exit_for(&io(ErrorKind::NotFound)), Exit::BadInput);
    }

    #[test]
    fn a_held_run_or_a_timed_out_call_is_a_temporary_failure() {
        let held = StoreError::Locked {
            id: "r".into(),
            holder: "process 1".into(),
        };
        assert_eq!(exit_for(&held), Exit::TempFail);
        assert_eq!(exit_for(&io(ErrorKind::TimedOut)), Exit::TempFail);
    }

    #[test]
    fn a_failed_store_is_an_io_error_and_a_missing_store_is_internal() {
        let backend = StoreError::Backend {
            context: "appending records".into(),
            source: Box::new(std::io::Error::other("disk I/O error")),
        };
        assert_eq!(exit_for(&backend), Exit::IoError);
        assert_eq!(exit_for(&io(ErrorKind::StorageFull)), Exit::IoError);
        let corrupt = StoreError::Corrupt {
            id: "r".into(),
            record: "event #3".into(),
            reason: "bad".into(),
        };
        assert_eq!(exit_for(&corrupt), Exit::IoError);
        assert_eq!(
            exit_for(&StoreError::NoStore("none".into())),
            Exit::Internal
        );
    }
}
