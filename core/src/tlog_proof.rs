//! C2SP `tlog-proof` (<https://c2sp.org/tlog-proof>, `c2sp.org/tlog-proof@v1`):
//! an offline-verifiable proof that an entry is in a log, made of an index,
//! an RFC 9162 inclusion proof and the signed checkpoint it leads to (with
//! any witness cosignatures).
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional, unauthenticated)
//! index <decimal>
//! <base64 hash>             (zero or more: the inclusion proof)
//!
//! <signed checkpoint note, verbatim>
//! ```
//!
//! Quire puts the entry itself in `extra` when the proof carries it, so one
//! file is enough to check it. `extra` is not signed: [`TlogProof::verify`]
//! binds it by hashing it into the leaf and checking that leaf against the
//! signed root; an edited entry fails there.
//!
//! In scope: parsing (size limit checked first), formatting, and checking
//! the proof against a leaf and the log's keys. Out of scope: witness
//! policies (the client decides how many cosignatures it needs).

use base64::Engine as _;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::keys::VerifierKey;
use crate::note::{Note, NoteError, NoteVerifyError, VerifiedSignature};
use crate::verify::{verify_inclusion, InclusionError, MAX_PROOF_LEN};
use crate::{leaf_hash, Hash};

/// First line of every proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Largest proof accepted, bytes: an entry of 64 KiB in base64, 63 hashes
/// and a 64 KiB note fit.
pub const MAX_TLOG_PROOF_BYTES: usize = 256 * 1024;

/// A parsed `tlog-proof`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Unauthenticated extra data (in Quire's proofs: the entry).
    pub extra: Option<Vec<u8>>,
    /// Index of the entry.
    pub index: u64,
    /// Inclusion proof, leaf's sibling first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub checkpoint: Note,
}

/// A `tlog-proof` that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// Over [`MAX_TLOG_PROOF_BYTES`].
    #[error("proof is {len} bytes; the limit is {limit}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid UTF-8 text.
    #[error("proof is not UTF-8 text")]
    NotText,
    /// The first line is not [`TLOG_PROOF_HEADER`].
    #[error("first line must be {TLOG_PROOF_HEADER:?}")]
    Header,
    /// A malformed line.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// More proof hashes than any tree allows.
    #[error("inclusion proof has more than {MAX_PROOF_LEN} hashes")]
    ProofTooLong,
    /// No checkpoint after the proof.
    #[error("no checkpoint after the inclusion proof (an empty line must separate them)")]
    NoCheckpoint,
    /// The checkpoint note is malformed.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
}

