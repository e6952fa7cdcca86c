//! The leaf index's blocks in `quire_leaf_blocks`, as a step reads them
//! ([`Blocks`]), as a commit or a lookup probes them ([`PROBE_SQL`],
//! [`probe`]) and as a run's filter is built from them ([`build_filter`]);
//! and the stored state ([`read_state`]). What a commit writes is in
//! `leaf_plan.rs`, runs written beside the commits in `runs_beside.rs`.
//!
//! A merge reads its input runs in order, a bounded step per commit, and
//! later deletes their blocks the same way. Runs never change once
//! written, so the writer reads ahead ([`ReadAhead`]): one statement every
//! few commits instead of three round trips in every commit, and the keys
//! of the blocks it read serve their deletion. The next statement of a run
//! starts as soon as a step used what was read before: by the step that
//! needs it, it is read (on PostgreSQL's other connection), and the commit
//! does not wait for it (a read took 1.3 ms of each batched commit).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio_postgres::types::Type;

use super::bounded;
use super::conn::{int, uint, Column as _, Started};
use super::session::Param;
use super::Shared;
use crate::store::leaf_index::bloom::{Bloom, Density};
use crate::store::leaf_index::cache::BuildFilter;
use crate::store::leaf_index::{
    BlockKey, BlockSource, Changes, IndexState, PairsAfter, BLOCK_PAIRS, STATE_KEY,
};
use crate::store::StoreError;

/// Pairs read ahead of a merge, per input run (64 blocks, 240 KiB), at
/// most: a log whose runs are flushed smaller reads a flush's worth, down
/// to a block.
const READ_AHEAD: usize = 64 * BLOCK_PAIRS;

/// A key as stored: the `u64` order as `BIGINT` order.
pub(super) fn db_key(k: u64) -> i64 {
    i64::from_ne_bytes((k ^ (1 << 63)).to_ne_bytes())
}

fn from_db_key(k: i64) -> u64 {
    u64::from_ne_bytes(k.to_ne_bytes()) ^ (1 << 63)
}

/// What the writer has read of one run (in [`ReadAhead`] once it read).
struct Ahead {
    /// Pairs after `from`, in order, as stored.
    pairs: VecDeque<(u64, u64)>,
    from: Option<(u64, u64)>,
    /// `pairs` reach the run's end.
    end: bool,
    /// Keys of the blocks read, still stored.
    keys: BTreeSet<BlockKey>,
    /// `keys` were read from the run's start on.
    from_start: bool,
    /// The read of the pairs after the last of `pairs`, started ahead.
    next: Option<NextRead>,
}

/// A read of a run's blocks, started: the pair it reads after, the most it
/// reads, and its rows.
struct NextRead {
    after: Option<(u64, u64)>,
    max: usize,
    rows: Started<Vec<BlockRow>>,
}

/// A block as read: whether it is past the pair read after, its key, its
/// pairs.
type BlockRow = (bool, (i64, i64), Vec<u8>);

impl Ahead {
    /// `keys` are all the run's blocks still stored (read from its start
    /// to its end).
    fn all_keys(&self) -> bool {
        self.from_start && self.end
    }

    /// The pair the pairs read end with: the last read, or `from`.
    fn last(&self) -> Option<(u64, u64)> {
        self.pairs.back().copied().or(self.from)
    }

    /// Adds what a read after [`Ahead::last`] gave.
    fn extend(&mut self, (pairs, done, keys): Read) {
        self.pairs.extend(pairs);
        self.end = done;
        self.keys.extend(keys);
    }

    /// The first `max` pairs read, and whether they end the run.
    fn take(&self, max: usize) -> (Vec<(u64, u64)>, bool) {
        let out: Vec<(u64, u64)> = self.pairs.iter().take(max).copied().collect();
        let done = self.end && out.len() == self.pairs.len();
        (out, done)
    }
}

/// The writer's read-ahead of runs being merged or deleted.
pub(super) struct ReadAhead {
    runs: HashMap<u64, Ahead>,
    /// Pairs a read takes ([`READ_AHEAD`] at most).
    size: usize,
}

