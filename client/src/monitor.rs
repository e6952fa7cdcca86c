//! The monitor: follows a log, downloads every new entry, recomputes the
//! tree from its own right edge, and accepts a new checkpoint only when its
//! signature (and witness policy) holds, the recomputed root matches it and
//! the log's consistency proof connects it to the last accepted one. State
//! (the accepted checkpoint and the right edge) is persisted only after all
//! of that; on misbehaviour it says what happened and, for a split view,
//! hands back the evidence.

use std::path::{Path, PathBuf};

use quire_core::{leaf_hash, Checkpoint, CompactRange, Hash, Note, SplitViewEvidence};

use crate::extend::{check_extension, ExtendError, Signed};

use crate::policy::LogTrust;
use crate::rpc::{LogRpc, RpcError};

const FORMAT: &str = "quire-monitor-state/v1";
/// Largest state file accepted.
const MAX_STATE_BYTES: u64 = 1 << 20;

/// What the monitor has accepted so far.
#[derive(Clone, Debug)]
pub struct MonitorState {
    /// The last accepted checkpoint (signed note), if any.
    pub checkpoint: Option<Vec<u8>>,
    /// The right edge of the entries downloaded and checked.
    pub range: CompactRange,
}

/// Misbehaviour, or a failure to check.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The log could not be asked.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A checkpoint that is not trusted (bad signature, policy, origin).
    #[error("checkpoint not trusted: {0}")]
    Untrusted(String),
    /// The log went back to a smaller tree.
    #[error("rollback: the log shows size {offered} after size {accepted}")]
    Rollback {
        /// Accepted size.
        accepted: u64,
        /// Offered size.
        offered: u64,
    },
    /// The log's entries do not rebuild its signed root.
    #[error("the entries up to {size} rebuild root {computed}, the log signed {signed}: entries altered, dropped or reordered")]
    EntriesMismatch {
        /// Size.
        size: u64,
        /// Root of the downloaded entries.
        computed: Hash,
        /// Signed root.
        signed: Hash,
    },
    /// Two signed histories: evidence anyone can check.
    #[error("the log signed two histories (evidence attached)")]
    Fork(Box<SplitViewEvidence>),
    /// The consistency proof does not connect the two checkpoints.
    #[error("no valid consistency proof from {old} to {new}: {why}")]
    Inconsistent {
        /// Accepted size.
        old: u64,
        /// Offered size.
        new: u64,
        /// Why.
        why: String,
    },
    /// The state file could not be read or written.
    #[error("monitor state {path}: {why}")]
    State {
        /// File.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl MonitorState {
    /// Loads the state; a missing file is a fresh start.
    ///
    /// # Errors
    /// [`MonitorError::State`] for an unreadable or malformed file.
    pub fn load(path: &Path) -> Result<Self, MonitorError> {
        let bad = |why: String| MonitorError::State {
            path: path.to_owned(),
            why,
        };
        let bytes = match quire_host::read_bounded(path, MAX_STATE_BYTES) {
            Ok(b) => b,
            Err(quire_host::ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(MonitorState {
                    checkpoint: None,
                    range: CompactRange::new(),
                })
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if v["format"] != FORMAT {
            return Err(bad(format!("format must be {FORMAT:?}")));
        }
        let size: u64 = v["size"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("size missing".into()))?;
        let edge = v["edge"]
            .as_array()
            .ok_or_else(|| bad("edge missing".into()))?
            .iter()
            .map(|h| h.as_str().and_then(|s| Hash::from_base64(s).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("edge hash malformed".into()))?;
        let range = CompactRange::from_parts(size, edge).map_err(|e| bad(e.to_string()))?;
        let checkpoint = v["checkpoint"].as_str().map(|s| s.as_bytes().to_vec());
        Ok(MonitorState { checkpoint, range })
    }

    /// Writes the state durably (temporary file, fsync, rename).
    ///
    /// # Errors
    /// [`MonitorError::State`].
    pub fn save(&self, path: &Path) -> Result<(), MonitorError> {
        let json = serde_json::json!({
            "format": FORMAT,
            "size": self.range.size().to_string(),
            "edge": self.range.edge().iter().map(Hash::to_base64).collect::<Vec<_>>(),
            "checkpoint": self.checkpoint.as_ref().map(|c| String::from_utf8_lossy(c).into_owned()),
        });
        crate::extend::write_durably(path, json.to_string().as_bytes()).map_err(|e| {
            MonitorError::State {
                path: path.to_owned(),
                why: e.to_string(),
            }
        })
    }
}

/// One step of monitoring: fetch the latest checkpoint, check it and the
/// entries up to it against `state`, and return the new state (not yet
/// saved) and the accepted checkpoint. `progress` is told how many entries
/// have been checked.
///
/// # Errors
/// [`MonitorError`] naming the misbehaviour; `state` is left as it was.
pub async fn step(
    rpc: &mut LogRpc,
    trust: &LogTrust,
    state: &MonitorState,
    mut progress: impl FnMut(u64, u64),
) -> Result<(MonitorState, Checkpoint), MonitorError> {
    let note_bytes = rpc.checkpoint(&trust.origin).await?;
    let note = Note::parse(&note_bytes).map_err(|e| MonitorError::Untrusted(e.to_string()))?;
    let (cp, _) = trust
        .verify_note(&note)
        .map_err(|e| MonitorError::Untrusted(e.to_string()))?;
    let accepted = state.range.size();
    let old_note = state.checkpoint.clone();
    let old_cp = match &old_note {
        Some(b) => Some(
            Note::parse(b)
                .ok()
                .and_then(|n| Checkpoint::parse(n.text().as_bytes()).ok())
                .ok_or_else(|| MonitorError::State {
                    path: PathBuf::new(),
                    why: "stored checkpoint is malformed".into(),
                })?,
        ),
        None => None,
    };
    if let (Some(old_bytes), Some(old)) = (&old_note, &old_cp) {
        let new_bytes = note.to_bytes();
        let old = Signed {
            note: old_bytes,
            checkpoint: old,
        };
        let new = Signed {
            note: &new_bytes,
            checkpoint: &cp,
        };
        check_extension(rpc, &trust.origin, &trust.log_keys, old, new)
            .await
            .map_err(|e| match e {
                ExtendError::Rpc(e) => MonitorError::Rpc(e),
                ExtendError::Rollback { old, new } => MonitorError::Rollback {
                    accepted: old,
                    offered: new,
                },
                ExtendError::Fork(ev) => MonitorError::Fork(ev),
                ExtendError::Inconsistent { old, new, why } => {
                    MonitorError::Inconsistent { old, new, why }
                }
            })?;
        if cp.size() == old.checkpoint.size() {
            return Ok((state.clone(), cp));
        }
    } else if cp.size() < accepted {
        return Err(MonitorError::Rollback {
            accepted,
            offered: cp.size(),
        });
    }
    let mut range = state.range.clone();
    let end = cp.size();
    rpc.entries(&trust.origin, accepted, end, |i, e| {
        range
            .append(leaf_hash(e), |_, _| {})
            .map_err(|e| RpcError::Verify(e.to_string()))?;
        if (i + 1) % 65_536 == 0 || i + 1 == end {
            progress(i + 1, end);
        }
        Ok(())
    })
    .await?;
    if &range.root() != cp.root() {
        return Err(MonitorError::EntriesMismatch {
            size: cp.size(),
            computed: range.root(),
            signed: *cp.root(),
        });
    }
    Ok((
        MonitorState {
            checkpoint: Some(note.to_bytes()),
            range,
        },
        cp,
    ))
}
