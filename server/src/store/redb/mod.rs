//! The embedded default storage: one redb file per log.
//!
//! Files: `layout` (tables, where each hash is stored, the head record),
//! [`write`] (a commit in one transaction), `read` (a snapshot's reads),
//! the leaf index's blocks (`leaf_blocks`; the index itself is
//! `crate::store::leaf_index`), and `error` (redb's failures and the
//! guard against its panics on damaged pages).

mod error;
pub(crate) mod layout;
mod leaf_blocks;
mod read;
mod write;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use quire_core::{HashReader, NodeId};
use redb::{Database, ReadableDatabase};

use crate::store::leaf_index::cache::{Builder, IndexCache, SharedCache};
use crate::store::leaf_index::memtable::Memtable;
use crate::store::leaf_index::{self, MergeBloom};
pub(crate) use error::engine;
use error::guarded;
use layout::{
    BUNDLES, CHECKPOINTS, COSIGNATURES, EVENT_KEYS, LOG_TIMES, META, MIDS, PAYLOADS, TILES,
};
use leaf_blocks::RUN_BLOCKS;
pub(crate) use read::index_state;
pub use read::RedbReader;

use crate::store::bundle;
use crate::store::{Commit, Storage, StorageReader, StoreError};

/// How a [`RedbStore`] is opened.
#[derive(Clone, Copy, Debug)]
pub struct RedbOptions {
    /// LZ4 for entry bundles where it saves space.
    pub compress: bool,
    /// redb's page cache, bytes (its own default is 1 GiB).
    pub cache_bytes: usize,
    /// Leaves kept in memory before the leaf index writes them as a run.
    pub leaf_flush: usize,
    /// Keep a Bloom filter per leaf-index run in memory (about one byte per
    /// leaf), so that strict dedup reads nothing from disk for a new entry.
    /// Without them, lookups (proof by hash) probe every run.
    pub leaf_filters: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            compress: true,
            cache_bytes: 32 << 20,
            leaf_flush: leaf_index::DEFAULT_FLUSH,
            leaf_filters: true,
        }
    }
}

/// Space use of a [`RedbStore`] (see [`RedbStore::space`]).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Space {
    /// Keys and values stored.
    pub stored_bytes: u64,
    /// redb's B-tree metadata.
    pub metadata_bytes: u64,
    /// Unused space inside allocated pages.
    pub fragmented_bytes: u64,
    /// Pages allocated, in bytes.
    pub allocated_bytes: u64,
}

/// A log stored in a redb file.
pub struct RedbStore {
    db: Arc<Database>,
    opts: RedbOptions,
    /// The in-memory part of the leaf index (see [`leaf_index`]).
    cache: SharedCache,
    /// The filter of the merge in progress (writer only).
    merge_bloom: Mutex<MergeBloom>,
    /// Builds the filters of runs that have none.
    builder: Builder,
}

impl RedbStore {
    /// Opens (or creates) the store at `path`, and rebuilds the in-memory
    /// part of the leaf index from the stored tile rows.
    ///
    /// # Errors
    /// [`StoreError::Engine`] when the file cannot be opened or created;
    /// [`StoreError::Corrupt`] or [`StoreError::Missing`] when the leaf index
    /// or the tiles it is rebuilt from are damaged.
    pub fn open(path: &Path, opts: RedbOptions) -> Result<Self, StoreError> {
        guarded("opening the database", || Self::open_unguarded(path, opts))
    }

