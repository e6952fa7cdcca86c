//! Runs of the leaf index written beside the commits, not inside them.
//!
//! Writing a memtable of 2^18 leaves as a run inside the commit that
//! filled it made that commit about 40 ms slower than the others (sorting
//! the pairs, building their filter, 4 MiB of blocks), on the one path
//! every commit waits for. Instead, on the writer:
//! - a commit *reserves* a run id once the memtable holds a flush of
//!   leaves: the state's next id, taken in that commit, and the id stored
//!   in `quire_meta` under [`RESERVED_KEY`];
//! - once it landed, the memtable's leaves are frozen (newer ones go to
//!   its active part) and this module's thread sorts them, builds their
//!   filter and writes their blocks under the reserved id, in a
//!   transaction of its own on a connection of its own, which holds the
//!   reservation row `FOR SHARE` and is refused unless it names that id;
//! - a later commit *takes* the run: it checks the run's blocks are all
//!   stored, adds it to the state and clears the reservation. Its step is
//!   conditional on the stored state as every step is.
//!
//! A reservation that no run of this writer's will fill (a restart, a
//! failed write, another writer's, a memtable that had to be written
//! inside a commit after all) is moved to the state's runs to delete by
//! the next commit, which clears it; that commit's update of the
//! reservation row waits for a write still holding it, so the deletion,
//! in later commits, sees every block that write made. The ids stay below
//! the state's next id, as servers that know nothing of this expect.
//!
//! When writing beside falls behind, the memtable is written inside a
//! commit as before once it holds two flushes ([`INLINE_AFTER`]). Merges
//! are written beside the commits the same way, by a thread and on a
//! connection of their own, so that a long merge never holds back a run
//! ([`super::merges_beside`]).

use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio_postgres::types::Type;

use super::conn::int;
use super::leaf_blocks::{db_key, read_meta};
use super::leaf_plan::PUT_BLOCKS;
use super::merges_beside::{read_merge_reserved, write_merge, MergeJob, MergeReady, MERGE_KEY};
use super::settle::Held;
use super::statement::exec;
use super::Shared;
use crate::store::leaf_index::bloom::{Bloom, Density};
use crate::store::leaf_index::memtable::{Frozen, Worker};
use crate::store::leaf_index::{blocks_of, IndexState, Run, Step, Written};
use crate::store::StoreError;

/// Key of the reserved run id in `quire_meta` (8 bytes, big-endian).
pub(super) const RESERVED_KEY: &str = "leaf_index_reserved";

/// Flushes of leaves the memtable holds before a commit writes it as a
/// run itself.
pub(super) const INLINE_AFTER: u64 = 2;

/// The stored form of a reserved id.
pub(super) fn reserved_value(id: u64) -> Result<Vec<u8>, StoreError> {
    Ok(int(id)?.to_be_bytes().to_vec())
}

/// A stored reservation's id.
///
/// # Errors
/// [`StoreError::Corrupt`] for anything but 8 bytes of a `BIGINT` at or
/// above 0.
pub(super) fn reserved_id(value: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("a reserved run id of {} bytes", value.len())))?;
    u64::try_from(i64::from_be_bytes(bytes))
        .map_err(|_| StoreError::Corrupt("a negative reserved run id".into()))
}

/// A run written beside the commits, ready to take.
#[derive(Clone)]
pub(super) struct Ready {
    pub(super) run: Written,
    /// Its blocks, which the commit that takes it checks are stored.
    pub(super) blocks: u64,
}

/// The reservation stored, if known: not until read since the cache was
/// last forgotten or found changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Stored {
    #[default]
    Unknown,
    Known(Option<u64>),
}

