//! Merges of the leaf index's runs written beside the commits, as runs of
//! the memtable are ([`super::runs_beside`]).
//!
//! Stepped inside the commits, a merge wrote about four pairs a new leaf
//! into every commit while it lasted: those commits were about 2 ms
//! slower than the others, 18% of a batched run's commit time. Instead:
//! - a commit that finds runs to merge (the newest `fanout` adjacent runs
//!   of similar size) reserves the output's id (the state's next id, and
//!   the id in `quire_meta` under `leaf_index_merge_reserved`);
//! - once it landed, a thread of the store's reads the inputs in order
//!   and writes their merge under the reserved id, a chunk a
//!   transaction, each holding the reservation row `FOR SHARE` and refused
//!   unless it names that id; it checks it wrote every pair the inputs
//!   hold;
//! - a later commit takes it when the inputs are still adjacent runs: it
//!   checks the output's blocks are all stored, replaces the inputs with
//!   it, adds them to the runs to delete and clears the reservation.
//!
//! A reservation nothing of this writer's will fill is collected as a
//! run's is. The inputs never change meanwhile: only this writer's
//! commits change the runs, and none merges while a merge is written
//! beside, unless that fell behind (more than [`MERGE_INLINE_RUNS`] runs
//! a fanout), when merges are stepped inside the commits as before.

use std::collections::VecDeque;
use std::sync::Arc;

use super::leaf_blocks::Blocks;
use super::run_writer::put_reserved;
use super::runs_beside::{Beside, Lane, Reservation};
use super::Shared;
use crate::store::leaf_index::bloom::{Bloom, Density};
use crate::store::leaf_index::step::merge_candidates;
use crate::store::leaf_index::{BlockSource, IndexState, MergeWritten, Run, Step, BLOCK_PAIRS};
use crate::store::StoreError;

/// Runs a fanout the index holds before merges are stepped inside the
/// commits again.
pub(super) const MERGE_INLINE_RUNS: usize = 3;

/// Pairs written a transaction (256 blocks, 960 KiB).
const CHUNK: usize = 256 * BLOCK_PAIRS;

/// Pairs read from an input at a time (64 blocks).
const READ: usize = 64 * BLOCK_PAIRS;

/// A merge written beside the commits, ready to take.
#[derive(Clone)]
pub(super) struct MergeReady {
    pub(super) run: MergeWritten,
    /// Its blocks, which the commit that takes it checks are stored.
    pub(super) blocks: u64,
}

/// A merge to write: output `id`, of `inputs`.
pub(super) struct MergeJob {
    pub(super) generation: u64,
    pub(super) id: u64,
    pub(super) inputs: Vec<Run>,
}

/// What a commit does to the merge reservation `stored`, given its `step`:
/// a merge taken clears it; one nothing of this writer's will fill
/// (`owned` false) is added to the step's runs to delete and cleared.
/// Then, with none left and no merge stepped inside the commits, runs to
/// merge get a new one from the state's next id: returned with them.
pub(super) fn reserve_merge(
    step: &mut Step,
    stored: Option<u64>,
    owned: bool,
    fanout: usize,
) -> (Reservation, Option<Vec<Run>>) {
    let mut r = Reservation {
        from: stored,
        to: stored,
    };
    if let Some(id) = stored {
        if step.merged.as_ref().is_some_and(|m| m.output == id) {
            r.to = None;
        } else if !owned {
            step.state.garbage.push(id);
            r.to = None;
        }
    }
    let mut inputs = None;
    if r.to.is_none() && step.state.merge.is_none() {
        inputs = merge_candidates(&step.state, fanout);
        if inputs.is_some() {
            r.to = Some(step.state.next_id);
            step.state.next_id += 1;
        }
    }
    (r, inputs)
}

impl Beside {
    /// Whether merge reservation `id` will be filled by this writer: a
    /// merge is being written or is written under it, of inputs that are
    /// still adjacent runs of `state`.
    pub(super) fn owns_merge(&self, id: u64, state: &IndexState) -> bool {
        let writing = self
            .merging
            .as_ref()
            .is_some_and(|(m, inputs)| *m == id && state.adjacent(inputs).is_some());
        writing
            || self
                .merge_ready
                .as_ref()
                .is_some_and(|r| r.run.id == id && state.adjacent(&r.run.inputs).is_some())
    }

