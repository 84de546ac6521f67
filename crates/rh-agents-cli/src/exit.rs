//! The exit codes of `rh-agents`, in one place (documented in `docs/cli.md`, "Exit codes").
//!
//! Beyond 0–3 they follow `sysexits.h`, so that a script can tell "fix your input" (2) from
//! "the store failed" (74) and "try again later" (75) without reading the message.

use std::process::ExitCode;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the pipeline completed (or the command did what it was asked).
    Success,
    /// 1: a step failed (after its retries, or not retried).
    Failed,
    /// 2: bad input, which the user can fix: the pipeline file, the arguments, an import
    /// file, an unknown run id, a target that `export` will not overwrite, an imported run
    /// resumed without consent (clap's usage errors are 2 as well).
    BadInput,
    /// 3: the run was interrupted (Ctrl-C, SIGTERM, `--timeout`, `rh-agents interrupt`).
    Interrupted,
    /// 70 (`EX_SOFTWARE`): an internal error: the runtime could not be set up.
    Internal,
    /// 74 (`EX_IOERR`): the state store (or the file `export` writes) could not be read or
    /// written: a disk or database error, a corrupt record, a store that failed mid-run.
    IoError,
    /// 75 (`EX_TEMPFAIL`): a temporary failure: the run is held by another process, or the
    /// store stayed busy. Nothing needs fixing; try again later.
    TempFail,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::BadInput => 2,
            Exit::Interrupted => 3,
            Exit::Internal => 70,
            Exit::IoError => 74,
            Exit::TempFail => 75,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}
