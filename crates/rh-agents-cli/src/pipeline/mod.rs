//! The pipeline file: its model, parsing and validation with `file:line:column` diagnostics,
//! and the templates that pass one step's output to the next.
//!
//! The field reference is `docs/pipeline-file.md`.

mod duration;
mod position;
mod raw;
mod read;
mod spec;
mod template;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use duration::{parse_duration, HumanDuration};
pub use position::{line_col, Diagnostic, LineIndex};
pub use spec::{Action, CommandSpec, HttpSpec, ParallelSpec, Pipeline, Step};
pub use template::{
    is_valid_name, trim_newline, Field, Outputs, Part, Ref, Template, TemplateError,
};
pub use validate::parse;

/// Why a pipeline file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid pipeline: every problem found.
    Invalid(Vec<Diagnostic>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { file, source } => {
                write!(f, "cannot read {}: {source}", file.display())
            }
            LoadError::Invalid(diags) => {
                let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads and validates a pipeline file.
///
/// # Errors
///
/// [`LoadError::Read`] when the file cannot be read, [`LoadError::Invalid`] with every
/// problem found otherwise.
pub fn load(file: &Path) -> Result<Pipeline, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|source| LoadError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&text, file).map_err(LoadError::Invalid)
}
