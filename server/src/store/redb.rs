//! The embedded default storage: one redb file per log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use quire_core::node::{TileId, TileSpan, TILE_HEIGHT};
use quire_core::{perfect_root, Hash, HashReader, NodeId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::bundle::{self, BUNDLE_SIZE};
use super::index_cache::{Builder, IndexCache, Memtable, SharedCache};
use super::leaf_index::{self, IndexState, MergeBloom, RUN_BLOCKS, STATE_KEY};
use super::{is_full, Commit, Storage, StorageReader, StoreError, StoredCheckpoint};

/// Bundle index → bundle record.
const BUNDLES: TableDefinition<u64, &[u8]> = TableDefinition::new("bundles");
/// (tile level, tile index) → row hashes, 32 bytes each.
const TILES: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("tiles");
/// (tile level L, tile index) → the tile's mid row: its up to 16 hashes of
/// tree level 8L+4. With it no node is more than 8 stored hashes away, so a
/// proof step costs at most 7 hashes instead of up to 127; 2 bytes per entry.
const MIDS: TableDefinition<(u8, u64), &[u8]> = TableDefinition::new("mid_rows");
/// Tree level of a mid row within its tile.
const MID: u8 = TILE_HEIGHT / 2;
/// Hashes in a full mid row.
const MID_WIDTH: u64 = 1 << MID;
/// Hashes a tile record holds: all but the row's last, which is kept after
/// the mid row instead. A full row of 256 hashes (8 KiB) and its key would
/// need three pages, and redb allocates powers of two (16 KiB); 255 hashes
/// fit two pages exactly. This saves 32 bytes per entry.
const MAIN_SLOTS: u64 = 255;

/// Where a node's hash is computed from: a run of `count` hashes from
/// `offset` in the main row (`mid` false) or the mid row of `tile`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RowSpan {
    mid: bool,
    tile: TileId,
    offset: u64,
    count: u64,
}

/// One stored run of hashes: `count` from `slot` of a tile (`mid` false)
/// or mid record (`mid` true).
#[derive(Clone, Copy)]
struct Part {
    mid: bool,
    tile: TileId,
    slot: u64,
    count: u64,
}

impl RowSpan {
    /// Where this span's hashes are stored: the tile record, and for a span
    /// that reaches the row's last hash, the slot after the mid row.
    fn parts(self) -> (Part, Option<Part>) {
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

    fn of(node: NodeId) -> RowSpan {
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
/// Tree size → (signed at, Unix ms; signed note).
const CHECKPOINTS: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("checkpoints");
/// Named metadata (origin, format version).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Metadata key of the head: size (8 bytes, big-endian) and root.
const HEAD_KEY: &str = "head";

fn encode_head(h: super::Head) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[..8].copy_from_slice(&h.size.to_be_bytes());
    b[8..].copy_from_slice(h.root.as_bytes());
    b
}

/// The head of a store written before the head record existed: its latest
/// checkpoint's size and root.
fn legacy_head(note: &[u8]) -> Result<super::Head, StoreError> {
    let cp = quire_core::Note::parse(note)
        .ok()
        .and_then(|n| quire_core::Checkpoint::parse(n.text().as_bytes()).ok())
        .ok_or_else(|| StoreError::Corrupt("the latest checkpoint does not parse".into()))?;
    Ok(super::Head {
        size: cp.size(),
        root: *cp.root(),
    })
}

fn decode_head(b: &[u8]) -> Result<super::Head, StoreError> {
    let (Some(size), Some(root)) = (b.get(..8), b.get(8..)) else {
        return Err(StoreError::Corrupt("head record".into()));
    };
    let root = Hash::from_slice(root).map_err(|_| StoreError::Corrupt("head record".into()))?;
    let mut s = [0u8; 8];
    s.copy_from_slice(size);
    Ok(super::Head {
        size: u64::from_be_bytes(s),
        root,
    })
}

/// A redb error as a [`StoreError`]: a full disk, a reached quota or a file
/// size limit become [`StoreError::Full`], so that callers can say so.
pub(crate) fn engine<E: Into<redb::Error>>(e: E) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if is_full(&io) => StoreError::Full(io.to_string()),
        other => StoreError::Engine(other.to_string()),
    }
}

/// Runs `f`, turning a panic inside the storage engine into
/// [`StoreError::Corrupt`]. redb trusts its own pages: a damaged file can
/// make it panic (an assertion, an index out of bounds). Every call into the
/// engine goes through here, so damage is a clear error, never a crash.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(StoreError::Corrupt(format!(
                "{what}: the storage engine failed on damaged data ({msg})"
            )))
        }
    }
}

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
        }
        txn.commit().map_err(engine)?;
        let db = Arc::new(db);
        let txn = db.begin_read().map_err(engine)?;
        let state = index_state(&txn)?;
        let reader = RedbReader {
            txn,
            db: Arc::clone(&db),
            cache: Arc::new(RwLock::new(IndexCache::new(Memtable::default(), &state))),
        };
        let covered = state.covered();
        // Every stored leaf, also those of an interrupted import beyond the
        // latest checkpoint, so that the import's later chunks index them.
        let size = reader
            .latest_checkpoint()?
            .map_or(0, |c| c.size)
            .max(crate::import::import_progress(&reader)?.map_or(0, |(_, stored)| stored));
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
        let cache = Arc::new(RwLock::new(IndexCache::new(mem, &state)));
        let builder = Builder::spawn(Arc::clone(&db), Arc::clone(&cache))?;
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
}

impl RedbStore {
    fn commit_unguarded(&self, c: &Commit) -> Result<(), StoreError> {
        if c.leaf_index.len() != c.entries.len() {
            return Err(StoreError::Corrupt(format!(
                "commit of {} entries carries {} leaf hashes",
                c.entries.len(),
                c.leaf_index.len()
            )));
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
                super::check_head(stored, c)?;
            }
            write_bundles(&txn, c, self.opts.compress)?;
            write_tiles(&txn, &c.nodes)?;
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
                leaf_index::write_step(
                    &txn,
                    state,
                    &cache.mem,
                    &c.leaf_index,
                    self.opts.leaf_flush,
                    self.opts.leaf_filters.then_some(&mut *merge_bloom),
                )?
            };
            meta.insert(STATE_KEY, step.state.encode().as_slice())
                .map_err(engine)?;
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

fn write_bundles(
    txn: &redb::WriteTransaction,
    c: &Commit,
    compress: bool,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(BUNDLES).map_err(engine)?;
    let mut index = c.base.size;
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

/// A read view of a [`RedbStore`].
pub struct RedbReader {
    txn: redb::ReadTransaction,
    db: Arc<Database>,
    cache: SharedCache,
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

    fn find_leaves_unguarded(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let size = self.latest_checkpoint()?.map_or(0, |c| c.size);
        let keys: Vec<u64> = leaves.iter().map(leaf_index::key).collect();
        let mut candidates: Vec<Vec<u64>> = vec![Vec::new(); leaves.len()];
        let blooms = {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            for (k, c) in keys.iter().zip(&mut candidates) {
                cache.mem.get(*k, c);
            }
            cache.blooms()
        };
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
            // A run without a filter (being built) is probed for every key.
            let bloom = blooms.get(&run.id);
            for (k, c) in keys.iter().zip(&mut candidates) {
                if bloom.is_none_or(|b| b.may_contain(*k)) {
                    leaf_index::probe(&table, run, *k, c)?;
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

    fn head(&self) -> Result<Option<super::Head>, StoreError> {
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
