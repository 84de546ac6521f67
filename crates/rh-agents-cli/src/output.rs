//! Lines the CLI itself writes (not the event printer): through locked handles, ignoring a
//! closed pipe (`rh-agents run f | head` must not panic).
//!
//! Text lines may carry text from elsewhere (a file name, a store's error, a run id): every
//! character a terminal would interpret is shown escaped, except the newlines that separate
//! the lines of a message. JSON documents are written exactly as they are.

use std::borrow::Cow;
use std::io::{self, Write};

use rh_agents::observe::escape::escape_control;

/// Where a line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum To {
    Stdout,
    Stderr,
}

/// Writes `text` and a newline, with control characters escaped (see the module docs).
pub(crate) fn line(to: To, text: &str) {
    write(to, &terminal_safe(text));
}

/// Writes a JSON document and a newline, exactly: JSON escapes control characters itself,
/// and a reader of the document must get the data as stored.
pub(crate) fn json(to: To, text: &str) {
    write(to, text);
}

fn write(to: To, text: &str) {
    // A closed stdout or stderr leaves nobody to tell: dropping the line is all we can do.
    let _ = match to {
        To::Stdout => {
            let mut out = io::stdout().lock();
            writeln!(out, "{text}").and_then(|()| out.flush())
        }
        To::Stderr => {
            let mut out = io::stderr().lock();
            writeln!(out, "{text}").and_then(|()| out.flush())
        }
    };
}

/// `text` with each of its lines escaped; the newlines between them are kept.
fn terminal_safe(text: &str) -> Cow<'_, str> {
    if text
        .split('\n')
        .all(|l| matches!(escape_control(l), Cow::Borrowed(_)))
    {
        return Cow::Borrowed(text);
    }
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(escape_control).collect();
    Cow::Owned(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn lines_keep_their_breaks_and_lose_their_escapes() {
        assert_eq!(terminal_safe("a\nb"), "a\nb");
        assert_eq!(
            terminal_safe("error: \u{1b}[2Jbad\nnext\r"),
            "error: \\x1b[2Jbad\nnext\\r"
        );
    }
}
