//! The leaf-hash index (first 8 bytes of a leaf hash → entry index) as a
//! small log-structured merge tree inside the redb file.
//!
//! Random keys inserted one at a time into redb's copy-on-write B-tree
//! rewrite about one page per entry, which bounded writes. Here:
//! - the newest leaves live in a memtable ([`super::index_cache`]). It needs no write of its own:
//!   at start it is rebuilt from the level-0 tile rows, which every commit
//!   stores anyway;
//! - when it holds `flush` leaves, the commit that crosses the mark writes
//!   them as one sorted *run* of blocks ([`RUN_BLOCKS`]);
//! - adjacent runs of similar size are merged a bounded step at a time inside
//!   ordinary commits, and the blocks of merged-away runs are deleted the
//!   same way, so no commit stalls on a large merge and runs stay few
//!   (about log2 of the tree size over `flush`).
//!
//! The index state ([`IndexState`]: the runs, the merge in progress, the runs
//! to delete) is stored in the same transaction as the blocks it describes,
//! so a crash leaves either the old or the new state, never a mix.

use quire_core::Hash;
use redb::{ReadableTable, TableDefinition};

use super::bloom::Bloom;
use super::index_cache::Memtable;
use crate::store::StoreError;

/// Blocks of sorted pairs: (run id, first key, first index) → pairs of
/// (key, index), 16 bytes each, big-endian, sorted.
pub(crate) const RUN_BLOCKS: TableDefinition<(u64, u64, u64), &[u8]> =
    TableDefinition::new("leaf_runs");
/// Key of the encoded [`IndexState`] in the metadata table.
pub(crate) const STATE_KEY: &str = "leaf_index";
/// Leaves held in memory before they are written as a run.
pub const DEFAULT_FLUSH: usize = 1 << 18;
/// Pairs per block: a block and its key fit one 4 KiB page.
const BLOCK_PAIRS: usize = 240;
const PAIR: usize = 16;
/// Largest encoded state accepted (checked before decoding).
const MAX_STATE_BYTES: usize = 64 * 1024;

/// The key of a leaf hash: its first 8 bytes. The full hash is checked
/// against the tile row before an index is returned.
pub(crate) fn key(leaf: &Hash) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&leaf.0[..8]);
    u64::from_be_bytes(k)
}

/// One sorted run: the pairs of leaves `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) id: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Run {
    fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// A merge of two adjacent runs into `output`, done a step at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Merge {
    older: Run,
    newer: Run,
    output: u64,
    /// The last pair written to `output`.
    last: Option<(u64, u64)>,
}

/// The persistent state of the index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndexState {
    next_id: u64,
    /// Runs in index order; together they cover `[0, covered())`.
    pub(crate) runs: Vec<Run>,
    merge: Option<Merge>,
    /// Runs merged away whose blocks are still being deleted.
    garbage: Vec<u64>,
}

