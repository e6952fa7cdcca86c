//! What one commit does to the leaf index: a flush of the memtable when it
//! is full, a bounded step of the merge in progress and a bounded step of
//! deleting merged-away runs. Computed from the stored blocks into
//! [`Changes`] that the engine writes in the same commit.

use std::sync::Arc;

use quire_core::Hash;

use super::bloom::{Bloom, Density};
use super::memtable::Memtable;
use super::state::{IndexState, Merge, Run, MAX_FANOUT};
use super::{key, BlockSource, Changes, Staged, BLOCK_PAIRS};
use crate::store::StoreError;

/// What one commit does to the index.
pub(crate) struct Step {
    pub(crate) state: IndexState,
    /// The memtable was written out as a run: clear it from `start`.
    pub(crate) flushed_to: Option<u64>,
    /// The filter of the run just flushed.
    pub(crate) flushed: Option<(u64, Bloom)>,
    /// A run written beside the commits was taken ([`Runs::Beside`]).
    pub(crate) taken: Option<Taken>,
    /// A merge finished.
    pub(crate) merged: Option<Merged>,
}

/// A run written beside the commits, taken by a step.
pub(crate) struct Taken {
    /// The leaves below it are in runs: the memtable's frozen part goes.
    pub(crate) end: u64,
    pub(crate) id: u64,
    pub(crate) bloom: Arc<Bloom>,
}

/// A finished merge: `inputs` are gone, `output` replaces them.
pub(crate) struct Merged {
    pub(crate) inputs: Vec<u64>,
    pub(crate) output: u64,
    /// Its filter, when every pair went through this process (not after a
    /// restart in the middle of the merge).
    pub(crate) bloom: Option<Arc<Bloom>>,
}

/// The filter of the merge in progress, kept by the writer: present only
/// while it has seen every pair written to that merge's output.
pub(crate) type MergeBloom = Option<(u64, Bloom)>;

/// How runs are written.
pub(crate) enum Runs {
    /// Inside the commits (redb): the commit that fills the memtable
    /// writes it, and merges go a bounded step per commit.
    Inline,
    /// Beside the commits (PostgreSQL). `flushed` is a run of the
    /// memtable's frozen part written since, taken into the state if it
    /// starts where the runs end; `merged` a merge of adjacent runs written
    /// since, taken if they still are. The memtable is written inside a
    /// commit only once it holds `inline_at` leaves, and merges are picked
    /// and stepped inside commits only when `merge_inline` (the writing
    /// beside fell behind).
    Beside {
        flushed: Option<Written>,
        merged: Option<MergeWritten>,
        inline_at: u64,
        merge_inline: bool,
    },
}

/// A merge written beside the commits: run `id` holds the pairs of
/// `inputs`.
#[derive(Clone)]
pub(crate) struct MergeWritten {
    pub(crate) id: u64,
    pub(crate) inputs: Vec<Run>,
    pub(crate) bloom: Arc<Bloom>,
}

/// A run written beside the commits.
#[derive(Clone)]
pub(crate) struct Written {
    pub(crate) id: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) bloom: Arc<Bloom>,
}

/// How a writer shapes its index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    /// Leaves held in memory before they are written as a run.
    pub(crate) flush: usize,
    /// Runs of similar size merged at once (2 to [`MAX_FANOUT`]): each
    /// pair is written about log-base-`fanout` of (leaves / `flush`) times,
    /// and up to `fanout - 1` runs of each size are probed.
    pub(crate) fanout: usize,
}