impl ReadAhead {
    /// The read-ahead of a log whose runs are flushed `flush` pairs at a
    /// time.
    pub(super) fn new(flush: usize) -> Self {
        ReadAhead {
            runs: HashMap::new(),
            size: flush.clamp(BLOCK_PAIRS, READ_AHEAD),
        }
    }

    /// After a commit of `changes` leading to `state`: deleted blocks are
    /// gone, and runs no longer merged or deleted are dropped.
    pub(super) fn committed(&mut self, changes: &Changes, state: &IndexState) {
        for k in &changes.deletes {
            if let Some(a) = self.runs.get_mut(&k.0) {
                a.keys.remove(k);
            }
        }
        let wanted = |id: &u64| {
            state.garbage.contains(id)
                || state
                    .merge
                    .as_ref()
                    .is_some_and(|m| m.inputs.iter().any(|r| r.id == *id))
        };
        self.runs.retain(|id, _| wanted(id));
    }

    /// Forgets everything (a commit failed: what it deleted is unknown).
    pub(super) fn clear(&mut self) {
        self.runs.clear();
    }
}

/// The stored blocks, read by a step through the writer's read-ahead.
pub(super) struct Blocks<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) ahead: Option<&'a Mutex<ReadAhead>>,
}

impl Blocks<'_> {
    /// Up to `max` pairs of `run` after `after` (and whether the run ends
    /// there), with the keys of the blocks they came from.
    fn read(&self, run: u64, after: Option<(u64, u64)>, max: usize) -> Result<Read, StoreError> {
        finish(run, after, max, self.start(run, after, max)?.wait()?)
    }

    /// Starts [`Blocks::read`] on the engine's runtime.
    fn start(
        &self,
        run: u64,
        after: Option<(u64, u64)>,
        max: usize,
    ) -> Result<Started<Vec<BlockRow>>, StoreError> {
        let (s, log, run_id) = (Arc::clone(self.shared), self.shared.log, int(run)?);
        let (k0, i0) = after.map_or(Ok((i64::MIN, -1)), |(k, i)| Ok((db_key(k), int(i)?)))?;
        let limit = i64::try_from(block_limit(max)).unwrap_or(i64::MAX);
        self.shared
            .driver
            .start("reading leaf index blocks", async move {
                let c = s.reader().await?;
                let rows = c
                    .rows(
                        "(SELECT false, first_key, first_idx, substring(pairs FROM 1 FOR $6) FROM quire_leaf_blocks
                      WHERE log = $1 AND run = $2 AND (first_key, first_idx) <= ($3, $4)
                      ORDER BY first_key DESC, first_idx DESC LIMIT 1)
                     UNION ALL
                     (SELECT true, first_key, first_idx, substring(pairs FROM 1 FOR $6) FROM quire_leaf_blocks
                      WHERE log = $1 AND run = $2 AND (first_key, first_idx) > ($3, $4)
                      ORDER BY first_key, first_idx LIMIT $5)",
                        &[
                            (&log, Type::INT8),
                            (&run_id, Type::INT8),
                            (&k0, Type::INT8),
                            (&i0, Type::INT8),
                            (&limit, Type::INT8),
                            (&BLOCK_LIMIT, Type::INT4),
                        ],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.col::<bool>(0)?,
                            (r.col::<i64>(1)?, r.col::<i64>(2)?),
                            block_within(r.col::<Vec<u8>>(3)?, "read from a run")?,
                        ))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
    }

    /// The first `max` pairs `a` (of `run`) holds, and whether they end
    /// the run; the next read of `want` pairs starts behind them
    /// ([`Blocks::read_next`]).
    fn serve(&self, run: u64, a: &mut Ahead, max: usize, want: usize) -> (Vec<(u64, u64)>, bool) {
        let out = a.take(max);
        self.read_next(run, a, out.0.len(), want);
        out
    }

    /// Reads `size` pairs after what `a` (of `run`) holds in the
    /// background, unless it holds the run's end, a read is under way, or
    /// it holds `size` pairs besides the `taken` a step just took (`size`
    /// at least what the step asked for). A read that cannot start is made
    /// when needed.
    fn read_next(&self, run: u64, a: &mut Ahead, taken: usize, size: usize) {
        if a.end || a.next.is_some() || a.pairs.len().saturating_sub(taken) >= size {
            return;
        }
        let after = a.last();
        if let Ok(rows) = self.start(run, after, size) {
            a.next = Some(NextRead {
                after,
                max: size,
                rows,
            });
        }
    }
}

