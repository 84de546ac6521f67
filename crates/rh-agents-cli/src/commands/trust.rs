//! Imported runs are data: the trust boundary between runs started here and runs read from a
//! file (DESIGN decision 15, docs/cli.md "Imported runs are data").
//!
//! A run started by `rh-agents run` keeps the pipeline it ran (its text, its file and its
//! working directory) in `metadata.custom`, so that `resume` runs the same one. A run read
//! by `import` carries whatever the file says there: a shared file could hold any commands.
//! So `import` marks every run it adds (`metadata.custom.imported = {"from", "at"}`, always
//! set by the importer, whatever the file held under that key), `runs` and `show` say so,
//! `show` prints the pipeline a `resume` would run, and `resume` of a marked run runs nothing
//! unless the user passes a pipeline file of their own (`--pipeline FILE`) or says they trust
//! the imported one (`--trust-imported`).

use std::path::Path;
use std::time::SystemTime;

use rh_agents::observe::escape::escape_control;
use rh_agents::store::{RunMetadata, Snapshot};
use serde_json::{Map, Value};

use crate::output::{line, To};

/// `metadata.custom` key of the pipeline text a run ran.
pub(crate) const SOURCE_KEY: &str = "pipeline_source";
/// `metadata.custom` key of the pipeline file's absolute path.
pub(crate) const FILE_KEY: &str = "pipeline_file";
/// `metadata.custom` key of the directory commands without a `cwd` run in.
pub(crate) const WORKDIR_KEY: &str = "working_dir";
/// `metadata.custom` key of the import mark: `{"from": FILE, "at": RFC 3339 time}`.
pub(crate) const IMPORTED_KEY: &str = "imported";

/// Marks `metadata` as imported from `from` (the path as the user gave it) at `at`,
/// replacing anything the file held under that key: a file cannot make itself trusted.
pub(crate) fn mark_imported(metadata: &mut RunMetadata, from: &Path, at: SystemTime) {
    let mut mark = Map::new();
    mark.insert("from".into(), Value::from(from.display().to_string()));
    mark.insert(
        "at".into(),
        Value::from(humantime::format_rfc3339_seconds(at).to_string()),
    );
    metadata
        .custom
        .insert(IMPORTED_KEY.into(), Value::Object(mark));
}

/// Where and when a run was imported from, escaped for the terminal ("FILE at TIME"); `None`
/// for a run started here. Any value under the key counts as the mark.
pub(crate) fn imported(metadata: &RunMetadata) -> Option<String> {
    let mark = metadata.custom.get(IMPORTED_KEY)?;
    let field = |name: &str| {
        mark.get(name)
            .and_then(Value::as_str)
            .map_or_else(|| "?".to_owned(), |s| escape_control(s).into_owned())
    };
    Some(format!("{} at {}", field("from"), field("at")))
}

/// A note for the `runs` table's STATUS cell: ` (imported)` for an imported run.
pub(crate) fn runs_note(metadata: &RunMetadata) -> &'static str {
    if metadata.custom.contains_key(IMPORTED_KEY) {
        " (imported)"
    } else {
        ""
    }
}

/// For `show`: the import mark and the pipeline a `resume` of the run would run (its file,
/// working directory and text), escaped for the terminal.
pub(crate) fn show_pipeline(snapshot: &Snapshot) {
    let custom = &snapshot.metadata.custom;
    let text = |key: &str| custom.get(key).and_then(Value::as_str);
    if let Some(mark) = imported(&snapshot.metadata) {
        line(
            To::Stdout,
            &format!(
                "imported: from {mark}; its pipeline is data from elsewhere: `resume` runs it \
                 only with --trust-imported (or runs yours with --pipeline FILE)"
            ),
        );
    }
    let Some(source) = text(SOURCE_KEY) else {
        return;
    };
    if let Some(file) = text(FILE_KEY) {
        line(
            To::Stdout,
            &format!("pipeline file: {}", escape_control(file)),
        );
    }
    if let Some(dir) = text(WORKDIR_KEY) {
        line(
            To::Stdout,
            &format!("working directory: {}", escape_control(dir)),
        );
    }
    let heading = if custom.contains_key(IMPORTED_KEY) {
        "pipeline source (what `resume --trust-imported` would run):"
    } else {
        "pipeline source (what `resume` runs):"
    };
    line(To::Stdout, heading);
    for source_line in source.lines() {
        line(To::Stdout, &format!("  | {}", escape_control(source_line)));
    }
}

/// The longest run id accepted from a file.
pub(crate) const MAX_ID_LEN: usize = 128;

/// Checks that `id` is a run id: 1 to 128 characters from `A–Z a–z 0–9 . _ -`, not starting
/// with `.`. Such an id is a plain file name (no separator, never `.` or `..`), so
/// `<ID>.json` and the store's lock file `<store>.locks/<ID>` stay where they belong, and it
/// prints as it is.
///
/// # Errors
///
/// Why the id is refused.
pub(crate) fn check_run_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "it is {} bytes long (at most {MAX_ID_LEN})",
            id.len()
        ));
    }
    if id.starts_with('.') {
        return Err("it starts with `.`".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "it holds {:?} (a run id is made of A-Z, a-z, 0-9, `.`, `_` and `-`)",
            escape_control(&c.to_string())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_plain_file_names() {
        for good in ["0536818c-8ded-4389-b4a8-4a486e8feaf5", "nightly_1.2", "a"] {
            assert_eq!(check_run_id(good), Ok(()), "{good}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            "../..",
            "a/b",
            "a\\b",
            ".hidden",
            "a\u{1b}[2J",
            "a\nb",
            "é",
            &long,
        ] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_run_id(&"a".repeat(MAX_ID_LEN)), Ok(()));
    }

    #[test]
    fn the_import_mark_replaces_whatever_the_file_claimed() {
        let mut metadata = RunMetadata::new();
        metadata
            .custom
            .insert(IMPORTED_KEY.into(), Value::from(false));
        mark_imported(
            &mut metadata,
            Path::new("shared/run.json"),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(
            imported(&metadata).as_deref(),
            Some("shared/run.json at 1970-01-01T00:00:00Z")
        );
        assert_eq!(runs_note(&metadata), " (imported)");
        assert_eq!(runs_note(&RunMetadata::new()), "");
    }
}
