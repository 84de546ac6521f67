//! The state's key-value store for step results and anything a pipeline wants to keep.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

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
}

impl Storage {
    /// Stores `value` under `key`, replacing what was there.
    ///
    /// # Errors
    ///
    /// When `value` has no JSON form (e.g. a map with non-text keys).
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let value = serde_json::to_value(value)?;
        self.values.lock().insert(key.into(), value);
        Ok(())
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
        self.values.lock().remove(key)
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