/// The blocks a read of `max` pairs asks for after the pair it reads
/// after: enough for `max` pairs, and the one holding that pair.
fn block_limit(max: usize) -> usize {
    max / BLOCK_PAIRS + 2
}

/// Pairs read, whether they end the run, and the keys of their blocks.
type Read = (Vec<(u64, u64)>, bool, Vec<BlockKey>);

/// [`Blocks::read`] of `rows`, read for up to `max` pairs of `run` after
/// `after`.
fn finish(
    run: u64,
    after: Option<(u64, u64)>,
    max: usize,
    rows: Vec<BlockRow>,
) -> Result<Read, StoreError> {
    // The query's second part hit its limit: more may follow.
    let later = rows.iter().filter(|(later, _, _)| *later).count();
    let more = later >= block_limit(max);
    let mut blocks = Vec::with_capacity(rows.len());
    for (_, (k, i), bytes) in rows {
        blocks.push(((run, from_db_key(k), uint(i)?), bytes));
    }
    blocks.sort_by_key(|(k, _)| *k);
    let mut pairs = PairsAfter::new(after, max);
    for (_, block) in &blocks {
        if !pairs.take(block) {
            break;
        }
    }
    let (out, ran_out) = pairs.finish();
    let keys = blocks.iter().map(|(k, _)| *k).collect();
    Ok((out, ran_out && !more, keys))
}

impl BlockSource for Blocks<'_> {
    fn pairs_after(
        &self,
        run: u64,
        after: Option<(u64, u64)>,
        max: usize,
    ) -> Result<(Vec<(u64, u64)>, bool), StoreError> {
        let Some(ahead) = self.ahead else {
            let (pairs, done, _) = self.read(run, after, max)?;
            return Ok((pairs, done));
        };
        let mut ahead = ahead.lock().unwrap_or_else(PoisonError::into_inner);
        // A read takes a step's pairs, and at least the read-ahead's size.
        let want = max.max(ahead.size);
        // What was read holds every pair after `from`: it serves a read
        // from `after` on when that is not before `from`, and the pairs
        // past `after` are `max` or the rest of the run.
        if let Some(a) = ahead.runs.get_mut(&run).filter(|a| a.from <= after) {
            while a
                .pairs
                .front()
                .is_some_and(|p| after.is_some_and(|x| *p <= x))
            {
                a.pairs.pop_front();
            }
            a.from = after;
            if a.pairs.len() < max && !a.end {
                // The read started ahead, if it continues what is held;
                // one that failed is made again below.
                if let Some(next) = a.next.take().filter(|n| n.after == a.last()) {
                    match next
                        .rows
                        .wait()
                        .and_then(|rows| finish(run, next.after, next.max, rows))
                    {
                        Ok(read) => a.extend(read),
                        Err(e) => tracing::debug!(error = %e, "a leaf index read ahead failed"),
                    }
                }
            }
            if a.pairs.len() >= max || a.end {
                return Ok(self.serve(run, a, max, want));
            }
        }
        let (pairs, done, keys) = self.read(run, after, want)?;
        let a = ahead.runs.entry(run).or_insert_with(|| Ahead {
            pairs: VecDeque::new(),
            from: after,
            end: false,
            keys: BTreeSet::new(),
            from_start: after.is_none(),
            next: None,
        });
        if after.is_none() {
            a.keys.clear();
            a.from_start = true;
        }
        a.keys.extend(keys);
        a.from = after;
        a.end = done;
        a.pairs = pairs.into();
        a.next = None;
        Ok(self.serve(run, a, max, want))
    }

    fn block_keys(&self, run: u64, max: usize) -> Result<Vec<BlockKey>, StoreError> {
        if let Some(ahead) = self.ahead {
            let ahead = ahead.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(a) = ahead.runs.get(&run).filter(|a| a.all_keys()) {
                return Ok(a.keys.iter().take(max).copied().collect());
            }
        }
        let (s, log, run_id) = (Arc::clone(self.shared), self.shared.log, int(run)?);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let rows = self
            .shared
            .driver
            .run("reading leaf index blocks", async move {
                let c = s.reader().await?;
                let rows = c
                    .rows(
                        "SELECT first_key, first_idx FROM quire_leaf_blocks
                     WHERE log = $1 AND run = $2 ORDER BY first_key, first_idx LIMIT $3",
                        &[
                            (&log, Type::INT8),
                            (&run_id, Type::INT8),
                            (&limit, Type::INT8),
                        ],
                    )
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.col::<i64>(0)?, r.col::<i64>(1)?)))
                    .collect::<Result<Vec<_>, StoreError>>()
            })?;
        rows.into_iter()
            .map(|(k, i)| Ok((run, from_db_key(k), uint(i)?)))
            .collect()
    }
}

