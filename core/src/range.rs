//! Range proofs: a contiguous run of leaves `[first, end)` is in the tree
//! of `size` leaves with root `root`, all at once. The proof is
//! - `left`: the compact range of `[0, first)`, the roots of its perfect
//!   subtrees, largest first ([`CompactRange::edge_nodes`]);
//! - `consistency`: the RFC 9162 §2.1.4 consistency proof from `end` to
//!   `size` (empty when `end` = `size`).
//!
//! The verifier appends the run's leaf hashes to the compact range of
//! `left`, which gives the root of the tree of `end` leaves, then checks
//! that tree is a prefix of the tree of `size`. Any other run, order or
//! `left` gives another root of `end` leaves (SHA-256 collision
//! resistance), so one proof shows that every leaf of the run is at its
//! index, and that nothing is missing between `first` and `end`: what a
//! query over a contiguous index range needs to prove it is complete.
//!
//! Cost: at most 63 + 2·log2(size) hashes besides the leaves, against
//! about log2(size) per leaf for separate inclusion proofs.

use crate::compact::CompactRange;
use crate::hash::Hash;
use crate::node::NodeId;
use crate::proof::{consistency_plan, ProofPlan, ProofRequestError};
use crate::verify::verify_consistency;

/// What a range proof is made of, for the prover to read.
#[derive(Clone, Debug)]
pub struct RangePlan {
    /// The nodes of `left`, in order.
    pub left: Vec<NodeId>,
    /// The consistency proof from `end` to `size` (`None` when `end` =
    /// `size`).
    pub consistency: Option<ProofPlan>,
}

/// Why a range cannot be proven or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// An empty run, or one past the tree.
    #[error("the range [{first}, {end}) is not a non-empty run of a tree of size {size}")]
    OutOfRange {
        /// Its first index.
        first: u64,
        /// One past its last.
        end: u64,
        /// The tree's size.
        size: u64,
    },
    /// `left` does not have one hash per set bit of `first`.
    #[error("the left part holds {got} hashes; a range from index {first} needs {want}")]
    LeftLength {
        /// The first index.
        first: u64,
        /// Hashes needed.
        want: usize,
        /// Hashes given.
        got: usize,
    },
    /// The proof does not lead to the root.
    #[error("the range [{first}, {end}) does not verify against the root of size {size}: {why}")]
    Mismatch {
        /// Its first index.
        first: u64,
        /// One past its last.
        end: u64,
        /// The tree's size.
        size: u64,
        /// What failed.
        why: String,
    },
}

/// What the prover reads for the range `[first, end)` of a tree of `size`.
///
/// # Errors
/// [`RangeError::OutOfRange`] for an empty run or one past the tree.
pub fn range_plan(first: u64, end: u64, size: u64) -> Result<RangePlan, RangeError> {
    if first >= end || end > size {
        return Err(RangeError::OutOfRange { first, end, size });
    }
    let consistency = if end == size {
        None
    } else {
        Some(
            consistency_plan(end, size).map_err(|e: ProofRequestError| RangeError::Mismatch {
                first,
                end,
                size,
                why: e.to_string(),
            })?,
        )
    };
    Ok(RangePlan {
        left: CompactRange::edge_nodes(first),
        consistency,
    })
}