/// Why a `tlog-proof` does not prove inclusion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofVerifyError {
    /// The note's signatures do not verify with the log's keys.
    #[error("checkpoint signature: {0}")]
    Signature(#[from] NoteVerifyError),
    /// The note's text is not a checkpoint.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint is of another log.
    #[error("checkpoint is of log {found:?}, expected {expected:?}")]
    Origin {
        /// Expected origin.
        expected: String,
        /// The checkpoint's origin.
        found: String,
    },
    /// None of the signatures that verified is a log key.
    #[error("checkpoint is not signed by the log (only by witnesses)")]
    NoLogSignature,
    /// No entry to check: neither given nor in `extra`.
    #[error("no entry: give the entry or its leaf hash (the proof carries none)")]
    NoEntry,
    /// The inclusion proof does not lead to the signed root.
    #[error("inclusion: {0}")]
    Inclusion(#[from] InclusionError),
}

/// A proof that verified.
#[derive(Clone, Debug)]
pub struct VerifiedTlogProof {
    /// The signed checkpoint.
    pub checkpoint: Checkpoint,
    /// Every known key whose signature verified (log keys and witnesses).
    pub signatures: Vec<VerifiedSignature>,
    /// The leaf hash proven.
    pub leaf: Hash,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl TlogProof {
    /// Parses a proof, checking the size limit before anything else.
    ///
    /// # Errors
    /// [`TlogProofError`] naming the line and what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, TlogProofError> {
        if bytes.len() > MAX_TLOG_PROOF_BYTES {
            return Err(TlogProofError::TooLarge {
                len: bytes.len(),
                limit: MAX_TLOG_PROOF_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| TlogProofError::NotText)?;
        let Some((head, note)) = text.split_once("\n\n") else {
            return Err(TlogProofError::NoCheckpoint);
        };
        let mut lines = head.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        if lines.next().map(|(_, l)| l) != Some(TLOG_PROOF_HEADER) {
            return Err(TlogProofError::Header);
        }
        let bad = |line: usize, why: &str| TlogProofError::Line {
            line,
            why: why.to_owned(),
        };
        let mut next = lines.next();
        let mut extra = None;
        if let Some((n, l)) = next {
            if let Some(data) = l.strip_prefix("extra ") {
                let decoded = b64()
                    .decode(data)
                    .map_err(|_| bad(n, "extra data is not canonical base64"))?;
                if b64().encode(&decoded) != data {
                    return Err(bad(n, "extra data is not canonical base64"));
                }
                extra = Some(decoded);
                next = lines.next();
            }
        }
        let Some((n, l)) = next else {
            return Err(bad(2, "missing the index line"));
        };
        let digits = l
            .strip_prefix("index ")
            .ok_or_else(|| bad(n, "expected \"index N\""))?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return Err(bad(
                n,
                "index must be a decimal number without leading zeros",
            ));
        }
        let index: u64 = digits
            .parse()
            .map_err(|_| bad(n, "index does not fit in 64 bits"))?;
        let mut proof = Vec::new();
        for (n, l) in lines {
            if proof.len() == MAX_PROOF_LEN {
                return Err(TlogProofError::ProofTooLong);
            }
            let h = Hash::from_base64(l)
                .map_err(|_| bad(n, "expected a base64 SHA-256 hash (44 characters)"))?;
            proof.push(h);
        }
        let checkpoint = Note::parse(note.as_bytes())?;
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint,
        })
    }

    /// The proof as text.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256 + 45 * self.proof.len());
        out.push_str(TLOG_PROOF_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&b64().encode(extra));
            out.push('\n');
        }
        out.push_str("index ");
        out.push_str(&self.index.to_string());
        out.push('\n');
        for h in &self.proof {
            out.push_str(&h.to_base64());
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint.to_bytes());
        bytes
    }

    /// Checks that the entry (given, or else the one in `extra`) is at
    /// `index` in the tree of the checkpoint, that the checkpoint is of log
    /// `origin` and that one of `log_keys` signed it. `witness_keys` are
    /// checked too where they cosigned (a bad cosignature from a known
    /// witness fails the proof); counting them is the caller's policy.
    ///
    /// # Errors
    /// [`TlogProofVerifyError`] naming the step that failed.
    pub fn verify(
        &self,
        entry: Option<&[u8]>,
        origin: &str,
        log_keys: &[VerifierKey],
        witness_keys: &[VerifierKey],
    ) -> Result<VerifiedTlogProof, TlogProofVerifyError> {
        let leaf = match entry.or(self.extra.as_deref()) {
            Some(e) => leaf_hash(e),
            None => return Err(TlogProofVerifyError::NoEntry),
        };
        self.verify_leaf(&leaf, origin, log_keys, witness_keys)
    }

    /// [`TlogProof::verify`] for a leaf hash instead of the entry.
    ///
    /// # Errors
    /// [`TlogProofVerifyError`] naming the step that failed.
    pub fn verify_leaf(
        &self,
        leaf: &Hash,
        origin: &str,
        log_keys: &[VerifierKey],
        witness_keys: &[VerifierKey],
    ) -> Result<VerifiedTlogProof, TlogProofVerifyError> {
        let (checkpoint, signatures) =
            verify_checkpoint_note(&self.checkpoint, origin, log_keys, witness_keys)?;
        verify_inclusion(
            leaf,
            self.index,
            checkpoint.size(),
            &self.proof,
            checkpoint.root(),
        )?;
        Ok(VerifiedTlogProof {
            checkpoint,
            signatures,
            leaf: *leaf,
        })
    }
}

/// Verifies a signed checkpoint note: the signatures of every known key
/// (log and witness) that signed must verify, a log key must be among them,
/// and the checkpoint must be of `origin`.
///
/// # Errors
/// [`TlogProofVerifyError`] naming what failed.
pub fn verify_checkpoint_note(
    note: &Note,
    origin: &str,
    log_keys: &[VerifierKey],
    witness_keys: &[VerifierKey],
) -> Result<(Checkpoint, Vec<VerifiedSignature>), TlogProofVerifyError> {
    let mut known = Vec::with_capacity(log_keys.len() + witness_keys.len());
    known.extend_from_slice(log_keys);
    known.extend_from_slice(witness_keys);
    let signatures = note.verify(&known)?;
    if !signatures.iter().any(|s| log_keys.contains(&s.key)) {
        return Err(TlogProofVerifyError::NoLogSignature);
    }
    let checkpoint = Checkpoint::parse(note.text().as_bytes())?;
    if checkpoint.origin() != origin {
        return Err(TlogProofVerifyError::Origin {
            expected: origin.to_owned(),
            found: checkpoint.origin().to_owned(),
        });
    }
    Ok((checkpoint, signatures))
}
