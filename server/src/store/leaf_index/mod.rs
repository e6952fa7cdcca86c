//! The leaf-hash index (first 8 bytes of a leaf hash → entry index) as a
//! small log-structured merge tree, the same for every engine; each engine
//! stores its blocks and state ([`crate::store::redb`] in a table of its
//! file, [`crate::store::postgres`] in `quire_leaf_blocks` and
//! `quire_meta`).
//!
//! Random keys inserted one at a time into a B-tree rewrite about one page
//! per entry (redb's copy-on-write pages; PostgreSQL's index pages and their
//! write-ahead log), which bounded writes. Here:
//! - the newest leaves live in a memtable ([`memtable`]). It needs no write
//!   of its own: it is rebuilt from the level-0 tile rows, which every
//!   commit stores anyway;
//! - when it holds `flush` leaves, the commit that crosses the mark writes
//!   them as one sorted *run* of blocks of [`BLOCK_PAIRS`] pairs;
//! - adjacent runs of similar size are merged a bounded step at a time inside
//!   ordinary commits, and the blocks of merged-away runs are deleted the
//!   same way, so no commit stalls on a large merge and runs stay few
//!   (about log2 of the tree size over `flush`) ([`step`]).
//!
//! The index state ([`IndexState`]: the runs, the merge in progress, the runs
//! to delete) is stored in the same transaction as the blocks it describes,
//! so a crash leaves either the old or the new state, never a mix. A step is
//! computed from what is stored ([`BlockSource`]) into [`Changes`] that the
//! engine writes in its commit.
//!
//! Out of scope: the full-hash check of a candidate index (engines read the
//! leaf's tile row), and which leaves a commit adds (the sequencer's).

pub(crate) mod bloom;
pub(crate) mod cache;
pub(crate) mod memtable;
pub(crate) mod state;
pub(crate) mod step;

use std::collections::BTreeMap;

use quire_core::Hash;

pub(crate) use state::{IndexState, Run};

/// A map keyed by leaf hashes or their prefixes, which clients can grind
/// (a few hundred thousand SHA-256 computations put an entry's key in a
/// chosen bucket of a map with a fixed or identity hash): hashed with a
/// seed random per process. The memtable's maps, the sequencer's map of a
/// commit's own leaves and best-effort dedup's recent leaves.
pub(crate) type LeafMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) use step::{write_step, MergeBloom, MergeWritten, Runs, Shape, Step, Written};

use crate::store::StoreError;

/// Key of the encoded [`IndexState`] in an engine's metadata.
pub(crate) const STATE_KEY: &str = "leaf_index";
/// Leaves held in memory before they are written as a run.
pub const DEFAULT_FLUSH: usize = 1 << 18;
/// Pairs per block: a block and its key fit one 4 KiB page.
pub(crate) const BLOCK_PAIRS: usize = 240;
/// Bytes of one (key, index) pair.
pub(crate) const PAIR: usize = 16;

/// A block's key: (run id, first key, first index).
pub(crate) type BlockKey = (u64, u64, u64);

/// The key of a leaf hash: its first 8 bytes. The full hash is checked
/// against the tile row before an index is returned.
pub(crate) fn key(leaf: &Hash) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&leaf.0[..8]);
    u64::from_be_bytes(k)
}

pub(crate) fn put_pair(out: &mut Vec<u8>, (k, i): (u64, u64)) {
    out.extend_from_slice(&k.to_be_bytes());
    out.extend_from_slice(&i.to_be_bytes());
}

/// The pairs of a block, in order (a trailing partial pair is ignored).
pub(crate) fn pairs_of(block: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    block.chunks_exact(PAIR).map(|c| {
        let mut k = [0u8; 8];
        let mut i = [0u8; 8];
        k.copy_from_slice(&c[..8]);
        i.copy_from_slice(&c[8..]);
        (u64::from_be_bytes(k), u64::from_be_bytes(i))
    })
}

/// Collects up to `max` pairs after `after` from blocks given in order.
pub(crate) struct PairsAfter {
    out: Vec<(u64, u64)>,
    after: Option<(u64, u64)>,
    max: usize,
    full: bool,
}

impl PairsAfter {
    pub(crate) fn new(after: Option<(u64, u64)>, max: usize) -> Self {
        PairsAfter {
            out: Vec::with_capacity(max.min(1 << 16)),
            after,
            max,
            full: false,
        }
    }

