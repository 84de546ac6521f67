//! What a state keeps for its store: header, status and artifacts; snapshots, status saves
//! and resume.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::ExecutionState;
use crate::error::Error;
use crate::store::{
    ArtifactRef, Mismatch, ReplayMode, RunMetadata, RunStatus, SchemaVersion, Snapshot, StateStore,
    StoreError,
};

/// The run's header, status and artifacts.
#[derive(Debug)]
pub(crate) struct RunRecord {
    pub(crate) created_at: SystemTime,
    pub(crate) metadata: RunMetadata,
    pub(crate) status: Mutex<RunStatus>,
    pub(crate) artifacts: Mutex<BTreeMap<String, ArtifactRef>>,
    /// Artifact bytes of a state without a store.
    pub(crate) blobs: Mutex<HashMap<String, Arc<[u8]>>>,
}

impl RunRecord {
    pub(crate) fn new(
        created_at: SystemTime,
        metadata: RunMetadata,
        status: RunStatus,
        artifacts: BTreeMap<String, ArtifactRef>,
    ) -> Self {
        Self {
            created_at,
            metadata,
            status: Mutex::new(status),
            artifacts: Mutex::new(artifacts),
            blobs: Mutex::default(),
        }
    }
}

impl ExecutionState {
    /// Resumes run `id` from `store` with default settings; see
    /// [`ExecutionStateBuilder::resume`](crate::ExecutionStateBuilder::resume) to configure
    /// retries, checkers or subscribers as well.
    ///
    /// # Errors
    ///
    /// As [`ExecutionStateBuilder::resume`](crate::ExecutionStateBuilder::resume).
    pub async fn resume(
        store: Arc<dyn StateStore>,
        id: &str,
        mode: ReplayMode,
    ) -> Result<Self, StoreError> {
        Self::builder().resume(store, id, mode).await
    }

    /// The run as a snapshot: header, every record so far, storage and artifact references.
    pub fn snapshot(&self) -> Snapshot {
        let run = &self.inner.run;
        Snapshot {
            schema_version: SchemaVersion::CURRENT,
            state_id: self.inner.id.clone(),
            created_at: run.created_at,
            updated_at: crate::serde_time::now(),
            status: *run.status.lock(),
            metadata: run.metadata.clone(),
            events: self
                .history()
                .events()
                .iter()
                .map(|e| crate::Event::clone(e))
                .collect(),
            storage: self.inner.storage.snapshot(),
            artifacts: run.artifacts.lock().clone(),
        }
    }

    /// The run's metadata (pipeline, tags, description, lineage, custom JSON).
    pub fn metadata(&self) -> &RunMetadata {
        &self.inner.run.metadata
    }

    /// Where the run stands.
    pub fn status(&self) -> RunStatus {
        *self.inner.run.status.lock()
    }

    /// The store a durable state writes to.
    pub fn store(&self) -> Option<&Arc<dyn StateStore>> {
        self.inner.durable.as_ref().map(|d| &d.store)
    }

    /// Sets the run's status, saving it (and any record whose write failed before) to the
    /// store of a durable state.
    ///
    /// # Errors
    ///
    /// The store's failure.
    pub fn set_status(&self, status: RunStatus) -> Result<(), StoreError> {
        *self.inner.run.status.lock() = status;
        if status != RunStatus::Running {
            // The run is over (or paused): no more interrupt requests to watch for.
            self.stop_watcher();
        }
        let journal = &self.inner.journal;
        match &journal.writer {
            // Every record made so far is committed first, then the status: a run is never
            // stored as ended with records missing.
            Some(writer) => writer.flush_with_status(&journal.log, status),
            None => Ok(()),
        }
    }

    /// Saves a checkpoint now: commits every record made so far (whatever the
    /// [`CommitMode`](crate::CommitMode)), anything a failed write left behind, and the
    /// status. Blocks while it writes.
    ///
    /// # Errors
    ///
    /// The store's failure.
    pub fn save_checkpoint(&self) -> Result<(), StoreError> {
        self.set_status(self.status())
    }

    /// Ends the run with the outcome of its work: status `completed` for `Ok`, `interrupted`
    /// for an interrupt error, `failed` otherwise; saved to the store of a durable state.
    /// For a run with no single result, [`finish_ok`](Self::finish_ok) says "completed".
    ///
    /// # Errors
    ///
    /// The store's failure.
    pub fn finish<T>(&self, outcome: &Result<T, Error>) -> Result<RunStatus, StoreError> {
        let status = match outcome {
            Ok(_) => RunStatus::Completed,
            Err(e) if e.is_interrupted() => RunStatus::Interrupted,
            Err(_) => RunStatus::Failed,
        };
        self.set_status(status)?;
        Ok(status)
    }

