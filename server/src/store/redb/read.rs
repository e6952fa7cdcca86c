//! Reading a redb store: hashes from tile and mid rows, entries from
//! bundles, checkpoints, leaf lookups and metadata, all from one snapshot.

use std::sync::{Arc, PoisonError};

use quire_core::{perfect_root, Hash, HashReader, NodeId};
use redb::{Database, ReadableDatabase, ReadableTable};

use super::error::{engine, guarded};
use super::layout::{
    decode_head, legacy_head, Part, RowSpan, BUNDLES, CHECKPOINTS, COSIGNATURES, EVENT_KEYS,
    HEAD_KEY, LOG_TIMES, META, MIDS, PAYLOADS, TILES,
};
use super::leaf_blocks::{self, RUN_BLOCKS};
use crate::store::bundle::{self, BUNDLE_SIZE};
use crate::store::events::{decode_chunk, decode_payload, is_erased};
use crate::store::leaf_index::bloom::Bloom;
use crate::store::leaf_index::cache::SharedCache;
use crate::store::leaf_index::{self, IndexState, STATE_KEY};
use crate::store::{Head, Payload, StorageReader, StoreError, StoredCheckpoint};

/// A read view of a [`RedbStore`](super::RedbStore).
pub struct RedbReader {
    pub(super) txn: redb::ReadTransaction,
    pub(super) db: Arc<Database>,
    pub(super) cache: SharedCache,
}

/// The leaf index state of a read view.
pub(crate) fn index_state(txn: &redb::ReadTransaction) -> Result<IndexState, StoreError> {
    let table = txn.open_table(META).map_err(engine)?;
    match table.get(STATE_KEY).map_err(engine)? {
        Some(v) => IndexState::decode(v.value()),
        None => Ok(IndexState::default()),
    }
}

impl HashReader for RedbReader {
    type Error = StoreError;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        guarded("reading hashes", || self.read_hashes_unguarded(nodes))
    }
}

