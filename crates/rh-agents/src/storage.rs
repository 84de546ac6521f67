//! The state's key-value store for step results and anything a pipeline wants to keep.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::store::durable::Durable;
use crate::store::StoreError;

/// A key-value store of JSON values, shared by every clone of a state.
///
/// # Examples
///
/// ```
/// let state = rh_agents::ExecutionState::new();
/// state.storage().set("pages", &vec![1, 2, 3]).unwrap();
/// let pages: Vec<u32> = state.storage().get("pages").unwrap().unwrap();
/// assert_eq!(pages, [1, 2, 3]);
/// ```
#[derive(Debug, Default)]
pub struct Storage {
    values: Mutex<BTreeMap<String, Value>>,
    /// A durable state's store: every change is written through.
    sink: Option<Arc<Durable>>,
}

/// Why a value could not be stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The value has no JSON form (e.g. a map with non-text keys).
    #[error("the value has no JSON form")]
    Json(#[from] serde_json::Error),
    /// The value is kept in memory but the state's store could not save it; the run is
    /// being stopped so that no work goes on unrecorded.
    #[error("the value is kept in memory but could not be saved")]
    Store(#[from] StoreError),
}

impl StorageError {
    /// This error and its causes on one line, for logs and people (`Display` shows this
    /// error alone).
    pub fn report(&self) -> String {
        crate::error::describe(self).to_string()
    }
}

impl Storage {
    pub(crate) fn restore(values: BTreeMap<String, Value>, sink: Option<Arc<Durable>>) -> Self {
        Self {
            values: Mutex::new(values),
            sink,
        }
    }

    /// Stores `value` under `key`, replacing what was there. A durable state writes it to its
    /// store at once.
    ///
    /// # Errors
    ///
    /// [`StorageError::Json`] when `value` has no JSON form (e.g. a map with non-text keys);
    /// [`StorageError::Store`] when the store failed.
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), StorageError> {
        let key = key.into();
        let value = serde_json::to_value(value)?;
        let mut values = self.values.lock();
        // Written under the lock, so the store sees changes to a key in the order memory does.
        let saved = self.write_through(&key, Some(&value));
        values.insert(key, value);
        saved.map_err(StorageError::Store)
    }

    fn write_through(&self, key: &str, value: Option<&Value>) -> Result<(), StoreError> {
        match &self.sink {
            // A failure is kept to write again and noted by the store link, which stops the
            // run.
            Some(sink) => sink.put_storage(key, value),
            None => Ok(()),
        }
    }

    /// Reads `key` as a `T`; `Ok(None)` when absent.
    ///
    /// # Errors
    ///
    /// When the stored value does not fit `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, serde_json::Error> {
        self.get_value(key).map(serde_json::from_value).transpose()
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.values.lock().get(key).cloned()
    }

    /// Removes `key`, returning its value.
    pub fn remove(&self, key: &str) -> Option<Value> {
        let mut values = self.values.lock();
        let removed = values.remove(key);
        if removed.is_some() {
            // A failure is noted by the store link, which stops the run.
            let _ = self.write_through(key, None);
        }
        removed
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.values.lock().contains_key(key)
    }

    /// Every key-value pair, sorted by key.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        self.values.lock().clone()
    }
}