/// Checks that `leaves` are the leaf hashes of `[first, first + n)` in the
/// tree of `size` leaves whose root is `root`.
///
/// # Errors
/// [`RangeError`] naming the range and what failed.
pub fn verify_range(
    first: u64,
    leaves: &[Hash],
    size: u64,
    left: &[Hash],
    consistency: &[Hash],
    root: &Hash,
) -> Result<(), RangeError> {
    let end = first.saturating_add(leaves.len() as u64);
    if leaves.is_empty() || end > size {
        return Err(RangeError::OutOfRange { first, end, size });
    }
    let mismatch = |why: String| RangeError::Mismatch {
        first,
        end,
        size,
        why,
    };
    let want = first.count_ones() as usize;
    if left.len() != want {
        return Err(RangeError::LeftLength {
            first,
            want,
            got: left.len(),
        });
    }
    let mut range =
        CompactRange::from_parts(first, left.to_vec()).map_err(|e| mismatch(e.to_string()))?;
    for leaf in leaves {
        range
            .append(*leaf, |_, _| {})
            .map_err(|e| mismatch(e.to_string()))?;
    }
    let end_root = range.root();
    if end == size {
        if !consistency.is_empty() {
            return Err(mismatch(
                "a consistency proof for a range that ends at the tree's size".into(),
            ));
        }
        if end_root != *root {
            return Err(mismatch(format!(
                "the range gives root {end_root}, the tree's root is {root}"
            )));
        }
        return Ok(());
    }
    verify_consistency(end, size, consistency, &end_root, root).map_err(|e| mismatch(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small test trees
mod tests {
    use super::*;
    use crate::{leaf_hash, node_hash};

    /// RFC 9162 §2.1.1 MTH, from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => crate::empty_root(),
            1 => leaves[0],
            n => {
                let k = n.next_power_of_two() / 2;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// A tree of `size` leaves kept whole: the hash of any node, from the
    /// definition.
    struct Tree(Vec<Hash>);

    impl Tree {
        fn new(size: u64) -> Self {
            Tree((0..size).map(|i| leaf_hash(&i.to_be_bytes())).collect())
        }
        fn node(&self, n: NodeId) -> Hash {
            let w = 1usize << n.level;
            let start = n.index as usize * w;
            mth(&self.0[start..(start + w).min(self.0.len())])
        }
        fn prove(&self, first: u64, end: u64) -> (Vec<Hash>, Vec<Hash>) {
            let size = self.0.len() as u64;
            let plan = range_plan(first, end, size).unwrap();
            let left = plan.left.iter().map(|n| self.node(*n)).collect();
            let consistency = if end == size {
                Vec::new()
            } else {
                crate::prove_consistency(self, end, size).unwrap()
            };
            (left, consistency)
        }
    }

    impl crate::HashReader for Tree {
        type Error = std::convert::Infallible;
        fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
            Ok(nodes.iter().map(|n| self.node(*n)).collect())
        }
    }

    #[test]
    fn every_range_of_small_trees_verifies_and_every_change_is_caught() {
        for size in 1..=33u64 {
            let t = Tree::new(size);
            let root = mth(&t.0);
            for first in 0..size {
                for end in first + 1..=size {
                    let (left, cons) = t.prove(first, end);
                    let leaves = &t.0[first as usize..end as usize];
                    verify_range(first, leaves, size, &left, &cons, &root)
                        .unwrap_or_else(|e| panic!("{size} [{first},{end}): {e}"));
                    // One leaf left out, from either end or the middle.
                    for drop in 0..leaves.len() {
                        let mut fewer = leaves.to_vec();
                        fewer.remove(drop);
                        if !fewer.is_empty() {
                            assert!(verify_range(first, &fewer, size, &left, &cons, &root).is_err());
                        }
                    }
                    // Two leaves swapped.
                    if leaves.len() > 1 {
                        let mut swapped = leaves.to_vec();
                        swapped.swap(0, leaves.len() - 1);
                        assert!(verify_range(first, &swapped, size, &left, &cons, &root).is_err());
                    }
                    // A leaf invented.
                    let mut more = leaves.to_vec();
                    more.insert(leaves.len() / 2, leaf_hash(b"invented"));
                    assert!(verify_range(first, &more, size, &left, &cons, &root).is_err());
                    // The same leaves claimed at another place.
                    if first > 0 {
                        let (l2, c2) = t.prove(first - 1, end - 1);
                        assert!(verify_range(first - 1, leaves, size, &l2, &c2, &root).is_err());
                    }
                    // Another root.
                    assert!(
                        verify_range(first, leaves, size, &left, &cons, &leaf_hash(b"x")).is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let t = Tree::new(10);
        let root = mth(&t.0);
        let (left, cons) = t.prove(3, 7);
        assert!(matches!(
            verify_range(3, &[], 10, &left, &cons, &root),
            Err(RangeError::OutOfRange { .. })
        ));
        assert!(matches!(
            verify_range(3, &t.0[3..7], 10, &left[1..], &cons, &root),
            Err(RangeError::LeftLength { .. })
        ));
        assert!(matches!(
            verify_range(8, &t.0[3..7], 10, &left, &cons, &root),
            Err(RangeError::OutOfRange { .. })
        ));
        assert!(range_plan(5, 5, 10).is_err());
        assert!(range_plan(5, 11, 10).is_err());
        let (left, _) = t.prove(3, 10);
        assert!(verify_range(3, &t.0[3..10], 10, &left, &[root], &root).is_err());
    }
}
