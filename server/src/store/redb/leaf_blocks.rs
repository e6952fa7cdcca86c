//! The leaf index's blocks in the redb file ([`crate::store::leaf_index`]
//! holds the index itself): reading them for a step, writing a step's
//! changes, probing a run for a key, and building a run's filter.

use redb::{ReadableTable, TableDefinition};

use super::error::engine;
use crate::store::leaf_index::bloom::Bloom;
use crate::store::leaf_index::{
    block_lookup, pairs_of, BlockKey, BlockSource, Changes, PairsAfter, Run,
};
use crate::store::StoreError;

/// Blocks of sorted pairs: (run id, first key, first index) → pairs of
/// (key, index), 16 bytes each, big-endian, sorted.
pub(crate) const RUN_BLOCKS: TableDefinition<(u64, u64, u64), &[u8]> =
    TableDefinition::new("leaf_runs");

/// A table of blocks, read by a step.
pub(crate) struct Blocks<'a, T>(pub(crate) &'a T);

impl<T: ReadableTable<(u64, u64, u64), &'static [u8]>> BlockSource for Blocks<'_, T> {
    fn pairs_after(
        &self,
        run: u64,
        after: Option<(u64, u64)>,
        max: usize,
    ) -> Result<(Vec<(u64, u64)>, bool), StoreError> {
        let table = self.0;
        let (k0, i0) = after.unwrap_or((0, 0));
        // The block holding `after` starts at or before it.
        let first = table
            .range((run, 0, 0)..=(run, k0, i0))
            .map_err(engine)?
            .next_back()
            .transpose()
            .map_err(engine)?
            .map_or((run, 0, 0), |(k, _)| k.value());
        let mut pairs = PairsAfter::new(after, max);
        for row in table
            .range(first..=(run, u64::MAX, u64::MAX))
            .map_err(engine)?
        {
            let (_, v) = row.map_err(engine)?;
            if !pairs.take(v.value()) {
                break;
            }
        }
        Ok(pairs.finish())
    }

    fn block_keys(&self, run: u64, max: usize) -> Result<Vec<BlockKey>, StoreError> {
        self.0
            .range((run, 0, 0)..=(run, u64::MAX, u64::MAX))
            .map_err(engine)?
            .take(max)
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(engine)
    }
}

/// Writes a step's changes into `table`.
///
/// # Errors
/// [`StoreError::Engine`].
pub(crate) fn apply(
    table: &mut redb::Table<'_, (u64, u64, u64), &[u8]>,
    changes: &Changes,
) -> Result<(), StoreError> {
    for k in &changes.deletes {
        table.remove(k).map_err(engine)?;
    }
    for (k, v) in &changes.puts {
        table.insert(k, v.as_slice()).map_err(engine)?;
    }
    Ok(())
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
    let blocks = table
        .range((run.id, 0, 0)..=(run.id, key, u64::MAX))
        .map_err(engine)?;
    for row in blocks.rev() {
        let (k, v) = row.map_err(engine)?;
        let (_, first_key, _) = k.value();
        block_lookup(v.value(), key, out);
        // Only a block that starts with `key` can have more before it.
        if first_key < key {
            break;
        }
    }
    Ok(())
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
