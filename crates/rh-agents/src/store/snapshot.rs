//! The snapshot of a run: everything needed to inspect it or resume it, as one value with a
//! stable, versioned JSON form.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::artifact::ArtifactRef;
use super::StoreError;
use crate::event::Event;
use crate::serde_time;

/// The major version of the snapshot form this build reads and writes. A snapshot of another
/// major version is refused; a newer minor version of the same major is read.
pub const SNAPSHOT_SCHEMA_MAJOR: u32 = 1;
/// The minor version of the snapshot form this build writes. 1.1 added the records'
/// `input_hash` (a 1.0 snapshot is read as it was: its calls replay without the check).
pub const SNAPSHOT_SCHEMA_MINOR: u32 = 1;

/// A snapshot schema version, written as `"major.minor"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaVersion {
    /// Incompatible changes bump this.
    pub major: u32,
    /// Compatible additions bump this.
    pub minor: u32,
}

impl SchemaVersion {
    /// The version this build writes.
    pub const CURRENT: Self = Self {
        major: SNAPSHOT_SCHEMA_MAJOR,
        minor: SNAPSHOT_SCHEMA_MINOR,
    };

    /// Refuses a version whose major differs from this build's, naming both.
    ///
    /// # Errors
    ///
    /// [`StoreError::IncompatibleVersion`].
    pub fn check(self) -> Result<(), StoreError> {
        if self.major == SNAPSHOT_SCHEMA_MAJOR {
            Ok(())
        } else {
            Err(StoreError::IncompatibleVersion {
                found: self.to_string(),
                supported: Self::CURRENT.to_string(),
            })
        }
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for SchemaVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
        match (major.parse(), minor.parse()) {
            (Ok(major), Ok(minor)) => Ok(Self { major, minor }),
            _ => Err(format!(
                "invalid schema version {text:?}: expected \"major.minor\", e.g. \"1.0\""
            )),
        }
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Running (or crashed while running: a store cannot tell a killed process from a live
    /// one by status alone; see [`StateStore::is_writing`](super::StateStore::is_writing)).
    Running,
    /// Stopped on purpose, to be resumed. Reserved for human input (a run waiting for an
    /// answer): the runtime does not produce it yet.
    Paused,
    /// Finished with success.
    Completed,
    /// Finished with a failure.
    Failed,
    /// Stopped by an interrupt.
    Interrupted,
}

impl RunStatus {
    /// The wire name, e.g. `"interrupted"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// Reads a wire name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => Self::Running,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            _ => return None,
        })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run is: its pipeline, tags, description, lineage and free JSON.
///
/// # Examples
///
/// ```
/// use rh_agents::store::RunMetadata;
///
/// let meta = RunMetadata::new().pipeline("ingest").tag("nightly").description("daily load");
/// assert_eq!(meta.tags, ["nightly"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunMetadata {
    /// The pipeline's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// A description for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free tags, for filtering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The run this one was derived from (lineage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Anything else, as JSON. Read with every key once: a key given twice is refused.
    #[serde(
        default,
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "unique_keys::custom"
    )]
    pub custom: Map<String, Value>,
}

impl RunMetadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the pipeline name.
    #[must_use]
    pub fn pipeline(mut self, name: impl Into<String>) -> Self {
        self.pipeline = Some(name.into());
        self
    }

    /// Sets the description.
    #[must_use]
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Adds a tag.
    #[must_use]
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets the parent run.
    #[must_use]
    pub fn parent(mut self, id: impl Into<String>) -> Self {
        self.parent_id = Some(id.into());
        self
    }

    /// Sets one custom value.
    #[must_use]
    pub fn custom(mut self, key: impl Into<String>, value: Value) -> Self {
        self.custom.insert(key.into(), value);
        self
    }
}

