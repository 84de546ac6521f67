//! Positions in the pipeline file: byte offsets from the TOML parser turned into the
//! `file:line:column` people and editors read.

use std::fmt;
use std::ops::Range;

/// One problem found in a pipeline file, at a line and column (both 1-based; the column counts
/// characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// The 1-based line and character column of a byte offset in `text`. An offset past the end
/// is clamped to the end; one inside a multi-byte character counts as that character.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A pipeline file's name and text, to turn spans into [`Diagnostic`]s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// A diagnostic at the start of `span`.
    pub(crate) fn at(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = line_col(self.text, span.start);
        Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `line:column` of the start of `span`, for "first defined at 4:8".
    pub(crate) fn pos(&self, span: &Range<usize>) -> String {
        let (line, column) = line_col(self.text, span.start);
        format!("{line}:{column}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_columns() {
        let text = "name = \"x\"\n\n[[steps]]\nname = \"fetch\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 7), (1, 8));
        assert_eq!(line_col(text, 11), (2, 1));
        assert_eq!(line_col(text, 12), (3, 1));
        assert_eq!(line_col(text, 29), (4, 8));
    }

    #[test]
    fn columns_count_characters_and_offsets_are_clamped() {
        let text = "a = \"é\"\nb = 1";
        // 'é' is two bytes: the `b` on line 2 is still column 1, and `"` after é is column 7.
        assert_eq!(line_col(text, 7), (1, 7));
        assert_eq!(line_col(text, 6), (1, 6)); // inside é: counts as é
        assert_eq!(line_col(text, 9), (2, 1));
        assert_eq!(line_col(text, 1_000), (2, 6));
        assert_eq!(line_col("", 3), (1, 1));
    }
}