impl RedbReader {
    /// An event table, `None` in a store written before event mode.
    /// Calls `visit` with each payload record of an event in `[from, to)`,
    /// in order, each chunk read and decoded once, while it answers true.
    fn payload_records(
        &self,
        from: u64,
        to: u64,
        mut visit: impl FnMut(u64, Vec<u8>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(t) = self.event_table(PAYLOADS)? else {
            return Ok(());
        };
        // The chunk that may hold `from`, then those after it.
        let start = chunk_holding(&t, from)?.unwrap_or(from);
        for row in t.range(start..to.max(start)).map_err(engine)? {
            let (k, v) = row.map_err(engine)?;
            for (i, r) in decode_chunk(k.value(), v.value())? {
                if (from..to).contains(&i) && !visit(i, r)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn event_table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: redb::TableDefinition<'static, K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
        match self.txn.open_table(def) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    fn read_hashes_unguarded(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        // Each node's hashes are one stored run, or two when it reaches the
        // last hash of its row. Parts are grouped by record so that each is
        // read once, and only the needed hashes are copied out of it.
        let mut parts: Vec<(usize, Part)> = Vec::with_capacity(nodes.len() + 1);
        for (k, node) in nodes.iter().enumerate() {
            let (part, tail) = RowSpan::of(*node).parts();
            parts.push((k, part));
            if let Some(t) = tail {
                parts.push((k, t));
            }
        }
        // Tile records sort before mid records, so a node's main part is
        // appended before its tail.
        parts.sort_by_key(|(k, p)| (p.mid, p.tile, *k));
        let tiles = self.txn.open_table(TILES).map_err(engine)?;
        let mids = self.txn.open_table(MIDS).map_err(engine)?;
        let mut runs: Vec<Vec<Hash>> = vec![Vec::new(); nodes.len()];
        let mut at = 0;
        while let Some(&(_, first)) = parts.get(at) {
            let table = if first.mid { &mids } else { &tiles };
            let key = (first.tile.level, first.tile.index);
            let guard = table.get(key).map_err(engine)?.ok_or_else(|| {
                StoreError::Missing(format!(
                    "{} {}/{}",
                    if first.mid { "mid row" } else { "tile" },
                    key.0,
                    key.1
                ))
            })?;
            let bytes = guard.value();
            while let Some(&(k, part)) = parts.get(at) {
                if (part.mid, part.tile) != (first.mid, first.tile) {
                    break;
                }
                let start = usize::try_from(part.slot * 32).unwrap_or(usize::MAX);
                let end = usize::try_from((part.slot + part.count) * 32).unwrap_or(usize::MAX);
                let Some(stored) = bytes.get(start..end) else {
                    return Err(StoreError::Missing(format!(
                        "node {:?} beyond its stored row",
                        nodes[k]
                    )));
                };
                runs[k].extend(
                    stored
                        .chunks_exact(32)
                        .map(|c| Hash::from_slice(c).unwrap_or_default()),
                );
                at += 1;
            }
        }
        nodes
            .iter()
            .zip(runs)
            .map(|(node, run)| {
                perfect_root(&run)
                    .ok_or_else(|| StoreError::Corrupt(format!("stored row for {node:?}")))
            })
            .collect()
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

impl RedbReader {
    fn latest_checkpoint_unguarded(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS).map_err(engine)?;
        let last = table.last().map_err(engine)?;
        Ok(last.map(|(k, v)| stored((k.value(), v))))
    }

    fn checkpoint_at_unguarded(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS).map_err(engine)?;
        let got = table.get(size).map_err(engine)?;
        Ok(got.map(|v| stored((size, v))))
    }

    fn checkpoints_unguarded(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let table = self.txn.open_table(CHECKPOINTS).map_err(engine)?;
        let mut out = Vec::new();
        for row in table.range(from..).map_err(engine)?.take(limit) {
            let (k, v) = row.map_err(engine)?;
            out.push(stored((k.value(), v)));
        }
        Ok(out)
    }

    fn entries_unguarded(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let table = self.txn.open_table(BUNDLES).map_err(engine)?;
        let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(start)).unwrap_or(0));
        let mut i = start;
        while i < end {
            let b = i / BUNDLE_SIZE;
            let rec = table
                .get(b)
                .map_err(engine)?
                .ok_or_else(|| StoreError::Missing(format!("entry bundle {b}")))?;
            let from = usize::try_from(i % BUNDLE_SIZE).unwrap_or(0);
            let to = usize::try_from((end - b * BUNDLE_SIZE).min(BUNDLE_SIZE)).unwrap_or(0);
            // Only the frames holding them are decompressed.
            let part = bundle::decode_range(rec.value(), from, to)?;
            if part.len() != to - from {
                return Err(StoreError::Missing(format!("entries {i}..{end}")));
            }
            out.extend(part);
            i = (b + 1) * BUNDLE_SIZE;
        }
        Ok(out)
    }

    fn find_leaves_unguarded(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let size = self.latest_checkpoint()?.map_or(0, |c| c.size);
        let keys: Vec<u64> = leaves.iter().map(leaf_index::key).collect();
        let (mut candidates, blooms) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .candidates(&keys);
        // Runs are read from a transaction begun after the memtable: leaves
        // leave the memtable only once their run is committed, so together
        // the two hold every leaf (some twice). Leaf index facts never change,
        // so a newer view is a superset; indexes past this view's size are
        // dropped below.
        let fresh = RedbReader {
            txn: self.db.begin_read().map_err(engine)?,
            db: Arc::clone(&self.db),
            cache: Arc::clone(&self.cache),
        };
        let state = index_state(&fresh.txn)?;
        let table = fresh.txn.open_table(RUN_BLOCKS).map_err(engine)?;
        for run in &state.runs {
            if run.start >= size {
                break;
            }
            let mut hits = Vec::new();
            Bloom::to_probe(blooms.get(&run.id).map(|b| &**b), &keys, |n| {
                hits.push(n);
            });
            for n in hits {
                if let (Some(k), Some(c)) = (keys.get(n), candidates.get_mut(n)) {
                    leaf_blocks::probe(&table, run, *k, c)?;
                }
            }
        }
        let mut out = Vec::with_capacity(leaves.len());
        for (leaf, mut c) in leaves.iter().zip(candidates) {
            c.retain(|i| *i < size);
            c.sort_unstable();
            c.dedup();
            // Lowest index first: under strict dedup that is the original.
            let nodes: Vec<NodeId> = c.iter().map(|i| NodeId::leaf(*i)).collect();
            let stored = self.read_hashes(&nodes)?;
            out.push(
                c.into_iter()
                    .zip(stored)
                    .find(|(_, h)| h == leaf)
                    .map(|(i, _)| i),
            );
        }
        Ok(out)
    }

    fn meta_unguarded(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let table = self.txn.open_table(META).map_err(engine)?;
        Ok(table.get(key).map_err(engine)?.map(|v| v.value().to_vec()))
    }
}

impl StorageReader for RedbReader {
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        guarded("reading the latest checkpoint", || {
            self.latest_checkpoint_unguarded()
        })
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        guarded("reading a checkpoint", || {
            self.checkpoint_at_unguarded(size)
        })
    }

    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        guarded("reading checkpoints", || {
            self.checkpoints_unguarded(from, limit)
        })
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        guarded("reading entries", || self.entries_unguarded(start, end))
    }

