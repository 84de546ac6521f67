//! Lines the CLI itself writes (not the event printer): through locked handles, ignoring a
//! closed pipe (`rh-agents run f | head` must not panic).

use std::io::{self, Write};

/// Where a line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum To {
    Stdout,
    Stderr,
}

/// Writes `text` and a newline.
pub(crate) fn line(to: To, text: &str) {
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
