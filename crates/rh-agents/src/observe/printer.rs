//! The console printer: every event as a line of a tree, with optional detail lines.
//!
//! ```text
//! ▶ agent planner started
//!   ▶ tool search started
//!   ✖ tool search failed (12µs)
//!       error: upstream timed out
//!   ↻ tool search retrying: Attempt 2/3 in 1.0s
//!   ▶ tool search started (attempt 2/3)
//!       ↻ Retry attempt 2 (after 1.0s)
//!       Previous error: upstream timed out
//!   ✔ tool search completed (9µs)
//! ✔ agent planner completed (1.0s)
//! ```

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use parking_lot::Mutex;

use super::escape::escape_control;
use super::style::{Color, ColorChoice, Style};
use super::summary::RunSummary;
use crate::actor::ActorKind;
use crate::bus::Subscriber;
use crate::event::{Event, EventStatus, Severity};
use crate::serde_time::Human;
use crate::BoxError;

/// What a printer shows. Built with [`Printer::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.build(writer)`"]
pub struct PrinterBuilder {
    color: ColorChoice,
    ascii: bool,
    address: bool,
    timestamp: bool,
    detail: bool,
    detail_limit: usize,
    retry_details: bool,
    durations: bool,
    min_log_level: Option<Severity>,
}

impl Default for PrinterBuilder {
    fn default() -> Self {
        Self {
            color: ColorChoice::Auto,
            ascii: false,
            address: false,
            timestamp: false,
            detail: false,
            detail_limit: 120,
            retry_details: true,
            durations: true,
            min_log_level: Some(Severity::Info),
        }
    }
}

impl PrinterBuilder {
    /// When to colour (default: [`ColorChoice::Auto`]).
    pub fn color(mut self, choice: ColorChoice) -> Self {
        self.color = choice;
        self
    }

    /// ASCII symbols only, for terminals and logs that cannot show Unicode.
    pub fn ascii(mut self, on: bool) -> Self {
        self.ascii = on;
        self
    }

    /// Shows each event's address (default off).
    pub fn address(mut self, on: bool) -> Self {
        self.address = on;
        self
    }

    /// Shows each event's timestamp (default off).
    pub fn timestamp(mut self, on: bool) -> Self {
        self.timestamp = on;
        self
    }

    /// Shows the input (on `started`) and output (on `completed`) detail (default off).
    pub fn detail(mut self, on: bool) -> Self {
        self.detail = on;
        self
    }

    /// How many characters of detail to show (default 120).
    pub fn detail_limit(mut self, chars: usize) -> Self {
        self.detail_limit = chars;
        self
    }

    /// Shows "Retry attempt N (after …)" and "Previous error: …" on retries (default on).
    pub fn retry_details(mut self, on: bool) -> Self {
        self.retry_details = on;
        self
    }

    /// Shows durations (default on; off gives output that does not vary between runs).
    pub fn durations(mut self, on: bool) -> Self {
        self.durations = on;
        self
    }

    /// Shows log records of at least this severity (default info); `None` hides them.
    pub fn logs(mut self, min: Option<Severity>) -> Self {
        self.min_log_level = min;
        self
    }

    /// A printer writing to `writer`. With [`ColorChoice::Auto`] colour is off (an arbitrary
    /// writer is not known to be a terminal) unless `CLICOLOR_FORCE` asks for it.
    pub fn build<W: Write + Send + 'static>(self, writer: W) -> Printer<W> {
        let color = self.color.resolve_env(false);
        self.finish(writer, color)
    }

    /// A printer writing to standard output, coloured when that is a terminal.
    pub fn stdout(self) -> Printer<io::Stdout> {
        let out = io::stdout();
        let color = self.color.resolve_env(out.is_terminal());
        self.finish(out, color)
    }

    /// A printer writing to standard error, coloured when that is a terminal.
    pub fn stderr(self) -> Printer<io::Stderr> {
        let out = io::stderr();
        let color = self.color.resolve_env(out.is_terminal());
        self.finish(out, color)
    }

    fn finish<W: Write + Send + 'static>(self, writer: W, color: bool) -> Printer<W> {
        Printer {
            style: Style {
                ascii: self.ascii,
                color,
            },
            options: self,
            out: Mutex::new(writer),
        }
    }
}

