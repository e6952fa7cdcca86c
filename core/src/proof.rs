//! Proof building in three steps, after `transparency-dev/merkle` and Go's
//! `sumdb/tlog`:
//!
//! 1. **Which nodes** (pure): [`inclusion_plan`], [`consistency_plan`] and
//!    [`root_plan`] list the complete nodes a proof needs.
//! 2. **One batched read**: the caller fetches those hashes, for example
//!    through a [`HashReader`].
//! 3. **Combine** (pure): [`ProofPlan::combine`] turns them into the proof.
//!
//! Storage only ever holds complete nodes (perfect subtrees). A proof element
//! that covers the ragged right edge of the tree is the root of several
//! complete nodes; the plan records how many, and `combine` hashes them.
//!
//! Proofs follow RFC 9162 §2.1.3.1 (`PATH`) and §2.1.4.1 (`SUBPROOF`).

use crate::compact::fold_right;
use crate::hash::Hash;
use crate::node::{perfect_subtrees, NodeId, MAX_TREE_SIZE};

/// A proof request that cannot be answered, whatever the stored data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofRequestError {
    /// Inclusion proof for an index not in the tree.
    #[error("leaf index {index} is not in a tree of size {size} (index must be < size)")]
    IndexOutOfRange {
        /// Index asked for.
        index: u64,
        /// Tree size asked for.
        size: u64,
    },
    /// Consistency proof from a larger to a smaller tree.
    #[error("cannot prove consistency from size {old} to the smaller size {new}")]
    OldSizeAboveNew {
        /// First (old) size.
        old: u64,
        /// Second (new) size.
        new: u64,
    },
    /// Consistency from the empty tree: there is nothing to prove.
    #[error("no consistency proof exists from size 0: trust the first checkpoint on first use")]
    FromEmptyTree,
    /// A size over the supported maximum.
    #[error("tree size {size} exceeds the limit of {MAX_TREE_SIZE}")]
    SizeTooLarge {
        /// The size given.
        size: u64,
    },
}

/// Which complete nodes a proof needs, and how to combine them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProofPlan {
    nodes: Vec<NodeId>,
    /// For each proof element, how many consecutive entries of `nodes` fold
    /// into it (1 for a complete node).
    groups: Vec<u8>,
}

/// The hashes handed to [`ProofPlan::combine`] did not match the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proof plan needs {want} hashes, the read returned {got}")]
pub struct CombineError {
    /// Hashes the plan needs.
    pub want: usize,
    /// Hashes given.
    pub got: usize,
}

impl ProofPlan {
    /// The complete nodes to read, in the order `combine` expects them.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Number of hashes in the finished proof.
    pub fn proof_len(&self) -> usize {
        self.groups.len()
    }

    /// Combines the hashes of [`ProofPlan::nodes`] (same order) into the
    /// proof.
    ///
    /// # Errors
    /// [`CombineError`] when the number of hashes differs from the plan.
    pub fn combine(&self, hashes: &[Hash]) -> Result<Vec<Hash>, CombineError> {
        if hashes.len() != self.nodes.len() {
            return Err(CombineError {
                want: self.nodes.len(),
                got: hashes.len(),
            });
        }
        let mut out = Vec::with_capacity(self.groups.len());
        let mut at = 0usize;
        for &g in &self.groups {
            let g = usize::from(g);
            let Some(h) = fold_right(&hashes[at..at + g]) else {
                unreachable!("plans never hold empty groups")
            };
            out.push(h);
            at += g;
        }
        Ok(out)
    }

    /// Adds the proof element covering leaves `[start, end)`.
    fn push_range(&mut self, start: u64, end: u64) {
        let before = self.nodes.len();
        self.nodes.extend(perfect_subtrees(start, end));
        // A range splits into at most 64 complete subtrees.
        self.groups
            .push(u8::try_from(self.nodes.len() - before).unwrap_or(u8::MAX));
    }