    /// A merge written by a write started at `generation`: kept to take
    /// unless the cache was forgotten since or another write started.
    pub(super) fn merge_written(&mut self, generation: u64, ready: MergeReady) {
        let ours = self
            .merging
            .as_ref()
            .is_some_and(|(id, inputs)| *id == ready.run.id && *inputs == ready.run.inputs);
        if self.generation == generation && ours {
            self.merging = None;
            self.merge_ready = Some(ready);
            metrics::counter!("quire_leaf_merges_written_beside_total").increment(1);
        }
    }

    /// The write of merge reservation `id` failed.
    pub(super) fn merge_not_written(&mut self, generation: u64, id: u64) {
        if self.generation == generation && self.merging.as_ref().is_some_and(|m| m.0 == id) {
            self.merging = None;
        }
    }
}

/// One input of a merge as it is read.
struct Side {
    run: u64,
    buf: VecDeque<(u64, u64)>,
    after: Option<(u64, u64)>,
    done: bool,
}

/// The smallest pair left among `sides`, reading more of an input whose
/// pairs read ran out.
fn next_pair(
    source: &dyn BlockSource,
    sides: &mut [Side],
) -> Result<Option<(u64, u64)>, StoreError> {
    let mut best: Option<(usize, (u64, u64))> = None;
    for (n, s) in sides.iter_mut().enumerate() {
        if s.buf.is_empty() && !s.done {
            let (pairs, done) = source.pairs_after(s.run, s.after, READ)?;
            s.done = done || pairs.is_empty();
            s.after = pairs.last().copied().or(s.after);
            s.buf.extend(pairs);
        }
        if let Some(p) = s.buf.front() {
            if best.is_none_or(|(_, b)| *p < b) {
                best = Some((n, *p));
            }
        }
    }
    Ok(best.and_then(|(n, p)| sides.get_mut(n)?.buf.pop_front().map(|_| p)))
}