    fn open_unguarded(path: &Path, opts: RedbOptions) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(engine)?;
        let txn = db.begin_write().map_err(engine)?;
        {
            txn.open_table(BUNDLES).map_err(engine)?;
            txn.open_table(TILES).map_err(engine)?;
            txn.open_table(MIDS).map_err(engine)?;
            txn.open_table(RUN_BLOCKS).map_err(engine)?;
            txn.open_table(CHECKPOINTS).map_err(engine)?;
            txn.open_table(META).map_err(engine)?;
            txn.open_table(COSIGNATURES).map_err(engine)?;
            txn.open_table(PAYLOADS).map_err(engine)?;
            txn.open_table(EVENT_KEYS).map_err(engine)?;
            txn.open_table(LOG_TIMES).map_err(engine)?;
            move_payload_rows(&txn)?;
        }
        txn.commit().map_err(engine)?;
        let db = Arc::new(db);
        let txn = db.begin_read().map_err(engine)?;
        let state = index_state(&txn)?;
        let reader = RedbReader {
            txn,
            db: Arc::clone(&db),
            cache: Arc::new(RwLock::new(IndexCache::new(
                Memtable::default(),
                &state,
                u64::MAX,
            ))),
        };
        let covered = state.covered();
        // Every stored leaf, also those of an interrupted import beyond the
        // latest checkpoint, so that the import's later chunks index them.
        let size = reader
            .latest_checkpoint()?
            .map_or(0, |c| c.size)
            .max(crate::store::import_progress(&reader)?.map_or(0, |(_, stored)| stored));
        let mut mem = Memtable::new(covered);
        let mut at = covered;
        while at < size {
            let upto = (at + 4096).min(size);
            let leaves: Vec<NodeId> = (at..upto).map(NodeId::leaf).collect();
            for (i, h) in (at..upto).zip(reader.read_hashes(&leaves)?) {
                mem.push(leaf_index::key(&h), i);
            }
            at = upto;
        }
        drop(reader);
        let cache = Arc::new(RwLock::new(IndexCache::new(mem, &state, u64::MAX)));
        let builder = Builder::spawn(build_filter(Arc::clone(&db)), Arc::clone(&cache))?;
        if opts.leaf_filters {
            for run in &state.runs {
                builder.queue(run.id);
            }
        }
        Ok(RedbStore {
            db,
            opts,
            cache,
            merge_bloom: Mutex::new(None),
            builder,
        })
    }
}

/// Builds a run's filter from the file.
fn build_filter(db: Arc<Database>) -> leaf_index::cache::BuildFilter {
    Box::new(move |id, stop| {
        let txn = db.begin_read().map_err(engine)?;
        let state = index_state(&txn)?;
        let Some(run) = state.runs.iter().find(|r| r.id == id).copied() else {
            return Ok(None);
        };
        let table = txn.open_table(RUN_BLOCKS).map_err(engine)?;
        leaf_blocks::build_bloom(&table, &run, stop)
    })
}

impl RedbStore {
    /// Sorted runs the leaf index holds on disk now (few: merges keep them
    /// near log2 of the tree size over the flush size).
    ///
    /// # Errors
    /// [`StoreError`] from the engine or a damaged index state.
    pub fn leaf_index_runs(&self) -> Result<usize, StoreError> {
        Ok(index_state(&self.reader()?.txn)?.runs.len())
    }

    /// How the file's space is used: bytes of stored keys and values, of
    /// redb's own metadata and of fragmentation inside allocated pages, and
    /// the pages allocated (the file grows in large steps ahead of use).
    ///
    /// # Errors
    /// [`StoreError::Engine`].
    pub fn space(&self) -> Result<Space, StoreError> {
        let txn = self.db.begin_write().map_err(engine)?;
        let stats = txn.stats().map_err(engine)?;
        txn.abort().map_err(engine)?;
        Ok(Space {
            stored_bytes: stats.stored_bytes(),
            metadata_bytes: stats.metadata_bytes(),
            fragmented_bytes: stats.fragmented_bytes(),
            allocated_bytes: stats.allocated_pages() * stats.page_size() as u64,
        })
    }

