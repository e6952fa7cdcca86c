//! Storage of one log, behind a trait so that other engines can follow the
//! embedded default ([`redb::RedbStore`]).
//!
//! What is stored:
//! - entries in bundles of 256 ([`bundle`]), compressed when that saves space;
//! - hashes in C2SP `tlog-tiles` rows: tile `(L, N)` holds up to 256 hashes
//!   of tree level `8L`, beside a mid row of its (up to 16) hashes of level
//!   `8L+4`; the levels between are recomputed on read from at most 8
//!   stored hashes;
//! - a leaf-hash → index map for dedup and proof-by-hash, as a small LSM tree
//!   whose newest part is rebuilt from the tiles at start;
//! - every signed checkpoint, with the time it was signed, and the witness
//!   cosignatures collected for it;
//! - for a log in event mode, payloads, the newest event of each key and
//!   the log time of each commit ([`events`]).
//!
//! A [`Commit`] lands in one durable transaction, or not at all.

pub mod any;
pub mod bundle;
mod error;
pub mod events;
pub(crate) mod leaf_index;
pub mod memory;
pub mod postgres;
pub mod redb;
pub(crate) mod rows;

use quire_core::node::{TileId, TILE_HEIGHT, TILE_WIDTH};
use quire_core::{Hash, HashReader, NodeId};

pub(crate) use error::is_full;
pub use error::{Cause, StoreError};
pub use events::{EventRows, Payload, StoredPayload};

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// When it was signed, Unix milliseconds.
    pub signed_at_ms: u64,
    /// The signed note.
    pub note: Vec<u8>,
}

/// A log's tree as its storage holds it: the compare-and-swap value of
/// every commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Entries stored.
    pub size: u64,
    /// The root of their tree.
    pub root: Hash,
}

impl Head {
    /// The empty tree: what a new store extends.
    pub fn empty() -> Self {
        Head {
            size: 0,
            root: quire_core::empty_root(),
        }
    }
}

impl Default for Head {
    fn default() -> Self {
        Self::empty()
    }
}

/// The refusal of a commit whose leaves were said new ([`Commit::new_leaves`]):
/// `stored` of its `of` leaf hashes are stored already.
#[must_use]
pub fn leaves_stored(stored: usize, of: usize) -> StoreError {
    StoreError::LeafStored(format!(
        "{stored} of the commit's {of} leaf hashes said new are stored already"
    ))
}

/// The compare-and-swap of a commit: the store's head must be `c.base`
/// (an empty store's head is the empty tree).
///
/// # Errors
/// [`StoreError::Conflict`] naming both heads.
pub fn check_head(stored: Option<Head>, c: &Commit) -> Result<(), StoreError> {
    let stored = stored.unwrap_or_default();
    if stored == c.base {
        return Ok(());
    }
    Err(StoreError::Conflict {
        expected: c.base,
        found: stored,
    })
}

/// Everything one sequencer batch writes, committed atomically, or not at
/// all when the store's head is not the one it extends.
#[derive(Debug, Default)]
pub struct Commit {
    /// The tree the commit extends; its size is the index of the first new
    /// entry.
    pub base: Head,
    /// The tree after the commit.
    pub head: Head,
    /// New entries, in index order.
    pub entries: Vec<Vec<u8>>,
    /// Every node the appends completed, at every level, in completion
    /// order. Each engine keeps what its layout needs (redb: the levels
    /// divisible by 4, its tile and mid rows).
    pub nodes: Vec<(NodeId, Hash)>,
    /// New leaf hash → index pairs for the dedup index.
    pub leaf_index: Vec<(Hash, u64)>,
    /// The checkpoint that covers the new tree.
    pub checkpoint: Option<StoredCheckpoint>,
    /// Older checkpoints of sizes within this commit's entries, copied
    /// with them from another store (`quire-server migrate`); stored like
    /// `checkpoint`. Empty for the sequencer's commits.
    pub history: Vec<StoredCheckpoint>,
    /// Metadata to set (the origin, on the first commit of a log).
    pub meta: Vec<(String, Vec<u8>)>,
    /// Every hash of `leaf_index` is new to the log, unchecked by the
    /// caller: the engine checks it inside the transaction and refuses the
    /// commit with [`StoreError::LeafStored`] otherwise. Only for an engine
    /// that says it can ([`Storage::checks_new_leaves`]); one that cannot
    /// refuses such a commit.
    pub new_leaves: bool,
    /// The rows of the commit's events (a log in event mode).
    pub events: EventRows,
}

