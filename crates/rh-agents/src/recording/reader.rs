//! A cursor into the log, shared by every kind of reader (sync subscribers' threads,
//! streams, async subscribers).
//!
//! A reader that falls more than the bus capacity behind skips ahead to the newest
//! `capacity` records; the skip is counted and logged. The run never waits for it, and the
//! history stays complete. Records a reader asked for explicitly (the backlog of
//! `subscribe_from`) are never skipped.

use std::sync::Arc;
use std::task::{Context, Poll};

use super::log::{Entry, Log};
use super::progress::Progress;

/// What a reader finds next.
pub(crate) enum Next {
    Record(Entry),
    Progress(Arc<Progress>),
    /// Nothing yet.
    Empty,
}

#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) log: Arc<Log>,
    /// The next record to read.
    pub(crate) cursor: u64,
    /// The next progress update to read.
    pub(crate) progress_cursor: u64,
    /// Records before this one are never skipped.
    floor: u64,
    /// Whether progress updates are read too.
    progress: bool,
    /// Records skipped because the reader fell behind.
    pub(crate) lagged: u64,
}

impl Reader {
    /// A reader of the records from `from` on (and of the progress updates made from now on,
    /// with `progress`). Records before the current end are never skipped.
    pub(crate) fn new(log: Arc<Log>, from: u64, progress: bool) -> Self {
        let floor = log.visible();
        let progress_cursor = log.progress_len();
        Self {
            log,
            cursor: from,
            progress_cursor,
            floor,
            progress,
            lagged: 0,
        }
    }

    pub(crate) fn next(&mut self) -> Next {
        loop {
            let len = self.log.visible();
            let capacity = self.log.capacity as u64;
            if self.cursor >= self.floor && len.saturating_sub(self.cursor) > capacity {
                let skipped = len - capacity - self.cursor;
                self.cursor += skipped;
                self.lagged += skipped;
                tracing::warn!(skipped, "an event reader fell behind and skipped records");
            }
            if self.progress && self.progress_cursor < self.log.progress_len() {
                if let Some((n, update)) = self.log.progress(self.progress_cursor) {
                    // An update comes after the records made before it.
                    if update.after <= self.cursor {
                        self.progress_cursor = n + 1;
                        return Next::Progress(update);
                    }
                }
            }
            if self.cursor >= len {
                return Next::Empty;
            }
            let Some(entry) = self.log.get(self.cursor) else {
                return Next::Empty;
            };
            self.cursor += 1;
            // A record kept quiet (a replayed one) is skipped without a word.
            if entry.publish {
                return Next::Record(entry);
            }
        }
    }

    /// Reads progress updates as well, from now on.
    pub(crate) fn read_progress(&mut self) {
        self.progress = true;
        self.progress_cursor = self.log.progress_len();
    }

    /// Registers `waker` for when there is more to read; `true` if there already is.
    pub(crate) fn register(&self, waker: &std::task::Waker) -> bool {
        let progress_seen = if self.progress {
            self.progress_cursor
        } else {
            u64::MAX
        };
        self.log.register(waker, self.cursor, progress_seen)
    }

    /// The next record or update, waiting for one; `None` once the log is closed and read.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Next>> {
        loop {
            match self.next() {
                Next::Empty => {
                    if self.log.is_closed() && self.cursor >= self.log.visible() {
                        return Poll::Ready(None);
                    }
                    if !self.register(cx.waker()) {
                        return Poll::Pending;
                    }
                }
                next => return Poll::Ready(Some(next)),
            }
        }
    }
}