/// A subscriber that prints every event as a line of a tree (indented by call depth), with a
/// status symbol and colour, the actor's kind and name, the status and the duration.
///
/// # Examples
///
/// ```
/// use rh_agents::observe::printer::Printer;
/// use rh_agents::observe::style::ColorChoice;
/// use rh_agents::{Actor, ExecutionState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let state = ExecutionState::builder()
///     .subscriber(Printer::builder().color(ColorChoice::Never).durations(false).build(std::io::sink()))
///     .build();
/// let echo = Actor::tool("echo", |s: String, _ctx| async move { Ok::<_, std::io::Error>(s) });
/// state.call(&echo, "hi".into()).await.unwrap();
///
/// let printer = Printer::builder().color(ColorChoice::Never).durations(false).build(Vec::new());
/// let lines: Vec<String> = state.history().events().iter().map(|e| printer.render(e)).collect();
/// assert_eq!(lines.concat(), "▶ tool echo started\n✔ tool echo completed\n");
/// # }
/// ```
#[derive(Debug)]
pub struct Printer<W> {
    options: PrinterBuilder,
    style: Style,
    out: Mutex<W>,
}

impl Printer<io::Stdout> {
    /// A builder with the defaults.
    pub fn builder() -> PrinterBuilder {
        PrinterBuilder::default()
    }
}

