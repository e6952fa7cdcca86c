//! The embedded default storage: one redb file per log.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use quire_core::node::{TileId, TileSpan, TILE_HEIGHT};
use quire_core::{perfect_root, Hash, HashReader, NodeId};
use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

use super::bundle::{self, BUNDLE_SIZE};
use super::{Commit, Storage, StorageReader, StoreError, StoredCheckpoint};

/// Bundle index → bundle record.
const BUNDLES: TableDefinition<u64, &[u8]> = TableDefinition::new("bundles");
/// (tile level, tile index) → row hashes, 32 bytes each.
const TILES: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("tiles");
/// First 8 bytes of a leaf hash → entry indexes. The full hash is checked
/// against the tile row on lookup, so a prefix shared by two leaves only
/// costs an extra read; 16 bytes per entry instead of 40.
const LEAVES: MultimapTableDefinition<u64, u64> = MultimapTableDefinition::new("leaves");

fn leaf_key(leaf: &Hash) -> u64 {
    u64::from_be_bytes([
        leaf.0[0], leaf.0[1], leaf.0[2], leaf.0[3], leaf.0[4], leaf.0[5], leaf.0[6], leaf.0[7],
    ])
}
/// Tree size → (signed at, Unix ms; signed note).
const CHECKPOINTS: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("checkpoints");
/// Named metadata (origin, format version).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

fn engine<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// A log stored in a redb file.
pub struct RedbStore {
    db: Database,
    compress: bool,
}

impl RedbStore {
    /// Opens (or creates) the store at `path`. `compress` chooses LZ4 for
    /// entry bundles where it saves space.
    ///
    /// # Errors
    /// [`StoreError::Engine`] when the file cannot be opened or created.
    pub fn open(path: &Path, compress: bool) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(engine)?;
        let txn = db.begin_write().map_err(engine)?;
        {
            txn.open_table(BUNDLES).map_err(engine)?;
            txn.open_table(TILES).map_err(engine)?;
            txn.open_multimap_table(LEAVES).map_err(engine)?;
            txn.open_table(CHECKPOINTS).map_err(engine)?;
            txn.open_table(META).map_err(engine)?;
        }
        txn.commit().map_err(engine)?;
        Ok(RedbStore { db, compress })
    }
}

impl RedbStore {
    /// Overwrites entry bundle `bundle` with `entries`, without any check.
    /// For fault-injection tests only: it breaks the log on purpose.
    ///
    /// # Errors
    /// [`StoreError::Engine`].
    #[doc(hidden)]
    pub fn overwrite_bundle_unchecked(
        &self,
        bundle: u64,
        entries: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(engine)?;
        txn.open_table(BUNDLES)
            .map_err(engine)?
            .insert(bundle, bundle::encode(entries, self.compress).as_slice())
            .map_err(engine)?;
        txn.commit().map_err(engine)
    }
}

impl Storage for RedbStore {
    type Reader = RedbReader;

    fn reader(&self) -> Result<RedbReader, StoreError> {
        Ok(RedbReader {
            txn: self.db.begin_read().map_err(engine)?,
        })
    }

    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(engine)?;
        {
            write_bundles(&txn, c, self.compress)?;
            write_tiles(&txn, &c.row_hashes)?;
            let mut leaves = txn.open_multimap_table(LEAVES).map_err(engine)?;
            for (h, i) in &c.leaf_index {
                leaves.insert(leaf_key(h), *i).map_err(engine)?;
            }
            let mut meta = txn.open_table(META).map_err(engine)?;
            for (k, v) in &c.meta {
                meta.insert(k.as_str(), v.as_slice()).map_err(engine)?;
            }
            if let Some(cp) = &c.checkpoint {
                txn.open_table(CHECKPOINTS)
                    .map_err(engine)?
                    .insert(cp.size, (cp.signed_at_ms, cp.note.as_slice()))
                    .map_err(engine)?;
            }
        }
        txn.commit().map_err(engine)
    }
}

fn write_bundles(
    txn: &redb::WriteTransaction,
    c: &Commit,
    compress: bool,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(BUNDLES).map_err(engine)?;
    let mut index = c.first_index;
    let mut pending = c.entries.as_slice();
    while !pending.is_empty() {
        let b = index / BUNDLE_SIZE;
        let have = index % BUNDLE_SIZE;
        let mut entries = if have == 0 {
            Vec::new()
        } else {
            let rec = table
                .get(b)
                .map_err(engine)?
                .ok_or_else(|| StoreError::Missing(format!("entry bundle {b}")))?;
            bundle::decode(rec.value())?
        };
        if entries.len() as u64 != have {
            return Err(StoreError::Corrupt(format!(
                "entry bundle {b} holds {} entries, expected {have}",
                entries.len()
            )));
        }
        let take = usize::try_from((BUNDLE_SIZE - have).min(pending.len() as u64)).unwrap_or(0);
        entries.extend_from_slice(&pending[..take]);
        table
            .insert(b, bundle::encode(&entries, compress).as_slice())
            .map_err(engine)?;
        pending = &pending[take..];
        index += take as u64;
    }
    Ok(())
}