/// This commit's share of the index: a run written beside the commits
/// or a merge written beside taken (`runs`), or a flush when the memtable
/// (plus `new_pairs`) reaches `shape.flush`, then a bounded merge step and
/// a bounded
/// deletion step. `filters`: the writer keeps filters of this density, and
/// `merge_bloom` is the one of the merge in progress.
///
/// # Errors
/// [`StoreError`] from the engine, or a commit that does not follow the
/// memtable.
pub(crate) fn write_step<S: BlockSource + ?Sized>(
    source: &S,
    mut state: IndexState,
    mem: &Memtable,
    new_pairs: &[(Hash, u64)],
    shape: Shape,
    runs: Runs,
    filters: Option<(Density, &mut MergeBloom)>,
) -> Result<(Step, Changes), StoreError> {
    let mut staged = Staged::new(source);
    if let Some((_, i)) = new_pairs.first() {
        if *i != mem.end {
            return Err(StoreError::Corrupt(format!(
                "leaf index holds leaves up to {}, the commit starts at {i}",
                mem.end
            )));
        }
    }
    let (density, mut merge_bloom) = match filters {
        Some((d, mb)) => (d, Some(mb)),
        None => (Density::Compact, None),
    };
    let end = mem.end + new_pairs.len() as u64;
    let mut flushed_to = None;
    let mut flushed = None;
    let (taken, mut merged, inline_at, merge_inline) = match runs {
        Runs::Inline => (None, None, shape.flush as u64, true),
        Runs::Beside {
            flushed,
            merged,
            inline_at,
            merge_inline,
        } => {
            let (taken, merged) = take_beside(&mut state, mem, flushed, merged);
            (taken, merged, inline_at, merge_inline)
        }
    };
    if taken.is_none() && mem.len() + new_pairs.len() as u64 >= inline_at && end > mem.start {
        let mut pairs = mem.sorted_pairs();
        pairs.extend(new_pairs.iter().map(|(h, i)| (key(h), *i)));
        pairs.sort_unstable();
        let id = state.next_id;
        state.next_id += 1;
        staged.put(id, &pairs);
        if merge_bloom.is_some() {
            flushed = Some((id, Bloom::of_pairs(&pairs, density)));
        }
        state.runs.push(Run {
            id,
            start: mem.start,
            end,
        });
        flushed_to = Some(end);
    }
    let budget = (4 * new_pairs.len()).max(16 * BLOCK_PAIRS);
    if state.merge.is_none() && merge_inline && merged.is_none() {
        state.merge = pick_merge(&mut state, shape.fanout);
        if let (Some(m), Some(mb)) = (&state.merge, merge_bloom.as_deref_mut()) {
            let pairs = m.inputs.iter().map(Run::len).sum();
            *mb = Some((m.output, Bloom::with_density(pairs, density)));
        }
    }
    if let Some(m) = state.merge.take() {
        let mut bloom = match merge_bloom.as_deref_mut().and_then(Option::take) {
            Some((id, b)) if id == m.output => Some(b),
            _ => None,
        };
        let (inputs, output) = (m.inputs.iter().map(|r| r.id).collect(), m.output);
        state.merge = merge_step(&mut staged, &mut state, m, budget, bloom.as_mut())?;
        if state.merge.is_none() {
            merged = Some(Merged {
                inputs,
                output,
                bloom: bloom.map(Arc::new),
            });
        } else if let Some(mb) = merge_bloom {
            *mb = bloom.map(|b| (output, b));
        }
    }
    delete_step(&mut staged, &mut state, budget)?;
    Ok((
        Step {
            state,
            flushed_to,
            flushed,
            taken,
            merged,
        },
        staged.changes,
    ))
}

/// The newest `fanout` adjacent runs of similar size (the oldest at most
/// twice the newest), if any.
pub(crate) fn merge_candidates(state: &IndexState, fanout: usize) -> Option<Vec<Run>> {
    let t = fanout.clamp(2, MAX_FANOUT);
    let n = state.runs.len();
    let last = (t - 1..n)
        .rev()
        .find(|&i| state.runs[i + 1 - t].len() <= 2 * state.runs[i].len())?;
    Some(state.runs[last + 1 - t..=last].to_vec())
}