    /// Takes the next block's pairs; false once `max` are taken.
    pub(crate) fn take(&mut self, block: &[u8]) -> bool {
        for p in pairs_of(block) {
            if self.after.is_some_and(|a| p <= a) {
                continue;
            }
            if self.out.len() == self.max {
                self.full = true;
                return false;
            }
            self.out.push(p);
        }
        true
    }

    /// The pairs, and whether the blocks ran out before `max` was reached.
    pub(crate) fn finish(self) -> (Vec<(u64, u64)>, bool) {
        (self.out, !self.full)
    }
}

/// Appends the indexes stored under `key` in `block` to `out`.
pub(crate) fn block_lookup(block: &[u8], key: u64, out: &mut Vec<u64>) {
    let n = block.len() / PAIR;
    // Lower bound of `key` in the block.
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = usize::midpoint(lo, hi);
        let mut kb = [0u8; 8];
        kb.copy_from_slice(&block[mid * PAIR..mid * PAIR + 8]);
        if u64::from_be_bytes(kb) < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (k, i) in pairs_of(&block[lo * PAIR..]) {
        if k != key {
            break;
        }
        out.push(i);
    }
}

/// `pairs` (sorted) as blocks of run `run`.
pub(crate) fn blocks_of(run: u64, pairs: &[(u64, u64)]) -> Vec<(BlockKey, Vec<u8>)> {
    pairs
        .chunks(BLOCK_PAIRS)
        .map(|chunk| {
            let mut bytes = Vec::with_capacity(chunk.len() * PAIR);
            for p in chunk {
                put_pair(&mut bytes, *p);
            }
            let (k, i) = chunk[0];
            ((run, k, i), bytes)
        })
        .collect()
}

/// Read access to the stored blocks, as a step needs it.
pub(crate) trait BlockSource {
    /// Up to `max` pairs of `run` after `after`, in order; and whether the
    /// run has no more.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn pairs_after(
        &self,
        run: u64,
        after: Option<(u64, u64)>,
        max: usize,
    ) -> Result<(Vec<(u64, u64)>, bool), StoreError>;

    /// The keys of the first `max` blocks of `run`.
    ///
    /// # Errors
    /// [`StoreError`] from the engine.
    fn block_keys(&self, run: u64, max: usize) -> Result<Vec<BlockKey>, StoreError>;
}

/// Blocks to write and delete: what a step changes.
#[derive(Default)]
pub(crate) struct Changes {
    pub(crate) puts: BTreeMap<BlockKey, Vec<u8>>,
    pub(crate) deletes: Vec<BlockKey>,
}

/// The stored blocks as a step sees them: `source` with the step's own
/// writes and deletions over it.
pub(crate) struct Staged<'a, S: ?Sized> {
    source: &'a S,
    pub(crate) changes: Changes,
}

impl<'a, S: BlockSource + ?Sized> Staged<'a, S> {
    pub(crate) fn new(source: &'a S) -> Self {
        Staged {
            source,
            changes: Changes::default(),
        }
    }

    pub(crate) fn put(&mut self, run: u64, pairs: &[(u64, u64)]) {
        self.changes.puts.extend(blocks_of(run, pairs));
    }

    fn staged_run(&self, run: u64) -> impl Iterator<Item = (&BlockKey, &Vec<u8>)> {
        self.changes
            .puts
            .range((run, 0, 0)..=(run, u64::MAX, u64::MAX))
    }

    /// As [`BlockSource::pairs_after`]. A run is stored whole or staged
    /// whole: a flush writes all of a run in one step, and a merge's output
    /// is read only once it is complete.
    pub(crate) fn pairs_after(
        &self,
        run: u64,
        after: Option<(u64, u64)>,
        max: usize,
    ) -> Result<(Vec<(u64, u64)>, bool), StoreError> {
        if self.staged_run(run).next().is_none() {
            return self.source.pairs_after(run, after, max);
        }
        let mut pairs = PairsAfter::new(after, max);
        for (_, block) in self.staged_run(run) {
            if !pairs.take(block) {
                break;
            }
        }
        Ok(pairs.finish())
    }

    /// Deletes up to `max` blocks of `run`; returns how many it deleted.
    pub(crate) fn delete(&mut self, run: u64, max: usize) -> Result<usize, StoreError> {
        let staged: Vec<BlockKey> = self.staged_run(run).take(max).map(|(k, _)| *k).collect();
        for k in &staged {
            self.changes.puts.remove(k);
        }
        let mut n = staged.len();
        if n < max {
            let stored = self.source.block_keys(run, max - n)?;
            n += stored.len();
            self.changes.deletes.extend(stored);
        }
        Ok(n)
    }
}
