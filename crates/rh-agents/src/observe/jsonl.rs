//! JSON lines: one JSON object per event, in the stable event form.
//!
//! Each line is exactly what `serde_json::to_writer(&event)` writes, followed by `\n`: the
//! versioned form (`"v"`) that [`Event`] reads back. A file of these lines is a complete,
//! ordered record of a run that other tools (or `jq`) can read while the run goes on.

use std::fmt;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::bus::Subscriber;
use crate::event::Event;
use crate::BoxError;

/// A line buffer larger than this is given back after use: one huge result should not keep
/// its memory for the rest of the run.
const KEEP_BUFFER: usize = 64 * 1024;

/// A [`Subscriber`] that writes every event as one line of JSON.
///
/// Lines are written whole (one `write_all` per event) and, by default, flushed at once, so a
/// crash loses nothing that was written. Write errors are returned from
/// [`on_event`](Subscriber::on_event): the bus counts them
/// ([`subscriber_failures`](crate::ExecutionState::subscriber_failures)) and logs them, and
/// the run goes on.
///
/// To read what was written while the state still owns the subscriber, subscribe an
/// `Arc<JsonLines<W>>` and keep a clone (see the example).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rh_agents::observe::jsonl::JsonLines;
/// use rh_agents::{Actor, Event, ExecutionState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lines = Arc::new(JsonLines::new(Vec::new()));
/// let state = ExecutionState::new();
/// state.subscribe(Arc::clone(&lines));
///
/// let double = Actor::tool("double", |x: u32, _ctx| async move { Ok::<_, std::io::Error>(x * 2) });
/// state.call(&double, 21).await?;
///
/// let written = lines.with_writer(|buf| String::from_utf8(buf.clone()))?;
/// let events: Vec<Event> = written
///     .lines()
///     .map(serde_json::from_str)
///     .collect::<Result<_, _>>()?;
/// let history = state.history().events();
/// assert_eq!(events.len(), history.len()); // started, completed
/// assert!(events.iter().zip(&history).all(|(line, recorded)| line == &**recorded));
/// assert!(written.starts_with(r#"{"v":1,"#));
/// # Ok(())
/// # }
/// ```
///
/// Writing to standard output, for a pipe into another program:
///
/// ```
/// # use rh_agents::{observe::jsonl::JsonLines, ExecutionState};
/// let state = ExecutionState::builder().subscriber(JsonLines::stdout()).build();
/// # drop(state);
/// ```
pub struct JsonLines<W: io::Write + Send> {
    inner: Mutex<Inner<W>>,
    flush_each: bool,
}

struct Inner<W> {
    writer: W,
    /// Reused for every line, so writing an event allocates only when a line is longer than
    /// any before it.
    line: Vec<u8>,
    /// Whether the last write failed (and may have left a partial line).
    broken: bool,
}

impl JsonLines<io::Stdout> {
    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }
}

impl<W: io::Write + Send> JsonLines<W> {
    /// Writes to `writer`, flushing after every line.
    pub fn new(writer: W) -> Self {
        Self {
            inner: Mutex::new(Inner {
                writer,
                line: Vec::new(),
                broken: false,
            }),
            flush_each: true,
        }
    }

    /// Whether to flush the writer after every line (the default). Turn it off for a writer
    /// that is slow to flush when losing the last lines in a crash is acceptable; then call
    /// [`flush`](Self::flush) when the run ends.
    #[must_use]
    pub fn flush_each(mut self, flush: bool) -> Self {
        self.flush_each = flush;
        self
    }

    /// Flushes the writer.
    ///
    /// # Errors
    ///
    /// The writer's error.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.lock().writer.flush()
    }

    /// Runs `f` with the writer, e.g. to read what was written to a `Vec<u8>`. No event is
    /// written meanwhile.
    pub fn with_writer<R>(&self, f: impl FnOnce(&mut W) -> R) -> R {
        f(&mut self.inner.lock().writer)
    }

    /// The writer, giving up the subscriber.
    pub fn into_inner(self) -> W {
        self.inner.into_inner().writer
    }

    /// Writes one event as one line.
    fn write(&self, event: &Event) -> Result<(), BoxError> {
        let mut inner = self.inner.lock();
        let Inner {
            writer,
            line,
            broken,
        } = &mut *inner;
        line.clear();
        // After a failed write the last line may be cut short: start on a fresh line, so one
        // failure costs one record, not the next one too.
        if *broken {
            line.push(b'\n');
        }
        serde_json::to_writer(&mut *line, event)?;
        line.push(b'\n');
        let written = writer.write_all(line);
        if line.capacity() > KEEP_BUFFER {
            *line = Vec::new();
        }
        *broken = written.is_err();
        written?;
        if self.flush_each {
            writer.flush()?;
        }
        Ok(())
    }
}

impl<W: io::Write + Send> fmt::Debug for JsonLines<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLines")
            .field("writer", &std::any::type_name::<W>())
            .field("flush_each", &self.flush_each)
            .finish()
    }
}

impl<W: io::Write + Send + 'static> Subscriber for JsonLines<W> {
    /// Writes `event` as one line of JSON.
    ///
    /// # Errors
    ///
    /// The writer's error, when writing or flushing fails.
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        self.write(event)
    }
}

/// A shared `JsonLines` is a subscriber too, so a caller can keep a handle to the writer.
impl<W: io::Write + Send + 'static> Subscriber for Arc<JsonLines<W>> {
    fn on_event(&self, event: &Event) -> Result<(), BoxError> {
        self.write(event)
    }
}
