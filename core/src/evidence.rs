//! Split-view evidence: two checkpoints signed by the same log that cannot
//! both be honest, in a form anyone holding the log's public key can check.
//!
//! Two kinds:
//! - **same size**: both checkpoints have the same size and different roots;
//! - **inconsistent**: sizes `m < n`, plus a consistency path that reproduces
//!   the larger checkpoint's root (so its nodes are, by collision resistance,
//!   the real nodes of that tree) but yields a root for size `m` that differs
//!   from the smaller checkpoint's. A path that merely fails to verify proves
//!   nothing (anyone can write a bad proof), so it is not accepted as
//!   evidence.
//!
//! The path is stored with its seed (the root of the largest complete subtree
//! ending at `m`) first, which RFC 9162 omits from the wire proof when `m` is
//! a power of two.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::hash::Hash;
use crate::keys::VerifierKey;
use crate::note::{Note, NoteError, NoteVerifyError};
use crate::verify::{consistency_roots, ConsistencyError};

/// The format tag of serialized evidence.
pub const EVIDENCE_FORMAT: &str = "quire-split-view/v1";
/// Largest serialized evidence accepted, checked before parsing.
pub const MAX_EVIDENCE_BYTES: usize = 4 * crate::note::MAX_NOTE_BYTES;

/// Evidence that a log showed two incompatible views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitViewEvidence {
    /// Always [`EVIDENCE_FORMAT`].
    pub format: String,
    /// The smaller (or equal-size) signed checkpoint, as note text.
    pub first: String,
    /// The larger (or equal-size) signed checkpoint, as note text.
    pub second: String,
    /// For checkpoints of different sizes: the consistency path from the
    /// first to the second, seed first, as base64 hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
}

/// What the evidence proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// One size, two roots.
    SameSize {
        /// The size.
        size: u64,
        /// Root in the first checkpoint.
        first_root: Hash,
        /// Root in the second checkpoint.
        second_root: Hash,
    },
    /// The larger tree's prefix of the smaller size has another root.
    Inconsistent {
        /// Smaller size.
        old: u64,
        /// Larger size.
        new: u64,
        /// Root signed for the smaller size.
        signed_old_root: Hash,
        /// Root of that prefix within the larger signed tree.
        implied_old_root: Hash,
    },
}

/// Evidence that does not hold up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Over the size limit; nothing was parsed.
    #[error("evidence is {len} bytes; the limit is {MAX_EVIDENCE_BYTES}")]
    TooLarge {
        /// Bytes given.
        len: usize,
    },
    /// Not evidence JSON.
    #[error("not split-view evidence JSON: {0}")]
    Malformed(String),
    /// Unknown format tag.
    #[error("evidence format {0:?} is not {EVIDENCE_FORMAT}")]
    Format(String),
    /// A checkpoint note does not parse.
    #[error("{which} checkpoint: {source}")]
    Note {
        /// "first" or "second".
        which: &'static str,
        /// Why.
        source: NoteError,
    },
    /// A checkpoint body does not parse.
    #[error("{which} checkpoint: {source}")]
    Checkpoint {
        /// "first" or "second".
        which: &'static str,
        /// Why.
        source: CheckpointError,
    },
    /// A checkpoint is not signed by the log.
    #[error("{which} checkpoint is not signed by the log: {source}")]
    Signature {
        /// "first" or "second".
        which: &'static str,
        /// Why.
        source: NoteVerifyError,
    },
    /// The checkpoints name different logs.
    #[error("checkpoints are of different logs: {0:?} and {1:?}")]
    DifferentOrigins(String, String),
    /// Nothing conflicts.
    #[error("no conflict: {0}")]
    NoConflict(String),
    /// The path is malformed or does not lead to the larger root.
    #[error("consistency path: {0}")]
    Path(String),
}

impl From<ConsistencyError> for EvidenceError {
    fn from(e: ConsistencyError) -> Self {
        EvidenceError::Path(e.to_string())
    }
}

struct Side {
    note: Note,
    checkpoint: Checkpoint,
}

fn side(which: &'static str, bytes: &[u8], keys: &[VerifierKey]) -> Result<Side, EvidenceError> {
    let note = Note::parse(bytes).map_err(|source| EvidenceError::Note { which, source })?;
    let checkpoint = Checkpoint::parse(note.text().as_bytes())
        .map_err(|source| EvidenceError::Checkpoint { which, source })?;
    note.verify(keys)
        .map_err(|source| EvidenceError::Signature { which, source })?;
    Ok(Side { note, checkpoint })
}