    /// Compacts the closed store at `path` (no process may have it open)
    /// and returns its size afterwards: the bytes the log really occupies,
    /// without the free space redb keeps after growing its file.
    ///
    /// # Errors
    /// [`StoreError::Engine`].
    pub fn compact_file(path: &Path) -> Result<u64, StoreError> {
        let mut db = Database::open(path).map_err(engine)?;
        while db.compact().map_err(engine)? {}
        drop(db);
        Ok(std::fs::metadata(path).map_err(engine)?.len())
    }

    /// The bytes each table of the closed redb file at `path` takes
    /// (stored, metadata and fragmented), by table name: what each part of
    /// a log costs on disk.
    ///
    /// # Errors
    /// [`StoreError::Engine`] from redb.
    pub fn table_bytes(path: &Path) -> Result<Vec<(String, u64)>, StoreError> {
        use redb::{ReadableDatabase as _, ReadableTableMetadata as _, TableHandle as _};
        let db = Database::open(path).map_err(engine)?;
        let txn = db.begin_read().map_err(engine)?;
        let mut out = Vec::new();
        for handle in txn.list_tables().map_err(engine)? {
            let name = handle.name().to_owned();
            let table = txn.open_untyped_table(handle).map_err(engine)?;
            let s = table.stats().map_err(engine)?;
            out.push((
                name,
                s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes(),
            ));
        }
        Ok(out)
    }

    /// Bytes held by the leaf index's in-memory filters (about one byte
    /// per indexed leaf once built).
    pub fn leaf_index_filter_bytes(&self) -> usize {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .bloom_bytes()
    }

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
            .insert(
                bundle,
                bundle::encode(entries, self.opts.compress).as_slice(),
            )
            .map_err(engine)?;
        txn.commit().map_err(engine)
    }
}

impl Storage for RedbStore {
    type Reader = RedbReader;

    fn reader(&self) -> Result<RedbReader, StoreError> {
        guarded("opening a read view", || {
            Ok(RedbReader {
                txn: self.db.begin_read().map_err(engine)?,
                db: Arc::clone(&self.db),
                cache: Arc::clone(&self.cache),
            })
        })
    }

    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        guarded("committing", || self.commit_unguarded(c))
    }

    /// A redb commit is durable when it returns.
    fn commit_unsettled(&self, c: &Commit) -> Result<(), StoreError> {
        self.commit(c)
    }

    fn settle(&self, _size: u64) -> Result<(), StoreError> {
        Ok(())
    }

    fn replace_event_index(
        &self,
        keys: &[(quire_core::Hash, u64)],
        times: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        guarded("replacing the event index", || {
            let txn = self.db.begin_write().map_err(engine)?;
            txn.delete_table(EVENT_KEYS).map_err(engine)?;
            txn.delete_table(LOG_TIMES).map_err(engine)?;
            {
                let mut k = txn.open_table(EVENT_KEYS).map_err(engine)?;
                for (key, i) in keys {
                    k.insert(key.as_bytes().as_slice(), *i).map_err(engine)?;
                }
                let mut t = txn.open_table(LOG_TIMES).map_err(engine)?;
                for row in times {
                    t.insert(*row, ()).map_err(engine)?;
                }
            }
            txn.commit().map_err(engine)
        })
    }

    fn drop_entries(&self, dropped: crate::lifecycle::Dropped) -> Result<(), StoreError> {
        guarded("dropping entries", || {
            use redb::ReadableTable as _;
            let txn = self.db.begin_write().map_err(engine)?;
            let frozen = txn
                .open_table(META)
                .map_err(engine)?
                .get(crate::lifecycle::LIFECYCLE_META)
                .map_err(engine)?
                .is_some();
            if !frozen {
                return Err(StoreError::engine(
                    "the log is not frozen in storage: its entries are kept",
                ));
            }
            // Deleting a table frees its pages (compaction returns them
            // to the file system).
            txn.delete_table(BUNDLES).map_err(engine)?;
            txn.delete_table(PAYLOADS).map_err(engine)?;
            txn.open_table(BUNDLES).map_err(engine)?;
            txn.open_table(META)
                .map_err(engine)?
                .insert(crate::lifecycle::DROPPED_META, dropped.encode().as_slice())
                .map_err(engine)?;
            txn.commit().map_err(engine)
        })
    }

    fn keep_cosignatures(&self, size: u64, lines: &[u8]) -> Result<(), StoreError> {
        guarded("keeping cosignatures", || {
            let mut txn = self.db.begin_write().map_err(engine)?;
            // Made durable by the sequencer's next commit: no fsync of its
            // own beside every batch's.
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::engine(e.to_string()))?;
            txn.open_table(COSIGNATURES)
                .map_err(engine)?
                .insert(size, lines)
                .map_err(engine)?;
            txn.commit().map_err(engine)
        })
    }
}

