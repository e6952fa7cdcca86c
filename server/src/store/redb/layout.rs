//! The redb file's layout: its tables, where a node's hash is stored
//! (tile rows and mid rows, C2SP `tlog-tiles` levels), and the head record.

use quire_core::node::TileId;
use quire_core::Hash;
use redb::TableDefinition;

pub(super) use crate::store::rows::{RowSpan, MID, MID_WIDTH};
use crate::store::{Head, StoreError};

/// Bundle index → bundle record.
pub(super) const BUNDLES: TableDefinition<u64, &[u8]> = TableDefinition::new("bundles");
/// (tile level, tile index) → row hashes, 32 bytes each.
pub(super) const TILES: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("tiles");
/// (tile level L, tile index) → the tile's mid row: its up to 16 hashes of
/// tree level 8L+4. With it no node is more than 8 stored hashes away, so a
/// proof step costs at most 7 hashes instead of up to 127; 2 bytes per entry.
pub(super) const MIDS: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("mid_rows");
/// Hashes a tile record holds: all but the row's last, which is kept after
/// the mid row instead. A full row of 256 hashes (8 KiB) and its key would
/// need three pages, and redb allocates powers of two (16 KiB); 255 hashes
/// fit two pages exactly. This saves 32 bytes per entry.
pub(super) const MAIN_SLOTS: u64 = 255;

/// One stored run of hashes: `count` from `slot` of a tile (`mid` false)
/// or mid record (`mid` true).
#[derive(Clone, Copy)]
pub(super) struct Part {
    pub(super) mid: bool,
    pub(super) tile: TileId,
    pub(super) slot: u64,
    pub(super) count: u64,
}

impl RowSpan {
    /// Where this span's hashes are stored: the tile record, and for a span
    /// that reaches the row's last hash, the slot after the mid row.
    pub(super) fn parts(self) -> (Part, Option<Part>) {
        let main_end = (self.offset + self.count).min(MAIN_SLOTS);
        if self.mid || self.offset + self.count <= MAIN_SLOTS {
            return (
                Part {
                    mid: self.mid,
                    tile: self.tile,
                    slot: self.offset,
                    count: self.count,
                },
                None,
            );
        }
        (
            Part {
                mid: false,
                tile: self.tile,
                slot: self.offset,
                count: main_end.saturating_sub(self.offset),
            },
            Some(Part {
                mid: true,
                tile: self.tile,
                slot: MID_WIDTH,
                count: 1,
            }),
        )
    }
}

/// Tree size → (signed at, Unix ms; signed note).
pub(super) const CHECKPOINTS: TableDefinition<u64, (u64, &[u8])> =
    TableDefinition::new("checkpoints");
/// Tree size → the witness cosignature lines collected for its checkpoint.
pub(super) const COSIGNATURES: TableDefinition<u64, &[u8]> = TableDefinition::new("cosignatures");
/// The first event index of a chunk → the chunk of payload records
/// (salt ‖ payload, or an erasure's record) of consecutive events that
/// have one (a log in event mode; erasable): `store::events::chunks`.
pub(super) const PAYLOADS: TableDefinition<u64, &[u8]> =
    TableDefinition::new("event_payload_chunks");
/// Event index → salt ‖ payload, one row each: how payloads were stored
/// before chunks; moved into chunks when the database opens.
pub(super) const PAYLOAD_ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("event_payloads");
/// Event key (32 bytes) → its newest event's index.
pub(super) const EVENT_KEYS: TableDefinition<&[u8], u64> = TableDefinition::new("event_keys");
/// (log time, Unix ms; index of a commit's first event), one per commit.
pub(super) const LOG_TIMES: TableDefinition<(u64, u64), ()> = TableDefinition::new("log_times");
/// Named metadata (origin, format version).
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Metadata key of the head: size (8 bytes, big-endian) and root.
pub(super) const HEAD_KEY: &str = "head";

pub(crate) fn encode_head(h: Head) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[..8].copy_from_slice(&h.size.to_be_bytes());
    b[8..].copy_from_slice(h.root.as_bytes());
    b
}

/// The head of a store written before the head record existed: its latest
/// checkpoint's size and root.
pub(super) fn legacy_head(note: &[u8]) -> Result<Head, StoreError> {
    let cp = quire_core::Note::parse(note)
        .ok()
        .and_then(|n| quire_core::Checkpoint::parse(n.text().as_bytes()).ok())
        .ok_or_else(|| StoreError::Corrupt("the latest checkpoint does not parse".into()))?;
    Ok(Head {
        size: cp.size(),
        root: *cp.root(),
    })
}

pub(crate) fn decode_head(b: &[u8]) -> Result<Head, StoreError> {
    let (Some(size), Some(root)) = (b.get(..8), b.get(8..)) else {
        return Err(StoreError::Corrupt("head record".into()));
    };
    let root = Hash::from_slice(root).map_err(|_| StoreError::Corrupt("head record".into()))?;
    let mut s = [0u8; 8];
    s.copy_from_slice(size);
    Ok(Head {
        size: u64::from_be_bytes(s),
        root,
    })
}
