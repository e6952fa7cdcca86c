//! The compact range: the right edge of a growing tree. For a tree of `size`
//! leaves it holds one hash per set bit of `size` (the roots of the perfect
//! subtrees that make up `[0, size)`), so memory stays at most 63 hashes
//! however large the log grows.

use crate::hash::{empty_root, node_hash, Hash};
use crate::node::{perfect_subtrees, NodeId, MAX_TREE_SIZE};

/// The right edge of a tree: enough to append leaves and compute the root.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    /// Roots of the perfect subtrees of `[0, size)`, largest (leftmost) first.
    edge: Vec<Hash>,
}

/// A compact range could not be rebuilt from the given parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactRangeError {
    /// The number of edge hashes does not match the size.
    #[error("a tree of size {size} has {want} edge hashes, got {got}")]
    WrongEdgeLength {
        /// Tree size claimed.
        size: u64,
        /// Hashes expected (popcount of size).
        want: usize,
        /// Hashes given.
        got: usize,
    },
    /// The tree is larger than Quire supports.
    #[error("tree size {size} exceeds the limit of {MAX_TREE_SIZE}")]
    TooLarge {
        /// Tree size claimed.
        size: u64,
    },
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the edge of a stored tree from the hashes of
    /// [`CompactRange::edge_nodes`]`(size)`, in that order.
    ///
    /// # Errors
    /// [`CompactRangeError`] when the count of hashes does not fit the size,
    /// or the size is over [`MAX_TREE_SIZE`].
    pub fn from_parts(size: u64, edge: Vec<Hash>) -> Result<Self, CompactRangeError> {
        if size > MAX_TREE_SIZE {
            return Err(CompactRangeError::TooLarge { size });
        }
        let want = size.count_ones() as usize;
        if edge.len() != want {
            return Err(CompactRangeError::WrongEdgeLength {
                size,
                want,
                got: edge.len(),
            });
        }
        Ok(CompactRange { size, edge })
    }

    /// The nodes whose hashes make up the edge of a tree of `size` leaves,
    /// largest first.
    pub fn edge_nodes(size: u64) -> Vec<NodeId> {
        perfect_subtrees(0, size).collect()
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The edge hashes, largest subtree first.
    pub fn edge(&self) -> &[Hash] {
        &self.edge
    }

    /// Appends a leaf hash. `visit` is called with the new leaf node and then
    /// with every interior node this append completes, bottom up, so that
    /// storage can persist each complete node once.
    ///
    /// # Errors
    /// [`CompactRangeError::TooLarge`] when the tree is already at
    /// [`MAX_TREE_SIZE`]; nothing changes then.
    #[inline]
    pub fn append(
        &mut self,
        leaf: Hash,
        mut visit: impl FnMut(NodeId, &Hash),
    ) -> Result<(), CompactRangeError> {
        if self.size >= MAX_TREE_SIZE {
            return Err(CompactRangeError::TooLarge {
                size: self.size.saturating_add(1),
            });
        }
        let mut index = self.size;
        let mut level = 0u8;
        let mut hash = leaf;
        visit(NodeId::new(0, index), &hash);
        while index & 1 == 1 {
            // A set low bit means a left sibling of the same height waits on
            // the edge: merge with it.
            let Some(left) = self.edge.pop() else {
                unreachable!("edge holds one hash per set bit of size")
            };
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            visit(NodeId::new(level, index), &hash);
        }
        self.edge.push(hash);
        self.size += 1;
        Ok(())
    }

    /// The root hash of the tree (RFC 9162 §2.1.1 MTH), the empty-tree root
    /// at size 0.
    pub fn root(&self) -> Hash {
        fold_right(&self.edge).unwrap_or_else(empty_root)
    }
}

/// Hashes a run of perfect-subtree roots, largest first, into the root of
/// their union: `H(a, H(b, H(c, d)))`. `None` for an empty run.
pub(crate) fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn append_reports_each_complete_node_once() {
        let mut cr = CompactRange::new();
        let mut seen = Vec::new();
        for i in 0..64u64 {
            cr.append(leaf_hash(&i.to_be_bytes()), |n, _| seen.push(n))
                .unwrap();
        }
        assert_eq!(seen.len() as u64, crate::node::stored_count(64));
        for (i, n) in seen.iter().enumerate() {
            assert_eq!(n.storage_index(), Some(i as u64));
        }
    }

    #[test]
    fn from_parts_checks_length() {
        let h = leaf_hash(b"a");
        assert!(CompactRange::from_parts(3, vec![h]).is_err());
        assert!(CompactRange::from_parts(3, vec![h, h]).is_ok());
        assert!(CompactRange::from_parts(u64::MAX, vec![h; 64]).is_err());
        assert_eq!(CompactRange::new().root(), empty_root());
    }
}