    /// Ends the run as completed (for a run whose work has no single result to pass to
    /// [`finish`](Self::finish)); saved to the store of a durable state.
    ///
    /// # Errors
    ///
    /// The store's failure.
    ///
    /// # Examples
    ///
    /// ```
    /// use rh_agents::store::RunStatus;
    ///
    /// let state = rh_agents::ExecutionState::new();
    /// assert_eq!(state.finish_ok().unwrap(), RunStatus::Completed);
    /// ```
    pub fn finish_ok(&self) -> Result<RunStatus, StoreError> {
        self.set_status(RunStatus::Completed)?;
        Ok(RunStatus::Completed)
    }

    /// Sets the status from inside the runtime: queued for the writer, which writes it after
    /// the records made before it (a failure is noted and stops the run).
    pub(crate) fn save_status(&self, status: RunStatus) {
        *self.inner.run.status.lock() = status;
        let journal = &self.inner.journal;
        if let Some(writer) = &journal.writer {
            writer.queue_status(&journal.log, status);
        }
    }

    /// Lets the writer stop the run when a write fails.
    pub(crate) fn stop_on_store_failure(&self) {
        if let Some(writer) = &self.inner.journal.writer {
            // Weak: the writer must not keep its state alive.
            let weak = Arc::downgrade(&self.inner);
            writer.set_on_failure(Box::new(move || {
                if let Some(inner) = weak.upgrade() {
                    ExecutionState { inner }.check_store();
                }
            }));
        }
    }

    /// Keeps `bytes` as artifact `name` (content-addressed: the same bytes are stored once),
    /// in the store of a durable state or in memory.
    ///
    /// # Errors
    ///
    /// The store's failure.
    ///
    /// # Examples
    ///
    /// ```
    /// let state = rh_agents::ExecutionState::new();
    /// let a = state.put_artifact("report", b"# Report", Some("text/markdown")).unwrap();
    /// let b = state.put_artifact("copy", b"# Report", None).unwrap();
    /// assert_eq!(a.sha256, b.sha256);
    /// assert_eq!(state.artifact("report").unwrap().unwrap(), b"# Report");
    /// ```
    pub fn put_artifact(
        &self,
        name: &str,
        bytes: &[u8],
        media_type: Option<&str>,
    ) -> Result<ArtifactRef, StoreError> {
        let artifact = ArtifactRef::of(bytes, media_type);
        match &self.inner.durable {
            Some(durable) => {
                durable.store.put_blob(&artifact, bytes)?;
                durable.store.put_artifact(&durable.id, name, &artifact)?;
            }
            None => {
                self.inner
                    .run
                    .blobs
                    .lock()
                    .entry(artifact.sha256.clone())
                    .or_insert_with(|| Arc::from(bytes));
            }
        }
        self.inner
            .run
            .artifacts
            .lock()
            .insert(name.to_owned(), artifact.clone());
        Ok(artifact)
    }

    /// The bytes of artifact `name`; `Ok(None)` when there is no such artifact.
    ///
    /// # Errors
    ///
    /// [`StoreError::ArtifactMissing`] or [`StoreError::ArtifactCorrupt`] when the bytes
    /// cannot be had.
    pub fn artifact(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let artifact = self.inner.run.artifacts.lock().get(name).cloned();
        artifact.map(|a| self.artifact_bytes(&a)).transpose()
    }

    /// Every artifact by name.
    pub fn artifacts(&self) -> BTreeMap<String, ArtifactRef> {
        self.inner.run.artifacts.lock().clone()
    }

    pub(crate) fn artifact_bytes(&self, artifact: &ArtifactRef) -> Result<Vec<u8>, StoreError> {
        if let Some(bytes) = self.inner.run.blobs.lock().get(&artifact.sha256) {
            return Ok(bytes.to_vec());
        }
        match &self.inner.durable {
            Some(durable) => durable.store.get_blob(artifact),
            None => Err(StoreError::ArtifactMissing {
                sha256: artifact.sha256.clone(),
            }),
        }
    }

    /// How this state replays, when it was resumed.
    pub fn replay_mode(&self) -> Option<&ReplayMode> {
        self.inner.replay.as_ref().map(|r| r.mode())
    }

    /// The results that differed from the recorded ones, in a state resumed with
    /// [`ReplayMode::Validation`].
    pub fn mismatches(&self) -> Vec<Mismatch> {
        self.inner
            .replay
            .as_ref()
            .map(|r| r.mismatches())
            .unwrap_or_default()
    }
}