/// A merge of [`merge_candidates`], its output numbered from the state.
fn pick_merge(state: &mut IndexState, fanout: usize) -> Option<Merge> {
    let inputs = merge_candidates(state, fanout)?;
    let output = state.next_id;
    state.next_id += 1;
    Some(Merge {
        inputs,
        output,
        last: None,
    })
}

/// Takes what was written beside the commits into `state`: a merge
/// ([`take_merge`], unless one is stepped inside the commits) and a run
/// of the memtable's frozen part that starts where the runs end.
fn take_beside(
    state: &mut IndexState,
    mem: &Memtable,
    flushed: Option<Written>,
    merged: Option<MergeWritten>,
) -> (Option<Taken>, Option<Merged>) {
    let merged = merged
        .filter(|_| state.merge.is_none())
        .and_then(|m| take_merge(state, m));
    let frozen = mem.frozen().map(|f| (f.start, f.end));
    let taken = flushed
        .filter(|w| {
            w.start == mem.start
                && w.start == state.covered()
                && w.end > w.start
                && frozen == Some((w.start, w.end))
        })
        .map(|w| {
            state.runs.push(Run {
                id: w.id,
                start: w.start,
                end: w.end,
            });
            state.next_id = state.next_id.max(w.id + 1);
            Taken {
                end: w.end,
                id: w.id,
                bloom: w.bloom,
            }
        });
    (taken, merged)
}

/// Replaces `m`'s inputs with its run when they are still adjacent runs
/// of `state` (none merged away or deleted since), the inputs then to
/// delete.
fn take_merge(state: &mut IndexState, m: MergeWritten) -> Option<Merged> {
    if m.inputs.len() < 2 {
        return None;
    }
    let pos = state.adjacent(&m.inputs)?;
    state.replace_merged(pos, &m.inputs, m.id);
    state.next_id = state.next_id.max(m.id + 1);
    Some(Merged {
        inputs: m.inputs.iter().map(|r| r.id).collect(),
        output: m.id,
        bloom: Some(m.bloom),
    })
}

fn merge_step<S: BlockSource + ?Sized>(
    staged: &mut Staged<'_, S>,
    state: &mut IndexState,
    mut merge: Merge,
    budget: usize,
    bloom: Option<&mut Bloom>,
) -> Result<Option<Merge>, StoreError> {
    // Each input's next pairs, whether it has no more, and the position.
    let mut sides = Vec::with_capacity(merge.inputs.len());
    for r in &merge.inputs {
        let (pairs, done) = staged.pairs_after(r.id, merge.last, budget)?;
        sides.push((pairs, done, 0usize));
    }
    let mut out = Vec::with_capacity(budget);
    'merge: while out.len() < budget {
        let mut best: Option<(usize, (u64, u64))> = None;
        for (n, (pairs, done, at)) in sides.iter().enumerate() {
            match pairs.get(*at) {
                Some(p) if best.is_none_or(|(_, b)| *p < b) => best = Some((n, *p)),
                // A side ran dry: its remainder may still be stored, and
                // may hold the smallest pair.
                None if !*done => break 'merge,
                Some(_) | None => {}
            }
        }
        let Some((n, p)) = best else { break };
        sides[n].2 += 1;
        out.push(p);
    }
    staged.put(merge.output, &out);
    if let Some(bloom) = bloom {
        for (k, _) in &out {
            bloom.insert(*k);
        }
    }
    if let Some(last) = out.last() {
        merge.last = Some(*last);
    }
    let finished = sides
        .iter()
        .all(|(pairs, done, at)| *done && *at == pairs.len());
    if !finished {
        return Ok(Some(merge));
    }
    let Some(first) = merge.inputs.first() else {
        return Err(StoreError::Corrupt("leaf index merge of no runs".into()));
    };
    if !state.runs.contains(first) {
        return Err(StoreError::Corrupt(
            "leaf index merge input is not among the runs".into(),
        ));
    }
    let Some(pos) = state.adjacent(&merge.inputs) else {
        return Err(StoreError::Corrupt(
            "leaf index merge inputs are not adjacent".into(),
        ));
    };
    state.replace_merged(pos, &merge.inputs, merge.output);
    Ok(None)
}