/// The stored state of a log's leaf index (`$1` the log, `$2` the key,
/// `$3` [`bounded::param`] of [`bounded::META`]).
pub(super) const STATE_SQL: &str =
    "SELECT substring(value FROM 1 FOR $3) FROM quire_meta WHERE log = $1 AND key = $2";

/// The parameters of [`STATE_SQL`] for log `log`.
pub(super) fn state_params(log: &i64) -> [Param<'_>; 3] {
    [
        (log, Type::INT8),
        (&STATE_KEY, Type::TEXT),
        (&STATE_LIMIT, Type::INT4),
    ]
}

/// [`STATE_SQL`]'s `$3`.
const STATE_LIMIT: i32 = bounded::param(bounded::META);

/// A block's pairs read as [`bounded`] says: refused over the most a
/// block holds.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the block when it is over.
fn block_within(pairs: Vec<u8>, which: &str) -> Result<Vec<u8>, StoreError> {
    bounded::within(pairs, bounded::LEAF_BLOCK, || {
        format!("a stored block of the leaf index ({which})")
    })
}

/// [`PROBE_SQL`]'s `$5` and the blocks read's `$6`.
const BLOCK_LIMIT: i32 = bounded::param(bounded::LEAF_BLOCK);

/// The block of each probe that may hold its key: `$2` the probes'
/// numbers, `$3` their runs, `$4` their keys (as stored), `$5`
/// [`BLOCK_LIMIT`]; one row a probe,
/// the last block of its run whose first key is at most the key, or a
/// block of equal first keys before it.
pub(super) const PROBE_SQL: &str = "SELECT p.n, substring(b.pairs FROM 1 FOR $5)
     FROM unnest($2::int4[], $3::int8[], $4::int8[]) AS p(n, run, key)
     JOIN LATERAL (
         SELECT pairs FROM quire_leaf_blocks
         WHERE log = $1 AND run = p.run AND first_key <= p.key AND first_key >= COALESCE(
             (SELECT first_key FROM quire_leaf_blocks
              WHERE log = $1 AND run = p.run AND first_key < p.key
              ORDER BY first_key DESC, first_idx DESC LIMIT 1),
             p.key)
     ) b ON true";

/// Probes of runs' blocks: each one's number (of the key it is for), its
/// run, and the key as stored.
pub(super) type Probes = (Vec<i32>, Vec<i64>, Vec<i64>);

/// The parameters of [`PROBE_SQL`] for `probes` of log `log`.
pub(super) fn probe_params<'a>(log: &'a i64, probes: &'a Probes) -> [Param<'a>; 5] {
    [
        (log, Type::INT8),
        (&probes.0, Type::INT4_ARRAY),
        (&probes.1, Type::INT8_ARRAY),
        (&probes.2, Type::INT8_ARRAY),
        (&BLOCK_LIMIT, Type::INT4),
    ]
}