/// What the writer knows of runs written beside its commits.
#[derive(Default)]
pub(super) struct Beside {
    /// The reservation stored, as far as known.
    pub(super) stored: Stored,
    /// The run being written: its id and the frozen leaves it holds.
    pub(super) writing: Option<(u64, u64, u64)>,
    /// A run written, to take.
    pub(super) ready: Option<Ready>,
    /// The merge reservation stored, as far as known
    /// ([`super::merges_beside`]).
    pub(super) merge_stored: Stored,
    /// The merge being written: its output id and inputs.
    pub(super) merging: Option<(u64, Vec<Run>)>,
    /// A merge written, to take.
    pub(super) merge_ready: Option<MergeReady>,
    /// Bumped when the cache is forgotten: what a write started before
    /// sends back is dropped.
    pub(super) generation: u64,
}

impl Beside {
    /// Whether reservation `id` will be filled by this writer: a run is
    /// being written or is written under it, of the memtable's frozen part
    /// `frozen` (start, end).
    pub(super) fn owns(&self, id: u64, frozen: Option<(u64, u64)>) -> bool {
        let Some((start, end)) = frozen else {
            return false;
        };
        self.writing == Some((id, start, end))
            || self
                .ready
                .as_ref()
                .is_some_and(|r| (r.run.id, r.run.start, r.run.end) == (id, start, end))
    }

    /// Forgets everything: the reservation is read again, and any write
    /// under way is dropped when it ends.
    pub(super) fn forget(&mut self) {
        *self = Beside {
            generation: self.generation.wrapping_add(1),
            ..Beside::default()
        };
    }

    /// A run written by a write started at `generation`: kept to take
    /// unless the cache was forgotten since or another write started.
    pub(super) fn written(&mut self, generation: u64, ready: Ready) {
        let w = (ready.run.id, ready.run.start, ready.run.end);
        if self.generation == generation && self.writing == Some(w) {
            self.writing = None;
            self.ready = Some(ready);
            metrics::counter!("quire_leaf_runs_written_beside_total").increment(1);
        }
    }

    /// The write of reservation `id` failed.
    pub(super) fn not_written(&mut self, generation: u64, id: u64) {
        if self.generation == generation && self.writing.is_some_and(|w| w.0 == id) {
            self.writing = None;
        }
    }
}

/// What the writer holds written beside the commits for a commit over
/// `base` to take or keep: the reservations stored (`stored`, `merge`),
/// runs written under them, and whether this writer will fill each
/// (the memtable's frozen part being `frozen`).
pub(super) struct Offer {
    pub(super) stored: Option<u64>,
    pub(super) merge: Option<u64>,
    pub(super) ready: Option<Ready>,
    pub(super) merge_ready: Option<MergeReady>,
    pub(super) owned: bool,
    pub(super) merge_owned: bool,
}

/// The [`Offer`] of `beside` to a commit over `base`, the reservations
/// read first where not known.
///
/// # Errors
/// [`StoreError`] from reading a reservation.
pub(super) fn offer(
    beside: &Mutex<Beside>,
    shared: &Arc<Shared>,
    base: &IndexState,
    frozen: Option<(u64, u64)>,
) -> Result<Offer, StoreError> {
    let lock = || beside.lock().unwrap_or_else(PoisonError::into_inner);
    let (run, merge) = {
        let b = lock();
        (b.stored, b.merge_stored)
    };
    let stored = match run {
        Stored::Known(r) => r,
        Stored::Unknown => read_reserved(shared)?,
    };
    let merge = match merge {
        Stored::Known(r) => r,
        Stored::Unknown => read_merge_reserved(shared)?,
    };
    let mut b = lock();
    (b.stored, b.merge_stored) = (Stored::Known(stored), Stored::Known(merge));
    Ok(Offer {
        stored,
        merge,
        ready: b.ready.clone().filter(|r| Some(r.run.id) == stored),
        merge_ready: b.merge_ready.clone().filter(|r| Some(r.run.id) == merge),
        owned: stored.is_some_and(|id| b.owns(id, frozen)),
        merge_owned: merge.is_some_and(|id| b.owns_merge(id, base)),
    })
}

/// The reserved run id stored before a commit and after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Reservation {
    pub(super) from: Option<u64>,
    pub(super) to: Option<u64>,
}

