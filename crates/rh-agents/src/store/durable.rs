//! The link between a running state and its store: the run's identity and writer lock,
//! storage changes written through, and failures noted so that the state stops the run.
//! Records are written by the state's writer (`recording::writer`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::{StateStore, StoreError, WriteLock};

/// The store side of a durable state.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) id: String,
    /// Held for the life of the state (no other writer may write this run meanwhile), and
    /// let go when the state is dropped, after its last records are written.
    lock: Mutex<Option<WriteLock>>,
    /// Storage changes whose write failed (the latest per key; `None` removes), written again
    /// with the next change or flush.
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
            lock: Mutex::new(Some(lock)),
            unsaved_storage: Mutex::new(BTreeMap::new()),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// Lets go of the run: another writer may take it from now on.
    pub(crate) fn release(&self) {
        drop(self.lock.lock().take());
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
            let _ = self.noted(Err(StoreError::Backend {
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

    /// Writes the storage changes whose write failed before.
    ///
    /// # Errors
    ///
    /// The store's failure, while anything remains unsaved.
    pub(crate) fn flush_storage(&self) -> Result<(), StoreError> {
        let mut unsaved = self.unsaved_storage.lock();
        if unsaved.is_empty() {
            return Ok(());
        }
        Self::write_storage(&*self.store, &self.id, &mut unsaved)
    }

    /// Notes a failed write of anything (records, storage, status), and gives the result
    /// back.
    pub(crate) fn noted(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Err(e) = &result {
            let report = e.report();
            tracing::error!(run = %self.id, error = %report, "the state store failed to save");
            let mut failure = self.failure.lock();
            if failure.is_none() {
                *failure = Some(report);
            }
            self.failed.store(true, Ordering::Release);
        }
        result
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