/// A row of [`PROBE_SQL`]: the number of the key probed, and the pairs of
/// the block that may hold it.
///
/// # Errors
/// [`StoreError::Corrupt`] for a column of another type or a block over
/// its limit.
pub(super) fn probe_row(r: &tokio_postgres::Row) -> Result<(usize, Vec<u8>), StoreError> {
    Ok((
        usize::try_from(r.col::<i32>(0)?).unwrap_or(usize::MAX),
        block_within(r.col::<Vec<u8>>(1)?, "probed")?,
    ))
}

/// The value of `key` in the log's `quire_meta`, if any (at most
/// [`bounded::META`] bytes of it read); `what` names the read.
///
/// # Errors
/// [`StoreError`] from the database.
pub(super) fn read_meta(
    shared: &Arc<Shared>,
    key: &'static str,
    what: &'static str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let (s, log) = (Arc::clone(shared), shared.log);
    shared.driver.run(what, async move {
        let c = s.reader().await?;
        let row = c
            .row_opt(
                STATE_SQL,
                &[
                    (&log, Type::INT8),
                    (&key, Type::TEXT),
                    (&STATE_LIMIT, Type::INT4),
                ],
            )
            .await?;
        row.map(|r| r.col::<Vec<u8>>(0)).transpose()
    })
}

/// The stored state, if any.
pub(super) fn read_state(shared: &Arc<Shared>) -> Result<Option<IndexState>, StoreError> {
    read_meta(shared, STATE_KEY, "reading the leaf index state")?
        .map(|b| IndexState::decode(&b))
        .transpose()
}

/// Blocks that may hold each probe's key: per probe (number, run, key),
/// the block starting at or before the key and those starting with it;
/// and the stored state read after them (pipelined on one connection,
/// which runs the statements in the order sent).
#[allow(clippy::type_complexity)]
pub(super) fn probe(
    shared: &Arc<Shared>,
    probes: Probes,
) -> Result<(Vec<(usize, Vec<u8>)>, Option<IndexState>), StoreError> {
    let (s, log) = (Arc::clone(shared), shared.log);
    let (blocks, state) = shared.driver.run("probing the leaf index", async move {
        let c = s.reader().await?;
        let probe_params = probe_params(&log, &probes);
        let state_params = state_params(&log);
        let rows = c.rows_planned(PROBE_SQL, &probe_params);
        let state = c.row_opt(STATE_SQL, &state_params);
        let (rows, state) = futures_util::future::join(rows, state).await;
        let blocks = rows?
            .iter()
            .map(probe_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((blocks, state?.map(|r| r.col::<Vec<u8>>(0)).transpose()?))
    })?;
    Ok((blocks, state.map(|b| IndexState::decode(&b)).transpose()?))
}

/// Builds a run's filter from its stored blocks, a page at a time.
pub(super) fn build_filter(shared: Weak<Shared>) -> BuildFilter {
    Box::new(move |id, stop| {
        let Some(shared) = shared.upgrade() else {
            return Ok(None);
        };
        let Some(state) = read_state(&shared)? else {
            return Ok(None);
        };
        let Some(run) = state.runs.iter().find(|r| r.id == id).copied() else {
            return Ok(None);
        };
        let mut bloom = Bloom::with_density(run.len(), Density::Dense);
        let blocks = Blocks {
            shared: &shared,
            ahead: None,
        };
        let mut after = None;
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(None);
            }
            let (pairs, done) = blocks.pairs_after(id, after, 64 * BLOCK_PAIRS)?;
            for (k, _) in &pairs {
                bloom.insert(*k);
            }
            after = pairs.last().copied().or(after);
            if done {
                return Ok(Some(bloom));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_keep_the_order_of_keys() {
        let keys = [0u64, 1, (1 << 63) - 1, 1 << 63, u64::MAX - 1, u64::MAX];
        for w in keys.windows(2) {
            assert!(db_key(w[0]) < db_key(w[1]), "{w:?}");
        }
        for k in keys {
            assert_eq!(from_db_key(db_key(k)), k);
        }
    }
}
