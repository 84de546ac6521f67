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
///
/// This scans `text` once; to place many offsets in one text, build a [`LineIndex`].
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(text, offset)
}

/// Where each line of a text starts, built once so that placing an offset costs a binary
/// search and a count of the characters before it on its line, not a scan from the start
/// of the text (a file with 20,000 problems would otherwise be scanned 20,000 times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIndex {
    /// The byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl LineIndex {
    /// The index of `text`'s lines.
    pub fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self { starts }
    }

    /// The 1-based line and character column of a byte offset in `text` (the text this index
    /// was built from), as [`line_col`] gives it.
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line that starts at or before `offset`; `starts[0]` is 0, so there is one.
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let start = self.starts[line - 1];
        let column = text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }
}

/// A pipeline file's name and text, to turn spans into [`Diagnostic`]s.
#[derive(Debug, Clone)]
pub(crate) struct Source<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
    lines: LineIndex,
}

impl<'a> Source<'a> {
    /// The file `file` whose text is `text`.
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            lines: LineIndex::new(text),
        }
    }

    /// A diagnostic at the start of `span`.
    pub(crate) fn at(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.lines.line_col(self.text, span.start);
        Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `line:column` of the start of `span`, for "first defined at 4:8".
    pub(crate) fn pos(&self, span: &Range<usize>) -> String {
        let (line, column) = self.lines.line_col(self.text, span.start);
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

    #[test]
    fn the_index_places_every_offset_as_a_scan_from_the_start_would() {
        let text = "a = 1\n\nb = \"é\u{1F600}x\"\r\n\n[[steps]]\nname = \"ü\"\n";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            let clamped = offset.min(text.len());
            let mut at = clamped;
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            assert_eq!(
                index.line_col(text, offset),
                (line, column),
                "offset {offset}"
            );
        }
    }
}
