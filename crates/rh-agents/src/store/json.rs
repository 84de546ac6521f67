//! One run as a JSON file, for sharing and debugging: the snapshot plus the bytes of its
//! artifacts (base64), written atomically (a temporary file renamed into place).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::{ArtifactRef, Snapshot, StateStore, StoreError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Deserialize)]
struct Blobs {
    #[serde(default)]
    blobs: BTreeMap<String, String>,
}

/// Writes `snapshot` and the given artifact bytes to `path` (replacing it atomically).
///
/// # Errors
///
/// [`StoreError::Io`] when the file cannot be written.
pub fn write_file(
    path: &Path,
    snapshot: &Snapshot,
    blobs: &BTreeMap<String, Vec<u8>>,
) -> Result<(), StoreError> {
    let text = to_text(snapshot, blobs)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text).map_err(|e| StoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))
}

/// The text [`write_file`] writes: `snapshot` and the given artifact bytes (base64) as
/// indented JSON, for callers that choose where and how it is written (standard output, a
/// file they must not replace).
///
/// # Errors
///
/// [`StoreError::Backend`] when the snapshot cannot be serialized.
pub fn to_text(
    snapshot: &Snapshot,
    blobs: &BTreeMap<String, Vec<u8>>,
) -> Result<String, StoreError> {
    let mut doc = serde_json::to_value(snapshot).map_err(|e| StoreError::Backend {
        context: "writing a snapshot".into(),
        source: Box::new(e),
    })?;
    if let Value::Object(map) = &mut doc {
        let encoded = blobs
            .iter()
            .map(|(sha, bytes)| (sha.clone(), Value::String(B64.encode(bytes))))
            .collect();
        map.insert("blobs".into(), Value::Object(encoded));
    }
    Ok(serde_json::to_string_pretty(&doc).unwrap_or_default())
}

/// Reads a file written by [`write_file`]: the snapshot and its artifact bytes, each checked
/// against its hash.
///
/// # Errors
///
/// [`StoreError::Io`]; [`StoreError::Malformed`] naming the file, with line and column;
/// [`StoreError::IncompatibleVersion`]; [`StoreError::ArtifactCorrupt`].
pub fn read_file(path: &Path) -> Result<(Snapshot, BTreeMap<String, Vec<u8>>), StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::io(path, e))?;
    let named = |e: StoreError| match e {
        StoreError::Malformed { reason, .. } => StoreError::Malformed {
            what: path.display().to_string(),
            reason,
        },
        other => other,
    };
    let snapshot = Snapshot::from_json(&text).map_err(named)?;
    let Blobs { blobs } = serde_json::from_str(&text).map_err(|e| StoreError::Malformed {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut decoded = BTreeMap::new();
    for (sha, text) in blobs {
        let bytes = B64.decode(text).map_err(|e| StoreError::Malformed {
            what: path.display().to_string(),
            reason: format!("artifact {sha}: {e}"),
        })?;
        let reference = ArtifactRef {
            sha256: sha.clone(),
            size: bytes.len() as u64,
            media_type: None,
        };
        reference.verify(&bytes)?;
        decoded.insert(sha, bytes);
    }
    Ok((snapshot, decoded))
}

/// Exports run `id` of `store` to `path`, with its artifacts' bytes.
///
/// # Errors
///
/// As [`StateStore::load`] and [`write_file`].
pub fn export(store: &dyn StateStore, id: &str, path: &Path) -> Result<Snapshot, StoreError> {
    let snapshot = store.load(id)?;
    let mut blobs = BTreeMap::new();
    for artifact in snapshot.artifacts.values() {
        if !blobs.contains_key(&artifact.sha256) {
            blobs.insert(artifact.sha256.clone(), store.get_blob(artifact)?);
        }
    }
    write_file(path, &snapshot, &blobs)?;
    Ok(snapshot)
}

/// Imports a file written by [`export`] into `store`. A run with the same id must not exist.
///
/// # Errors
///
/// As [`read_file`]; [`StoreError::AlreadyExists`].
pub fn import(store: &dyn StateStore, path: &Path) -> Result<Snapshot, StoreError> {
    let (snapshot, blobs) = read_file(path)?;
    if store.exists(&snapshot.state_id)? {
        return Err(StoreError::AlreadyExists {
            id: snapshot.state_id,
        });
    }
    for artifact in snapshot.artifacts.values() {
        let bytes = blobs
            .get(&artifact.sha256)
            .ok_or_else(|| StoreError::ArtifactMissing {
                sha256: artifact.sha256.clone(),
            })?;
        store.put_blob(artifact, bytes)?;
    }
    store.save(&snapshot)?;
    Ok(snapshot)
}
