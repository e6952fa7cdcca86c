//! Node addressing: a node is a perfect subtree, named by its level (0 for
//! leaves) and its index within the level. Nodes also have a dense `u64`
//! number, their position in the post-order of the tree: the order in which
//! an append-only log completes them. Numbers are dense (a tree of `n` leaves
//! has exactly `2n - popcount(n)` complete nodes, numbered `0..` that count)
//! and only grow, so they make append-friendly storage keys. This is the same
//! numbering as Go's `sumdb/tlog` "stored hash index".

/// The largest tree size Quire handles: node numbers of any larger tree would
/// not fit in a `u64`.
pub const MAX_TREE_SIZE: u64 = (1 << 63) - 1;

/// A perfect subtree: the `2^level` leaves starting at `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves (0 = a leaf).
    pub level: u8,
    /// Position among the nodes of this level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level` and `index`.
    pub const fn new(level: u8, index: u64) -> Self {
        NodeId { level, index }
    }

    /// The leaf with index `index`.
    pub const fn leaf(index: u64) -> Self {
        NodeId { level: 0, index }
    }

    /// First leaf covered (inclusive).
    pub const fn first_leaf(&self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf covered.
    pub const fn end_leaf(&self) -> u64 {
        (self.index + 1) << self.level
    }

    /// The dense post-order number of this node, or `None` when the node lies
    /// beyond [`MAX_TREE_SIZE`].
    pub fn storage_index(&self) -> Option<u64> {
        if self.level > 62 {
            return None;
        }
        let end = self
            .index
            .checked_add(1)?
            .checked_shl(u32::from(self.level))?;
        if end > MAX_TREE_SIZE || end.leading_zeros() < 1 {
            return None;
        }
        // x = index of the last leaf under the node; the node is completed
        // right after that leaf, whose own number is stored_count(x).
        let x = end - 1;
        Some(stored_count(x) + u64::from(self.level))
    }

    /// The node with post-order number `n` (the inverse of
    /// [`NodeId::storage_index`]), or `None` when `n` is beyond the numbering
    /// of a [`MAX_TREE_SIZE`] tree.
    pub fn from_storage_index(n: u64) -> Option<Self> {
        if n >= stored_count(MAX_TREE_SIZE) {
            return None;
        }
        // Find the leaf x whose append completes node n: the largest x with
        // stored_count(x) <= n. stored_count grows by at least 1 per leaf.
        let (mut lo, mut hi) = (n / 2, n.min(MAX_TREE_SIZE - 1));
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if stored_count(mid) <= n {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let level = n - stored_count(lo);
        // Appending leaf x completes levels 0..=trailing_ones(x).
        if level > u64::from(lo.trailing_ones()) {
            return None;
        }
        let level = u8::try_from(level).ok()?;
        Some(NodeId::new(level, lo >> level))
    }
}

/// How many complete nodes a tree of `size` leaves has: `2·size − popcount(size)`.
pub const fn stored_count(size: u64) -> u64 {
    2 * size - size.count_ones() as u64
}

/// The perfect subtrees that make up the leaf range `[start, end)`, left to
/// right, largest first. `start` must be aligned so that the range is a node
/// of some RFC 9162 tree: a multiple of the largest power of two not above
/// `end − start`. This holds for every range that appears in the RFC's
/// recursive definitions (a whole tree `[0, n)` and the right parts of splits).
pub fn perfect_subtrees(start: u64, end: u64) -> impl Iterator<Item = NodeId> {
    debug_assert!(start <= end);
    let mut pos = start;
    let mut width = end.saturating_sub(start);
    // One step per set bit of the width, highest first.
    std::iter::from_fn(move || {
        if width == 0 {
            return None;
        }
        let level = width.ilog2();
        width &= !(1u64 << level);
        let node = NodeId::new(u8::try_from(level).unwrap_or(u8::MAX), pos >> level);
        pos += 1 << level;
        Some(node)
    })
}

/// Height of a tile in levels: a tile holds 2^8 = 256 hashes of one level.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// A storage tile, as in C2SP `tlog-tiles`: the hashes of up to 256
/// consecutive nodes at tree level `8 × level`, starting at node
/// `index × 256` of that level. The nodes in the seven levels above that row
/// are not stored; they are recomputed from the row (see [`TileSpan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level: the tile's row is tree level `8 × level`.
    pub level: u8,
    /// Position of the tile among the tiles of its level.
    pub index: u64,
}

impl TileId {
    /// How many hashes this tile holds in a tree of `size` leaves: 256 for a
    /// full tile, fewer for the partial tile at the right edge, 0 when the
    /// tile does not exist yet.
    pub fn width_at(&self, size: u64) -> u64 {
        let row_len = size
            .checked_shr(u32::from(self.level) * u32::from(TILE_HEIGHT))
            .unwrap_or(0);
        let start = self.index.saturating_mul(TILE_WIDTH);
        row_len.saturating_sub(start).min(TILE_WIDTH)
    }
}