    /// Reverses the element order (plans are built top-down, proofs list
    /// elements bottom-up) while keeping each group's nodes in order.
    fn reverse(&mut self) {
        // Reverse everything, then put each group's nodes back in order.
        self.nodes.reverse();
        self.groups.reverse();
        let mut start = 0usize;
        for &g in &self.groups {
            let end = start + usize::from(g);
            self.nodes[start..end].reverse();
            start = end;
        }
    }

    fn with_capacity() -> Self {
        ProofPlan {
            nodes: Vec::with_capacity(64),
            groups: Vec::with_capacity(64),
        }
    }
}

fn check_size(size: u64) -> Result<(), ProofRequestError> {
    if size > MAX_TREE_SIZE {
        Err(ProofRequestError::SizeTooLarge { size })
    } else {
        Ok(())
    }
}

/// Largest power of two strictly below `n` (n ≥ 2), RFC 9162's `k`.
fn split_point(n: u64) -> u64 {
    1 << (n - 1).ilog2()
}

/// The nodes of the inclusion proof of leaf `index` in the tree of `size`
/// leaves (RFC 9162 §2.1.3.1).
///
/// # Errors
/// [`ProofRequestError::IndexOutOfRange`] when `index >= size`;
/// [`ProofRequestError::SizeTooLarge`] over [`MAX_TREE_SIZE`].
pub fn inclusion_plan(index: u64, size: u64) -> Result<ProofPlan, ProofRequestError> {
    check_size(size)?;
    if index >= size {
        return Err(ProofRequestError::IndexOutOfRange { index, size });
    }
    let mut plan = ProofPlan::with_capacity();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            plan.push_range(lo + k, hi);
            hi = lo + k;
        } else {
            plan.push_range(lo, lo + k);
            lo += k;
        }
    }
    plan.reverse();
    Ok(plan)
}

/// The nodes of the consistency proof from size `old` to size `new`
/// (RFC 9162 §2.1.4.1). From `old == new` the proof is empty.
///
/// # Errors
/// [`ProofRequestError::FromEmptyTree`] for `old == 0`,
/// [`ProofRequestError::OldSizeAboveNew`] for `old > new`,
/// [`ProofRequestError::SizeTooLarge`] over [`MAX_TREE_SIZE`].
pub fn consistency_plan(old: u64, new: u64) -> Result<ProofPlan, ProofRequestError> {
    check_size(new)?;
    if old > new {
        return Err(ProofRequestError::OldSizeAboveNew { old, new });
    }
    if old == 0 {
        return Err(ProofRequestError::FromEmptyTree);
    }
    let mut plan = ProofPlan::with_capacity();
    if old == new {
        return Ok(plan);
    }
    let (mut lo, mut hi) = (0u64, new);
    // `whole` is RFC 9162's b: true while [lo, hi) is a prefix of the tree
    // the verifier already knows the root of.
    let mut whole = true;
    while old - lo != hi - lo {
        let k = split_point(hi - lo);
        if old - lo <= k {
            plan.push_range(lo + k, hi);
            hi = lo + k;
        } else {
            plan.push_range(lo, lo + k);
            lo += k;
            whole = false;
        }
    }
    if !whole {
        plan.push_range(lo, hi);
    }
    plan.reverse();
    Ok(plan)
}

/// The nodes whose fold is the root of the tree of `size` leaves: a plan
/// with one element (none for the empty tree, whose root is
/// [`crate::empty_root`]).
///
/// # Errors
/// [`ProofRequestError::SizeTooLarge`] over [`MAX_TREE_SIZE`].
pub fn root_plan(size: u64) -> Result<ProofPlan, ProofRequestError> {
    check_size(size)?;
    let mut plan = ProofPlan::default();
    if size > 0 {
        plan.push_range(0, size);
    }
    Ok(plan)
}

/// Storage of complete node hashes, read in one batch per proof.
pub trait HashReader {
    /// The storage's error.
    type Error;

