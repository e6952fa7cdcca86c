//! The threads that write the leaf index's runs and merges beside the
//! commits ([`super::runs_beside`], [`super::merges_beside`]), each on a
//! connection of its own, and the transaction each chunk of blocks is
//! written in, under its reservation.

use std::sync::{Arc, Weak};

use tokio_postgres::types::Type;

use super::conn::int;
use super::leaf_blocks::db_key;
use super::leaf_plan::PUT_BLOCKS;
use super::merges_beside::{write_merge, MergeJob};
use super::runs_beside::{reserved_value, Lane, Ready};
use super::settle::Held;
use super::statement::exec;
use super::Shared;
use crate::store::leaf_index::bloom::{Bloom, Density};
use crate::store::leaf_index::memtable::{Frozen, Worker};
use crate::store::leaf_index::{blocks_of, Run, Written};
use crate::store::StoreError;

/// A run to write: reservation `id`, of the leaves of `frozen`.
struct FlushJob {
    generation: u64,
    id: u64,
    frozen: Arc<Frozen>,
}

/// What the thread writes: a run of the memtable, or a merge.
enum Job {
    Flush(FlushJob),
    Merge(MergeJob),
}

/// The threads that write runs and merges beside the commits, each in
/// the order the commits reserved them: two, so that a long merge does
/// not hold back the memtable's runs.
pub(super) struct RunWriter {
    runs: Worker<Job>,
    merges: Worker<Job>,
}

impl RunWriter {
    /// Starts the threads for `shared`'s log.
    ///
    /// # Errors
    /// [`StoreError::Engine`] when a thread cannot start.
    pub(super) fn spawn(shared: &Weak<Shared>) -> Result<Self, StoreError> {
        let work = |shared: Weak<Shared>, lane: Lane| {
            move |job: Job| {
                let Some(shared) = shared.upgrade() else {
                    return false;
                };
                match job {
                    Job::Flush(job) => match write(&shared, &job) {
                        Ok(ready) => shared.leaves.beside().written(job.generation, ready),
                        Err(e) => {
                            tracing::warn!(run = job.id, error = %e, "leaf index run not written beside the commits; a later commit reserves another");
                            shared.leaves.beside().not_written(job.generation, job.id);
                        }
                    },
                    Job::Merge(job) => match write_merge(&shared, &job) {
                        Ok(ready) => shared.leaves.beside().merge_written(job.generation, ready),
                        Err(e) => {
                            tracing::warn!(run = job.id, error = %e, "leaf index merge not written beside the commits; a later commit reserves another");
                            shared
                                .leaves
                                .beside()
                                .merge_not_written(job.generation, job.id);
                        }
                    },
                }
                // A connection per log only while it writes: a run comes
                // every flush of leaves, a merge far less often.
                let s = Arc::clone(&shared);
                let _ = shared
                    .driver
                    .run("closing a run writer's connection", async move {
                        lane.conn(&s).close().await;
                        Ok(())
                    });
                true
            }
        };
        Ok(RunWriter {
            runs: Worker::spawn("leaf index runs", work(Weak::clone(shared), Lane::Runs))?,
            merges: Worker::spawn("leaf index merges", work(Weak::clone(shared), Lane::Merges))?,
        })
    }

    /// Queues the write of reservation `id` from `frozen`.
    pub(super) fn flush(&self, generation: u64, id: u64, frozen: Arc<Frozen>) {
        self.runs.queue(Job::Flush(FlushJob {
            generation,
            id,
            frozen,
        }));
    }

    /// Queues the write of merge reservation `id` of `inputs`.
    pub(super) fn merge(&self, generation: u64, id: u64, inputs: Vec<Run>) {
        self.merges.queue(Job::Merge(MergeJob {
            generation,
            id,
            inputs,
        }));
    }
}

/// Writes `job`'s run ([`put_reserved`]) and builds its filter.
fn write(shared: &Arc<Shared>, job: &FlushJob) -> Result<Ready, StoreError> {
    let pairs = job.frozen.sorted_pairs();
    let bloom = Bloom::of_pairs(&pairs, Density::Dense);
    let blocks = put_reserved(shared, Lane::Runs, job.id, &pairs)?;
    Ok(Ready {
        run: Written {
            id: job.id,
            start: job.frozen.start,
            end: job.frozen.end,
            bloom: Arc::new(bloom),
        },
        blocks,
    })
}

/// Writes `pairs` (sorted, after any written before under `id`) as blocks
/// of run `id`, reserved in `lane`, on its connection: in a transaction
/// that holds the
/// reservation row `FOR SHARE` and is refused unless the row names `id`,
/// committed without waiting for the flush (the commit that takes the run
/// comes later in the WAL, and checks the blocks). Returns the blocks
/// written.
///
/// # Errors
/// [`StoreError::Corrupt`] when the reservation is gone (raised by
/// PostgreSQL, nothing written), or what PostgreSQL answers.
pub(super) fn put_reserved(
    shared: &Arc<Shared>,
    lane: Lane,
    id: u64,
    pairs: &[(u64, u64)],
) -> Result<u64, StoreError> {
    let blocks = blocks_of(id, pairs);
    let n = blocks.len() as u64;
    let (mut keys, mut idxs, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for ((_, k, i), b) in blocks {
        keys.push(db_key(k));
        idxs.push(int(i)?);
        bytes.push(b);
    }
    let runs = vec![int(id)?; keys.len()];
    let value = reserved_value(id)?;
    let (s, log) = (Arc::clone(shared), shared.log);
    shared.driver.run("writing a leaf index run", async move {
        let mut held = Held::new(
            lane.conn(&s)
                .hold(s.driver.config(), s.driver.tls())
                .await?,
        );
        let Some(client) = held.session() else {
            return Err(StoreError::engine(
                "no PostgreSQL connection to write a leaf index run on",
            ));
        };
        let (begun, off, reserved, put, committed) = futures_util::future::join5(
            client.batch_execute("BEGIN"),
            client.row_one(
                "SELECT set_config('synchronous_commit', 'off', true)",
                &[],
            ),
            exec(
                &client,
                "WITH w AS (SELECT 1 FROM quire_meta WHERE log = $1 AND key = $2 AND value = $3 FOR SHARE) SELECT quire_expect(count(*), $4, $5) FROM w",
                vec![
                    (&log, Type::INT8),
                    (&lane.key(), Type::TEXT),
                    (&value, Type::BYTEA),
                ],
                1,
                "the reservation of the run written".into(),
            ),
            exec(
                &client,
                PUT_BLOCKS,
                vec![
                    (&log, Type::INT8),
                    (&runs, Type::INT8_ARRAY),
                    (&keys, Type::INT8_ARRAY),
                    (&idxs, Type::INT8_ARRAY),
                    (&bytes, Type::BYTEA_ARRAY),
                ],
                n,
                "leaf index blocks written beside".into(),
            ),
            client.batch_execute("COMMIT"),
        )
        .await;
        begun.map_err(super::conn::engine)?;
        off?;
        reserved?;
        put?;
        committed.map_err(super::conn::engine)?;
        held.clean();
        Ok(())
    })?;
    Ok(n)
}
