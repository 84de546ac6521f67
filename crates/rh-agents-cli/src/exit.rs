//! The exit codes of `rh-agents`, in one place (documented in `docs/cli.md`).

use std::process::ExitCode;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the pipeline completed.
    Success,
    /// 1: a step failed (after its retries).
    Failed,
    /// 2: bad input: the pipeline file or the arguments (clap's usage errors are 2 as well).
    BadInput,
    /// 3: the run was interrupted (Ctrl-C, SIGTERM, `--timeout`).
    Interrupted,
    /// 70: an internal error (`EX_SOFTWARE`): the runtime could not be set up.
    Internal,
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
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}
