//! Runs of the leaf index written beside the commits, not inside them.
//!
//! Writing a memtable of 2^18 leaves as a run inside the commit that
//! filled it made that commit about 40 ms slower than the others (sorting
//! the pairs, building their filter, 4 MiB of blocks), on the one path
//! every commit waits for. Instead, on the writer:
//! - a commit *reserves* a run id once the memtable holds a flush of
//!   leaves: the state's next id, taken in that commit, and the id stored
//!   in `quire_meta` under `leaf_index_reserved` ([`Lane`]);
//! - once it landed, the memtable's leaves are frozen (newer ones go to
//!   its active part) and a thread (`run_writer.rs`) sorts them, builds their
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

use std::sync::{Arc, Mutex, PoisonError};

use super::conn::{int, Conn};
use super::leaf_blocks::read_meta;
use super::merges_beside::MergeReady;
use super::Shared;
use crate::store::leaf_index::{IndexState, Run, Step, Written};
use crate::store::StoreError;

/// What is written beside the commits: the memtable's runs, or merges.
/// Each has its reservation in `quire_meta` (8 bytes, big-endian), and
/// its thread and connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lane {
    Runs,
    Merges,
}

impl Lane {
    /// The key of its reservation in `quire_meta`.
    pub(super) fn key(self) -> &'static str {
        match self {
            Lane::Runs => "leaf_index_reserved",
            Lane::Merges => "leaf_index_merge_reserved",
        }
    }

    /// Its connection.
    pub(super) fn conn(self, shared: &Shared) -> &Conn {
        match self {
            Lane::Runs => &shared.runs_conn,
            Lane::Merges => &shared.merges_conn,
        }
    }
}

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
        Stored::Unknown => read_reserved(shared, Lane::Runs)?,
    };
    let merge = match merge {
        Stored::Known(r) => r,
        Stored::Unknown => read_reserved(shared, Lane::Merges)?,
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

/// The reservation stored in `lane`, if any.
///
/// # Errors
/// [`StoreError`] from the database, or [`StoreError::Corrupt`] for a
/// stored value that is no run id.
pub(super) fn read_reserved(shared: &Arc<Shared>, lane: Lane) -> Result<Option<u64>, StoreError> {
    read_meta(shared, lane.key(), "reading a reserved leaf index run")?
        .map(|v| reserved_id(&v))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::leaf_index::bloom::Bloom;
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
            taken: taken.map(|end| Taken {
                end,
                id: 2,
                bloom: Arc::new(Bloom::with_capacity(0)),
            }),
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
                bloom: Arc::new(Bloom::with_capacity(0)),
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