/// Metadata key of an import in progress: `"<target size> <stored size>"`,
/// empty when none is.
pub const IMPORT_META: &str = "import";

/// The progress of an interrupted import (`quire-server import`), if any:
/// the size it brings the log to and the size stored so far.
///
/// # Errors
/// [`StoreError::Corrupt`] for a damaged progress record.
pub fn import_progress<R: StorageReader>(r: &R) -> Result<Option<(u64, u64)>, StoreError> {
    let Some(v) = r.meta(IMPORT_META)? else {
        return Ok(None);
    };
    if v.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&v);
    let mut parts = text.split(' ').map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(target)), Some(Ok(stored)), None) if stored <= target => {
            Ok(Some((target, stored)))
        }
        _ => Err(StoreError::Corrupt(format!(
            "import progress record {text:?}"
        ))),
    }
}

/// `e`, a failure to read entries from `start`, as
/// [`StoreError::Dropped`] when they are missing because the log dropped
/// them.
pub fn dropped_or<R: StorageReader + ?Sized>(r: &R, start: u64, e: StoreError) -> StoreError {
    if !matches!(e, StoreError::Missing(_)) {
        return e;
    }
    match crate::lifecycle::stored_dropped(r) {
        Ok(Some(d)) if start < d.size => StoreError::Dropped(d),
        Ok(_) => e,
        Err(read) => read,
    }
}

