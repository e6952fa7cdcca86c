//! Writing a commit: the compare-and-swap on the head, entry bundles, tile
//! and mid rows, the leaf index step, checkpoints and metadata, in one
//! transaction.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use quire_core::node::TileId;
use quire_core::{Hash, NodeId};
use redb::{ReadableTable, WriteTransaction};

use super::error::engine;
use super::layout::{
    decode_head, encode_head, legacy_head, RowSpan, BUNDLES, CHECKPOINTS, EVENT_KEYS, HEAD_KEY,
    LOG_TIMES, META, MID, MIDS, PAYLOADS, TILES,
};
use super::leaf_blocks::{self, Blocks, RUN_BLOCKS};
use super::RedbStore;
use crate::store::bundle::{self, BUNDLE_SIZE};
use crate::store::events::{
    chunk_entry, chunks, decode_chunk, encode_chunk, encode_erased, payload_parts,
};
use crate::store::leaf_index::bloom::Density;
use crate::store::leaf_index::{self, IndexState, STATE_KEY};
use crate::store::{Commit, EventRows, StoreError};

impl RedbStore {
    pub(super) fn commit_unguarded(&self, c: &Commit) -> Result<(), StoreError> {
        if c.leaf_index.len() != c.entries.len() {
            return Err(StoreError::Corrupt(format!(
                "commit of {} entries carries {} leaf hashes",
                c.entries.len(),
                c.leaf_index.len()
            )));
        }
        if c.new_leaves {
            // Its lookups are in memory: strict dedup looks up first.
            return Err(StoreError::engine(
                "redb does not check leaves inside a commit; look them up first",
            ));
        }
        let txn = self.db.begin_write().map_err(engine)?;
        let step;
        {
            // The compare-and-swap, inside the transaction that writes.
            {
                let meta = txn.open_table(META).map_err(engine)?;
                let stored = if let Some(v) = meta.get(HEAD_KEY).map_err(engine)? {
                    Some(decode_head(v.value())?)
                } else {
                    let cps = txn.open_table(CHECKPOINTS).map_err(engine)?;
                    let last = cps.last().map_err(engine)?;
                    last.map(|(_, v)| legacy_head(v.value().1)).transpose()?
                };
                crate::store::check_head(stored, c)?;
            }
            write_bundles(&txn, c, self.opts.compress)?;
            write_tiles(&txn, &c.nodes)?;
            if !c.events.is_empty() {
                write_payloads(&txn, &c.events)?;
                write_keys_and_times(&txn, &c.events)?;
            }
            let mut meta = txn.open_table(META).map_err(engine)?;
            meta.insert(HEAD_KEY, encode_head(c.head).as_slice())
                .map_err(engine)?;
            let state = match meta.get(STATE_KEY).map_err(engine)? {
                Some(v) => IndexState::decode(v.value())?,
                None => IndexState::default(),
            };
            // The sequencer is the only writer: the memtable does not change
            // while this commit is built.
            step = {
                let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
                let mut merge_bloom = self
                    .merge_bloom
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let mut blocks = txn.open_table(RUN_BLOCKS).map_err(engine)?;
                let (step, changes) = leaf_index::write_step(
                    &Blocks(&blocks),
                    state,
                    &cache.mem,
                    &c.leaf_index,
                    leaf_index::Shape {
                        flush: self.opts.leaf_flush,
                        fanout: 2,
                    },
                    leaf_index::Runs::Inline,
                    self.opts
                        .leaf_filters
                        .then_some((Density::Compact, &mut *merge_bloom)),
                )?;
                leaf_blocks::apply(&mut blocks, &changes)?;
                step
            };
            meta.insert(STATE_KEY, step.state.encode().as_slice())
                .map_err(engine)?;
            for (k, v) in &c.meta {
                meta.insert(k.as_str(), v.as_slice()).map_err(engine)?;
            }
            let mut cps = txn.open_table(CHECKPOINTS).map_err(engine)?;
            for cp in c.history.iter().chain(&c.checkpoint) {
                cps.insert(cp.size, (cp.signed_at_ms, cp.note.as_slice()))
                    .map_err(engine)?;
            }
        }
        txn.commit().map_err(engine)?;
        // Only after the runs are durable may the memtable forget leaves.
        let build = self
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply(step, &c.leaf_index);
        if let (Some(id), true) = (build, self.opts.leaf_filters) {
            self.builder.queue(id);
        }
        Ok(())
    }
}

fn write_bundles(txn: &WriteTransaction, c: &Commit, compress: bool) -> Result<(), StoreError> {
    let mut table = txn.open_table(BUNDLES).map_err(engine)?;
    let mut index = c.base.size;
    let mut pending = c.entries.as_slice();
    while !pending.is_empty() {
        let b = index / BUNDLE_SIZE;
        let have = index % BUNDLE_SIZE;
        let take = usize::try_from((BUNDLE_SIZE - have).min(pending.len() as u64)).unwrap_or(0);
        let record = if have == 0 {
            bundle::encode(&pending[..take], compress)
        } else {
            let rec = table
                .get(b)
                .map_err(engine)?
                .ok_or_else(|| StoreError::Missing(format!("entry bundle {b}")))?;
            #[allow(clippy::cast_possible_truncation)] // below 256
            bundle::append(rec.value(), have as usize, &pending[..take], compress).map_err(|e| {
                match e {
                    StoreError::Corrupt(why) => StoreError::Corrupt(format!("{why} (bundle {b})")),
                    other => other,
                }
            })?
        };
        table.insert(b, record.as_slice()).map_err(engine)?;
        pending = &pending[take..];
        index += take as u64;
    }
    Ok(())
}