impl IndexState {
    /// Leaves `[0, covered())` are in runs.
    pub(crate) fn covered(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.end)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        let mut put = |v: u64| out.extend_from_slice(&v.to_be_bytes());
        put(self.next_id);
        put(self.runs.len() as u64);
        for r in &self.runs {
            put(r.id);
            put(r.start);
            put(r.end);
        }
        match &self.merge {
            None => put(0),
            Some(m) => {
                put(1);
                for r in [m.older, m.newer] {
                    put(r.id);
                    put(r.start);
                    put(r.end);
                }
                put(m.output);
                let (has, k, i) = m.last.map_or((0, 0, 0), |(k, i)| (1, k, i));
                put(has);
                put(k);
                put(i);
            }
        }
        put(self.garbage.len() as u64);
        for g in &self.garbage {
            put(*g);
        }
        out
    }

    /// # Errors
    /// [`StoreError::Corrupt`] for anything but a well-formed state.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let bad = |why: &str| StoreError::Corrupt(format!("leaf index state: {why}"));
        if bytes.len() > MAX_STATE_BYTES {
            return Err(bad(&format!(
                "{} bytes, over the {MAX_STATE_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let Some((&1, mut rest)) = bytes.split_first() else {
            return Err(bad("unknown version"));
        };
        let mut get = || -> Result<u64, StoreError> {
            let (head, tail) = rest.split_at_checked(8).ok_or_else(|| bad("truncated"))?;
            rest = tail;
            let mut b = [0u8; 8];
            b.copy_from_slice(head);
            Ok(u64::from_be_bytes(b))
        };
        let run = |get: &mut dyn FnMut() -> Result<u64, StoreError>| -> Result<Run, StoreError> {
            Ok(Run {
                id: get()?,
                start: get()?,
                end: get()?,
            })
        };
        let next_id = get()?;
        let n = get()?;
        let mut runs = Vec::new();
        for _ in 0..n.min(MAX_STATE_BYTES as u64) {
            runs.push(run(&mut get)?);
        }
        let merge = match get()? {
            0 => None,
            1 => {
                let older = run(&mut get)?;
                let newer = run(&mut get)?;
                let output = get()?;
                let has = get()?;
                let (k, i) = (get()?, get()?);
                Some(Merge {
                    older,
                    newer,
                    output,
                    last: (has == 1).then_some((k, i)),
                })
            }
            _ => return Err(bad("bad merge flag")),
        };
        let g = get()?;
        let mut garbage = Vec::new();
        for _ in 0..g.min(MAX_STATE_BYTES as u64) {
            garbage.push(get()?);
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let state = IndexState {
            next_id,
            runs,
            merge,
            garbage,
        };
        let mut at = 0;
        for r in &state.runs {
            if r.start != at || r.end <= r.start || r.id >= state.next_id {
                return Err(bad("runs do not tile the leaves"));
            }
            at = r.end;
        }
        Ok(state)
    }
}

fn put_pair(out: &mut Vec<u8>, (k, i): (u64, u64)) {
    out.extend_from_slice(&k.to_be_bytes());
    out.extend_from_slice(&i.to_be_bytes());
}

fn pairs_of(block: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    block.chunks_exact(PAIR).map(|c| {
        let mut k = [0u8; 8];
        let mut i = [0u8; 8];
        k.copy_from_slice(&c[..8]);
        i.copy_from_slice(&c[8..]);
        (u64::from_be_bytes(k), u64::from_be_bytes(i))
    })
}

fn write_blocks(
    table: &mut redb::Table<'_, (u64, u64, u64), &[u8]>,
    run: u64,
    pairs: &[(u64, u64)],
) -> Result<(), StoreError> {
    let mut bytes = Vec::with_capacity(BLOCK_PAIRS * PAIR);
    for chunk in pairs.chunks(BLOCK_PAIRS) {
        bytes.clear();
        for p in chunk {
            put_pair(&mut bytes, *p);
        }
        let (k, i) = chunk[0];
        table
            .insert((run, k, i), bytes.as_slice())
            .map_err(super::error::engine)?;
    }
    Ok(())
}

/// Up to `max` pairs of `run` after `after`, in order; and whether the run
/// has no more.
fn read_after(
    table: &impl ReadableTable<(u64, u64, u64), &'static [u8]>,
    run: u64,
    after: Option<(u64, u64)>,
    max: usize,
) -> Result<(Vec<(u64, u64)>, bool), StoreError> {
    let engine = super::error::engine;
    let mut out = Vec::with_capacity(max.min(1 << 16));
    let (k0, i0) = after.unwrap_or((0, 0));
    // The block holding `after` starts at or before it.
    let first = table
        .range((run, 0, 0)..=(run, k0, i0))
        .map_err(engine)?
        .next_back()
        .transpose()
        .map_err(engine)?
        .map_or((run, 0, 0), |(k, _)| k.value());
    for row in table
        .range(first..=(run, u64::MAX, u64::MAX))
        .map_err(engine)?
    {
        let (_, v) = row.map_err(engine)?;
        for p in pairs_of(v.value()) {
            if after.is_some_and(|a| p <= a) {
                continue;
            }
            if out.len() == max {
                return Ok((out, false));
            }
            out.push(p);
        }
    }
    Ok((out, true))
}

/// Indexes stored under `key` in `run`, appended to `out`.
///
/// # Errors
/// [`StoreError::Engine`].
pub(crate) fn probe(
    table: &impl ReadableTable<(u64, u64, u64), &'static [u8]>,
    run: &Run,
    key: u64,
    out: &mut Vec<u64>,
) -> Result<(), StoreError> {
    let engine = super::error::engine;
    let blocks = table
        .range((run.id, 0, 0)..=(run.id, key, u64::MAX))
        .map_err(engine)?;
    for row in blocks.rev() {
        let (k, v) = row.map_err(engine)?;
        let (_, first_key, _) = k.value();
        let block = v.value();
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
        // Only a block that starts with `key` can have more before it.
        if first_key < key {
            break;
        }
    }
    Ok(())
}

/// What one commit does to the index, decided and written inside the
/// commit's transaction.
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

/// Writes this commit's share of the index into `txn`: a flush when the
/// memtable (plus `new_pairs`) reaches `flush`, then a bounded merge step
/// and a bounded deletion step.
///
/// # Errors
/// [`StoreError`] from the engine, or a commit that does not follow the
/// memtable.
pub(crate) fn write_step(
    txn: &redb::WriteTransaction,
    mut state: IndexState,
    mem: &Memtable,
    new_pairs: &[(Hash, u64)],
    flush: usize,
    mut merge_bloom: Option<&mut MergeBloom>,
) -> Result<Step, StoreError> {
    let engine = super::error::engine;
    let mut table = txn.open_table(RUN_BLOCKS).map_err(engine)?;
    if let Some((_, i)) = new_pairs.first() {
        if *i != mem.end {
            return Err(StoreError::Corrupt(format!(
                "leaf index holds leaves up to {}, the commit starts at {i}",
                mem.end
            )));
        }
    }
    let end = mem.end + new_pairs.len() as u64;
    let mut flushed_to = None;
    let mut flushed = None;
    if mem.len() + new_pairs.len() as u64 >= flush as u64 && end > mem.start {
        let mut pairs = mem.sorted_pairs();
        pairs.extend(new_pairs.iter().map(|(h, i)| (key(h), *i)));
        pairs.sort_unstable();
        let id = state.next_id;
        state.next_id += 1;
        write_blocks(&mut table, id, &pairs)?;
        if merge_bloom.is_some() {
            let mut bloom = Bloom::with_capacity(pairs.len() as u64);
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
                Bloom::with_capacity(m.older.len() + m.newer.len()),
            ));
        }
    }
    let mut merged = None;
    if let Some(m) = state.merge {
        let mut bloom = match merge_bloom.as_deref_mut().and_then(Option::take) {
            Some((id, b)) if id == m.output => Some(b),
            _ => None,
        };
        state.merge = merge_step(&mut table, &mut state, m, budget, bloom.as_mut())?;
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
    delete_step(&mut table, &mut state, budget)?;
    Ok(Step {
        state,
        flushed_to,
        flushed,
        merged,
    })
}

/// The filter of one stored run, built by reading all its blocks.
///
/// # Errors
/// [`StoreError::Engine`].
pub(crate) fn build_bloom(
    table: &impl ReadableTable<(u64, u64, u64), &'static [u8]>,
    run: &Run,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Option<Bloom>, StoreError> {
    let engine = super::error::engine;
    let mut bloom = Bloom::with_capacity(run.len());
    for row in table
        .range((run.id, 0, 0)..=(run.id, u64::MAX, u64::MAX))
        .map_err(engine)?
    {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let (_, v) = row.map_err(engine)?;
        for (k, _) in pairs_of(v.value()) {
            bloom.insert(k);
        }
    }
    Ok(Some(bloom))
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

fn merge_step(
    table: &mut redb::Table<'_, (u64, u64, u64), &[u8]>,
    state: &mut IndexState,
    mut merge: Merge,
    budget: usize,
    bloom: Option<&mut Bloom>,
) -> Result<Option<Merge>, StoreError> {
    let (older, older_done) = read_after(&*table, merge.older.id, merge.last, budget)?;
    let (newer, newer_done) = read_after(&*table, merge.newer.id, merge.last, budget)?;
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
            // One side ran dry: its remainder may still be on disk.
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
    write_blocks(table, merge.output, &out)?;
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

fn delete_step(
    table: &mut redb::Table<'_, (u64, u64, u64), &[u8]>,
    state: &mut IndexState,
    budget: usize,
) -> Result<(), StoreError> {
    let engine = super::error::engine;
    let mut blocks = budget / BLOCK_PAIRS + 1;
    while let Some(&id) = state.garbage.first() {
        let keys: Vec<(u64, u64, u64)> = table
            .range((id, 0, 0)..=(id, u64::MAX, u64::MAX))
            .map_err(engine)?
            .take(blocks)
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(engine)?;
        for k in &keys {
            table.remove(k).map_err(engine)?;
        }
        blocks -= keys.len();
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

    #[test]
    fn state_round_trips_and_rejects_damage() {
        let s = IndexState {
            next_id: 5,
            runs: vec![
                Run {
                    id: 2,
                    start: 0,
                    end: 10,
                },
                Run {
                    id: 4,
                    start: 10,
                    end: 13,
                },
            ],
            merge: Some(Merge {
                older: Run {
                    id: 2,
                    start: 0,
                    end: 10,
                },
                newer: Run {
                    id: 4,
                    start: 10,
                    end: 13,
                },
                output: 3,
                last: Some((7, 9)),
            }),
            garbage: vec![0, 1],
        };
        let bytes = s.encode();
        assert_eq!(IndexState::decode(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(IndexState::decode(&bytes[..cut]).is_err(), "prefix {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(IndexState::decode(&longer).is_err());
        let mut gap = s.clone();
        gap.runs[1].start = 11;
        assert!(IndexState::decode(&gap.encode()).is_err());
        assert!(IndexState::decode(&vec![1u8; MAX_STATE_BYTES + 1]).is_err());
    }
}
