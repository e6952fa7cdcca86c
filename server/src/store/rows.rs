//! Where a node's hash is stored, for engines that keep C2SP `tlog-tiles`
//! rows: tile `(L, N)` holds up to 256 hashes of tree level `8L`, and its
//! mid row up to 16 hashes of level `8L+4`. Every other node is recomputed
//! from at most 8 stored hashes of one row ([`RowSpan::of`]).

use quire_core::node::{TileId, TileSpan, TILE_HEIGHT};
use quire_core::NodeId;

/// Tree level of a mid row within its tile.
pub(crate) const MID: u8 = TILE_HEIGHT / 2;
/// Hashes in a full mid row.
pub(crate) const MID_WIDTH: u64 = 1 << MID;

/// Where a node's hash is computed from: a run of `count` hashes from
/// `offset` in the main row (`mid` false) or the mid row of `tile`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RowSpan {
    pub(crate) mid: bool,
    pub(crate) tile: TileId,
    pub(crate) offset: u64,
    pub(crate) count: u64,
}

impl RowSpan {
    /// The row run a node's hash is computed from.
    pub(crate) fn of(node: NodeId) -> RowSpan {
        let span = TileSpan::of(node);
        let sub = node.level % TILE_HEIGHT;
        if sub < MID {
            return RowSpan {
                mid: false,
                tile: span.tile,
                offset: u64::from(span.offset),
                count: u64::from(span.count),
            };
        }
        let first = node.index << (sub - MID);
        RowSpan {
            mid: true,
            tile: TileId {
                level: span.tile.level,
                index: first / MID_WIDTH,
            },
            offset: first % MID_WIDTH,
            count: 1 << (sub - MID),
        }
    }
}
