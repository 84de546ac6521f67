//! The in-memory store: for tests and short programs. Clones share one store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;

use super::{
    ArtifactRef, ListFilter, RunInfo, RunStatus, SchemaVersion, Snapshot, StateStore, StoreError,
    WriteLock,
};
use crate::event::Event;
use crate::interrupt::InterruptSignal;

#[derive(Debug)]
struct Run {
    info: RunInfo,
    /// Creation order, to list newest first when two runs share a timestamp.
    order: u64,
    events: Vec<Arc<Event>>,
    storage: BTreeMap<String, Value>,
    artifacts: BTreeMap<String, ArtifactRef>,
    interrupt: Option<InterruptSignal>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<String, Run>,
    blobs: HashMap<String, Arc<[u8]>>,
    created: u64,
    /// Interrupt requests left so far: the mailbox change counter.
    requests: u64,
}

/// Runs kept in memory (lost with the process). Clones share the same runs.
///
/// # Examples
///
/// ```
/// use rh_agents::store::{MemoryStore, StateStore};
///
/// let store = MemoryStore::new();
/// let snapshot = rh_agents::ExecutionState::new().snapshot();
/// store.save(&snapshot).unwrap();
/// assert!(store.exists(&snapshot.state_id).unwrap());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    writers: Arc<Mutex<HashSet<String>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_run<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Run) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.inner.lock();
        match inner.runs.get_mut(id) {
            Some(run) => f(run),
            None => Err(StoreError::NotFound { id: id.to_owned() }),
        }
    }

    fn refuse_if_written(&self, id: &str) -> Result<(), StoreError> {
        if self.writers.lock().contains(id) {
            return Err(StoreError::Locked {
                id: id.to_owned(),
                holder: "a state in this process".into(),
            });
        }
        Ok(())
    }
}

/// Releases a writer's claim when dropped.
struct Claim {
    writers: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.writers.lock().remove(&self.id);
    }
}

