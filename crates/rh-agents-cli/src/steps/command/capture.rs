//! Capturing a child's stdout and stderr: at most [`MAX_CAPTURE`] bytes of each are kept, and
//! what was dropped or could not be read as UTF-8 is counted rather than lost without a word.

use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::PIPE_DRAIN;

/// At most this much of each stream is kept.
pub const MAX_CAPTURE: usize = 16 * 1024 * 1024;

/// What was read from one stream.
#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    /// Bytes read past [`MAX_CAPTURE`] and thrown away.
    dropped: u64,
    /// Nobody wants the output any more (the attempt was dropped): read on, keep nothing.
    discard: bool,
}

/// One stream (or an HTTP body) as recorded in a step's output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(in crate::steps) struct Captured {
    /// The kept bytes as text; bytes that are not UTF-8 are replaced by U+FFFD.
    pub(in crate::steps) text: String,
    /// The kept bytes exactly, base64 (standard alphabet, padded), only when they are not
    /// valid UTF-8 (so `text` is not them).
    pub(in crate::steps) base64: Option<String>,
    /// How many bytes were written beyond what was kept (0: nothing was dropped).
    pub(in crate::steps) truncated_bytes: u64,
}

impl Captured {
    /// Records `kept`, the first bytes of a stream; `cut` says whether more followed them
    /// (then the first bytes of a character split by the cut count as dropped, rather than
    /// make valid text look invalid).
    pub(in crate::steps) fn new(mut kept: Vec<u8>, cut: bool) -> Captured {
        let mut dropped = 0;
        if cut {
            if let Err(e) = std::str::from_utf8(&kept) {
                if e.error_len().is_none() {
                    dropped = (kept.len() - e.valid_up_to()) as u64;
                    kept.truncate(e.valid_up_to());
                }
            }
        }
        match String::from_utf8(kept) {
            Ok(text) => Captured {
                text,
                base64: None,
                truncated_bytes: dropped,
            },
            Err(e) => {
                let bytes = e.into_bytes();
                Captured {
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                    base64: Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
                    truncated_bytes: dropped,
                }
            }
        }
    }
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
                // Reading goes on past the cap (only counting), so that a child writing a lot
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
                    let take = n.min(room);
                    buf.kept.extend_from_slice(&chunk[..take]);
                    buf.dropped += (n - take) as u64;
                }
            })
        });
        Reader { buffer, task }
    }

    /// Waits for the end of the stream (at most [`PIPE_DRAIN`], then the pipe is closed: a
    /// background process the child left must not hold the step) and returns what was read.
    pub(super) async fn finish(&mut self) -> Captured {
        if let Some(task) = &mut self.task {
            if tokio::time::timeout(PIPE_DRAIN, task).await.is_err() {
                // A background process still holds the pipe: keep what was read.
                self.stop();
            }
            self.task = None;
        }
        let mut buf = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let Buffer { kept, dropped, .. } = std::mem::take(&mut *buf);
        let mut captured = Captured::new(kept, dropped > 0);
        captured.truncated_bytes += dropped;
        captured
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_text_is_kept_as_is() {
        let c = Captured::new("héllo\n".into(), false);
        assert_eq!(
            c,
            Captured {
                text: "héllo\n".into(),
                base64: None,
                truncated_bytes: 0
            }
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_kept_exactly_beside_the_lossy_text() {
        let c = Captured::new(vec![b'a', 0xff, b'b'], false);
        assert_eq!(c.text, "a\u{fffd}b");
        assert_eq!(c.base64.as_deref(), Some("Yf9i"));
        assert_eq!(c.truncated_bytes, 0);
    }

    #[test]
    fn a_cut_inside_a_character_moves_its_bytes_to_the_dropped_ones() {
        // "é" is two bytes; the cap kept only the first.
        let c = Captured::new(vec![b'a', 0xc3], true);
        assert_eq!(
            c,
            Captured {
                text: "a".into(),
                base64: None,
                truncated_bytes: 1
            }
        );
        // Without a cut, an incomplete character at the end is invalid output, kept exactly.
        let c = Captured::new(vec![b'a', 0xc3], false);
        assert_eq!(c.base64.as_deref(), Some("YcM="));
    }

    #[tokio::test]
    async fn a_stream_longer_than_the_cap_is_cut_and_counted() {
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        let mut reader = Reader::spawn(Some(r));
        let extra = 1000;
        let total = MAX_CAPTURE + extra;
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let block = vec![b'x'; 64 * 1024];
            let mut left = total;
            while left > 0 {
                let n = left.min(block.len());
                w.write_all(&block[..n]).await.unwrap();
                left -= n;
            }
        });
        // Written and closed: what is left to read fits in the pipe, well within the drain.
        writer.await.unwrap();
        let c = reader.finish().await;
        assert_eq!(c.text.len(), MAX_CAPTURE);
        assert_eq!(c.truncated_bytes, extra as u64);
        assert_eq!(c.base64, None);
    }
}