/// One log's storage.
pub trait Storage: Send + Sync + 'static {
    /// A consistent read view.
    type Reader: StorageReader;

    /// Opens a read view of the last commit.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn reader(&self) -> Result<Self::Reader, StoreError>;

    /// A read view, as [`Storage::reader`], whose head and latest checkpoint
    /// are as durable as an acknowledged commit: what a server takes from
    /// storage to serve, record or sequence on. PostgreSQL with synchronous
    /// standbys waits for them to flush what the view saw (a primary
    /// restarted after a crash shows commits no standby confirmed, which a
    /// failover may drop); the embedded engines' reads are durable already.
    ///
    /// # Errors
    /// [`StoreError::NotDurable`] when that cannot be shown in time, or
    /// [`StoreError`] from the engine.
    fn durable_reader(&self) -> Result<Self::Reader, StoreError> {
        self.reader()
    }

    /// Tells the store that `view` is durable, as shown outside it (no
    /// newer than what the server recorded as published). PostgreSQL
    /// builds the leaf index filters of runs over durable leaves only; the
    /// embedded engines' reads are durable already.
    fn shown_durable(&self, view: &Self::Reader) {
        let _ = view;
    }

    /// Whether a read may wait on the network (a database server): then
    /// the log API never runs it on one of the runtime's workers, even the
    /// short reads it runs inline on an embedded engine.
    fn reads_wait_on_network(&self) -> bool {
        false
    }

    /// Whether the engine checks, inside a commit, that leaves said new are
    /// new ([`Commit::new_leaves`]). Strict dedup then skips its lookup
    /// before a batch (a round trip to a database server) and pays for a
    /// duplicate with a second attempt instead.
    fn checks_new_leaves(&self) -> bool {
        false
    }

    /// What resumes a log's writes once a storage failure stopped its
    /// sequencer, as its writers are told: an embedded engine must be
    /// reopened (a restart) before anyone knows what reached the disk.
    fn resume_after_stop(&self) -> &'static str {
        "fix the disk and restart the server"
    }

    /// Whether this writer may sign and commit now: engines shared by
    /// several servers answer [`StoreError::NotLeader`] once this one's
    /// lease is gone (checked again inside every commit). The sequencer
    /// asks before it signs a batch.
    ///
    /// # Errors
    /// [`StoreError::NotLeader`].
    fn writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A read view bounded by `head` and `latest`, a tree and checkpoint
    /// this store is known to hold (the log's published checkpoint): the
    /// same reads as [`Storage::reader`] at that size. An engine may make
    /// it without reading anything (PostgreSQL saves a round trip); the
    /// default opens a view of the last commit.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn reader_at(&self, head: Head, latest: &StoredCheckpoint) -> Result<Self::Reader, StoreError> {
        let _ = (head, latest);
        self.reader()
    }

    /// Writes `commit` in one durable transaction.
    ///
    /// # Errors
    /// [`StoreError`]; nothing is written then.
    fn commit(&self, commit: &Commit) -> Result<(), StoreError>;

    /// Writes `commit` in one transaction that later commits may extend
    /// at once, but that is durable only once [`Storage::settle`] returns
    /// after it: the sequencer's commits, answered and published only
    /// then. PostgreSQL commits it without waiting for its WAL flush and
    /// its synchronous standbys, so that the next commit runs while they
    /// confirm this one; an engine whose commits are durable when they
    /// return writes it as [`Storage::commit`] does. No default: a
    /// wrapper must forward it, not fall back to another commit.
    ///
    /// # Errors
    /// As [`Storage::commit`].
    fn commit_unsettled(&self, commit: &Commit) -> Result<(), StoreError>;

    /// Waits until every commit [`Storage::commit_unsettled`] returned
    /// whose tree is of `size` or smaller is as durable as
    /// [`Storage::commit`] makes one (PostgreSQL: flushed, and on the
    /// synchronous standbys required, on the server that holds it).
    /// Returns at once when there is none. No default, as for
    /// [`Storage::commit_unsettled`].
    ///
    /// # Errors
    /// [`StoreError::NotReplicated`] when too few synchronous standbys
    /// stream (a later commit, once settled, settles them too);
    /// [`StoreError::Engine`] when their outcome is unknown (the
    /// connection lost, or the server that answered does not hold them,
    /// as after a failover): nothing they carry may be answered or
    /// published then, and the head must be read again. Each failure is
    /// told once, to the call that waits for it.
    fn settle(&self, size: u64) -> Result<(), StoreError>;

    /// Keeps `lines`, the witness cosignature lines collected for the
    /// checkpoint of `size` (C2SP `tlog-cosignature` note signature lines),
    /// replacing what was kept for that size. Not part of the tree and not
    /// under the compare-and-swap; an engine may make them durable with its
    /// next commit rather than at once: cosignatures lost in a crash are
    /// collected again.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn keep_cosignatures(&self, size: u64, lines: &[u8]) -> Result<(), StoreError>;

    /// Replaces the event indexes (a log in event mode): the newest event
    /// of each key and the log-time rows, by `keys` and `times` (rebuilt
    /// from the envelopes, `quire-server reindex`). Not under the
    /// compare-and-swap: for a log no server is writing.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn replace_event_index(
        &self,
        keys: &[(Hash, u64)],
        times: &[(u64, u64)],
    ) -> Result<(), StoreError>;

    /// Drops the entries of a frozen log: deletes its entry bundles (and,
    /// in event mode, its payloads and salts) and sets the metadata
    /// [`crate::lifecycle::DROPPED_META`] to `dropped` in the same
    /// transaction. Its tiles, leaf index, event indexes, checkpoints and
    /// cosignatures stay. Not under the compare-and-swap: the caller has
    /// checked that the log is frozen at `dropped.size`, so no writer
    /// commits to it again. Dropping again is no change but the record.
    ///
    /// # Errors
    /// [`StoreError`] from the engine; nothing is deleted then.
    fn drop_entries(&self, dropped: crate::lifecycle::Dropped) -> Result<(), StoreError>;
}

/// A consistent read view of one log's storage.
pub trait StorageReader: HashReader<Error = StoreError> {
    /// The latest signed checkpoint, if any.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// The checkpoint of exactly `size`, if one was signed.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// Up to `limit` stored checkpoints of size `from` and above, in size
    /// order.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// Entries `[start, end)`; all must be stored.
    ///
    /// # Errors
    /// [`StoreError::Missing`] past the stored entries.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError>;

