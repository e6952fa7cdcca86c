//! What one commit does to the leaf index: a flush of the memtable when it
//! is full, a bounded step of the merge in progress and a bounded step of
//! deleting merged-away runs. Computed from the stored blocks into
//! [`Changes`] that the engine writes in the same commit.

use quire_core::Hash;

use super::bloom::{Bloom, Density};
use super::memtable::Memtable;
use super::state::{IndexState, Merge, Run};
use super::{key, BlockSource, Changes, Staged, BLOCK_PAIRS};
use crate::store::StoreError;

/// What one commit does to the index.
pub(crate) struct Step {
    pub(crate) state: IndexState,
    /// The memtable was written out as a run: clear it from `start`.
    pub(crate) flushed_to: Option<u64>,
    /// The filter of the run just flushed.
    pub(crate) flushed: Option<(u64, Bloom)>,
    /// A merge finished.
    pub(crate) merged: Option<Merged>,
}

/// A finished merge: `inputs` are gone, `output` replaces them.
pub(crate) struct Merged {
    pub(crate) inputs: [u64; 2],
    pub(crate) output: u64,
    /// Its filter, when every pair went through this process (not after a
    /// restart in the middle of the merge).
    pub(crate) bloom: Option<Bloom>,
}

/// The filter of the merge in progress, kept by the writer: present only
/// while it has seen every pair written to that merge's output.
pub(crate) type MergeBloom = Option<(u64, Bloom)>;

/// This commit's share of the index: a flush when the memtable (plus
/// `new_pairs`) reaches `flush`, then a bounded merge step and a bounded
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
    flush: usize,
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
    if mem.len() + new_pairs.len() as u64 >= flush as u64 && end > mem.start {
        let mut pairs = mem.sorted_pairs();
        pairs.extend(new_pairs.iter().map(|(h, i)| (key(h), *i)));
        pairs.sort_unstable();
        let id = state.next_id;
        state.next_id += 1;
        staged.put(id, &pairs);
        if merge_bloom.is_some() {
            let mut bloom = Bloom::with_density(pairs.len() as u64, density);
            for (k, _) in &pairs {
                bloom.insert(*k);
            }
            flushed = Some((id, bloom));
        }
        state.runs.push(Run {
            id,
            start: mem.start,
            end,
        });
        flushed_to = Some(end);
    }
    let budget = (4 * new_pairs.len()).max(16 * BLOCK_PAIRS);
    if state.merge.is_none() {
        state.merge = pick_merge(&mut state);
        if let (Some(m), Some(mb)) = (&state.merge, merge_bloom.as_deref_mut()) {
            *mb = Some((
                m.output,
                Bloom::with_density(m.older.len() + m.newer.len(), density),
            ));
        }
    }
    let mut merged = None;
    if let Some(m) = state.merge {
        let mut bloom = match merge_bloom.as_deref_mut().and_then(Option::take) {
            Some((id, b)) if id == m.output => Some(b),
            _ => None,
        };
        state.merge = merge_step(&mut staged, &mut state, m, budget, bloom.as_mut())?;
        if state.merge.is_none() {
            merged = Some(Merged {
                inputs: [m.older.id, m.newer.id],
                output: m.output,
                bloom,
            });
        } else if let Some(mb) = merge_bloom {
            *mb = bloom.map(|b| (m.output, b));
        }
    }
    delete_step(&mut staged, &mut state, budget)?;
    Ok((
        Step {
            state,
            flushed_to,
            flushed,
            merged,
        },
        staged.changes,
    ))
}

/// The newest two adjacent runs of similar size (the older at most twice
/// the newer).
fn pick_merge(state: &mut IndexState) -> Option<Merge> {
    let i = (1..state.runs.len())
        .rev()
        .find(|&i| state.runs[i - 1].len() <= 2 * state.runs[i].len())?;
    let output = state.next_id;
    state.next_id += 1;
    Some(Merge {
        older: state.runs[i - 1],
        newer: state.runs[i],
        output,
        last: None,
    })
}

fn merge_step<S: BlockSource + ?Sized>(
    staged: &mut Staged<'_, S>,
    state: &mut IndexState,
    mut merge: Merge,
    budget: usize,
    bloom: Option<&mut Bloom>,
) -> Result<Option<Merge>, StoreError> {
    let (older, older_done) = staged.pairs_after(merge.older.id, merge.last, budget)?;
    let (newer, newer_done) = staged.pairs_after(merge.newer.id, merge.last, budget)?;
    let mut out = Vec::with_capacity(budget);
    let (mut x, mut y) = (0, 0); // positions in older, newer
    while out.len() < budget {
        let next = match (older.get(x), newer.get(y)) {
            (Some(p), Some(q)) => {
                if p < q {
                    x += 1;
                    *p
                } else {
                    y += 1;
                    *q
                }
            }
            // One side ran dry: its remainder may still be stored.
            (Some(p), None) if newer_done => {
                x += 1;
                *p
            }
            (None, Some(q)) if older_done => {
                y += 1;
                *q
            }
            _ => break,
        };
        out.push(next);
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
    let finished = older_done && newer_done && x == older.len() && y == newer.len();
    if !finished {
        return Ok(Some(merge));
    }
    let Some(pos) = state.runs.iter().position(|r| *r == merge.older) else {
        return Err(StoreError::Corrupt(
            "leaf index merge input is not among the runs".into(),
        ));
    };
    if state.runs.get(pos + 1) != Some(&merge.newer) {
        return Err(StoreError::Corrupt(
            "leaf index merge inputs are not adjacent".into(),
        ));
    }
    state.runs.splice(
        pos..pos + 2,
        [Run {
            id: merge.output,
            start: merge.older.start,
            end: merge.newer.end,
        }],
    );
    state.garbage.extend([merge.older.id, merge.newer.id]);
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
