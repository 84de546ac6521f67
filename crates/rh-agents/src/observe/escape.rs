//! Text from elsewhere made safe to show on a terminal.
//!
//! Step names, messages, outputs and run ids can come from an imported file, a command's
//! output or a server's answer. Written raw, an escape sequence in them could move the cursor,
//! rewrite earlier lines, change the window title or hide text; a newline could forge a line
//! of the tree. Everything a terminal would interpret is shown as a visible escape instead.
//! JSON outputs do not need this: JSON escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every character a terminal would interpret shown as a visible escape.
///
/// Escaped: the C0 controls (`\n`, `\r`, `\t` by their usual names, the others as `\x1b`
/// and so on), DEL, the C1 controls (U+0080–U+009F, which some terminals take as
/// escape sequences) and the bidirectional overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069), which reorder what a reader sees. Everything else is kept, so ordinary
/// text costs no allocation.
///
/// # Examples
///
/// ```
/// use rh_agents::observe::escape::escape_control;
///
/// assert_eq!(escape_control("plain name"), "plain name");
/// assert_eq!(escape_control("red\u{1b}[31m\nforged"), "red\\x1b[31m\\nforged");
/// ```
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x100 && needs_escape(c) => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            escape_control("tool ✔ ok — ünïcode"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn every_control_character_is_made_visible() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let shown = escape_control(&c.to_string()).into_owned();
            assert!(shown.starts_with('\\'), "{c:?} shown as {shown:?}");
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }

    #[test]
    fn known_escapes_have_their_usual_names() {
        assert_eq!(escape_control("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape_control("\u{1b}]0;title\u{7}"), "\\x1b]0;title\\x07");
        assert_eq!(escape_control("\u{9b}31m"), "\\x9b31m");
        assert_eq!(escape_control("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