/// Where a node's hash lives: a run of `count` (a power of two) consecutive
/// hashes of a tile's row, starting at `offset`. The node's hash is the root
/// of that run (the run itself when `count` is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileSpan {
    /// The tile that holds the run.
    pub tile: TileId,
    /// First hash of the run within the tile (0..256).
    pub offset: u16,
    /// Length of the run: 2^(node level mod 8).
    pub count: u16,
}

impl TileSpan {
    /// The span of `node`.
    pub fn of(node: NodeId) -> TileSpan {
        let tile_level = node.level / TILE_HEIGHT;
        let sub = node.level % TILE_HEIGHT;
        // The node covers row positions [index << sub, (index + 1) << sub).
        let row_start = node.index << sub;
        TileSpan {
            tile: TileId {
                level: tile_level,
                index: row_start >> TILE_HEIGHT,
            },
            offset: (row_start % TILE_WIDTH) as u16,
            count: 1 << sub,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_order_numbering_small_tree() {
        // Post-order of an 4-leaf tree: L0 L1 N(1,0) L2 L3 N(1,1) N(2,0).
        let order = [
            NodeId::new(0, 0),
            NodeId::new(0, 1),
            NodeId::new(1, 0),
            NodeId::new(0, 2),
            NodeId::new(0, 3),
            NodeId::new(1, 1),
            NodeId::new(2, 0),
        ];
        for (i, node) in order.iter().enumerate() {
            assert_eq!(node.storage_index(), Some(i as u64));
            assert_eq!(NodeId::from_storage_index(i as u64), Some(*node));
        }
        assert_eq!(stored_count(4), 7);
    }

    #[test]
    fn numbering_round_trips_and_is_dense() {
        let mut next = 0u64;
        for leaf in 0..5000u64 {
            for level in 0..=u8::try_from(leaf.trailing_ones()).unwrap() {
                let node = NodeId::new(level, leaf >> level);
                assert_eq!(node.storage_index(), Some(next), "{node:?}");
                assert_eq!(NodeId::from_storage_index(next), Some(node));
                next += 1;
            }
            assert_eq!(stored_count(leaf + 1), next);
        }
    }

    #[test]
    fn numbering_at_the_limits() {
        let top = NodeId::new(62, 0);
        let n = top.storage_index().unwrap();
        assert_eq!(NodeId::from_storage_index(n), Some(top));
        let last_leaf = NodeId::leaf(MAX_TREE_SIZE - 1);
        let n = last_leaf.storage_index().unwrap();
        assert_eq!(NodeId::from_storage_index(n), Some(last_leaf));
        assert_eq!(NodeId::leaf(MAX_TREE_SIZE).storage_index(), None);
        assert_eq!(NodeId::new(63, 0).storage_index(), None);
        assert_eq!(NodeId::new(5, u64::MAX).storage_index(), None);
        assert_eq!(NodeId::from_storage_index(u64::MAX), None);
    }

    #[test]
    fn perfect_subtrees_of_ranges() {
        let got: Vec<_> = perfect_subtrees(0, 13).collect();
        assert_eq!(
            got,
            vec![NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]
        );
        assert_eq!(perfect_subtrees(8, 8).count(), 0);
        let got: Vec<_> = perfect_subtrees(8, 11).collect();
        assert_eq!(got, vec![NodeId::new(1, 4), NodeId::new(0, 10)]);
    }

    #[test]
    fn tile_spans() {
        assert_eq!(
            TileSpan::of(NodeId::leaf(300)),
            TileSpan {
                tile: TileId { level: 0, index: 1 },
                offset: 44,
                count: 1
            }
        );
        // Level 3 node 40 covers leaves 320..328: tile 1, offset 64, 8 hashes.
        assert_eq!(
            TileSpan::of(NodeId::new(3, 40)),
            TileSpan {
                tile: TileId { level: 0, index: 1 },
                offset: 64,
                count: 8
            }
        );
        // Level 8 is the row of tile level 1.
        assert_eq!(
            TileSpan::of(NodeId::new(8, 257)),
            TileSpan {
                tile: TileId { level: 1, index: 1 },
                offset: 1,
                count: 1
            }
        );
        let t = TileId { level: 0, index: 1 };
        assert_eq!(t.width_at(256), 0);
        assert_eq!(t.width_at(300), 44);
        assert_eq!(t.width_at(10_000), 256);
        assert_eq!(TileId { level: 1, index: 0 }.width_at(256 * 3 + 5), 3);
    }
}
