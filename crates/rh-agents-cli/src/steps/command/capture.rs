//! Capturing a child's stdout and stderr: at most [`MAX_CAPTURE`] bytes of each are kept.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::PIPE_DRAIN;

/// At most this much of each stream is kept.
pub const MAX_CAPTURE: usize = 16 * 1024 * 1024;

/// What was read from one stream.
#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    /// Nobody wants the output any more (the attempt was dropped): read on, keep nothing.
    discard: bool,
}

/// A task reading one stream into a shared buffer.
///
/// Dropped with the attempt (an interrupt, a timeout), it goes on reading, keeping nothing,
/// until the stream ends: a command given its SIGTERM grace may still write (a shell reports
/// the child that the signal killed), and with the pipe closed that write would kill it with
/// SIGPIPE before its clean-up ran. The stream ends when the group is gone, at the latest
/// when it is killed after its grace.
pub(super) struct Reader {
    buffer: Arc<Mutex<Buffer>>,
    task: Option<JoinHandle<()>>,
}

impl Reader {
    pub(super) fn spawn<R: AsyncRead + Unpin + Send + 'static>(stream: Option<R>) -> Reader {
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let task = stream.map(|mut stream| {
            let sink = Arc::clone(&buffer);
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 8192];
                // Reading goes on past the cap (dropping the rest), so that a child writing a lot
                // is not blocked on a full pipe.
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    let mut buf = sink.lock().unwrap_or_else(PoisonError::into_inner);
                    if buf.discard {
                        continue;
                    }
                    let room = MAX_CAPTURE.saturating_sub(buf.kept.len());
                    buf.kept.extend_from_slice(&chunk[..n.min(room)]);
                }
            })
        });
        Reader { buffer, task }
    }

    /// Waits for the end of the stream (at most [`PIPE_DRAIN`], then the pipe is closed: a
    /// background process the child left must not hold the step) and returns what was read.
    pub(super) async fn finish(&mut self) -> String {
        if let Some(task) = &mut self.task {
            if tokio::time::timeout(PIPE_DRAIN, task).await.is_err() {
                // A background process still holds the pipe: keep what was read.
                self.stop();
            }
            self.task = None;
        }
        let buf = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf.kept).into_owned()
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.task.take().is_some() {
            // Detached, not aborted (see above).
            let mut buf = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
            *buf = Buffer {
                discard: true,
                ..Buffer::default()
            };
        }
    }
}
