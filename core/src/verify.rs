//! Proof verification, RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
//! (consistency). Failures carry the evidence: what root was expected and
//! what the proof actually yields.

use crate::hash::{node_hash, Hash};

/// The longest proof accepted: no tree Quire handles needs more.
pub const MAX_PROOF_LEN: usize = 63;

/// An inclusion proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InclusionError {
    /// The index is not in the tree.
    #[error("leaf index {index} is not in a tree of size {size} (index must be < size)")]
    IndexOutOfRange {
        /// Leaf index claimed.
        index: u64,
        /// Tree size claimed.
        size: u64,
    },
    /// More hashes than any tree needs.
    #[error("proof has {len} hashes; the limit is {MAX_PROOF_LEN}")]
    TooLong {
        /// Hashes given.
        len: usize,
    },
    /// The proof has the wrong number of hashes for this index and size.
    #[error("proof has {got} hashes, index {index} in a tree of size {size} needs {want}")]
    WrongLength {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
        /// Hashes needed.
        want: usize,
        /// Hashes given.
        got: usize,
    },
    /// The proof hashes to another root.
    #[error("inclusion proof yields root {computed}, the checkpoint says {expected}")]
    RootMismatch {
        /// Root of the checkpoint.
        expected: Hash,
        /// Root the proof leads to.
        computed: Hash,
    },
}