    /// [`StorageReader::entries`], each checked against its stored leaf
    /// hash (one SHA-256 per entry, one read per tile), so that a damaged
    /// entry is never served as if it were the logged one.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming the first entry that does not hash to
    /// its stored leaf hash; otherwise as [`StorageReader::entries`].
    fn checked_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let entries = self
            .entries(start, end)
            .map_err(|e| dropped_or(self, start, e))?;
        let nodes: Vec<NodeId> = (start..end).map(NodeId::leaf).collect();
        let leaves = self.read_hashes(&nodes)?;
        for ((i, e), h) in (start..).zip(&entries).zip(&leaves) {
            if quire_core::leaf_hash(e) != *h {
                return Err(StoreError::Corrupt(format!(
                    "entry {i} does not hash to its stored leaf hash"
                )));
            }
        }
        Ok(entries)
    }

    /// The first `width` hashes (1 to 256) of C2SP `tlog-tiles` tile
    /// `tile`: nodes `256 × index` and on of tree level `8 × level`. All
    /// must be stored; a prefix of a row never changes once stored, so a
    /// partial tile of any width up to what is stored is served the same.
    ///
    /// # Errors
    /// [`StoreError::Missing`] for a node not stored; otherwise as
    /// [`HashReader::read_hashes`].
    fn tile_hashes(&self, tile: TileId, width: u16) -> Result<Vec<Hash>, StoreError> {
        let level = tile.level.saturating_mul(TILE_HEIGHT);
        let first = tile.index.saturating_mul(TILE_WIDTH);
        let nodes: Vec<NodeId> = (0..u64::from(width))
            .map(|i| NodeId {
                level,
                index: first.saturating_add(i),
            })
            .collect();
        self.read_hashes(&nodes)
    }

    /// The first `width` entries (1 to 256) of C2SP `tlog-tiles` entry
    /// bundle `index`, each checked against its leaf hash
    /// ([`StorageReader::checked_entries`]).
    ///
    /// # Errors
    /// As [`StorageReader::checked_entries`].
    fn bundle_entries(&self, index: u64, width: u16) -> Result<Vec<Vec<u8>>, StoreError> {
        let start = index.saturating_mul(TILE_WIDTH);
        self.checked_entries(start, start.saturating_add(u64::from(width)))
    }

    /// For each leaf hash, the lowest index of an entry in this view with
    /// that leaf hash, if any (under strict dedup, the only one). One call
    /// per batch: lookups share their reads.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn find_leaves(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError>;

    /// [`StorageReader::find_leaves`] for one leaf hash.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        Ok(self
            .find_leaves(std::slice::from_ref(leaf))?
            .pop()
            .flatten())
    }

    /// A metadata value.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The newest checkpoint size with cosignatures kept
    /// ([`Storage::keep_cosignatures`]), and those lines.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn latest_cosignatures(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// The head of this view: entries stored and their root (`None` for a
    /// store never committed to).
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn head(&self) -> Result<Option<Head>, StoreError>;

    /// The payload of event `index` (a log in event mode), or its
    /// erasure; `None` for an event that never had one.
    ///
    /// # Errors
    /// [`StoreError`] from the engine; [`StoreError::Corrupt`] for a
    /// damaged record.
    fn payload(&self, index: u64) -> Result<Option<Payload>, StoreError>;

    /// [`StorageReader::payload`] of every event in `[from, to)` that has
    /// one, in order. The default asks for each; an engine that stores
    /// payloads together reads each record once.
    ///
    /// # Errors
    /// As [`StorageReader::payload`].
    fn payloads(&self, from: u64, to: u64) -> Result<Vec<(u64, Payload)>, StoreError> {
        let mut out = Vec::new();
        for i in from..to {
            if let Some(p) = self.payload(i)? {
                out.push((i, p));
            }
        }
        Ok(out)
    }

    /// For each key ([`quire_core::event::key`]), the newest event with it
    /// that the store holds (the sequencer's view; a reader bounds what it
    /// finds by its own size).
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn newest_events(&self, keys: &[Hash]) -> Result<Vec<Option<u64>>, StoreError>;

    /// The index of the first event logged at or after `time_ms` (Unix
    /// ms), if the store holds one.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn first_logged_at(&self, time_ms: u64) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` indexes in `[from, to)` of events whose payload is
    /// stored (not erased), in order: what retention erases.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn stored_payloads(&self, from: u64, to: u64, limit: usize) -> Result<Vec<u64>, StoreError>;

    /// The event indexes as stored: every key with its newest event, and
    /// every (log time, first index) row. For `quire-server reindex`,
    /// which compares them with the envelopes.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    #[allow(clippy::type_complexity)]
    fn event_index(&self) -> Result<(Vec<(Hash, u64)>, Vec<(u64, u64)>), StoreError>;
}