fn delete_step<S: BlockSource + ?Sized>(
    staged: &mut Staged<'_, S>,
    state: &mut IndexState,
    budget: usize,
) -> Result<(), StoreError> {
    let mut blocks = budget / BLOCK_PAIRS + 1;
    while let Some(&id) = state.garbage.first() {
        let n = staged.delete(id, blocks)?;
        blocks -= n;
        if blocks == 0 {
            break;
        }
        state.garbage.remove(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: u64, start: u64, end: u64) -> Run {
        Run { id, start, end }
    }

    /// Runs 1–3 over leaves `[0, 300)`, next id 10.
    fn state() -> IndexState {
        IndexState {
            next_id: 10,
            runs: vec![run(1, 0, 100), run(2, 100, 200), run(3, 200, 300)],
            merge: None,
            garbage: Vec::new(),
        }
    }

    fn merge(id: u64, inputs: Vec<Run>) -> MergeWritten {
        MergeWritten {
            id,
            inputs,
            bloom: Arc::new(Bloom::with_capacity(0)),
        }
    }

    #[test]
    fn a_merge_written_beside_is_taken_only_over_its_adjacent_inputs() {
        let mut s = state();
        let m = take_merge(&mut s, merge(7, vec![run(2, 100, 200), run(3, 200, 300)])).unwrap();
        assert_eq!((m.inputs, m.output), (vec![2, 3], 7));
        assert_eq!(s.runs, [run(1, 0, 100), run(7, 100, 300)]);
        assert_eq!(s.garbage, [2, 3]);
        // Not adjacent, no longer runs, one input, or none: nothing changes.
        for inputs in [
            vec![run(1, 0, 100), run(3, 200, 300)],
            vec![run(2, 100, 200), run(4, 200, 300)],
            vec![run(2, 100, 200)],
            vec![],
        ] {
            let mut s = state();
            assert!(take_merge(&mut s, merge(7, inputs)).is_none());
            assert_eq!(s, state());
        }
    }

    #[test]
    fn a_run_written_beside_is_taken_only_as_the_frozen_part_after_the_runs() {
        let written = |start, end| Written {
            id: 7,
            start,
            end,
            bloom: Arc::new(Bloom::with_capacity(0)),
        };
        let mut mem = Memtable::new(300);
        for i in 300..350 {
            mem.push(i * 7919, i);
        }
        // Nothing frozen: not taken.
        let mut s = state();
        assert!(take_beside(&mut s, &mem, Some(written(300, 350)), None)
            .0
            .is_none());
        assert_eq!(s, state());
        mem.freeze();
        for i in 350..360 {
            mem.push(i * 7919, i);
        }
        // Another range than the frozen part's: not taken.
        for (start, end) in [(300, 360), (300, 349), (299, 350)] {
            let mut s = state();
            assert!(take_beside(&mut s, &mem, Some(written(start, end)), None)
                .0
                .is_none());
            assert_eq!(s, state());
        }
        // The frozen part, starting where the runs end: taken.
        let mut s = state();
        let (taken, merged) = take_beside(&mut s, &mem, Some(written(300, 350)), None);
        assert_eq!(taken.map(|t| t.end), Some(350));
        assert!(merged.is_none());
        assert_eq!(s.runs.last(), Some(&run(7, 300, 350)));
        // A merge stepped inside the commits keeps one written beside out.
        let mut s = state();
        s.merge = Some(Merge {
            inputs: s.runs[..2].to_vec(),
            output: 9,
            last: None,
        });
        let (_, merged) = take_beside(
            &mut s,
            &mem,
            None,
            Some(merge(7, vec![run(2, 100, 200), run(3, 200, 300)])),
        );
        assert!(merged.is_none());
    }
}
