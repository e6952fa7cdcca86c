//! The pure part of add-checkpoint (C2SP tlog-witness): parse and verify a
//! submitted checkpoint, then decide, against the stored checkpoint, whether
//! it may be cosigned. No I/O: the state module runs [`decide`] inside its
//! write transaction.

use quire_core::{verify_consistency, Checkpoint, Hash, Note, SplitViewEvidence, VerifierKey};

/// The latest checkpoint a witness cosigned for one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The checkpoint note with the log's own valid signatures only.
    pub note: Vec<u8>,
}

/// A checkpoint whose log signature verified.
#[derive(Clone, Debug)]
pub struct Verified {
    /// Its origin.
    pub origin: String,
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The note reduced to the log's valid signatures: unknown and extra
    /// signature lines never reach the state.
    pub note: Vec<u8>,
}

/// Why a checkpoint is not cosigned. Each maps to one C2SP HTTP status and
/// one gRPC code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AddError {
    /// Not a note, not a checkpoint, or a proof that is not hashes (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The origin is not one this witness knows (404).
    #[error("unknown log {0:?}: this witness is not configured for it")]
    UnknownLog(String),
    /// No valid signature of the log (403).
    #[error("checkpoint is not signed by the log: {0}")]
    BadSignature(String),
    /// Old size above the checkpoint's (400).
    #[error("old size {old} is greater than the checkpoint size {new}")]
    OldAboveNew {
        /// Old size given.
        old: u64,
        /// Checkpoint size.
        new: u64,
    },
    /// The caller's old size is not the witness's, or the same size has
    /// another root (409); `size` is the witness's.
    #[error("conflict: the witness's latest cosigned size is {size}: {why}")]
    Conflict {
        /// The witness's size.
        size: u64,
        /// Why.
        why: String,
        /// Evidence, when the conflict proves a split view.
        evidence: Option<Box<SplitViewEvidence>>,
    },
    /// The consistency proof does not verify (422).
    #[error("consistency proof: {why}")]
    BadProof {
        /// Why.
        why: String,
        /// Evidence, when the proof rebuilds the new signed root but implies
        /// another old one.
        evidence: Option<Box<SplitViewEvidence>>,
    },
    /// The witness could not store its state; nothing changed (500).
    #[error("witness storage failed, nothing was cosigned: {0}")]
    Storage(String),
    /// The witness is shutting down (503).
    #[error("the witness is shutting down")]
    ShuttingDown,
}

impl AddError {
    /// The evidence this rejection carries.
    pub fn evidence(&self) -> Option<&SplitViewEvidence> {
        match self {
            AddError::Conflict { evidence, .. } | AddError::BadProof { evidence, .. } => {
                evidence.as_deref()
            }
            _ => None,
        }
    }
}

/// Parses `note` and verifies the log's signature with the keys `keys_of`
/// gives for its origin.
///
/// # Errors
/// [`AddError::Malformed`], [`AddError::UnknownLog`] or
/// [`AddError::BadSignature`].
pub fn verify_note<'k>(
    note: &[u8],
    keys_of: impl FnOnce(&str) -> Option<&'k [VerifierKey]>,
) -> Result<Verified, AddError> {
    let parsed = Note::parse(note).map_err(|e| AddError::Malformed(format!("note: {e}")))?;
    let checkpoint = Checkpoint::parse(parsed.text().as_bytes())
        .map_err(|e| AddError::Malformed(format!("checkpoint: {e}")))?;
    let origin = checkpoint.origin().to_owned();
    let keys = keys_of(&origin).ok_or_else(|| AddError::UnknownLog(origin.clone()))?;
    parsed
        .verify(keys)
        .map_err(|e| AddError::BadSignature(e.to_string()))?;
    Ok(Verified {
        origin,
        checkpoint,
        note: reduce(&parsed, keys),
    })
}

/// The note with only the signature lines of `keys` (all already verified).
fn reduce(note: &Note, keys: &[VerifierKey]) -> Vec<u8> {
    let Ok(mut out) = Note::new(note.text()) else {
        return note.to_bytes();
    };
    for s in note.signatures() {
        if keys
            .iter()
            .any(|k| k.key_id() == s.key_id() && k.name() == s.name())
            && !out.signatures().contains(s)
        {
            // At most one line per key, far under the note's limit.
            let _ = out.add_signature(s.clone());
        }
    }
    out.to_bytes()
}

/// What the state should do with a verified checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store it as the latest, then cosign.
    Advance(Latest),
    /// It is the stored checkpoint: cosign again, store nothing.
    Same,
}

/// Decides a C2SP add-checkpoint against `stored`, in the order the
/// specification gives: old size above new (400), old size not the stored
/// size (409), proof (422), same size with another root (409).
///
/// # Errors
/// [`AddError`] saying why, with evidence when the material proves a split
/// view.
pub fn decide(
    stored: Option<&Latest>,
    old: u64,
    proof: &[Hash],
    new: &Verified,
    keys: &[VerifierKey],
) -> Result<Decision, AddError> {
    let (size, root) = (new.checkpoint.size(), *new.checkpoint.root());
    if old > size {
        return Err(AddError::OldAboveNew { old, new: size });
    }
    let current = stored.map_or(0, |s| s.size);
    let same_size_evidence = || {
        stored
            .filter(|s| s.size == size && s.root != root)
            .and_then(|s| SplitViewEvidence::new(&s.note, &new.note, &[], keys).ok())
            .map(|(e, _)| Box::new(e))
    };
    if old != current {
        return Err(AddError::Conflict {
            size: current,
            why: format!("the request's old size is {old}"),
            evidence: same_size_evidence(),
        });
    }
    let advance = Latest {
        size,
        root,
        note: new.note.clone(),
    };
    let Some(s) = stored else {
        // Nothing stored: trust on first use; C2SP wants no proof from 0.
        if !proof.is_empty() {
            return Err(AddError::BadProof {
                why: format!(
                    "a proof from size 0 must be empty; {} hashes were sent",
                    proof.len()
                ),
                evidence: None,
            });
        }
        return Ok(Decision::Advance(advance));
    };
    if size == s.size {
        if !proof.is_empty() {
            return Err(AddError::BadProof {
                why: format!("a proof from size {size} to itself must be empty"),
                evidence: None,
            });
        }
        if root == s.root {
            return Ok(Decision::Same);
        }
        return Err(AddError::Conflict {
            size: current,
            why: format!("size {size} was cosigned with root {}, not {root}", s.root),
            evidence: same_size_evidence(),
        });
    }
    if s.size == 0 {
        if !proof.is_empty() {
            return Err(AddError::BadProof {
                why: "a proof from size 0 must be empty".into(),
                evidence: None,
            });
        }
        return Ok(Decision::Advance(advance));
    }
    match verify_consistency(s.size, size, proof, &s.root, &root) {
        Ok(()) => Ok(Decision::Advance(advance)),
        Err(e) => Err(AddError::BadProof {
            why: e.to_string(),
            evidence: proof_evidence(s, new, proof, keys),
        }),
    }
}

/// Evidence from a proof that rebuilds `new`'s signed root but implies
/// another root for the stored size (only possible when the stored size is
/// not a power of two: otherwise the proof omits the old root).
fn proof_evidence(
    stored: &Latest,
    new: &Verified,
    proof: &[Hash],
    keys: &[VerifierKey],
) -> Option<Box<SplitViewEvidence>> {
    if stored.size.is_power_of_two() {
        return None;
    }
    SplitViewEvidence::new(&stored.note, &new.note, proof, keys)
        .ok()
        .map(|(e, _)| Box::new(e))
}