impl StateStore for MemoryStore {
    fn create(&self, info: &RunInfo) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if inner.runs.contains_key(&info.id) {
            return Err(StoreError::AlreadyExists {
                id: info.id.clone(),
            });
        }
        inner.created += 1;
        let order = inner.created;
        let mut info = info.clone();
        info.events = 0;
        inner.runs.insert(
            info.id.clone(),
            Run {
                info,
                order,
                events: Vec::new(),
                storage: BTreeMap::new(),
                artifacts: BTreeMap::new(),
                interrupt: None,
            },
        );
        Ok(())
    }

    fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        snapshot.schema_version.check()?;
        snapshot.check_ids()?;
        self.refuse_if_written(&snapshot.state_id)?;
        let mut inner = self.inner.lock();
        inner.created += 1;
        let order = inner
            .runs
            .get(&snapshot.state_id)
            .map_or(inner.created, |r| r.order);
        inner.runs.insert(
            snapshot.state_id.clone(),
            Run {
                info: RunInfo {
                    id: snapshot.state_id.clone(),
                    status: snapshot.status,
                    created_at: snapshot.created_at,
                    updated_at: snapshot.updated_at,
                    metadata: snapshot.metadata.clone(),
                    events: snapshot.events.len() as u64,
                },
                order,
                events: snapshot.events.iter().cloned().map(Arc::new).collect(),
                storage: snapshot.storage.clone(),
                artifacts: snapshot.artifacts.clone(),
                interrupt: None,
            },
        );
        Ok(())
    }

    fn load(&self, id: &str) -> Result<Snapshot, StoreError> {
        self.with_run(id, |run| {
            Ok(Snapshot {
                schema_version: SchemaVersion::CURRENT,
                state_id: run.info.id.clone(),
                created_at: run.info.created_at,
                updated_at: run.events.last().map_or(run.info.updated_at, |e| {
                    run.info.updated_at.max(e.timestamp)
                }),
                status: run.info.status,
                metadata: run.info.metadata.clone(),
                events: run.events.iter().map(|e| Event::clone(e)).collect(),
                storage: run.storage.clone(),
                artifacts: run.artifacts.clone(),
            })
        })
    }

    fn list(&self, filter: &ListFilter) -> Result<Vec<RunInfo>, StoreError> {
        let inner = self.inner.lock();
        let mut runs: Vec<(&Run, RunInfo)> = inner
            .runs
            .values()
            .map(|run| {
                let mut info = run.info.clone();
                info.events = run.events.len() as u64;
                if let Some(last) = run.events.last() {
                    info.updated_at = info.updated_at.max(last.timestamp);
                }
                (run, info)
            })
            .filter(|(_, info)| filter.matches(info))
            .collect();
        runs.sort_by(|(a, ai), (b, bi)| {
            bi.created_at
                .cmp(&ai.created_at)
                .then(b.order.cmp(&a.order))
        });
        Ok(runs
            .into_iter()
            .map(|(_, info)| info)
            .take(filter.limit.unwrap_or(usize::MAX))
            .collect())
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.refuse_if_written(id)?;
        Ok(self.inner.lock().runs.remove(id).is_some())
    }

    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.inner.lock().runs.contains_key(id))
    }

    fn append_events(&self, id: &str, events: &[Arc<Event>]) -> Result<(), StoreError> {
        self.with_run(id, |run| {
            for event in events {
                if event.id != run.events.len() as u64 {
                    return Err(StoreError::Conflict {
                        id: id.to_owned(),
                        reason: format!(
                            "record #{} does not follow the {} stored records",
                            event.id,
                            run.events.len()
                        ),
                    });
                }
                run.events.push(Arc::clone(event));
            }
            Ok(())
        })
    }

    fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError> {
        self.with_run(id, |run| {
            run.info.status = status;
            run.info.updated_at = crate::serde_time::now();
            Ok(())
        })
    }

    fn put_storage(&self, id: &str, key: &str, value: Option<&Value>) -> Result<(), StoreError> {
        self.with_run(id, |run| {
            match value {
                Some(v) => run.storage.insert(key.to_owned(), v.clone()),
                None => run.storage.remove(key),
            };
            Ok(())
        })
    }

    fn put_blob(&self, artifact: &ArtifactRef, bytes: &[u8]) -> Result<(), StoreError> {
        artifact.verify(bytes)?;
        self.inner
            .lock()
            .blobs
            .entry(artifact.sha256.clone())
            .or_insert_with(|| Arc::from(bytes));
        Ok(())
    }

    fn get_blob(&self, artifact: &ArtifactRef) -> Result<Vec<u8>, StoreError> {
        let bytes = self.inner.lock().blobs.get(&artifact.sha256).cloned();
        let bytes = bytes.ok_or_else(|| StoreError::ArtifactMissing {
            sha256: artifact.sha256.clone(),
        })?;
        artifact.verify(&bytes)?;
        Ok(bytes.to_vec())
    }

    fn put_artifact(&self, id: &str, name: &str, artifact: &ArtifactRef) -> Result<(), StoreError> {
        self.with_run(id, |run| {
            run.artifacts.insert(name.to_owned(), artifact.clone());
            Ok(())
        })
    }

    fn lock_writer(&self, id: &str) -> Result<WriteLock, StoreError> {
        if !self.writers.lock().insert(id.to_owned()) {
            return Err(StoreError::Locked {
                id: id.to_owned(),
                holder: "a state in this process".into(),
            });
        }
        Ok(WriteLock::new(Claim {
            writers: Arc::clone(&self.writers),
            id: id.to_owned(),
        }))
    }

    fn is_writing(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.writers.lock().contains(id))
    }

    fn request_interrupt(&self, id: &str, signal: &InterruptSignal) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let run = inner
            .runs
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
        run.interrupt = Some(signal.clone());
        inner.requests += 1;
        Ok(())
    }

    fn pending_interrupt(&self, id: &str) -> Result<Option<InterruptSignal>, StoreError> {
        Ok(self
            .inner
            .lock()
            .runs
            .get(id)
            .and_then(|r| r.interrupt.clone()))
    }

    fn clear_interrupt(&self, id: &str) -> Result<(), StoreError> {
        if let Some(run) = self.inner.lock().runs.get_mut(id) {
            run.interrupt = None;
        }
        Ok(())
    }

    fn mailbox_version(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.inner.lock().requests))
    }
}