impl<W: Write + Send + 'static> Printer<W> {
    /// Whether this printer colours its output.
    pub fn colored(&self) -> bool {
        self.style.color
    }

    /// Runs `f` with the writer (e.g. to read a `Vec<u8>` in tests).
    pub fn with_writer<T>(&self, f: impl FnOnce(&mut W) -> T) -> T {
        f(&mut self.out.lock())
    }

    /// The text this printer writes for one event (possibly several lines, each ending in
    /// `\n`; empty for a log record below the severity shown).
    pub fn render(&self, event: &Event) -> String {
        let mut text = String::new();
        self.render_into(&mut text, event);
        if self.style.ascii {
            // Durations ("µs") and cut texts ("…") come from shared formatting: make them ASCII.
            return ascii_only(&text);
        }
        text
    }

    /// Writes a run summary in this printer's style.
    ///
    /// # Errors
    ///
    /// When the writer fails.
    pub fn print_summary(&self, summary: &RunSummary) -> io::Result<()> {
        let text = summary.render(self.style.ascii, self.options.durations);
        let text = if self.style.ascii {
            ascii_only(&text)
        } else {
            text
        };
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    fn render_into(&self, text: &mut String, event: &Event) {
        let style = &self.style;
        let o = &self.options;
        let depth = event.address.depth();
        if event.status == EventStatus::Log {
            let level = event.level.unwrap_or(Severity::Info);
            match o.min_log_level {
                Some(min) if level >= min => {}
                _ => return,
            }
            // A log belongs to the call it was written in: one level below it.
            push_indent(text, depth);
            let mark = if style.ascii { "-" } else { "•" };
            let label = style.paint(Style::severity_color(level), &format!("[{level}]"));
            let _ = writeln!(
                text,
                "{mark} {label} {}",
                escape_control(event.message.as_deref().unwrap_or(""))
            );
            return;
        }
        let indent = depth.saturating_sub(1);
        let sub = indent + 2;
        let color = Style::status_color(event.status);
        if event.kind == ActorKind::System && event.status == EventStatus::Interrupted {
            self.render_notice(text, event, indent);
            return;
        }
        push_indent(text, indent);
        let mark = match (&event.interrupt, event.status) {
            (Some(signal), EventStatus::Interrupted) => style.interrupt_mark(signal.reason),
            _ => style.symbol(event.status),
        };
        let _ = write!(
            text,
            "{} {} {}",
            style.paint(color, mark),
            event.kind,
            escape_control(&event.actor)
        );
        // Tasks of a group run side by side and their lines interleave: each line says which
        // task it belongs to.
        if let Some(group) = &event.group {
            if event.kind == ActorKind::Task {
                let _ = write!(text, "#{}", group.index);
            } else if event.kind != ActorKind::Group {
                let _ = write!(text, " [task {}]", group.index);
            }
        }
        let _ = write!(text, " {}", style.paint(color, event.status.as_str()));
        if event.status == EventStatus::Started && event.retry.is_retry {
            // Records read back from elsewhere may lack the maximum (0): then no "/N".
            let _ = write!(text, " (attempt {}", event.retry.attempt.saturating_add(1));
            if event.retry.max_attempts > 0 {
                let _ = write!(text, "/{}", event.retry.max_attempts);
            }
            text.push(')');
        }
        // A retry says when the next attempt comes; a group says its size, then its tally.
        let inline_message =
            event.status == EventStatus::Retrying || event.kind == ActorKind::Group;
        if inline_message {
            if let Some(message) = &event.message {
                let _ = write!(text, ": {}", escape_control(message));
            }
        }
        // One parenthesis for what is known about the step: attempt, outcome, duration.
        let mut notes: Vec<String> = Vec::new();
        if event.status == EventStatus::Failed && event.retry.max_attempts > 1 {
            let attempt = event.retry.attempt.saturating_add(1);
            let mut note = format!("attempt {attempt}/{}", event.retry.max_attempts);
            if event.is_final {
                note.push_str(if attempt >= event.retry.max_attempts {
                    ", retries exhausted"
                } else {
                    ", not retried"
                });
            }
            notes.push(note);
        }
        if o.durations {
            if let Some(d) = event.duration {
                notes.push(Human(d).to_string());
            }
        }
        if !notes.is_empty() {
            let _ = write!(text, " ({})", notes.join(", "));
        }
        text.push('\n');

        if o.address {
            line(text, sub, &format!("address: {}", event.address));
        }
        if o.timestamp {
            line(
                text,
                sub,
                &format!("at: {}", humantime::format_rfc3339_micros(event.timestamp)),
            );
        }
        match event.status {
            EventStatus::Started => {
                if o.retry_details && event.retry.is_retry {
                    let after = event.retry.delay.map(|d| Human(d).to_string());
                    line(
                        text,
                        sub,
                        &format!(
                            "{} Retry attempt {} (after {})",
                            style.retry_mark(),
                            event.retry.attempt.saturating_add(1),
                            after.as_deref().unwrap_or("0µs")
                        ),
                    );
                    if let Some(previous) = &event.retry.original_error {
                        line(
                            text,
                            sub,
                            &format!("Previous error: {}", escape_control(previous)),
                        );
                    }
                }
                // A unit input says nothing.
                if o.detail && !event.retry.is_retry {
                    if let Some(detail) = event.detail.as_deref().filter(|d| *d != "null") {
                        line(
                            text,
                            sub,
                            &format!("input: {}", cut(&escape_control(detail), o.detail_limit)),
                        );
                    }
                }
            }
            EventStatus::Completed if o.detail => {
                if let Some(detail) = &event.detail {
                    line(
                        text,
                        sub,
                        &format!("output: {}", cut(&escape_control(detail), o.detail_limit)),
                    );
                }
            }
            EventStatus::Failed if !inline_message => {
                if let Some(message) = &event.message {
                    line(
                        text,
                        sub,
                        &format!(
                            "{} {}",
                            style.paint(Color::Red, "error:"),
                            escape_control(message)
                        ),
                    );
                }
            }
            EventStatus::Interrupted => {
                // The reason, message and who asked are on the interrupt notice; a call says
                // where it was stopped.
                if let Some(detail) = &event.detail {
                    line(text, sub, &escape_control(detail));
                }
            }
            EventStatus::Recovered => {
                line(text, sub, "replayed from the saved state");
            }
            _ => {}
        }
    }

    /// The runtime's own record that an interrupt was requested.
    fn render_notice(&self, text: &mut String, event: &Event, indent: usize) {
        let style = &self.style;
        push_indent(text, indent);
        let (mark, reason) = match &event.interrupt {
            Some(signal) => (style.interrupt_mark(signal.reason), signal.reason.as_str()),
            None => (style.symbol(EventStatus::Interrupted), "interrupted"),
        };
        let _ = writeln!(
            text,
            "{} {} {reason}",
            style.paint(Color::Magenta, mark),
            style.paint(Color::Magenta, "interrupt requested:")
        );
        if let Some(signal) = &event.interrupt {
            if let Some(message) = &signal.message {
                line(
                    text,
                    indent + 2,
                    &format!("message: {}", escape_control(message)),
                );
            }
            if let Some(who) = &signal.triggered_by {
                line(
                    text,
                    indent + 2,
                    &format!("triggered by: {}", escape_control(who)),
                );
            }
        }
    }
}

impl<W: Write + Send + 'static> Subscriber for Printer<W> {
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        let text = self.render(event);
        if text.is_empty() {
            return Ok(());
        }
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

/// `text` with the two non-ASCII characters shared formatting uses replaced, and any other
/// non-ASCII character (from a name or a message) as `?`.
pub(crate) fn ascii_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'µ' => out.push('u'),
            '…' => out.push_str("..."),
            c if c.is_ascii() => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

fn push_indent(text: &mut String, levels: usize) {
    for _ in 0..levels {
        text.push_str("  ");
    }
}

fn line(text: &mut String, indent: usize, content: &str) {
    push_indent(text, indent);
    text.push_str(content);
    text.push('\n');
}

/// At most `limit` characters of `text`, marking a cut with `…`.
fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}
