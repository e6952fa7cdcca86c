//! The leaf index in PostgreSQL ([`crate::store::leaf_index`]): sorted runs
//! of (key, index) pairs in `quire_leaf_blocks`, its state in `quire_meta`,
//! and in each replica's memory the newest leaves (read from the level-0
//! tile rows) and a filter per run.
//!
//! A commit writes index rows only for a merge under way (a bounded step),
//! never a row per entry: a random-keyed row per entry was half the cost
//! of a batched commit. A full memtable is written as a run beside the
//! commits and taken by a later one ([`super::runs_beside`]); inside a
//! commit only when that falls behind.
//!
//! Every replica keeps the same cache. The writer's follows its own commits;
//! a reader's view larger than the cache first reads the tile rows it
//! lacks. A lookup that probed runs reads the stored state again after the
//! probes: a run merged away meanwhile (whose blocks a later commit may
//! have deleted) makes it look again, so a probe never misses a leaf for
//! want of a block deleted under it. The writer's step is conditional on
//! the stored state it was computed from, checked inside the commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use quire_core::Hash;

use super::conn::int;
use super::leaf_blocks::{build_filter, db_key, probe, read_state, Blocks, Probes, ReadAhead};
use super::leaf_plan::NewLeaves;
use super::leaf_tail;
use super::merges_beside::{self, MERGE_INLINE_RUNS};
use super::run_writer::RunWriter;
use super::runs_beside::{self, Beside, Reservation, Stored, INLINE_AFTER};
use super::Shared;
use crate::store::leaf_index::bloom::{Bloom, Density};
use crate::store::leaf_index::cache::{Builder, IndexCache, SharedCache};
use crate::store::leaf_index::memtable::Memtable;
use crate::store::leaf_index::{
    self, block_lookup, Changes, IndexState, MergeBloom, Runs, Shape, Step,
};
use crate::store::StoreError;

/// Leaves a PostgreSQL log holds in memory before it writes them as a run,
/// as redb's (2^18): a replica that reloads its cache reads about this
/// many hashes (8 MiB in 16 statements: a first write 37 ms at most, beside
/// a lease of seconds; twice that at most while a run written beside the
/// commits waits), and the memtable's map holds up to about 9 MiB (18).
/// 2^16 wrote each pair more often and made more runs to probe: batched
/// writes 4–12% slower (`docs/PERFORMANCE.md`).
pub const DEFAULT_FLUSH: usize = leaf_index::DEFAULT_FLUSH;
/// Runs of similar size merged at once: each pair is written about
/// log8(leaves / flush) times, a third of what merging two at a time costs,
/// for up to 7 runs of a size to probe (with filters, in memory).
pub const DEFAULT_FANOUT: usize = 8;
/// Lookups that start again when runs were merged away under them.
const LOOKUP_ATTEMPTS: usize = 8;

/// One replica's part of the leaf index.
pub(super) struct LeafIndex {
    cache: SharedCache,
    /// The stored state the cache was built from or last committed: `None`
    /// until loaded, and after a commit that failed.
    known: Mutex<Option<IndexState>>,
    merge_bloom: Mutex<MergeBloom>,
    /// The writer's read-ahead of runs being merged or deleted.
    ahead: Mutex<ReadAhead>,
    /// Builds filters in the background; set once the store is shared.
    builder: OnceLock<Builder>,
    /// Runs written beside the commits ([`super::runs_beside`]).
    beside: Mutex<Beside>,
    runs: OnceLock<RunWriter>,
    shape: Shape,
}

/// A step computed for a commit, and what it was computed from.
pub(super) struct Planned {
    pub(super) step: Step,
    pub(super) changes: Changes,
    /// The stored state the step extends (no stored state is the empty
    /// one).
    pub(super) base: IndexState,
    /// The memtable's end the step extends.
    pub(super) base_size: u64,
    /// The reservations the commit changes, a run's and a merge's
    /// ([`super::runs_beside`]), and the runs to merge under a new one.
    pub(super) reservation: Reservation,
    pub(super) merge_reservation: Reservation,
    pub(super) merge_inputs: Option<Vec<leaf_index::Run>>,
    /// Runs written beside the commits taken: their ids and blocks.
    pub(super) taken: Vec<(u64, u64)>,
}

impl LeafIndex {
    pub(super) fn new(shape: Shape) -> Self {
        LeafIndex {
            // Nothing is known durable until a settle or a durable view
            // shows it.
            cache: Arc::new(RwLock::new(IndexCache::new(
                Memtable::default(),
                &IndexState::default(),
                0,
            ))),
            known: Mutex::new(None),
            merge_bloom: Mutex::new(None),
            ahead: Mutex::new(ReadAhead::new(shape.flush.max(1))),
            builder: OnceLock::new(),
            beside: Mutex::new(Beside::default()),
            runs: OnceLock::new(),
            shape: Shape {
                flush: shape.flush.max(1),
                fanout: shape.fanout,
            },
        }
    }

