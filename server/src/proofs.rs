//! Proofs checked before they are served.
//!
//! Proofs are built from stored hashes, and stored hashes can be damaged
//! (a bad disk, a flipped bit) in ways the engine does not notice. A proof
//! built from a damaged hash does not verify against the root the log
//! signed, and a client that gets one would conclude that the log lied.
//! So every inclusion and consistency proof is verified (RFC 9162 §2.1.3.2
//! and §2.1.4.2) against the signed root of its size before it leaves the
//! server; one that does not verify is refused as damage, naming the proof.
//!
//! The signed root of a size is the latest checkpoint's, or that of the
//! checkpoint stored for that size; for a size no checkpoint was signed at,
//! the root rebuilt from storage counts only once a consistency proof to the
//! latest signed root verifies.

use quire_core::{
    prove_consistency, root_at, Hash, NodeId, ProofPlan, ProofRequestError, ProveError,
};

use crate::log::Latest;
use crate::store::{StorageReader, StoreError};

/// Why a proof cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The request is impossible (an index or size out of range).
    #[error(transparent)]
    Request(#[from] ProofRequestError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored hashes are damaged: the proof does not verify against the
    /// signed root.
    #[error("stored hashes are damaged: {0}; the proof is not served")]
    Damaged(String),
}

impl From<ProveError<StoreError>> for ProofError {
    fn from(e: ProveError<StoreError>) -> Self {
        match e {
            ProveError::Request(r) => ProofError::Request(r),
            ProveError::Read(s) => ProofError::Store(s),
            ProveError::Combine(c) => ProofError::Damaged(c.to_string()),
        }
    }
}

/// The root the log signed (or proved) for `size`, at most the latest.
///
/// # Errors
/// [`ProofError`]: storage failures, or a root that cannot be proven.
pub fn signed_root<R: StorageReader>(
    r: &R,
    latest: &Latest,
    size: u64,
) -> Result<Hash, ProofError> {
    if size == latest.stored.size {
        return Ok(latest.root);
    }
    if let Some(cp) = r.checkpoint_at(size)? {
        let root = crate::highwater::Mark::from_note(&cp.note)
            .ok()
            .filter(|m| m.size == size)
            .map(|m| m.root);
        if let Some(root) = root {
            return Ok(root);
        }
        return Err(ProofError::Damaged(format!(
            "the stored checkpoint of size {size} does not parse"
        )));
    }
    let root = root_at(r, size)?;
    let proof = prove_consistency(r, size, latest.stored.size)?;
    quire_core::verify_consistency(size, latest.stored.size, &proof, &root, &latest.root)
        .map_err(|e| {
            ProofError::Damaged(format!(
                "the root rebuilt for size {size} is not consistent with the signed root of size {}: {e}",
                latest.stored.size
            ))
        })?;
    Ok(root)
}

/// The inclusion proof of entry `index` in the tree of `size` by its
/// `plan` (`quire_core::inclusion_plan(index, size)`, which callers make
/// first to refuse impossible requests), verified against the signed root
/// of `size` (`root`, from [`signed_root`]).
///
/// # Errors
/// [`ProofError`]; [`ProofError::Damaged`] when it does not verify.
pub fn checked_inclusion<R: StorageReader>(
    r: &R,
    plan: &ProofPlan,
    index: u64,
    size: u64,
    root: &Hash,
) -> Result<Vec<Hash>, ProofError> {
    // The proof's nodes and the leaf itself, in one read.
    let mut nodes = plan.nodes().to_vec();
    nodes.push(NodeId::leaf(index));
    let mut hashes = r.read_hashes(&nodes)?;
    let leaf = hashes
        .pop()
        .ok_or_else(|| ProofError::Damaged(format!("no leaf hash for entry {index}")))?;
    let proof = plan
        .combine(&hashes)
        .map_err(|e| ProofError::Damaged(e.to_string()))?;
    quire_core::verify_inclusion(&leaf, index, size, &proof, root).map_err(|e| {
        ProofError::Damaged(format!(
            "the inclusion proof of entry {index} in the tree of size {size} does not verify against the signed root: {e}"
        ))
    })?;
    Ok(proof)
}

/// The consistency proof from `old` to `new`, verified against both signed
/// roots.
///
/// # Errors
/// [`ProofError`]; [`ProofError::Damaged`] when it does not verify.
pub fn checked_consistency<R: StorageReader>(
    r: &R,
    latest: &Latest,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    let proof = prove_consistency(r, old, new)?;
    if old == 0 || old == new {
        return Ok(proof);
    }
    let old_root = signed_root(r, latest, old)?;
    let new_root = signed_root(r, latest, new)?;
    quire_core::verify_consistency(old, new, &proof, &old_root, &new_root).map_err(|e| {
        ProofError::Damaged(format!(
            "the consistency proof from size {old} to {new} does not verify against the signed roots: {e}"
        ))
    })?;
    Ok(proof)
}