impl SplitViewEvidence {
    /// Evidence from two signed checkpoints of one size with different roots,
    /// or from two of different sizes and a consistency path, seed first
    /// (`path` is ignored for equal sizes). The result is checked with
    /// `log_keys` before it is returned, so only real evidence is built.
    ///
    /// # Errors
    /// [`EvidenceError`] when the two do not prove a split view.
    pub fn new(
        a: &[u8],
        b: &[u8],
        path: &[Hash],
        log_keys: &[VerifierKey],
    ) -> Result<(Self, Conflict), EvidenceError> {
        let sa = side("first", a, log_keys)?;
        let sb = side("second", b, log_keys)?;
        let (first, second) = if sa.checkpoint.size() <= sb.checkpoint.size() {
            (sa, sb)
        } else {
            (sb, sa)
        };
        let path = if first.checkpoint.size() == second.checkpoint.size() {
            Vec::new()
        } else {
            path.iter().map(Hash::to_base64).collect()
        };
        let ev = SplitViewEvidence {
            format: EVIDENCE_FORMAT.to_owned(),
            first: String::from_utf8_lossy(&first.note.to_bytes()).into_owned(),
            second: String::from_utf8_lossy(&second.note.to_bytes()).into_owned(),
            path,
        };
        let conflict = ev.check(log_keys)?;
        Ok((ev, conflict))
    }

    /// Checks the evidence with nothing but the log's keys.
    ///
    /// # Errors
    /// [`EvidenceError`] saying why it proves nothing.
    pub fn check(&self, log_keys: &[VerifierKey]) -> Result<Conflict, EvidenceError> {
        if self.format != EVIDENCE_FORMAT {
            return Err(EvidenceError::Format(
                self.format.chars().take(64).collect(),
            ));
        }
        let first = side("first", self.first.as_bytes(), log_keys)?.checkpoint;
        let second = side("second", self.second.as_bytes(), log_keys)?.checkpoint;
        if first.origin() != second.origin() {
            return Err(EvidenceError::DifferentOrigins(
                first.origin().into(),
                second.origin().into(),
            ));
        }
        let (old, new) = (first.size(), second.size());
        if old == new {
            if first.root() == second.root() {
                return Err(EvidenceError::NoConflict(format!(
                    "both checkpoints have size {old} and root {}",
                    first.root()
                )));
            }
            return Ok(Conflict::SameSize {
                size: old,
                first_root: *first.root(),
                second_root: *second.root(),
            });
        }
        if old > new {
            return Err(EvidenceError::Path(format!(
                "first checkpoint (size {old}) must not be larger than the second (size {new})"
            )));
        }
        let path = self
            .path
            .iter()
            .map(|h| Hash::from_base64(h).map_err(|e| EvidenceError::Path(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((seed, rest)) = path.split_first() else {
            return Err(EvidenceError::Path(format!(
                "checkpoints of sizes {old} and {new} need a consistency path"
            )));
        };
        let (implied_old, implied_new) = consistency_roots(old, new, seed, rest)?;
        if &implied_new != second.root() {
            return Err(EvidenceError::Path(format!(
                "path yields root {implied_new} for size {new}, the checkpoint says {}: \
                 a wrong path proves nothing",
                second.root()
            )));
        }
        if &implied_old == first.root() {
            return Err(EvidenceError::NoConflict(format!(
                "the path proves size {old} is a prefix of size {new}"
            )));
        }
        Ok(Conflict::Inconsistent {
            old,
            new,
            signed_old_root: *first.root(),
            implied_old_root: implied_old,
        })
    }

    /// The evidence as JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses evidence JSON (without checking it: call [`Self::check`]).
    ///
    /// # Errors
    /// [`EvidenceError::TooLarge`] or [`EvidenceError::Malformed`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, EvidenceError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(EvidenceError::TooLarge { len: bytes.len() });
        }
        serde_json::from_slice(bytes).map_err(|e| EvidenceError::Malformed(e.to_string()))
    }
}

/// The consistency path from `old`, seed first, as evidence wants it: the
/// RFC 9162 `proof` when `old` is not a power of two (its first hash is the
/// seed), else `seed` (the old root, which RFC 9162 leaves out) followed by
/// the proof. `None` when `old` is a power of two and no seed is given.
pub fn seeded_path(old: u64, seed: Option<Hash>, proof: &[Hash]) -> Option<Vec<Hash>> {
    if old.is_power_of_two() {
        let mut path = vec![seed?];
        path.extend_from_slice(proof);
        Some(path)
    } else {
        Some(proof.to_vec())
    }
}