/// Writes `job`'s merge a chunk a transaction ([`put_reserved`]) and
/// builds its filter.
///
/// # Errors
/// [`StoreError`] from the database, or [`StoreError::Corrupt`] when the
/// inputs did not give the pairs they hold.
pub(super) fn write_merge(shared: &Arc<Shared>, job: &MergeJob) -> Result<MergeReady, StoreError> {
    let source = Blocks {
        shared,
        ahead: None,
    };
    let total: u64 = job.inputs.iter().map(Run::len).sum();
    let mut bloom = Bloom::with_density(total, Density::Dense);
    let mut sides: Vec<Side> = job
        .inputs
        .iter()
        .map(|r| Side {
            run: r.id,
            buf: VecDeque::new(),
            after: None,
            done: false,
        })
        .collect();
    let (mut blocks, mut written) = (0u64, 0u64);
    let mut out = Vec::with_capacity(CHUNK);
    loop {
        if Arc::strong_count(shared) <= 1 {
            // Nothing but this write holds the store: it was closed.
            return Err(StoreError::engine("the store closed during a merge"));
        }
        while out.len() < CHUNK {
            match next_pair(&source, &mut sides)? {
                Some(p) => out.push(p),
                None => break,
            }
        }
        let end = out.len() < CHUNK;
        if !out.is_empty() {
            for (k, _) in &out {
                bloom.insert(*k);
            }
            blocks += put_reserved(shared, Lane::Merges, job.id, &out)?;
            written += out.len() as u64;
            out.clear();
        }
        if end {
            break;
        }
    }
    if written != total {
        return Err(StoreError::Corrupt(format!(
            "a merge of leaf index runs holding {total} pairs read {written}"
        )));
    }
    Ok(MergeReady {
        run: MergeWritten {
            id: job.id,
            inputs: job.inputs.clone(),
            bloom: Arc::new(bloom),
        },
        blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::leaf_index::step::Merged;

    fn run(id: u64, start: u64, end: u64) -> Run {
        Run { id, start, end }
    }

    /// Eight runs of 100 leaves, next id 20.
    fn step() -> Step {
        Step {
            state: IndexState {
                next_id: 20,
                runs: (0..8).map(|n| run(n + 1, n * 100, (n + 1) * 100)).collect(),
                merge: None,
                garbage: Vec::new(),
            },
            flushed_to: None,
            flushed: None,
            taken: None,
            merged: None,
        }
    }

    #[test]
    fn a_merge_reservation_is_taken_kept_collected_or_cleared() {
        let r = |from, to| Reservation { from, to };
        // Eight runs of a size: reserved, with them as the inputs.
        let mut s = step();
        let (res, inputs) = reserve_merge(&mut s, None, false, 8);
        assert_eq!(res, r(None, Some(20)));
        assert_eq!(inputs.unwrap().len(), 8);
        assert_eq!(s.state.next_id, 21);
        // Owned: kept, no other.
        let mut s = step();
        assert_eq!(
            reserve_merge(&mut s, Some(9), true, 8),
            (r(Some(9), Some(9)), None)
        );
        // Not owned: deleted, and the runs reserved again.
        let mut s = step();
        let (res, inputs) = reserve_merge(&mut s, Some(9), false, 8);
        assert_eq!(res, r(Some(9), Some(20)));
        assert!(inputs.is_some());
        assert_eq!(s.state.garbage, [9]);
        // Taken: cleared; too few runs left to reserve another.
        let mut s = step();
        s.state.runs = vec![run(9, 0, 800)];
        s.merged = Some(Merged {
            inputs: (1..=8).collect(),
            output: 9,
            bloom: None,
        });
        assert_eq!(
            reserve_merge(&mut s, Some(9), true, 8),
            (r(Some(9), None), None)
        );
        assert!(s.state.garbage.is_empty());
        // A merge stepped inside the commits: none reserved beside it.
        let mut s = step();
        s.state.merge = Some(crate::store::leaf_index::state::Merge {
            inputs: s.state.runs[..2].to_vec(),
            output: 19,
            last: None,
        });
        assert_eq!(reserve_merge(&mut s, None, false, 8), (r(None, None), None));
    }

    #[test]
    fn inputs_are_adjacent_only_while_all_are_runs_in_order() {
        let s = step();
        assert_eq!(s.state.adjacent(&s.state.runs[2..5]), Some(2));
        assert_eq!(s.state.adjacent(&[s.state.runs[2], s.state.runs[4]]), None);
        assert_eq!(
            s.state.adjacent(&[run(3, 200, 300), run(99, 300, 400)]),
            None
        );
        assert_eq!(s.state.adjacent(&[]), None);
    }

    /// The merge read of sorted inputs, through reads of a few pairs.
    #[test]
    fn pairs_come_out_merged_through_short_reads() {
        struct Source(Vec<Vec<(u64, u64)>>);
        impl BlockSource for Source {
            fn pairs_after(
                &self,
                run: u64,
                after: Option<(u64, u64)>,
                _max: usize,
            ) -> Result<(Vec<(u64, u64)>, bool), StoreError> {
                let all = &self.0[usize::try_from(run).unwrap()];
                let rest: Vec<_> = all
                    .iter()
                    .copied()
                    .filter(|p| after.is_none_or(|a| *p > a))
                    .collect();
                let take: Vec<_> = rest.iter().copied().take(2).collect();
                Ok((take.clone(), take.len() == rest.len()))
            }
            fn block_keys(
                &self,
                _: u64,
                _: usize,
            ) -> Result<Vec<crate::store::leaf_index::BlockKey>, StoreError> {
                Ok(Vec::new())
            }
        }
        let source = Source(vec![
            vec![(1, 0), (4, 3), (9, 1), (9, 5)],
            vec![(2, 7), (3, 8), (10, 6)],
            vec![],
        ]);
        let mut sides: Vec<Side> = (0..3)
            .map(|run| Side {
                run,
                buf: VecDeque::new(),
                after: None,
                done: false,
            })
            .collect();
        let mut got = Vec::new();
        while let Some(p) = next_pair(&source, &mut sides).unwrap() {
            got.push(p);
        }
        assert_eq!(
            got,
            [(1, 0), (2, 7), (3, 8), (4, 3), (9, 1), (9, 5), (10, 6)]
        );
    }
}
