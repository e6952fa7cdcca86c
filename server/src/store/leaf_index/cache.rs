//! What the leaf index keeps in memory beside the memtable, shared by the
//! writer and readers: a Bloom filter per run, and the thread that builds
//! the filters of runs that have none (every run after a restart, and a
//! merge that a restart interrupted). Until its filter is built a run is
//! probed directly, which is slower but never wrong.
//!
//! A run's leaves are those of the log in its range, so its filter stays
//! right while those leaves can never change: once the log through the
//! run's end is durable. On PostgreSQL a commit is made before it is
//! settled, and a failover can lose it; a run it made, and its number,
//! can then be made again over other leaves. So each filter is kept with
//! its run's range, and a filter over leaves not yet durable (a run of the
//! writer's own newest commits) is dropped when a commit fails or its
//! outcome is unknown ([`IndexCache::forget_unproven`]). Filters are built
//! from the database only for runs below the durable size; the others wait
//! ([`IndexCache::durable`]). On redb every commit is durable.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::bloom::Bloom;
use super::memtable::{Memtable, Worker};
use super::{IndexState, Step};
use crate::store::StoreError;

/// A run's leaves: `[start, end)`.
type Span = (u64, u64);

/// A run's filter and the range it was made for.
struct Filter {
    span: Span,
    bloom: Arc<Bloom>,
}

/// The in-memory part of the leaf index.
pub(crate) struct IndexCache {
    pub(crate) mem: Memtable,
    filters: HashMap<u64, Filter>,
    /// Runs of the last committed state, and their ranges.
    live: HashMap<u64, Span>,
    /// The log is durable through this size: its leaves below it never
    /// change.
    durable: u64,
    /// Runs whose filter waits until the log is durable through their end.
    waiting: BTreeSet<u64>,
}

/// The cache as the store, its readers and the builder share it.
pub(crate) type SharedCache = Arc<RwLock<IndexCache>>;

fn spans(state: &IndexState) -> HashMap<u64, Span> {
    state
        .runs
        .iter()
        .map(|r| (r.id, (r.start, r.end)))
        .collect()
}

impl IndexCache {
    /// A cache over `mem` and the runs of `state`, whose log is durable
    /// through `durable` (every size on redb; on PostgreSQL what a settle
    /// or a durable view has shown).
    pub(crate) fn new(mem: Memtable, state: &IndexState, durable: u64) -> Self {
        IndexCache {
            mem,
            filters: HashMap::new(),
            live: spans(state),
            durable,
            waiting: BTreeSet::new(),
        }
    }

    /// Starts over from what is stored: `mem` and the runs of `state`,
    /// keeping the filters of runs still live over the same range and
    /// durable leaves (such a run never changes). Returns the runs that
    /// have no filter.
    pub(crate) fn reset(&mut self, mem: Memtable, state: &IndexState) -> Vec<u64> {
        self.mem = mem;
        self.live = spans(state);
        let (live, durable) = (&self.live, self.durable);
        self.filters
            .retain(|id, f| live.get(id) == Some(&f.span) && f.span.1 <= durable);
        self.waiting.retain(|id| live.contains_key(id));
        state
            .runs
            .iter()
            .map(|r| r.id)
            .filter(|id| !self.filters.contains_key(id))
            .collect()
    }

    /// After a commit that failed or whose outcome is unknown: the filters
    /// of runs over leaves not shown durable are dropped (such a run may
    /// be lost with its commit, and its number given to another run).
    pub(crate) fn forget_unproven(&mut self) {
        let durable = self.durable;
        self.filters.retain(|_, f| f.span.1 <= durable);
    }

    /// Whether the log is known durable through `size` already.
    pub(crate) fn is_durable(&self, size: u64) -> bool {
        size <= self.durable
    }

    /// The log is durable through `size`. Returns the runs whose filters
    /// may be built now (runs no longer live stop waiting).
    pub(crate) fn durable(&mut self, size: u64) -> Vec<u64> {
        if self.is_durable(size) {
            return Vec::new();
        }
        self.durable = size;
        let (live, mut ready) = (&self.live, Vec::new());
        self.waiting.retain(|id| match live.get(id) {
            Some(span) if span.1 <= size => {
                ready.push(*id);
                false
            }
            Some(_) => true,
            None => false,
        });
        ready
    }