/// A consistency proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsistencyError {
    /// Old size larger than new size.
    #[error("old size {old} is larger than new size {new}")]
    OldSizeAboveNew {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// Nothing can be proven from the empty tree.
    #[error("no consistency proof exists from size 0: trust the first checkpoint on first use")]
    FromEmptyTree,
    /// Equal sizes need an empty proof.
    #[error("sizes are equal ({size}) so the proof must be empty; it has {len} hashes")]
    NonEmptyForEqualSizes {
        /// The size.
        size: u64,
        /// Hashes given.
        len: usize,
    },
    /// Equal sizes with different roots: the log signed two trees of one size.
    #[error("two roots for size {size}: {old_root} and {new_root}")]
    DifferentRootsSameSize {
        /// The size.
        size: u64,
        /// First root.
        old_root: Hash,
        /// Second root.
        new_root: Hash,
    },
    /// More hashes than any tree needs.
    #[error("proof has {len} hashes; the limit is {MAX_PROOF_LEN}")]
    TooLong {
        /// Hashes given.
        len: usize,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes, sizes {old} → {new} need {want}")]
    WrongLength {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
        /// Hashes needed.
        want: usize,
        /// Hashes given.
        got: usize,
    },
    /// The proof does not connect the two roots.
    #[error("{0}")]
    RootMismatch(Box<ConsistencyMismatch>),
}

/// The evidence of a consistency proof that does not connect two roots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "consistency proof {old} → {new} yields roots {computed_old} → {computed_new}, \
     expected {expected_old} → {expected_new}"
)]
pub struct ConsistencyMismatch {
    /// Old size.
    pub old: u64,
    /// New size.
    pub new: u64,
    /// Old root given.
    pub expected_old: Hash,
    /// New root given.
    pub expected_new: Hash,
    /// Old root the proof yields.
    pub computed_old: Hash,
    /// New root the proof yields.
    pub computed_new: Hash,
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size`
/// (`index < size`): the inner path below the split of `index` and the last
/// leaf, plus the hashes along the right border above it.
fn inclusion_len(index: u64, size: u64) -> usize {
    let last = size - 1;
    let inner = 64 - (index ^ last).leading_zeros();
    // `inner` is 64 when the sizes straddle 2^63 (past MAX_TREE_SIZE, but a
    // verifier must still answer): nothing is left above the split then.
    let border = index.checked_shr(inner).map_or(0, u64::count_ones);
    (inner + border) as usize
}

/// The root a leaf and its inclusion proof lead to.
///
/// # Errors
/// [`InclusionError`] other than `RootMismatch` when the proof cannot be a
/// proof of this index at this size.
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, InclusionError> {
    if index >= size {
        return Err(InclusionError::IndexOutOfRange { index, size });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(InclusionError::TooLong { len: proof.len() });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(InclusionError::WrongLength {
            index,
            size,
            want,
            got: proof.len(),
        });
    }
    let inner = 64 - (index ^ (size - 1)).leading_zeros() as usize;
    let mut r = *leaf;
    // Inside the split: siblings left or right by the index bits.
    for (i, p) in proof[..inner].iter().enumerate() {
        r = if (index >> i) & 1 == 0 {
            node_hash(&r, p)
        } else {
            node_hash(p, &r)
        };
    }
    // Above it the node is on the right border: every sibling is to the left.
    for p in &proof[inner..] {
        r = node_hash(p, &r);
    }
    Ok(r)
}

/// Verifies that `leaf` is at `index` in the tree of `size` with root `root`.
///
/// # Errors
/// [`InclusionError`], with both roots on a mismatch.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), InclusionError> {
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if &computed == root {
        Ok(())
    } else {
        Err(InclusionError::RootMismatch {
            expected: *root,
            computed,
        })
    }
}

/// Verifies that the tree of size `old` with root `old_root` is a prefix of
/// the tree of size `new` with root `new_root`.
///
/// # Errors
/// [`ConsistencyError`], with all four roots on a mismatch.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ConsistencyError> {
    if old > new {
        return Err(ConsistencyError::OldSizeAboveNew { old, new });
    }
    if old == 0 {
        return Err(ConsistencyError::FromEmptyTree);
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ConsistencyError::NonEmptyForEqualSizes {
                size: old,
                len: proof.len(),
            });
        }
        if old_root != new_root {
            return Err(ConsistencyError::DifferentRootsSameSize {
                size: old,
                old_root: *old_root,
                new_root: *new_root,
            });
        }
        return Ok(());
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ConsistencyError::TooLong { len: proof.len() });
    }
    // RFC 9162 §2.1.4.2 step 2: when the old tree is a complete subtree,
    // its root is the seed of the path and is not sent.
    let (computed_old, computed_new) = if old.is_power_of_two() {
        consistency_roots(old, new, old_root, proof)?
    } else {
        let Some((seed, rest)) = proof.split_first() else {
            return Err(ConsistencyError::WrongLength {
                old,
                new,
                want: consistency_len(old, new),
                got: 0,
            });
        };
        consistency_roots(old, new, seed, rest)?
    };
    if &computed_old == old_root && &computed_new == new_root {
        Ok(())
    } else {
        Err(ConsistencyError::RootMismatch(Box::new(
            ConsistencyMismatch {
                old,
                new,
                expected_old: *old_root,
                expected_new: *new_root,
                computed_old,
                computed_new,
            },
        )))
    }
}

/// Hashes in the consistency proof from `old` to `new` (0 < old < new).
fn consistency_len(old: u64, new: u64) -> usize {
    let level = old.trailing_zeros();
    let index = (old - 1) >> level;
    let inner = inclusion_len(index, ((new - 1) >> level) + 1);
    usize::from(!old.is_power_of_two()) + inner
}

/// The old and new roots that a consistency path yields, given the seed (the
/// root of the largest complete subtree ending at `old`) and the rest of the
/// path: the core of RFC 9162 §2.1.4.2 after step 2. Used directly to check
/// split-view evidence, where the seed is part of the evidence.
///
/// # Errors
/// [`ConsistencyError`] when the sizes or the path length are impossible.
pub fn consistency_roots(
    old: u64,
    new: u64,
    seed: &Hash,
    rest: &[Hash],
) -> Result<(Hash, Hash), ConsistencyError> {
    if old == 0 {
        return Err(ConsistencyError::FromEmptyTree);
    }
    if old >= new {
        return Err(ConsistencyError::OldSizeAboveNew { old, new });
    }
    let total = rest.len() + usize::from(!old.is_power_of_two());
    if total > MAX_PROOF_LEN {
        return Err(ConsistencyError::TooLong { len: total });
    }
    let want = consistency_len(old, new);
    if total != want {
        return Err(ConsistencyError::WrongLength {
            old,
            new,
            want,
            got: total,
        });
    }
    // View the trees from the level of the seed: the seed is leaf `index`
    // there, the old tree ends at it and the new tree has `last + 1` nodes.
    let level = old.trailing_zeros();
    let index = (old - 1) >> level;
    let last = (new - 1) >> level;
    let inner = 64 - (index ^ last).leading_zeros() as usize;
    let (mut fr, mut sr) = (*seed, *seed);
    for (i, p) in rest[..inner].iter().enumerate() {
        if (index >> i) & 1 == 1 {
            fr = node_hash(p, &fr);
            sr = node_hash(p, &sr);
        } else {
            sr = node_hash(&sr, p);
        }
    }
    for p in &rest[inner..] {
        fr = node_hash(p, &fr);
        sr = node_hash(p, &sr);
    }
    Ok((fr, sr))
}
