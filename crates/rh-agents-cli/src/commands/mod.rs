//! What each subcommand does. Every command opens the store the same way and turns store
//! errors into the same exit codes.

pub mod inspect;
pub mod interrupt;
pub mod launch;
pub mod transfer;

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
            Err(e) => Err(fail(&e)),
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
            Err(e) => Err(fail(&e)),
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

    /// Reports a store error, naming the store when the error is about a run it lacks.
    pub fn fail(&self, e: &StoreError) -> Exit {
        match e {
            StoreError::NotFound { .. } => {
                line(
                    To::Stderr,
                    &format!("error: {e} (store: {})", self.path.display()),
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

/// Reports a store error and picks its exit code: what the user can fix (an unknown id, a
/// run held by another process, a bad file) is bad input; the rest is internal.
pub fn fail(e: &StoreError) -> Exit {
    line(To::Stderr, &format!("error: {e}"));
    match e {
        StoreError::NotFound { .. }
        | StoreError::UnknownAddress { .. }
        | StoreError::AlreadyExists { .. }
        | StoreError::Locked { .. }
        | StoreError::Malformed { .. }
        | StoreError::IncompatibleVersion { .. }
        | StoreError::ForeignStore { .. }
        | StoreError::Io { .. } => Exit::BadInput,
        _ => Exit::Internal,
    }
}