    /// Starts the thread that builds filters from `shared`'s database.
    ///
    /// # Errors
    /// [`StoreError::Engine`] when the thread cannot start.
    pub(super) fn start(&self, shared: &Arc<Shared>) -> Result<(), StoreError> {
        let builder = Builder::spawn(
            build_filter(Arc::downgrade(shared)),
            Arc::clone(&self.cache),
        )?;
        let _ = self.builder.set(builder);
        let _ = self.runs.set(RunWriter::spawn(&Arc::downgrade(shared))?);
        Ok(())
    }

    pub(super) fn beside(&self) -> std::sync::MutexGuard<'_, Beside> {
        self.beside.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a run written beside the commits waits to be taken (for
    /// tests).
    pub(super) fn run_ready(&self) -> bool {
        self.beside().ready.is_some()
    }

    /// Whether a merge written beside the commits waits to be taken (for
    /// tests).
    pub(super) fn merge_ready(&self) -> bool {
        self.beside().merge_ready.is_some()
    }

    fn queue(&self, id: u64) {
        if let Some(b) = self.builder.get() {
            b.queue(id);
        }
    }

    /// Brings the cache to cover leaves `[0, size)` and returns the state
    /// its runs follow. `fresh`: compare with the stored state even when
    /// the cache covers `size` already.
    fn sync(&self, shared: &Arc<Shared>, size: u64, fresh: bool) -> Result<IndexState, StoreError> {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        self.sync_locked(&mut known, shared, size, fresh)
    }

    /// [`LeafIndex::sync`] with the known state held: the writer's
    /// [`LeafIndex::committed`] waits for it, so the cache read next is the
    /// one this state's runs follow.
    fn sync_locked(
        &self,
        known: &mut Option<IndexState>,
        shared: &Arc<Shared>,
        size: u64,
        fresh: bool,
    ) -> Result<IndexState, StoreError> {
        let end = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .mem
            .end;
        if let (Some(state), false) = (&*known, fresh) {
            if end >= size {
                return Ok(state.clone());
            }
        }
        let stored = read_state(shared)?.unwrap_or_default();
        if known.as_ref() == Some(&stored) && end >= stored.covered() {
            if end < size {
                let hashes = leaf_tail::read(shared, end, size)?;
                let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
                for (i, h) in (end..).zip(&hashes) {
                    cache.mem.push(leaf_index::key(h), i);
                }
            }
            return Ok(stored);
        }
        let covered = stored.covered();
        let mut mem = Memtable::new(covered);
        if covered < size {
            for (i, h) in (covered..).zip(&leaf_tail::read(shared, covered, size)?) {
                mem.push(leaf_index::key(h), i);
            }
        }
        let missing = self
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .reset(mem, &stored);
        // The state changed under this cache (another writer's commits,
        // or none known yet): so may have the reservation.
        let mut b = self.beside();
        (b.stored, b.merge_stored) = (Stored::Unknown, Stored::Unknown);
        drop(b);
        for id in missing {
            self.queue(id);
        }
        *self
            .merge_bloom
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        *known = Some(stored.clone());
        Ok(stored)
    }

    /// The index's share of a commit of `leaves` onto a log of `base_size`
    /// leaves: computed from the stored blocks, written by the commit.
    ///
    /// # Errors
    /// [`StoreError`] from the database.
    pub(super) fn plan(
        &self,
        shared: &Arc<Shared>,
        base_size: u64,
        leaves: &[(Hash, u64)],
    ) -> Result<Planned, StoreError> {
        let mut state = self.sync(shared, base_size, false)?;
        let mem_end = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .mem
            .end;
        if mem_end != base_size {
            // A view of another replica's commits ran ahead of this one's
            // base: start over from what is stored.
            self.forget();
            state = self.sync(shared, base_size, true)?;
        }
        let base = state.clone();
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let frozen = cache.mem.frozen().map(|f| (f.start, f.end));
        let offer = runs_beside::offer(&self.beside, shared, &base, frozen)?;
        let mut merge_bloom = self
            .merge_bloom
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let flush = self.shape.flush as u64;
        let (mut step, changes) = leaf_index::write_step(
            &Blocks {
                shared,
                ahead: Some(&self.ahead),
            },
            state,
            &cache.mem,
            leaves,
            self.shape,
            Runs::Beside {
                flushed: offer.ready.as_ref().map(|r| r.run.clone()),
                merged: offer.merge_ready.as_ref().map(|r| r.run.clone()),
                inline_at: flush.saturating_mul(INLINE_AFTER),
                merge_inline: base.runs.len() > MERGE_INLINE_RUNS * self.shape.fanout,
            },
            Some((Density::Dense, &mut *merge_bloom)),
        )?;
        let mut taken = Vec::new();
        if let (Some(_), Some(r)) = (&step.taken, &offer.ready) {
            taken.push((r.run.id, r.blocks));
        }
        if let (Some(m), Some(r)) = (&step.merged, &offer.merge_ready) {
            if m.output == r.run.id {
                taken.push((r.run.id, r.blocks));
            }
        }
        let reservation = runs_beside::reserve(
            &mut step,
            offer.stored,
            offer.owned,
            cache.mem.end + leaves.len() as u64,
            frozen.is_some(),
            flush,
        );
        let (merge_reservation, merge_inputs) = merges_beside::reserve_merge(
            &mut step,
            offer.merge,
            offer.merge_owned,
            self.shape.fanout,
        );
        Ok(Planned {
            step,
            changes,
            base,
            base_size,
            reservation,
            merge_reservation,
            merge_inputs,
            taken,
        })
    }

    /// After the commit of `planned` (with `leaves`): the cache follows it.
    pub(super) fn committed(&self, planned: Planned, leaves: &[(Hash, u64)]) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if known.as_ref() != Some(&planned.base) || cache.mem.end != planned.base_size {
            *known = None;
            self.beside().forget();
            self.ahead
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            return;
        }
        if let Some(taken) = &planned.step.taken {
            if cache.mem.frozen().map(|f| f.end) != Some(taken.end) {
                *known = None;
                self.beside().forget();
                return;
            }
        }
        *known = Some(planned.step.state.clone());
        self.ahead
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .committed(&planned.changes, &planned.step.state);
        let build = cache.apply(planned.step, leaves);
        let mut beside = self.beside();
        beside.stored = Stored::Known(planned.reservation.to);
        beside.merge_stored = Stored::Known(planned.merge_reservation.to);
        for (id, _) in &planned.taken {
            if beside.ready.as_ref().is_some_and(|r| r.run.id == *id) {
                beside.ready = None;
            }
            if beside.merge_ready.as_ref().is_some_and(|r| r.run.id == *id) {
                beside.merge_ready = None;
            }
        }
        if let (Some(id), Some(inputs), Some(runs)) = (
            planned.merge_reservation.to,
            planned.merge_inputs,
            self.runs.get(),
        ) {
            beside.merging = Some((id, inputs.clone()));
            beside.merge_ready = None;
            runs.merge(beside.generation, id, inputs);
        }
        if let (Some(id), true) = (
            planned.reservation.to,
            planned.reservation.to != planned.reservation.from,
        ) {
            // A new reservation: the leaves held now (or those frozen
            // already, whose write failed) are its run.
            let frozen = match cache.mem.frozen() {
                Some(f) => Some(Arc::clone(f)),
                None => cache.mem.freeze(),
            };
            if let (Some(f), Some(runs)) = (frozen, self.runs.get()) {
                beside.writing = Some((id, f.start, f.end));
                beside.ready = None;
                runs.flush(beside.generation, id, f);
            }
        }
        drop(beside);
        drop(cache);
        if let Some(id) = build {
            self.queue(id);
        }
    }