    /// Each key's indexes in the memtable, and the filters of the runs now
    /// (cheap: shared pointers).
    pub(crate) fn candidates(&self, keys: &[u64]) -> (Vec<Vec<u64>>, HashMap<u64, Arc<Bloom>>) {
        let mut candidates = vec![Vec::new(); keys.len()];
        for (k, c) in keys.iter().zip(&mut candidates) {
            self.mem.get(*k, c);
        }
        let filters = self
            .filters
            .iter()
            .map(|(id, f)| (*id, Arc::clone(&f.bloom)))
            .collect();
        (candidates, filters)
    }

    /// Keeps `bloom` as the filter of live run `id`.
    fn keep(&mut self, id: u64, bloom: Arc<Bloom>) {
        if let Some(span) = self.live.get(&id) {
            self.filters.insert(id, Filter { span: *span, bloom });
        }
    }

    /// Applies a committed step: the memtable, new and finished runs.
    /// Returns a run whose filter must be built.
    pub(crate) fn apply(&mut self, step: Step, leaves: &[(quire_core::Hash, u64)]) -> Option<u64> {
        if let Some(end) = step.flushed_to {
            self.mem = Memtable::new(end);
        } else {
            if let Some(taken) = &step.taken {
                // The writer checked the frozen part ends there.
                let dropped = self.mem.drop_frozen(taken.end);
                debug_assert!(dropped, "a run taken that is not the frozen part");
            }
            for (h, i) in leaves {
                self.mem.push(super::key(h), *i);
            }
        }
        self.live = spans(&step.state);
        if let Some(taken) = step.taken {
            self.keep(taken.id, taken.bloom);
        }
        if let Some((id, bloom)) = step.flushed {
            self.keep(id, Arc::new(bloom));
        }
        let mut build = None;
        if let Some(m) = step.merged {
            for id in m.inputs {
                self.filters.remove(&id);
            }
            match m.bloom {
                Some(b) => self.keep(m.output, b),
                None => build = Some(m.output),
            }
        }
        let live = &self.live;
        self.filters.retain(|id, f| live.get(id) == Some(&f.span));
        build
    }

    /// The range of live run `id` when it has no filter and one may be
    /// built from what is stored now; a run over leaves not yet durable
    /// waits for [`IndexCache::durable`].
    fn build_span(&mut self, id: u64) -> Option<Span> {
        let span = *self.live.get(&id)?;
        if self.filters.contains_key(&id) {
            return None;
        }
        if span.1 > self.durable {
            self.waiting.insert(id);
            return None;
        }
        Some(span)
    }

    /// Bytes the filters hold.
    pub(crate) fn bloom_bytes(&self) -> usize {
        self.filters.values().map(|f| f.bloom.bytes()).sum()
    }
}

/// Builds the filter of one run from what is stored: `None` when the run
/// is gone or `stop` was set meanwhile.
pub(crate) type BuildFilter =
    Box<dyn Fn(u64, &AtomicBool) -> Result<Option<Bloom>, StoreError> + Send>;

/// The thread that builds missing filters.
pub(crate) struct Builder {
    stop: Arc<AtomicBool>,
    worker: Worker<u64>,
}

impl Builder {
    /// # Errors
    /// [`StoreError::Engine`] when the thread cannot start.
    pub(crate) fn spawn(build: BuildFilter, cache: SharedCache) -> Result<Self, StoreError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let worker = Worker::spawn("leaf index filters", move |id| {
            if stopping.load(Ordering::Relaxed) {
                return false;
            }
            let Some(span) = cache
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .build_span(id)
            else {
                return true;
            };
            match build(id, &stopping) {
                Ok(Some(bloom)) => {
                    let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
                    // Kept only for the run it was built for.
                    if cache.live.get(&id) == Some(&span) {
                        cache.keep(id, Arc::new(bloom));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(run = id, error = %e, "leaf index filter not built; the run is probed directly");
                }
            }
            true
        })?;
        Ok(Builder { stop, worker })
    }