fn write_tiles(txn: &redb::WriteTransaction, rows: &[(NodeId, Hash)]) -> Result<(), StoreError> {
    let mut by_tile: BTreeMap<TileId, Vec<(u16, Hash)>> = BTreeMap::new();
    for (node, hash) in rows {
        if node.level % TILE_HEIGHT != 0 {
            continue;
        }
        let span = TileSpan::of(*node);
        by_tile
            .entry(span.tile)
            .or_default()
            .push((span.offset, *hash));
    }
    let mut table = txn.open_table(TILES).map_err(engine)?;
    for (tile, hashes) in by_tile {
        let key = (tile.level, tile.index);
        let mut bytes = match table.get(key).map_err(engine)? {
            Some(v) => v.value().to_vec(),
            None => Vec::new(),
        };
        for (offset, h) in hashes {
            if bytes.len() != usize::from(offset) * 32 {
                return Err(StoreError::Corrupt(format!(
                    "tile {key:?} holds {} hashes, the next is at {offset}",
                    bytes.len() / 32
                )));
            }
            bytes.extend_from_slice(&h.0);
        }
        table.insert(key, bytes.as_slice()).map_err(engine)?;
    }
    Ok(())
}

/// A read view of a [`RedbStore`].
pub struct RedbReader {
    txn: redb::ReadTransaction,
}

impl RedbReader {
    fn tile(&self, tile: TileId) -> Result<Vec<u8>, StoreError> {
        let table = self.txn.open_table(TILES).map_err(engine)?;
        let value = table
            .get((tile.level, tile.index))
            .map_err(engine)?
            .ok_or_else(|| StoreError::Missing(format!("tile {}/{}", tile.level, tile.index)))?;
        Ok(value.value().to_vec())
    }
}

impl HashReader for RedbReader {
    type Error = StoreError;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        let mut tiles: HashMap<TileId, Vec<u8>> = HashMap::new();
        let mut out = Vec::with_capacity(nodes.len());
        for &node in nodes {
            let span = TileSpan::of(node);
            let bytes = match tiles.entry(span.tile) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(self.tile(span.tile)?),
            };
            let (start, end) = (
                usize::from(span.offset) * 32,
                (usize::from(span.offset) + usize::from(span.count)) * 32,
            );
            let Some(row) = bytes.get(start..end) else {
                return Err(StoreError::Missing(format!(
                    "node {node:?} beyond its tile"
                )));
            };
            let row: Vec<Hash> = row
                .chunks_exact(32)
                .map(|c| Hash::from_slice(c).unwrap_or_default())
                .collect();
            let h = perfect_root(&row)
                .ok_or_else(|| StoreError::Corrupt(format!("tile row for {node:?}")))?;
            out.push(h);
        }
        Ok(out)
    }
}

fn stored(row: (u64, redb::AccessGuard<'_, (u64, &[u8])>)) -> StoredCheckpoint {
    let (size, v) = row;
    let (signed_at_ms, note) = v.value();
    StoredCheckpoint {
        size,
        signed_at_ms,
        note: note.to_vec(),
    }
}

impl StorageReader for RedbReader {
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS).map_err(engine)?;
        let last = table.last().map_err(engine)?;
        Ok(last.map(|(k, v)| stored((k.value(), v))))
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS).map_err(engine)?;
        let got = table.get(size).map_err(engine)?;
        Ok(got.map(|v| stored((size, v))))
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let table = self.txn.open_table(BUNDLES).map_err(engine)?;
        let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(start)).unwrap_or(0));
        let mut i = start;
        while i < end {
            let b = i / BUNDLE_SIZE;
            let rec = table
                .get(b)
                .map_err(engine)?
                .ok_or_else(|| StoreError::Missing(format!("entry bundle {b}")))?;
            let entries = bundle::decode(rec.value())?;
            let from = usize::try_from(i % BUNDLE_SIZE).unwrap_or(0);
            let to = usize::try_from((end - b * BUNDLE_SIZE).min(BUNDLE_SIZE)).unwrap_or(0);
            let Some(part) = entries.get(from..to) else {
                return Err(StoreError::Missing(format!("entries {i}..{end}")));
            };
            out.extend_from_slice(part);
            i = (b + 1) * BUNDLE_SIZE;
        }
        Ok(out)
    }

    fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        let table = self.txn.open_multimap_table(LEAVES).map_err(engine)?;
        let mut candidates = Vec::new();
        for v in table.get(leaf_key(leaf)).map_err(engine)? {
            candidates.push(v.map_err(engine)?.value());
        }
        // Lowest index first: under strict dedup that is the original.
        for index in candidates {
            let stored = self.read_hashes(&[NodeId::leaf(index)])?;
            if stored.first() == Some(leaf) {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.txn.open_table(META).map_err(engine)?;
        Ok(table.get(key).map_err(engine)?.map(|v| v.value().to_vec()))
    }
}