    /// The log is durable through `size` (a settle or a durable view showed
    /// it): the filters that waited for it are built. Told on every settle,
    /// durable commit and follower refresh, so a size already known takes
    /// only the read lock the lookups share.
    pub(super) fn durable(&self, size: u64) {
        if self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_durable(size)
        {
            return;
        }
        let ready = self
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .durable(size);
        for id in ready {
            self.queue(id);
        }
    }

    /// After a commit that failed or whose outcome is unknown: the cache is
    /// loaded again from what is stored before its next use, and the
    /// filters of runs over leaves not shown durable are dropped.
    pub(super) fn forget(&self) {
        self.beside().forget();
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .forget_unproven();
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self
            .merge_bloom
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The lowest index below `size` of each leaf, its full hash checked by
    /// `hashes` (the leaves' stored hashes at candidate indexes).
    ///
    /// # Errors
    /// [`StoreError`] from the database.
    pub(super) fn find(
        &self,
        shared: &Arc<Shared>,
        size: u64,
        leaves: &[Hash],
        hashes: impl Fn(&[u64]) -> Result<Vec<Hash>, StoreError>,
    ) -> Result<Vec<Option<u64>>, StoreError> {
        let keys: Vec<u64> = leaves.iter().map(leaf_index::key).collect();
        let mut fresh = false;
        for _ in 0..LOOKUP_ATTEMPTS {
            // The state and the cache read together: a commit landing
            // meanwhile (the writer's own readers look up while its
            // sequencer commits) cannot pair one's runs with the other's
            // memtable.
            let (state, (mut candidates, blooms)) = {
                let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
                let state = self.sync_locked(&mut known, shared, size, fresh)?;
                let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
                (state, cache.candidates(&keys))
            };
            let (probes, runs_probed) = probes_for(&state, &blooms, &keys, size)?;
            if !runs_probed.is_empty() {
                let (blocks, now) = probe(shared, probes)?;
                for (n, block) in blocks {
                    if let (Some(c), Some(k)) = (candidates.get_mut(n), keys.get(n)) {
                        block_lookup(&block, *k, c);
                    }
                }
                // The runs probed must still be stored whole.
                let now = now.unwrap_or_default();
                if !runs_probed
                    .iter()
                    .all(|id| now.runs.iter().any(|r| r.id == *id))
                {
                    fresh = true;
                    continue;
                }
            }
            return check(leaves, candidates, size, hashes);
        }
        Err(StoreError::engine(format!(
            "the leaf index merged runs under {LOOKUP_ATTEMPTS} lookups in a row; try again"
        )))
    }

    /// The check of a commit of `leaves` said new ([`Commit::new_leaves`])
    /// with `planned`, its step: refused at once if a leaf's key is among
    /// the newest leaves, else the probes of the runs whose filters do not
    /// rule a key out, which the commit reads under its lock.
    ///
    /// # Errors
    /// [`StoreError::LeafStored`] for a key among the newest leaves;
    /// [`StoreError::Corrupt`] for a run number past `BIGINT`.
    ///
    /// [`Commit::new_leaves`]: crate::store::Commit::new_leaves
    pub(super) fn new_leaves(
        &self,
        planned: &Planned,
        leaves: &[(Hash, u64)],
    ) -> Result<NewLeaves, StoreError> {
        let keys: Vec<u64> = leaves.iter().map(|(h, _)| leaf_index::key(h)).collect();
        // The cache is the one `planned` was computed from: the writer
        // applies its step only after the commit.
        let (candidates, blooms) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .candidates(&keys);
        if let Some((n, i)) = candidates
            .iter()
            .enumerate()
            .find_map(|(n, c)| c.first().map(|i| (n, *i)))
        {
            return Err(StoreError::LeafStored(format!(
                "leaf {n} of the commit may be stored already (its key is at index {i}, among the newest leaves)"
            )));
        }
        let (probes, _) = probes_for(&planned.base, &blooms, &keys, planned.base_size)?;
        Ok(NewLeaves { probes, keys })
    }

    /// Bytes the filters hold now.
    pub(super) fn filter_bytes(&self) -> usize {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .bloom_bytes()
    }
}

/// The probes of `keys` in the runs of `state` that start below `size`
/// and whose filters do not rule them out (a run without a filter yet is
/// probed for every key), and the runs probed.
fn probes_for(
    state: &IndexState,
    blooms: &HashMap<u64, Arc<Bloom>>,
    keys: &[u64],
    size: u64,
) -> Result<(Probes, Vec<u64>), StoreError> {
    let mut probes = (Vec::new(), Vec::new(), Vec::new());
    let mut runs_probed = Vec::new();
    for run in state.runs.iter().filter(|r| r.start < size) {
        let before = probes.0.len();
        let id = int(run.id)?;
        let probe = |n: usize| {
            if let Some(k) = keys.get(n) {
                probes.0.push(i32::try_from(n).unwrap_or(i32::MAX));
                probes.1.push(id);
                probes.2.push(db_key(*k));
            }
        };
        Bloom::to_probe(blooms.get(&run.id).map(|b| &**b), keys, probe);
        if probes.0.len() > before {
            runs_probed.push(run.id);
        }
    }
    Ok((probes, runs_probed))
}

/// The lowest candidate of each leaf whose stored hash is the leaf's.
fn check(
    leaves: &[Hash],
    candidates: Vec<Vec<u64>>,
    size: u64,
    hashes: impl Fn(&[u64]) -> Result<Vec<Hash>, StoreError>,
) -> Result<Vec<Option<u64>>, StoreError> {
    let mut all: Vec<u64> = candidates
        .iter()
        .flatten()
        .copied()
        .filter(|i| *i < size)
        .collect();
    all.sort_unstable();
    all.dedup();
    let stored: HashMap<u64, Hash> = all.iter().copied().zip(hashes(&all)?).collect();
    Ok(leaves
        .iter()
        .zip(candidates)
        .map(|(leaf, mut c)| {
            c.sort_unstable();
            c.into_iter().find(|i| stored.get(i) == Some(leaf))
        })
        .collect())
}