/// Moves payloads stored one row each (before chunks) into chunks, in the
/// transaction that opens the database, and drops their table.
fn move_payload_rows(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    use redb::{ReadableTable as _, TableHandle as _};
    let old = layout::PAYLOAD_ROWS.name();
    if !txn.list_tables().map_err(engine)?.any(|t| t.name() == old) {
        return Ok(());
    }
    {
        let rows = txn.open_table(layout::PAYLOAD_ROWS).map_err(engine)?;
        let mut chunks = txn.open_table(PAYLOADS).map_err(engine)?;
        let mut batch = Vec::new();
        let mut rows = rows.iter().map_err(engine)?.peekable();
        while let Some(row) = rows.next() {
            let (k, v) = row.map_err(engine)?;
            batch.push(crate::store::events::chunk_entry(k.value(), &[v.value()]));
            if batch.len() as u64 == crate::store::bundle::BUNDLE_SIZE || rows.peek().is_none() {
                for (first, c) in crate::store::events::chunks(&std::mem::take(&mut batch)) {
                    chunks.insert(first, c.as_slice()).map_err(engine)?;
                }
            }
        }
    }
    txn.delete_table(layout::PAYLOAD_ROWS).map_err(engine)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use redb::TableHandle as _;

    use super::*;
    use crate::store::events::{encode_erased, payload_parts, StoredPayload};
    use crate::store::Payload;

    fn stored(i: u64) -> StoredPayload {
        StoredPayload {
            index: i,
            salt: [u8::try_from(i % 251).unwrap(); 32],
            payload: format!("{{\"verb\":\"get\",\"seq\":{i}}}").into_bytes(),
        }
    }

    #[test]
    fn payloads_stored_one_row_each_move_into_chunks_when_the_database_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            // A database as written before chunks: 600 payload rows, every
            // seventh erased by event 1000.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(layout::PAYLOAD_ROWS).unwrap();
                for i in 0..600u64 {
                    let rec = if i % 7 == 0 {
                        encode_erased(1000)
                    } else {
                        payload_parts(&stored(i)).concat()
                    };
                    t.insert(i * 2, rec.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = RedbStore::open(&path, RedbOptions::default()).unwrap();
        let r = store.reader().unwrap();
        for i in 0..600u64 {
            let want = if i % 7 == 0 {
                Payload::Erased { by: 1000 }
            } else {
                Payload::Stored(StoredPayload {
                    index: i * 2,
                    ..stored(i)
                })
            };
            assert_eq!(r.payload(i * 2).unwrap(), Some(want));
            assert_eq!(r.payload(i * 2 + 1).unwrap(), None);
        }
        let kept: Vec<u64> = (0..600u64).filter(|i| i % 7 != 0).map(|i| i * 2).collect();
        assert_eq!(r.stored_payloads(0, 1200, 10_000).unwrap(), kept);
        assert_eq!(r.stored_payloads(301, 341, 3).unwrap(), vec![302, 304, 306]);
        drop(r);
        drop(store);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        assert!(!names.contains(&"event_payloads".to_owned()), "{names:?}");
        assert!(
            names.contains(&"event_payload_chunks".to_owned()),
            "{names:?}"
        );
    }
}
