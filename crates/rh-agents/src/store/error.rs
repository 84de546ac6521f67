//! What can go wrong with a store: each variant says what happened and what to do.
//!
//! A variant with a `source` does not repeat it in its message: print an error with its causes
//! through [`StoreError::report`] (or any printer that walks `source()`), each cause once.

use std::path::PathBuf;

/// An error of a [`StateStore`](super::StateStore) or of reading/writing a snapshot.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No run has this id.
    #[error("no run with id {id:?} in the store")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// A resume from an address that the run's history does not hold.
    #[error("run {id:?} has no record at address {address:?}")]
    UnknownAddress {
        /// The run.
        id: String,
        /// The address asked for.
        address: String,
    },
    /// A run with this id exists already.
    #[error("a run with id {id:?} already exists; resume it, or start a run with another id")]
    AlreadyExists {
        /// The id.
        id: String,
    },
    /// Another writer holds the run.
    #[error(
        "run {id:?} is being written by another writer ({holder}); only one writer per run is \
         allowed: wait for it to finish or interrupt it"
    )]
    Locked {
        /// The run.
        id: String,
        /// Who holds it, as far as the store knows.
        holder: String,
    },
    /// A record was written twice or out of order.
    #[error("run {id:?}: {reason}")]
    Conflict {
        /// The run.
        id: String,
        /// What collided.
        reason: String,
    },
    /// A stored record cannot be read.
    #[error("run {id:?}: {record} cannot be read: {reason}")]
    Corrupt {
        /// The run.
        id: String,
        /// Which record (e.g. `event #12`, `header`, `storage key "x"`).
        record: String,
        /// Why.
        reason: String,
    },
    /// A snapshot or export file is not well-formed.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What was read (a file path, "snapshot JSON").
        what: String,
        /// Why, with line and column where known.
        reason: String,
    },
    /// A snapshot of another major schema version.
    #[error(
        "snapshot schema version {found} is not supported (this build reads {supported}); use \
         a version of rh-agents that matches the one that wrote it"
    )]
    IncompatibleVersion {
        /// The version found.
        found: String,
        /// The version this build reads.
        supported: String,
    },
    /// A store file written by a newer (or foreign) program.
    #[error("{path}: {reason}")]
    ForeignStore {
        /// The store's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Artifact bytes are not in the store.
    #[error("artifact {sha256} is not in the store (was the run imported without its artifacts?)")]
    ArtifactMissing {
        /// The content address.
        sha256: String,
    },
    /// Artifact bytes do not match their address.
    #[error("artifact {sha256} is corrupt: {reason}")]
    ArtifactCorrupt {
        /// The content address.
        sha256: String,
        /// What differs.
        reason: String,
    },
    /// The state has no store (it was built without one) where one is needed.
    #[error("{0}")]
    NoStore(String),
    /// A file could not be read or written (the system's error is the source).
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The database failed (its error is the source).
    #[error("{context}")]
    Backend {
        /// What the store was doing.
        context: String,
        /// The backend's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// The `triggered_by` of the interrupt a running state requests when its store fails to
    /// save (see [`InterruptSignal::triggered_by`](crate::InterruptSignal::triggered_by)):
    /// the mark by which a caller tells "the store failed" from other interrupts.
    pub const STOPPED_THE_RUN: &'static str = "state store";

    /// Whether the failure is temporary: the run is held by another writer, the database is
    /// busy or locked by another connection past the busy timeout, or a system call timed out
    /// or would block. Trying again later may succeed; nothing needs fixing.
    ///
    /// # Examples
    ///
    /// ```
    /// use rh_agents::store::StoreError;
    ///
    /// let held = StoreError::Locked { id: "r1".into(), holder: "process 7".into() };
    /// assert!(held.is_temporary());
    /// assert!(!StoreError::NotFound { id: "r1".into() }.is_temporary());
    /// ```
    pub fn is_temporary(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            Self::Locked { .. } => true,
            Self::Io { source, .. } => matches!(
                source.kind(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
            ),
            #[cfg(feature = "sqlite")]
            Self::Backend { source, .. } => source
                .downcast_ref::<rusqlite::Error>()
                .and_then(rusqlite::Error::sqlite_error_code)
                .is_some_and(|code| {
                    matches!(
                        code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    )
                }),
            _ => false,
        }
    }

    /// This error and its causes on one line (`appending records: database is locked`), for
    /// logs and people. `Display` shows this error alone, as is the convention.
    ///
    /// # Examples
    ///
    /// ```
    /// use rh_agents::store::StoreError;
    ///
    /// let e = StoreError::Io {
    ///     path: "state.db".into(),
    ///     source: std::io::Error::other("disk full"),
    /// };
    /// assert_eq!(e.to_string(), "state.db");
    /// assert_eq!(e.report(), "state.db: disk full");
    /// ```
    pub fn report(&self) -> String {
        crate::error::describe(self).to_string()
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    // By value, so call sites can pass an error straight from `map_err`.
    #[allow(clippy::needless_pass_by_value)]
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub(crate) fn corrupt(
        id: &str,
        record: impl Into<String>,
        reason: impl std::fmt::Display,
    ) -> Self {
        Self::Corrupt {
            id: id.to_owned(),
            record: record.into(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn a_held_run_and_a_busy_database_are_temporary_a_broken_one_is_not() {
        let io = |kind| StoreError::Io {
            path: "x".into(),
            source: std::io::Error::from(kind),
        };
        assert!(io(std::io::ErrorKind::TimedOut).is_temporary());
        assert!(!io(std::io::ErrorKind::NotFound).is_temporary());
        assert!(StoreError::Locked {
            id: "r".into(),
            holder: "process 1".into()
        }
        .is_temporary());
        assert!(!StoreError::Corrupt {
            id: "r".into(),
            record: "header".into(),
            reason: "bad".into()
        }
        .is_temporary());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_busy_and_locked_are_temporary_io_errors_are_not() {
        let backend = |code| StoreError::Backend {
            context: "appending records".into(),
            source: Box::new(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            )),
        };
        assert!(backend(rusqlite::ffi::SQLITE_BUSY).is_temporary());
        assert!(backend(rusqlite::ffi::SQLITE_LOCKED).is_temporary());
        assert!(!backend(rusqlite::ffi::SQLITE_IOERR).is_temporary());
        assert!(!backend(rusqlite::ffi::SQLITE_FULL).is_temporary());
    }
}