/// A run as saved: header, history, key-value storage and artifact references.
///
/// # Examples
///
/// ```
/// use rh_agents::store::{Snapshot, StoreError};
///
/// let state = rh_agents::ExecutionState::new();
/// let json = state.snapshot().to_json();
/// let back = Snapshot::from_json(&json).unwrap();
/// assert_eq!(back.state_id, state.id());
///
/// // A snapshot from another major version is refused, naming both versions.
/// let future = json.replace(r#""schema_version":"1.1""#, r#""schema_version":"2.0""#);
/// let err = Snapshot::from_json(&future).unwrap_err();
/// assert!(matches!(err, StoreError::IncompatibleVersion { .. }));
/// assert!(err.to_string().contains("2.0") && err.to_string().contains("1.1"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// The form's version.
    pub schema_version: SchemaVersion,
    /// The run's id.
    pub state_id: String,
    /// When the run began.
    #[serde(with = "serde_time::timestamp")]
    pub created_at: SystemTime,
    /// When the run last changed (its latest record or status save, whichever is later).
    #[serde(with = "serde_time::timestamp")]
    pub updated_at: SystemTime,
    /// Where the run stands.
    pub status: RunStatus,
    /// What the run is.
    #[serde(default)]
    pub metadata: RunMetadata,
    /// Every record, in history order (ids 0, 1, 2, …).
    pub events: Vec<Event>,
    /// The key-value storage. Read with every key once: a key given twice is refused.
    #[serde(default, deserialize_with = "unique_keys::storage")]
    pub storage: BTreeMap<String, Value>,
    /// Artifacts by name. Read with every name once: a name given twice is refused.
    #[serde(default, deserialize_with = "unique_keys::artifacts")]
    pub artifacts: BTreeMap<String, ArtifactRef>,
}

/// Maps read from a file with each key once. JSON allows a key twice in an object, and a
/// plain map keeps the last value silently; a file that says two things about one key is
/// ambiguous (and may be crafted to show one value and act on the other), so it is refused.
mod unique_keys {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, MapAccess, Visitor};
    use serde_json::{Map, Value};

    use super::ArtifactRef;

    struct Unique<V> {
        field: &'static str,
        values: PhantomData<V>,
    }

    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a JSON object for `{}`", self.field)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value = map.next_value::<V>()?;
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!(
                        "key {key:?} appears twice in `{}`: a file must give each key once \
                         (which value is meant is ambiguous); remove one",
                        self.field
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    fn unique<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
        field: &'static str,
    ) -> Result<BTreeMap<String, V>, D::Error> {
        d.deserialize_map(Unique {
            field,
            values: PhantomData,
        })
    }

    pub(super) fn storage<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Value>, D::Error> {
        unique(d, "storage")
    }

    pub(super) fn artifacts<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, ArtifactRef>, D::Error> {
        unique(d, "artifacts")
    }

    pub(super) fn custom<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
        Ok(unique::<D, Value>(d, "metadata.custom")?
            .into_iter()
            .collect())
    }
}

/// Just the version, read first so that a foreign snapshot is refused for its version rather
/// than for whatever field it happens to break first.
#[derive(Deserialize)]
struct VersionOnly {
    schema_version: Option<SchemaVersion>,
}