    fn find_leaves(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        guarded("looking up leaf hashes", || {
            self.find_leaves_unguarded(leaves)
        })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        guarded("reading metadata", || self.meta_unguarded(key))
    }

    fn latest_cosignatures(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        guarded("reading cosignatures", || {
            // A store written before cosignatures were kept has no table.
            let table = match self.txn.open_table(COSIGNATURES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(engine(e)),
            };
            let last = table.last().map_err(engine)?;
            Ok(last.map(|(k, v)| (k.value(), v.value().to_vec())))
        })
    }

    fn payload(&self, index: u64) -> Result<Option<Payload>, StoreError> {
        guarded("reading a payload", || {
            let mut found = None;
            self.payload_records(index, index.saturating_add(1), |i, r| {
                found = Some(decode_payload(i, &r)?);
                Ok(false)
            })?;
            Ok(found)
        })
    }

    fn newest_events(&self, keys: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        guarded("reading event keys", || {
            let Some(table) = self.event_table(EVENT_KEYS)? else {
                return Ok(vec![None; keys.len()]);
            };
            keys.iter()
                .map(|k| {
                    Ok(table
                        .get(k.as_bytes().as_slice())
                        .map_err(engine)?
                        .map(|v| v.value()))
                })
                .collect()
        })
    }

    fn stored_payloads(&self, from: u64, to: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        guarded("reading payloads", || {
            let mut out = Vec::new();
            self.payload_records(from, to, |i, r| {
                if !is_erased(&r) {
                    out.push(i);
                }
                Ok(out.len() < limit)
            })?;
            Ok(out)
        })
    }

    fn payloads(&self, from: u64, to: u64) -> Result<Vec<(u64, Payload)>, StoreError> {
        guarded("reading payloads", || {
            let mut out = Vec::new();
            self.payload_records(from, to, |i, r| {
                out.push((i, decode_payload(i, &r)?));
                Ok(true)
            })?;
            Ok(out)
        })
    }

    fn event_index(&self) -> Result<(Vec<(Hash, u64)>, Vec<(u64, u64)>), StoreError> {
        guarded("reading the event index", || {
            let mut keys = Vec::new();
            if let Some(t) = self.event_table(EVENT_KEYS)? {
                for row in t.iter().map_err(engine)? {
                    let (k, v) = row.map_err(engine)?;
                    let k = Hash::from_slice(k.value())
                        .map_err(|_| StoreError::Corrupt("an event key is not 32 bytes".into()))?;
                    keys.push((k, v.value()));
                }
            }
            let mut times = Vec::new();
            if let Some(t) = self.event_table(LOG_TIMES)? {
                for row in t.iter().map_err(engine)? {
                    times.push(row.map_err(engine)?.0.value());
                }
            }
            Ok((keys, times))
        })
    }

    fn first_logged_at(&self, time_ms: u64) -> Result<Option<u64>, StoreError> {
        guarded("reading log times", || {
            let Some(table) = self.event_table(LOG_TIMES)? else {
                return Ok(None);
            };
            let mut range = table.range((time_ms, 0)..).map_err(engine)?;
            match range.next() {
                Some(row) => Ok(Some(row.map_err(engine)?.0.value().1)),
                None => Ok(None),
            }
        })
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        guarded("reading the head", || {
            match self.meta_unguarded(HEAD_KEY)? {
                Some(v) => decode_head(&v).map(Some),
                None => self
                    .latest_checkpoint_unguarded()?
                    .map(|c| legacy_head(&c.note))
                    .transpose(),
            }
        })
    }
}

/// The first index of the payload chunk that may hold event `index`: the
/// last chunk starting at or before it.
pub(super) fn chunk_holding(
    t: &impl redb::ReadableTable<u64, &'static [u8]>,
    index: u64,
) -> Result<Option<u64>, StoreError> {
    Ok(t.range(..=index)
        .map_err(engine)?
        .next_back()
        .transpose()
        .map_err(engine)?
        .map(|(k, _)| k.value()))
}