/// The commit's payloads, in chunks, and its erasures.
fn write_payloads(txn: &WriteTransaction, rows: &EventRows) -> Result<(), StoreError> {
    let mut payloads = txn.open_table(PAYLOADS).map_err(engine)?;
    let mut entries: Vec<(u64, Vec<u8>)> = rows
        .payloads
        .iter()
        .map(|p| (p.index, chunk_entry(p.index, &payload_parts(p))))
        .collect();
    if !rows.erased_copies.is_empty() {
        entries.extend(
            rows.erased_copies
                .iter()
                .map(|&(i, by)| (i, chunk_entry(i, &[&encode_erased(by)]))),
        );
        entries.sort_unstable_by_key(|(i, _)| *i);
    }
    let entries: Vec<Vec<u8>> = entries.into_iter().map(|(_, e)| e).collect();
    for (first, chunk) in chunks(&entries) {
        payloads.insert(first, chunk.as_slice()).map_err(engine)?;
    }
    erase(&mut payloads, &rows.erased)
}

/// Replaces the records of the erased payloads (event, erasure event)
/// by erasure records, each chunk read and written once: the old chunk's
/// pages are freed with this commit (and compaction returns them).
fn erase(payloads: &mut redb::Table<u64, &[u8]>, erased: &[(u64, u64)]) -> Result<(), StoreError> {
    let mut by_chunk: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for &(index, by) in erased {
        let first = super::read::chunk_holding(&*payloads, index)?
            .ok_or_else(|| StoreError::Corrupt(format!("no payload chunk holds event {index}")))?;
        by_chunk.entry(first).or_default().push((index, by));
    }
    for (first, erasures) in by_chunk {
        let stored = payloads
            .get(first)
            .map_err(engine)?
            .map(|v| v.value().to_vec())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("the payload chunk of event {first} is gone"))
            })?;
        let mut records = decode_chunk(first, &stored)?;
        for (index, by) in erasures {
            let Some(r) = records.iter_mut().find(|(i, _)| *i == index) else {
                return Err(StoreError::Corrupt(format!(
                    "the payload chunk of event {first} does not hold event {index}"
                )));
            };
            r.1 = encode_erased(by);
        }
        payloads
            .insert(first, encode_chunk(&records).as_slice())
            .map_err(engine)?;
    }
    Ok(())
}

/// The newest event of each key of the commit, and its log time.
fn write_keys_and_times(txn: &WriteTransaction, rows: &EventRows) -> Result<(), StoreError> {
    let mut keys = txn.open_table(EVENT_KEYS).map_err(engine)?;
    for (k, i) in &rows.newest {
        keys.insert(k.as_bytes().as_slice(), *i).map_err(engine)?;
    }
    if let Some(t) = rows.time {
        let mut times = txn.open_table(LOG_TIMES).map_err(engine)?;
        times.insert(t, ()).map_err(engine)?;
    }
    Ok(())
}

fn write_tiles(txn: &WriteTransaction, rows: &[(NodeId, Hash)]) -> Result<(), StoreError> {
    let mut by_row: BTreeMap<(bool, TileId), Vec<(u64, Hash)>> = BTreeMap::new();
    for (node, hash) in rows {
        if node.level % MID != 0 {
            continue;
        }
        let (part, tail) = RowSpan::of(*node).parts();
        let part = tail.unwrap_or(part);
        by_row
            .entry((part.mid, part.tile))
            .or_default()
            .push((part.slot, *hash));
    }
    let mut tiles = txn.open_table(TILES).map_err(engine)?;
    let mut mids = txn.open_table(MIDS).map_err(engine)?;
    for ((mid, tile), hashes) in by_row {
        let table = if mid { &mut mids } else { &mut tiles };
        let key = (tile.level, tile.index);
        let mut bytes = match table.get(key).map_err(engine)? {
            Some(v) => v.value().to_vec(),
            None => Vec::new(),
        };
        // A row's last hash (slot 16 of the mid record) is reported before
        // the level-4 node that completes with it (slot 15).
        let mut hashes = hashes;
        hashes.sort_by_key(|(slot, _)| *slot);
        for (offset, h) in hashes {
            if bytes.len() as u64 != offset * 32 {
                return Err(StoreError::Corrupt(format!(
                    "{} row {key:?} holds {} hashes, the next is at {offset}",
                    if mid { "mid" } else { "tile" },
                    bytes.len() / 32
                )));
            }
            bytes.extend_from_slice(&h.0);
        }
        table.insert(key, bytes.as_slice()).map_err(engine)?;
    }
    Ok(())
}