    pub(crate) fn queue(&self, id: u64) {
        self.worker.queue(id);
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        // A build under way ends when it sees `stop`; the worker then.
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::leaf_index::Run;

    fn state(runs: &[(u64, u64, u64)]) -> IndexState {
        IndexState {
            next_id: runs.iter().map(|r| r.0 + 1).max().unwrap_or(0),
            runs: runs
                .iter()
                .map(|&(id, start, end)| Run { id, start, end })
                .collect(),
            ..IndexState::default()
        }
    }

    fn bloom(key: u64) -> Arc<Bloom> {
        Arc::new(Bloom::of_pairs(
            &[(key, 0)],
            super::super::bloom::Density::Dense,
        ))
    }

    /// Runs 0 over `[0, 100)` and 1 over `[100, 200)`, each with a filter,
    /// the log durable through `durable`.
    fn two_filtered_runs(durable: u64) -> (IndexState, IndexCache) {
        let s = state(&[(0, 0, 100), (1, 100, 200)]);
        let mut c = IndexCache::new(Memtable::new(200), &s, durable);
        c.keep(0, bloom(1));
        c.keep(1, bloom(2));
        (s, c)
    }

    fn has_filter(c: &IndexCache, id: u64) -> bool {
        c.candidates(&[]).1.contains_key(&id)
    }

    #[test]
    fn a_filter_over_leaves_not_shown_durable_is_dropped_when_a_commit_fails() {
        let (_, mut c) = two_filtered_runs(150);
        c.forget_unproven();
        assert!(has_filter(&c, 0), "run 0 ends at 100, durable");
        assert!(!has_filter(&c, 1), "run 1 ends at 200, past 150");
        // Had the log been shown durable through 200, both would stay.
        let (_, mut c) = two_filtered_runs(150);
        assert!(c.durable(200).is_empty());
        c.forget_unproven();
        assert!(has_filter(&c, 0) && has_filter(&c, 1));
    }

    #[test]
    fn a_run_number_given_again_keeps_no_filter_of_the_run_before() {
        let mut c = IndexCache::new(Memtable::new(0), &state(&[(3, 0, 100)]), u64::MAX);
        c.keep(3, bloom(7));
        // The same number over another range: the filter is not its.
        let missing = c.reset(Memtable::new(120), &state(&[(3, 0, 120)]));
        assert_eq!(missing, vec![3]);
        assert!(!has_filter(&c, 3));
        // The same run again keeps its filter.
        c.keep(3, bloom(7));
        assert!(c
            .reset(Memtable::new(120), &state(&[(3, 0, 120)]))
            .is_empty());
        assert!(has_filter(&c, 3));
        // A run gone loses it.
        assert!(c.reset(Memtable::new(120), &state(&[])).is_empty());
        assert!(!has_filter(&c, 3));
    }

    #[test]
    fn a_reset_keeps_no_filter_over_leaves_not_shown_durable() {
        // A run of the same number and range may hold other leaves when
        // its commit was lost: only durable leaves never change.
        let (s, mut c) = two_filtered_runs(150);
        assert_eq!(c.reset(Memtable::new(200), &s), vec![1]);
        assert!(has_filter(&c, 0));
    }

    #[test]
    fn a_filter_is_built_only_once_the_run_is_durable() {
        let s = state(&[(0, 0, 100), (1, 100, 200)]);
        let mut c = IndexCache::new(Memtable::new(200), &s, 100);
        assert_eq!(c.build_span(0), Some((0, 100)));
        assert_eq!(c.build_span(1), None, "waits: ends past the durable size");
        assert!(c.durable(150).is_empty(), "still past it");
        assert!(c.is_durable(150) && !c.is_durable(151));
        assert_eq!(c.durable(200), vec![1]);
        assert_eq!(c.build_span(1), Some((100, 200)));
        // Nothing is built for a run with a filter, or not live.
        c.keep(1, bloom(5));
        assert_eq!(c.build_span(1), None);
        assert_eq!(c.build_span(9), None);
        // A waiting run gone by a reset is not handed out later.
        let mut c = IndexCache::new(Memtable::new(200), &s, 0);
        assert_eq!(c.build_span(1), None);
        c.reset(Memtable::new(0), &state(&[]));
        assert!(c.durable(500).is_empty());
    }
}
