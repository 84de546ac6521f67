//! The link between a running state and its store: every record, storage change and status
//! is written as it happens, by the state's one writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{StateStore, StoreError, WriteLock};
use crate::event::Event;

/// The store side of a durable state.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) id: String,
    /// Held for the life of the state: no other writer may write this run meanwhile.
    _lock: WriteLock,
    /// Records whose write failed, written again (first, in order) with the next record, so a
    /// passing failure (a full disk freed, a long lock) leaves no hole in the stored history.
    unsaved: Mutex<Vec<Arc<Event>>>,
    /// Set by a failed write; the state turns it into an interrupt.
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl Durable {
    pub(crate) fn new(store: Arc<dyn StateStore>, id: String, lock: WriteLock) -> Self {
        Self {
            store,
            id,
            _lock: lock,
            unsaved: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Writes one record (and any earlier ones whose write failed). Called in history order,
    /// under the history's lock.
    pub(crate) fn write(&self, event: &Arc<Event>) {
        let mut unsaved = self.unsaved.lock();
        let written = if unsaved.is_empty() {
            self.store
                .append_events(&self.id, std::slice::from_ref(event))
        } else {
            unsaved.push(Arc::clone(event));
            let written = self.store.append_events(&self.id, &unsaved);
            if written.is_ok() {
                unsaved.clear();
            }
            return self.note(written);
        };
        if written.is_err() {
            unsaved.push(Arc::clone(event));
        }
        self.note(written);
    }

    /// Writes whatever is left unsaved.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let mut unsaved = self.unsaved.lock();
        if unsaved.is_empty() {
            return Ok(());
        }
        self.store.append_events(&self.id, &unsaved)?;
        unsaved.clear();
        Ok(())
    }

    /// Records a failed write of anything (records, storage, status).
    pub(crate) fn note(&self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            tracing::error!(run = %self.id, error = %e, "the state store failed to save");
            let mut failure = self.failure.lock();
            if failure.is_none() {
                *failure = Some(e.to_string());
            }
            self.failed.store(true, Ordering::Release);
        }
    }

    /// The first failure, once: the state stops the run when it sees one, so that no work
    /// goes on unrecorded.
    pub(crate) fn take_failure(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.failure.lock().take()
    }
}
