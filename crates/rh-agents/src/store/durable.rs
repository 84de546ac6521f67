//! The link between a running state and its store: every record, storage change and status
//! is written as it happens, by the state's one writer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

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
    /// Storage changes whose write failed (the latest per key; `None` removes), written again
    /// with the next change or record.
    unsaved_storage: Mutex<BTreeMap<String, Option<Value>>>,
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
            unsaved_storage: Mutex::new(BTreeMap::new()),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Writes one record (and any earlier ones whose write failed). Called in history order,
    /// under the history's lock.
    pub(crate) fn write(&self, event: &Arc<Event>) {
        let written = {
            let mut unsaved = self.unsaved.lock();
            if unsaved.is_empty() {
                let written = self
                    .store
                    .append_events(&self.id, std::slice::from_ref(event));
                if written.is_err() {
                    unsaved.push(Arc::clone(event));
                }
                written
            } else {
                unsaved.push(Arc::clone(event));
                let written = self.store.append_events(&self.id, &unsaved);
                if written.is_ok() {
                    unsaved.clear();
                }
                written
            }
        };
        // Noted with no lock held: a tracing layer that logs back into the state must not
        // find a lock of ours taken.
        self.note(written);
        if !self.unsaved_storage.lock().is_empty() {
            let retried = self.flush_storage();
            self.note(retried);
        }
    }

    /// Writes one storage change (and any earlier ones whose write failed). Called with the
    /// storage's lock held, so changes to a key reach the store in the order memory saw them.
    pub(crate) fn put_storage(&self, key: &str, value: Option<&Value>) -> Result<(), StoreError> {
        let written = {
            let mut unsaved = self.unsaved_storage.lock();
            unsaved.remove(key);
            let earlier = Self::write_storage(&*self.store, &self.id, &mut unsaved);
            let this = self.store.put_storage(&self.id, key, value);
            if this.is_err() {
                unsaved.insert(key.to_owned(), value.cloned());
            }
            earlier.and(this)
        };
        if let Err(e) = &written {
            self.note(Err(StoreError::Backend {
                context: format!("saving storage key {key:?}"),
                source: e.report().into(),
            }));
        }
        written
    }

    fn write_storage(
        store: &dyn StateStore,
        id: &str,
        unsaved: &mut BTreeMap<String, Option<Value>>,
    ) -> Result<(), StoreError> {
        let mut first_error = Ok(());
        unsaved.retain(
            |key, value| match store.put_storage(id, key, value.as_ref()) {
                Ok(()) => false,
                Err(e) => {
                    if first_error.is_ok() {
                        first_error = Err(e);
                    }
                    true
                }
            },
        );
        first_error
    }

    fn flush_storage(&self) -> Result<(), StoreError> {
        let mut unsaved = self.unsaved_storage.lock();
        Self::write_storage(&*self.store, &self.id, &mut unsaved)
    }

    /// Writes whatever is left unsaved (records and storage changes).
    ///
    /// # Errors
    ///
    /// The store's failure, while anything remains unsaved.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        {
            let mut unsaved = self.unsaved.lock();
            if !unsaved.is_empty() {
                self.store.append_events(&self.id, &unsaved)?;
                unsaved.clear();
            }
        }
        self.flush_storage()
    }

    /// Records a failed write of anything (records, storage, status).
    pub(crate) fn note(&self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            let report = e.report();
            tracing::error!(run = %self.id, error = %report, "the state store failed to save");
            let mut failure = self.failure.lock();
            if failure.is_none() {
                *failure = Some(report);
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
