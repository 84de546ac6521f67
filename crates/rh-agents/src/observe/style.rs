//! How the console output looks: symbols (Unicode or ASCII), colours, and when colour is on.

use std::ffi::OsString;

use crate::event::{EventStatus, Severity};
use crate::interrupt::InterruptReason;

/// When to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colour when writing to a terminal, unless `NO_COLOR` is set; `CLICOLOR_FORCE` (not
    /// `0`) turns it on for any writer.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour, for a writer that is (or is not) a terminal, reading the
    /// environment through `env`. `NO_COLOR` (set and not empty) wins over `CLICOLOR_FORCE`.
    pub fn resolve(self, is_terminal: bool, env: impl Fn(&str) -> Option<OsString>) -> bool {
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                if env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
                    false
                } else if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
                    true
                } else {
                    is_terminal
                }
            }
        }
    }

    /// [`resolve`](Self::resolve) with the process environment.
    pub fn resolve_env(self, is_terminal: bool) -> bool {
        self.resolve(is_terminal, |name| std::env::var_os(name))
    }
}

/// An ANSI colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Color {
    Red,
    Green,
    Yellow,
    Blue,
    Magenta,
    Cyan,
    Dim,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Self::Red => "\x1b[31m",
            Self::Green => "\x1b[32m",
            Self::Yellow => "\x1b[33m",
            Self::Blue => "\x1b[34m",
            Self::Magenta => "\x1b[35m",
            Self::Cyan => "\x1b[36m",
            Self::Dim => "\x1b[2m",
        }
    }
}

/// Symbols and colours, resolved once for a printer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    pub(crate) ascii: bool,
    pub(crate) color: bool,
}

impl Style {
    /// `text` in `color`, or as is when colour is off.
    pub(crate) fn paint(&self, color: Color, text: &str) -> String {
        if self.color {
            format!("{}{text}\x1b[0m", color.code())
        } else {
            text.to_owned()
        }
    }

    /// The colour of a status.
    pub(crate) fn status_color(status: EventStatus) -> Color {
        match status {
            EventStatus::Started => Color::Cyan,
            EventStatus::Completed => Color::Green,
            EventStatus::Failed => Color::Red,
            EventStatus::Retrying | EventStatus::Cancelling => Color::Yellow,
            EventStatus::Recovered => Color::Blue,
            EventStatus::Interrupted | EventStatus::HumanIntervention => Color::Magenta,
            EventStatus::Awaiting | EventStatus::Log => Color::Dim,
        }
    }

    /// The colour of a log severity.
    pub(crate) fn severity_color(level: Severity) -> Color {
        match level {
            Severity::Debug | Severity::Info => Color::Dim,
            Severity::Warning => Color::Yellow,
            Severity::Error => Color::Red,
        }
    }

    /// The symbol of a status.
    pub(crate) fn symbol(&self, status: EventStatus) -> &'static str {
        if self.ascii {
            match status {
                EventStatus::Started => ">",
                EventStatus::Completed => "+",
                EventStatus::Failed => "x",
                EventStatus::Retrying => "~",
                EventStatus::Recovered => "@",
                EventStatus::Interrupted => "!",
                EventStatus::Cancelling => "/",
                EventStatus::Awaiting => "?",
                EventStatus::HumanIntervention => "H",
                _ => "-",
            }
        } else {
            match status {
                EventStatus::Started => "▶",
                EventStatus::Completed => "✔",
                EventStatus::Failed => "✖",
                EventStatus::Retrying => "↻",
                EventStatus::Recovered => "♻",
                EventStatus::Interrupted => "■",
                EventStatus::Cancelling => "⊘",
                EventStatus::Awaiting => "…",
                EventStatus::HumanIntervention => "✋",
                _ => "•",
            }
        }
    }

    /// The mark of an interrupt, by reason.
    pub(crate) fn interrupt_mark(&self, reason: InterruptReason) -> &'static str {
        if self.ascii {
            return "!";
        }
        match reason {
            InterruptReason::UserCancelled => "⏹",
            InterruptReason::Timeout => "⏱",
            InterruptReason::ResourceLimit => "⛔",
            InterruptReason::ErrorThreshold => "⚠",
            InterruptReason::PriorityOverride => "⏫",
            InterruptReason::SystemShutdown => "⏻",
            InterruptReason::Custom => "■",
        }
    }

    /// The retry mark used in detail lines.
    pub(crate) fn retry_mark(&self) -> &'static str {
        if self.ascii {
            "~"
        } else {
            "↻"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn auto_colours_terminals_only() {
        assert!(ColorChoice::Auto.resolve(true, env(&[])));
        assert!(!ColorChoice::Auto.resolve(false, env(&[])));
    }

    #[test]
    fn no_color_turns_colour_off_and_wins_over_clicolor_force() {
        assert!(!ColorChoice::Auto.resolve(true, env(&[("NO_COLOR", "1")])));
        assert!(
            !ColorChoice::Auto.resolve(true, env(&[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")]))
        );
        // An empty NO_COLOR does not count.
        assert!(ColorChoice::Auto.resolve(true, env(&[("NO_COLOR", "")])));
    }

    #[test]
    fn clicolor_force_colours_any_writer() {
        assert!(ColorChoice::Auto.resolve(false, env(&[("CLICOLOR_FORCE", "1")])));
        assert!(!ColorChoice::Auto.resolve(false, env(&[("CLICOLOR_FORCE", "0")])));
    }

    #[test]
    fn explicit_choices_ignore_the_environment() {
        assert!(ColorChoice::Always.resolve(false, env(&[("NO_COLOR", "1")])));
        assert!(!ColorChoice::Never.resolve(true, env(&[("CLICOLOR_FORCE", "1")])));
    }
}
