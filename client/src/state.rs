//! The trusted state of a verifying client: per log, the latest checkpoint
//! it has verified, in a JSON file. A checkpoint is written only after it
//! verified, with a write to a temporary file, fsync and rename, so a crash
//! leaves the old state or the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest state file accepted (checked before parsing).
pub const MAX_STATE_BYTES: u64 = 4 << 20;
const FORMAT: &str = "quire-client-state/v1";

/// A state file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {why}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The file is not a state file of this format.
    #[error("state file {path} is malformed: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The trusted checkpoints, by origin.
#[derive(Debug)]
pub struct TrustedState {
    path: PathBuf,
    logs: BTreeMap<String, String>,
}

impl TrustedState {
    /// Loads the state at `path`; a missing file is an empty state.
    ///
    /// # Errors
    /// [`StateError`] for an unreadable, oversized or malformed file.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let io = |e: std::io::Error| StateError::Io {
            path: path.to_owned(),
            why: e.to_string(),
        };
        let bad = |why: String| StateError::Malformed {
            path: path.to_owned(),
            why,
        };
        let bytes = match quire_host::read_bounded(path, MAX_STATE_BYTES) {
            Ok(b) => b,
            Err(quire_host::ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(TrustedState {
                    path: path.to_owned(),
                    logs: BTreeMap::new(),
                })
            }
            Err(quire_host::ReadError::Io { source, .. }) => return Err(io(source)),
            Err(e) => return Err(bad(e.to_string())),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if v["format"] != FORMAT {
            return Err(bad(format!("format must be {FORMAT:?}")));
        }
        let mut logs = BTreeMap::new();
        if let Some(map) = v["logs"].as_object() {
            for (origin, note) in map {
                let note = note
                    .as_str()
                    .ok_or_else(|| bad(format!("log {origin:?}: checkpoint is not a string")))?;
                logs.insert(origin.clone(), note.to_owned());
            }
        }
        Ok(TrustedState {
            path: path.to_owned(),
            logs,
        })
    }

    /// The trusted checkpoint note of `origin`, if any.
    pub fn trusted(&self, origin: &str) -> Option<&[u8]> {
        self.logs.get(origin).map(String::as_bytes)
    }

    /// Records `note` as the trusted checkpoint of `origin` and persists the
    /// state durably. Call only with a checkpoint that verified.
    ///
    /// # Errors
    /// [`StateError::Io`]; the file on disk is then unchanged.
    pub fn set(&mut self, origin: &str, note: &[u8]) -> Result<(), StateError> {
        let mut logs = self.logs.clone();
        logs.insert(
            origin.to_owned(),
            String::from_utf8_lossy(note).into_owned(),
        );
        let json = serde_json::json!({ "format": FORMAT, "logs": logs });
        crate::extend::write_durably(&self.path, json.to_string().as_bytes()).map_err(|e| {
            StateError::Io {
                path: self.path.clone(),
                why: e.to_string(),
            }
        })?;
        self.logs = logs;
        Ok(())
    }
}