impl Snapshot {
    /// The snapshot as JSON.
    pub fn to_json(&self) -> String {
        // Every field has a JSON form and map keys are text.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The snapshot as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a snapshot, refusing another major version and any malformed record.
    ///
    /// # Errors
    ///
    /// [`StoreError::IncompatibleVersion`], or [`StoreError::Malformed`] with the line and
    /// column of the problem.
    pub fn from_json(text: &str) -> Result<Self, StoreError> {
        let malformed = |e: serde_json::Error| StoreError::Malformed {
            what: "snapshot JSON".into(),
            reason: format!("{e}"),
        };
        if !text.trim_start().starts_with('{') {
            return Err(StoreError::Malformed {
                what: "snapshot JSON".into(),
                reason: "a snapshot is a JSON object; this is not an rh-agents snapshot".into(),
            });
        }
        let version: VersionOnly = serde_json::from_str(text).map_err(malformed)?;
        match version.schema_version {
            Some(v) => v.check()?,
            None => {
                return Err(StoreError::Malformed {
                    what: "snapshot JSON".into(),
                    reason: "no \"schema_version\": this is not an rh-agents snapshot".into(),
                })
            }
        }
        let snapshot: Self = serde_json::from_str(text).map_err(malformed)?;
        snapshot.check_ids()?;
        Ok(snapshot)
    }

    /// Checks that event ids are 0, 1, 2, … in order: the history's own numbering, which
    /// resume relies on.
    pub(crate) fn check_ids(&self) -> Result<(), StoreError> {
        for (index, event) in self.events.iter().enumerate() {
            if event.id != index as u64 {
                return Err(StoreError::Corrupt {
                    id: self.state_id.clone(),
                    record: format!("event #{index}"),
                    reason: format!("has id {} (records must be numbered 0, 1, 2, …)", event.id),
                });
            }
        }
        Ok(())
    }

    /// What changed from `self` to `later`.
    ///
    /// # Examples
    ///
    /// ```
    /// let state = rh_agents::ExecutionState::new();
    /// let before = state.snapshot();
    /// state.storage().set("k", &1).unwrap();
    /// state.log(rh_agents::Severity::Info, "hello");
    /// let diff = before.diff(&state.snapshot());
    /// assert_eq!(diff.new_events.len(), 1);
    /// assert_eq!(diff.changed_storage[0].key, "k");
    /// ```
    pub fn diff(&self, later: &Snapshot) -> SnapshotDiff {
        let new_events = later
            .events
            .iter()
            .filter(|e| self.events.get(e.id as usize) != Some(*e))
            .cloned()
            .collect();
        let removed_events = self
            .events
            .iter()
            .filter(|e| later.events.get(e.id as usize) != Some(*e))
            .cloned()
            .collect();
        let keys: BTreeSet<&String> = self.storage.keys().chain(later.storage.keys()).collect();
        let changed_storage = keys
            .into_iter()
            .filter_map(|key| {
                let before = self.storage.get(key);
                let after = later.storage.get(key);
                (before != after).then(|| StorageChange {
                    key: key.clone(),
                    before: before.cloned(),
                    after: after.cloned(),
                })
            })
            .collect();
        let pick = |from: &BTreeMap<String, ArtifactRef>, other: &BTreeMap<String, ArtifactRef>| {
            from.iter()
                .filter(|(name, r)| other.get(*name) != Some(*r))
                .map(|(name, r)| (name.clone(), r.clone()))
                .collect()
        };
        SnapshotDiff {
            status: (self.status != later.status).then_some((self.status, later.status)),
            new_events,
            removed_events,
            changed_storage,
            new_artifacts: pick(&later.artifacts, &self.artifacts),
            removed_artifacts: pick(&self.artifacts, &later.artifacts),
        }
    }
}

/// One storage key that differs between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageChange {
    /// The key.
    pub key: String,
    /// The value before (`None`: the key was added).
    pub before: Option<Value>,
    /// The value after (`None`: the key was removed).
    pub after: Option<Value>,
}

/// The difference between two snapshots of a run (see [`Snapshot::diff`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDiff {
    /// The status before and after, when it changed.
    pub status: Option<(RunStatus, RunStatus)>,
    /// Records in the later snapshot that the earlier one lacks (or holds differently).
    pub new_events: Vec<Event>,
    /// Records in the earlier snapshot that the later one lacks (or holds differently).
    pub removed_events: Vec<Event>,
    /// Storage keys added, removed or changed.
    pub changed_storage: Vec<StorageChange>,
    /// Artifacts added (or pointing at new content).
    pub new_artifacts: Vec<(String, ArtifactRef)>,
    /// Artifacts removed (or replaced).
    pub removed_artifacts: Vec<(String, ArtifactRef)>,
}

impl SnapshotDiff {
    /// Whether the two snapshots hold the same run data.
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.new_events.is_empty()
            && self.removed_events.is_empty()
            && self.changed_storage.is_empty()
            && self.new_artifacts.is_empty()
            && self.removed_artifacts.is_empty()
    }
}
