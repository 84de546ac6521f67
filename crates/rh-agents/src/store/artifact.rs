//! Artifacts: outputs kept as bytes, addressed by their SHA-256, so each content is stored once
//! however many runs or names refer to it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;

/// A reference to stored bytes: their SHA-256 (lowercase hex), size and media type.
///
/// # Examples
///
/// ```
/// use rh_agents::store::ArtifactRef;
///
/// let r = ArtifactRef::of(b"hello", Some("text/plain"));
/// assert_eq!(r.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
/// assert_eq!(r.size, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ArtifactRef {
    /// SHA-256 of the bytes, lowercase hex: the content's address.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
    /// What the bytes are, e.g. `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl ArtifactRef {
    /// The reference of `bytes`.
    pub fn of(bytes: &[u8], media_type: Option<&str>) -> Self {
        Self {
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
            media_type: media_type.map(str::to_owned),
        }
    }

    /// Checks that `bytes` are the content this reference names.
    ///
    /// # Errors
    ///
    /// [`StoreError::ArtifactCorrupt`] when size or hash differ.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = sha256_hex(bytes);
        if bytes.len() as u64 == self.size && actual == self.sha256 {
            Ok(())
        } else {
            Err(StoreError::ArtifactCorrupt {
                sha256: self.sha256.clone(),
                reason: format!(
                    "stored bytes hash to {actual} ({} bytes, expected {})",
                    bytes.len(),
                    self.size
                ),
            })
        }
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
/// Whether `text` looks like a SHA-256 in lowercase hex (checked before using it in a path or
/// a query, so a foreign file cannot smuggle anything else in).
pub(crate) fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