/// What a commit whose leaves end at `end` does to the reservation
/// `stored`, given its `step`: a run taken clears it; one nothing of this
/// writer's will fill (`owned` false, or the memtable written inside this
/// commit) is added to the step's runs to delete (after the step's own
/// deletions, which must not see it yet) and cleared. Then, with none
/// left, a new one is taken from the state's next id when the leaves held
/// after the commit reach `flush`, or some stay frozen (`frozen`) whose
/// write failed.
pub(super) fn reserve(
    step: &mut Step,
    stored: Option<u64>,
    owned: bool,
    end: u64,
    frozen: bool,
    flush: u64,
) -> Reservation {
    let mut r = Reservation {
        from: stored,
        to: stored,
    };
    if let Some(id) = stored {
        if step.taken.is_some() {
            r.to = None;
        } else if step.flushed_to.is_some() || !owned {
            step.state.garbage.push(id);
            r.to = None;
        }
    }
    let inline = step.flushed_to.is_some();
    let held = end.saturating_sub(step.state.covered());
    let frozen_stays = frozen && !inline && step.taken.is_none();
    if r.to.is_none() && !inline && (frozen_stays || held >= flush) {
        r.to = Some(step.state.next_id);
        step.state.next_id += 1;
    }
    r
}

/// The reservation stored, if any.
///
/// # Errors
/// [`StoreError`] from the database, or [`StoreError::Corrupt`] for a
/// stored value that is no run id.
pub(super) fn read_reserved(shared: &Arc<Shared>) -> Result<Option<u64>, StoreError> {
    read_meta(shared, RESERVED_KEY, "reading the reserved leaf index run")?
        .map(|v| reserved_id(&v))
        .transpose()
}

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
    /// Starts the thread for `shared`'s log.
    ///
    /// # Errors
    /// [`StoreError::Engine`] when the thread cannot start.
    pub(super) fn spawn(shared: &Weak<Shared>) -> Result<Self, StoreError> {
        let work = |shared: Weak<Shared>| {
            move |job: Job| {
                let Some(shared) = shared.upgrade() else {
                    return false;
                };
                let merge = matches!(job, Job::Merge(_));
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
                        if merge {
                            s.merges_conn.close().await;
                        } else {
                            s.runs_conn.close().await;
                        }
                        Ok(())
                    });
                true
            }
        };
        Ok(RunWriter {
            runs: Worker::spawn("leaf index runs", work(Weak::clone(shared)))?,
            merges: Worker::spawn("leaf index merges", work(Weak::clone(shared)))?,
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
    let mut bloom = Bloom::with_density(pairs.len() as u64, Density::Dense);
    for (k, _) in &pairs {
        bloom.insert(*k);
    }
    let blocks = put_reserved(shared, RESERVED_KEY, job.id, &pairs)?;
    Ok(Ready {
        run: Written {
            id: job.id,
            start: job.frozen.start,
            end: job.frozen.end,
            bloom: Some(Arc::new(bloom)),
        },
        blocks,
    })
}

/// Writes `pairs` (sorted, after any written before under `id`) as blocks
/// of run `id`, reserved under `key`: in a transaction that holds the
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
    key: &'static str,
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
        // Runs and merges are written on connections of their own.
        let conn = if key == MERGE_KEY {
            &s.merges_conn
        } else {
            &s.runs_conn
        };
        let mut held = Held::new(conn.hold(s.driver.config(), s.driver.tls()).await?);
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
                    (&key, Type::TEXT),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::leaf_index::step::Taken;
    use crate::store::leaf_index::{IndexState, Run};

    /// A step over runs covering `[0, covered)`, next id 10: written inline
    /// (`inline`), or taking a run up to `taken`, or neither.
    fn step(covered: u64, inline: Option<u64>, taken: Option<u64>) -> Step {
        let mut runs = vec![Run {
            id: 1,
            start: 0,
            end: covered,
        }];
        if let Some(end) = inline.or(taken) {
            runs.push(Run {
                id: 2,
                start: covered,
                end,
            });
        }
        Step {
            state: IndexState {
                next_id: 10,
                runs,
                merge: None,
                garbage: Vec::new(),
            },
            flushed_to: inline,
            flushed: None,
            taken: taken.map(|end| Taken { end, filter: None }),
            merged: None,
        }
    }

    #[test]
    fn a_reservation_is_taken_kept_collected_or_cleared() {
        let r = |from, to| Reservation { from, to };
        // Nothing stored: a flush of leaves held reserves the next id.
        let mut s = step(100, None, None);
        assert_eq!(
            reserve(&mut s, None, false, 200, false, 100),
            r(None, Some(10))
        );
        assert_eq!(s.state.next_id, 11);
        let mut s = step(100, None, None);
        assert_eq!(reserve(&mut s, None, false, 199, false, 100), r(None, None));
        assert_eq!(s.state.next_id, 10);
        // Stored and being written here: kept, nothing deleted.
        let mut s = step(100, None, None);
        assert_eq!(
            reserve(&mut s, Some(7), true, 300, true, 100),
            r(Some(7), Some(7))
        );
        assert!(s.state.garbage.is_empty());
        // Stored but nothing here fills it: deleted, and another reserved.
        let mut s = step(100, None, None);
        assert_eq!(
            reserve(&mut s, Some(7), false, 300, false, 100),
            r(Some(7), Some(10))
        );
        assert_eq!(s.state.garbage, [7]);
        // A frozen part whose write failed is reserved again, however few.
        let mut s = step(100, None, None);
        assert_eq!(
            reserve(&mut s, Some(7), false, 150, true, 100),
            r(Some(7), Some(10))
        );
        assert_eq!(s.state.garbage, [7]);
        // Taken: cleared, not deleted; another only for a flush held after.
        let mut s = step(100, None, Some(200));
        assert_eq!(
            reserve(&mut s, Some(7), true, 250, true, 100),
            r(Some(7), None)
        );
        assert!(s.state.garbage.is_empty());
        let mut s = step(100, None, Some(200));
        assert_eq!(
            reserve(&mut s, Some(7), true, 300, true, 100),
            r(Some(7), Some(10))
        );
        // Written inside the commit after all: deleted, none reserved.
        let mut s = step(100, Some(300), None);
        assert_eq!(
            reserve(&mut s, Some(7), true, 300, true, 100),
            r(Some(7), None)
        );
        assert_eq!(s.state.garbage, [7]);
        assert_eq!(s.state.next_id, 10);
    }

    #[test]
    fn a_reserved_id_is_eight_bytes_of_a_bigint() {
        assert_eq!(reserved_id(&reserved_value(42).unwrap()).unwrap(), 42);
        assert!(reserved_id(&[0; 7]).is_err());
        assert!(reserved_id(&[0; 9]).is_err());
        assert!(reserved_id(&(-1i64).to_be_bytes()).is_err());
        assert!(reserved_value(u64::MAX).is_err());
    }

    #[test]
    fn a_write_sent_back_is_kept_only_for_its_own_reservation() {
        let ready = |id| Ready {
            run: Written {
                id,
                start: 0,
                end: 100,
                bloom: None,
            },
            blocks: 1,
        };
        let mut b = Beside {
            writing: Some((7, 0, 100)),
            ..Beside::default()
        };
        assert!(b.owns(7, Some((0, 100))));
        assert!(!b.owns(7, Some((0, 99))), "another frozen part");
        assert!(!b.owns(7, None));
        // Another id, or one started before the cache was forgotten: dropped.
        b.written(0, ready(8));
        assert!(b.ready.is_none());
        let before = b.generation;
        b.forget();
        b.writing = Some((7, 0, 100));
        b.written(before, ready(7));
        assert!(b.ready.is_none());
        b.written(b.generation, ready(7));
        assert!(b.ready.is_some() && b.writing.is_none());
        assert!(b.owns(7, Some((0, 100))));
        // A failed write frees the reservation for collection.
        b.ready = None;
        b.writing = Some((9, 0, 100));
        b.not_written(b.generation, 9);
        assert!(!b.owns(9, Some((0, 100))));
    }
}