    /// Returns the hashes of `nodes`, in the same order. Every node is
    /// complete in the tree the caller asks about.
    ///
    /// # Errors
    /// Whatever the storage fails with, including a missing node.
    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// A proof could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError<E> {
    /// The request itself is impossible.
    #[error(transparent)]
    Request(#[from] ProofRequestError),
    /// The storage failed.
    #[error("reading proof hashes: {0}")]
    Read(E),
    /// The storage returned the wrong number of hashes.
    #[error(transparent)]
    Combine(#[from] CombineError),
}

fn run_plan<R: HashReader + ?Sized>(
    plan: &ProofPlan,
    reader: &R,
) -> Result<Vec<Hash>, ProveError<R::Error>> {
    let hashes = reader.read_hashes(plan.nodes()).map_err(ProveError::Read)?;
    Ok(plan.combine(&hashes)?)
}

/// Builds the inclusion proof of leaf `index` in the tree of `size` leaves.
///
/// # Errors
/// See [`inclusion_plan`] and [`ProveError`].
pub fn prove_inclusion<R: HashReader + ?Sized>(
    reader: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<R::Error>> {
    run_plan(&inclusion_plan(index, size)?, reader)
}

/// Builds the consistency proof from size `old` to size `new`.
///
/// # Errors
/// See [`consistency_plan`] and [`ProveError`].
pub fn prove_consistency<R: HashReader + ?Sized>(
    reader: &R,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProveError<R::Error>> {
    run_plan(&consistency_plan(old, new)?, reader)
}

/// The root of the tree of `size` leaves.
///
/// # Errors
/// See [`root_plan`] and [`ProveError`].
pub fn root_at<R: HashReader + ?Sized>(
    reader: &R,
    size: u64,
) -> Result<Hash, ProveError<R::Error>> {
    let plan = root_plan(size)?;
    Ok(run_plan(&plan, reader)?
        .first()
        .copied()
        .unwrap_or_else(crate::hash::empty_root))
}

/// An in-memory [`HashReader`] over a map of node hashes, for tests, tools
/// and benchmarks.
impl<S: std::hash::BuildHasher> HashReader for std::collections::HashMap<NodeId, Hash, S> {
    type Error = MissingNode;
    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, MissingNode> {
        nodes
            .iter()
            .map(|n| self.get(n).copied().ok_or(MissingNode(*n)))
            .collect()
    }
}

/// A dense in-memory store: the hash of every complete node, at the node's
/// post-order number ([`NodeId::storage_index`]). Appending with a
/// [`crate::CompactRange`] visitor that pushes each reported hash builds it.
impl HashReader for [Hash] {
    type Error = MissingNode;
    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, MissingNode> {
        nodes
            .iter()
            .map(|n| {
                n.storage_index()
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or(MissingNode(*n))
            })
            .collect()
    }
}

/// An in-memory store did not hold a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node {0:?} is not stored")]
pub struct MissingNode(pub NodeId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_errors() {
        assert_eq!(
            inclusion_plan(5, 5),
            Err(ProofRequestError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            consistency_plan(0, 5),
            Err(ProofRequestError::FromEmptyTree)
        );
        assert_eq!(
            consistency_plan(6, 5),
            Err(ProofRequestError::OldSizeAboveNew { old: 6, new: 5 })
        );
        assert_eq!(consistency_plan(5, 5).map(|p| p.proof_len()), Ok(0));
        assert!(matches!(
            inclusion_plan(0, u64::MAX),
            Err(ProofRequestError::SizeTooLarge { .. })
        ));
        assert_eq!(inclusion_plan(0, 1).map(|p| p.proof_len()), Ok(0));
    }

    #[test]
    fn inclusion_plan_for_ragged_edge() {
        // Leaf 0 of 7: siblings [1,2), [2,4), [4,7) = N(1,2) + L6.
        let plan = inclusion_plan(0, 7).unwrap();
        assert_eq!(plan.proof_len(), 3);
        assert_eq!(
            plan.nodes(),
            &[
                NodeId::new(0, 1),
                NodeId::new(1, 1),
                NodeId::new(1, 2),
                NodeId::new(0, 6)
            ]
        );
    }

    #[test]
    fn combine_checks_count() {
        let plan = inclusion_plan(0, 7).unwrap();
        assert_eq!(
            plan.combine(&[Hash::default()]),
            Err(CombineError { want: 4, got: 1 })
        );
    }
}
