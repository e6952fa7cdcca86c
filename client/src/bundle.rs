//! Proof bundles: C2SP `tlog-proof` files carrying the entry in `extra`,
//! verified offline with only the log's and witnesses' public keys.
//!
//! [`BundleVerifier`] remembers checkpoints it has verified (by the SHA-256
//! of the note), so checking many bundles under few checkpoints costs one
//! signature check per checkpoint and a hash path per bundle.

use std::collections::HashMap;

use quire_core::tlog_proof::{TlogProof, TlogProofError, TlogProofVerifyError};
use quire_core::{leaf_hash, verify_inclusion, Checkpoint, Hash};
use sha2::{Digest, Sha256};

use crate::policy::{LogTrust, TrustError};

/// Why a bundle is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a well-formed proof file.
    #[error("malformed proof bundle: {0}")]
    Parse(#[from] TlogProofError),
    /// The checkpoint is not trusted.
    #[error("checkpoint not trusted: {0}")]
    Trust(#[from] TrustError),
    /// No entry to check.
    #[error("the bundle carries no entry: give the entry or its leaf hash")]
    NoEntry,
    /// The inclusion proof does not hold.
    #[error("entry {index} is not proven in the checkpoint of size {size}: {why}")]
    Inclusion {
        /// Index claimed.
        index: u64,
        /// Checkpoint size.
        size: u64,
        /// Why.
        why: String,
    },
}

/// A bundle that verified.
#[derive(Clone, Debug)]
pub struct VerifiedBundle {
    /// Index of the entry.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: Hash,
    /// The checkpoint it is proven in.
    pub checkpoint: Checkpoint,
    /// Names of the witnesses that cosigned it.
    pub cosigned_by: Vec<String>,
}

/// Verified checkpoints remembered at most.
const MAX_REMEMBERED: usize = 4096;

/// What to check a bundle's proof against.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// The entry carried in the bundle.
    Carried,
    /// These entry bytes.
    Entry(&'a [u8]),
    /// This leaf hash.
    Leaf(Hash),
}

/// Verifies bundles under one [`LogTrust`], remembering verified checkpoints.
pub struct BundleVerifier {
    trust: LogTrust,
    verified: HashMap<[u8; 32], (Checkpoint, Vec<String>)>,
}

impl BundleVerifier {
    /// A verifier for one log.
    pub fn new(trust: LogTrust) -> Self {
        BundleVerifier {
            trust,
            verified: HashMap::new(),
        }
    }

    /// Parses and verifies a bundle.
    ///
    /// # Errors
    /// [`BundleError`] naming the failed step.
    pub fn verify(
        &mut self,
        bytes: &[u8],
        subject: Subject<'_>,
    ) -> Result<VerifiedBundle, BundleError> {
        let proof = TlogProof::parse(bytes)?;
        self.verify_parsed(&proof, subject)
    }

    /// Verifies a parsed bundle.
    ///
    /// # Errors
    /// [`BundleError`] naming the failed step.
    pub fn verify_parsed(
        &mut self,
        proof: &TlogProof,
        subject: Subject<'_>,
    ) -> Result<VerifiedBundle, BundleError> {
        let leaf = match subject {
            Subject::Entry(e) => leaf_hash(e),
            Subject::Leaf(h) => h,
            Subject::Carried => leaf_hash(proof.extra.as_deref().ok_or(BundleError::NoEntry)?),
        };
        let note = proof.checkpoint.to_bytes();
        let id: [u8; 32] = Sha256::digest(&note).into();
        let (checkpoint, cosigned_by) = if let Some(v) = self.verified.get(&id) {
            v.clone()
        } else {
            {
                let (cp, sigs) = self.trust.verify_note(&proof.checkpoint)?;
                let names: Vec<String> = sigs
                    .iter()
                    .filter(|s| self.trust.witnesses.contains(&s.key))
                    .map(|s| s.key.name().to_owned())
                    .collect();
                // Bounded: a long audit sees many checkpoints.
                if self.verified.len() >= MAX_REMEMBERED {
                    self.verified.clear();
                }
                self.verified.insert(id, (cp.clone(), names.clone()));
                (cp, names)
            }
        };
        verify_inclusion(
            &leaf,
            proof.index,
            checkpoint.size(),
            &proof.proof,
            checkpoint.root(),
        )
        .map_err(|e| BundleError::Inclusion {
            index: proof.index,
            size: checkpoint.size(),
            why: e.to_string(),
        })?;
        Ok(VerifiedBundle {
            index: proof.index,
            leaf,
            checkpoint,
            cosigned_by,
        })
    }
}

impl From<TlogProofVerifyError> for BundleError {
    fn from(e: TlogProofVerifyError) -> Self {
        BundleError::Trust(TrustError::Checkpoint(e))
    }
}
