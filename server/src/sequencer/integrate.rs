//! One batch through the sequencer: prepared (looked up, assigned,
//! signed), committed by the committer thread, then landed (the
//! sequencer's state follows the commit, or the batch is given back).

use std::collections::HashMap;
use std::sync::Arc;

use quire_core::{CompactRange, Hash};

use super::assign::{restore, Assigned, Rules};
use super::flight::Committer;
use super::{write_error, Integrate, Sequencer};
use crate::batch::{sign, Added, DedupPolicy, Latest, Request, WriteError};
use crate::events::Sealed;
use crate::store::{Commit, Head, Storage, StorageReader, StoreError, StoredCheckpoint};

/// A batch ready for storage.
pub(super) enum Ready {
    /// Its commit, and what the sequencer keeps of it until it lands.
    Commit(Box<Commit>, Box<Prepared>),
    /// Nothing to append (only duplicates, or a barrier): its answers,
    /// with the newest committed state, which covers them.
    Done(Vec<Vec<Added>>, Arc<Latest>),
}

/// What the sequencer keeps of a commit under way.
pub(super) struct Prepared {
    /// The tree after it.
    pub(super) range: CompactRange,
    /// Its signed checkpoint.
    pub(super) latest: Arc<Latest>,
    pub(super) per_request: Vec<Vec<Added>>,
    sealed: Vec<Vec<Sealed>>,
    newest: HashMap<Hash, u64>,
    /// Whether its leaves were said new without a lookup.
    unchecked: bool,
}

impl<S: Storage> Sequencer<S> {
    /// What assigning consults.
    pub(super) fn rules(&self) -> Rules<'_> {
        Rules {
            dedup: self.dedup,
            recent: &self.recent,
            events: self.events.as_ref(),
        }
    }

    /// Whether the next batch may be assigned while a commit is under
    /// way: no lookup before it (strict dedup on an engine that checks new
    /// leaves in its commit, and no duplicate lately, or no dedup), no
    /// recent leaves (best effort learns them from committed batches) and
    /// no events (whose links read the newest events from storage).
    pub(super) fn ahead_allowed(&self) -> bool {
        self.events.is_none()
            && match self.dedup {
                DedupPolicy::Off => true,
                DedupPolicy::Strict => self.store.checks_new_leaves() && self.lookup_first == 0,
                DedupPolicy::BestEffort => false,
            }
    }

    /// Whether `assigned` was made on the newest committed tree.
    pub(super) fn onto_newest(&self, assigned: &Assigned) -> bool {
        assigned.commit.base.size == self.range.size()
            && assigned.commit.base.root == self.newest.root
    }

    /// Strict dedup: one batched lookup of a batch's leaves in the index, in
    /// a view of the newest commit (read from nothing: this sequencer made
    /// it, and a commit by anyone else fails this one's compare-and-swap).
    fn look_up(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let head = Head {
            size: self.newest.stored.size,
            root: self.newest.root,
        };
        self.store
            .reader_at(head, &self.newest.stored)?
            .find_leaves(leaves)
    }

    /// Prepares `batch` on the newest committed state (no commit may be
    /// under way); `unchecked`: its leaves are not looked up, and the
    /// commit says they are new.
    pub(super) fn prepare(
        &mut self,
        batch: &mut [Request],
        unchecked: bool,
    ) -> Result<Ready, Integrate> {
        let origin = self.origin.clone();
        let store_err = |e: StoreError| Integrate::Write(write_error(&origin, e));
        let leaves = Request::leaves_of(batch);
        let stored = if self.dedup == DedupPolicy::Strict && !unchecked {
            self.look_up(&leaves).map_err(store_err)?
        } else {
            Vec::new()
        };
        // A freeze's record, committed with the batch it ends.
        let meta: Vec<(String, Vec<u8>)> =
            batch.iter().flat_map(|r| r.meta.iter().cloned()).collect();
        // The time of the checkpoint, and the log time of the batch's
        // events: never below the last checkpoint's (checked when sealed).
        let now = (self.clock)();
        if let Some(events) = &mut self.events {
            let store = &self.store;
            events
                .prepare(batch.iter().flat_map(|r| r.events.iter()), || {
                    store.reader()
                })
                .map_err(store_err)?;
        }
        let mut assigned = Assigned::new(self.range.clone(), self.newest.root);
        let rules = self.rules();
        let mut leaves = leaves
            .into_iter()
            .zip(stored.into_iter().chain(std::iter::repeat(None)));
        for req in batch.iter_mut() {
            assigned.add(&rules, req, &mut leaves, now)?;
        }
        self.seal(assigned, meta, now, unchecked)
    }

    /// Signs `assigned`, made on the newest committed state, at `now` (a
    /// batch of no entries commits its `meta` alone, here).
    pub(super) fn seal(
        &self,
        assigned: Assigned,
        meta: Vec<(String, Vec<u8>)>,
        now: u64,
        unchecked: bool,
    ) -> Result<Ready, Integrate> {
        let origin = self.origin.clone();
        let store_err = |e: StoreError| Integrate::Write(write_error(&origin, e));
        if !self.onto_newest(&assigned) {
            return Err(Integrate::Write(WriteError::Store(format!(
                "a batch assigned onto size {} was to be signed on size {}",
                assigned.commit.base.size,
                self.range.size()
            ))));
        }
        let Assigned {
            mut commit,
            range,
            per_request,
            sealed,
            newest,
            ..
        } = assigned;
        commit.events.newest = newest.iter().map(|(k, i)| (*k, *i)).collect();
        commit.meta = meta;
        if commit.entries.is_empty() {
            if !commit.meta.is_empty() {
                // No new tree: the metadata alone, on the same head.
                self.store.writable().map_err(store_err)?;
                commit.head = commit.base;
                self.store.commit(&commit).map_err(store_err)?;
            }
            return Ok(Ready::Done(per_request, Arc::clone(&self.newest)));
        }
        let last_ms = self.newest.stored.signed_at_ms;
        if now < last_ms {
            return Err(Integrate::Write(WriteError::ClockBackwards {
                now_ms: now,
                last_ms,
            }));
        }
        // Never a signature by a writer that lost its lease.
        self.store.writable().map_err(store_err)?;
        let root = range.root();
        let stored = StoredCheckpoint {
            size: range.size(),
            signed_at_ms: now,
            note: sign(&self.origin, range.size(), root, &self.signers).map_err(store_err)?,
        };
        commit.checkpoint = Some(stored.clone());
        commit.head = Head {
            size: range.size(),
            root,
        };
        commit.new_leaves = unchecked;
        Ok(Ready::Commit(
            Box::new(commit),
            Box::new(Prepared {
                range,
                latest: Arc::new(Latest { stored, root }),
                per_request,
                sealed,
                newest,
                unchecked,
            }),
        ))
    }

    /// Follows `prepared`'s commit of `batch` once it ended (`commit`,
    /// `result`): the newest state is its tree, and its events are sealed
    /// for their writers; or the error, or, when its leaves were said new
    /// and one was stored, the batch's entries given back. The commit is
    /// the caller's to free: the sequencer frees it once the next commit
    /// is under way.
    pub(super) fn land(
        &mut self,
        batch: &mut [Request],
        prepared: Prepared,
        commit: &mut Commit,
        result: Result<(), StoreError>,
    ) -> Result<(Vec<Vec<Added>>, Arc<Latest>), Integrate> {
        match result {
            Ok(()) => {}
            Err(StoreError::LeafStored(cause)) if prepared.unchecked => {
                let Some(entries) =
                    restore(&prepared.per_request, &commit.entries, commit.base.size)
                else {
                    return Err(Integrate::Write(WriteError::Store(format!(
                        "{cause}, and the batch's entries could not be restored to integrate it again"
                    ))));
                };
                return Err(Integrate::LeafStored { entries, cause });
            }
            Err(e) => return Err(Integrate::Write(write_error(&self.origin, e))),
        }
        if self.dedup == DedupPolicy::BestEffort {
            for (h, i) in &commit.leaf_index {
                self.recent.insert(*h, *i);
            }
        }
        let integrated = commit.entries.len();
        if let Some(events) = &mut self.events {
            events.committed(prepared.newest, commit.base.size + integrated as u64);
        }
        // Before the publisher answers: the writer reads them once its
        // answer says the batch is durable. The envelopes move out of the
        // commit, which is done with them.
        let mut sealed = prepared.sealed;
        crate::events::fill_envelopes(&mut sealed, &mut commit.entries, commit.base.size);
        for (req, sealed) in batch.iter_mut().zip(sealed) {
            if let Some(tx) = req.sealed.take() {
                let _ = tx.send(sealed);
            }
        }
        self.range = prepared.range;
        self.newest = Arc::clone(&prepared.latest);
        metrics::counter!("quire_entries_integrated_total", "log" => self.origin.clone())
            .increment(integrated as u64);
        tracing::debug!(origin = %self.origin, size = self.range.size(), entries = integrated, "integrated");
        Ok((prepared.per_request, prepared.latest))
    }

    /// Integrates `batch` now, nothing else under way: prepared, committed
    /// and landed. After a batch carried a stored leaf.
    pub(super) fn integrate_now(
        &mut self,
        committer: &Committer,
        batch: &mut [Request],
        unchecked: bool,
    ) -> Result<(Vec<Vec<Added>>, Arc<Latest>), Integrate> {
        match self.prepare(batch, unchecked)? {
            Ready::Done(per_request, latest) => Ok((per_request, latest)),
            Ready::Commit(commit, prepared) => {
                let (mut commit, result) = committer.run(commit);
                self.land(batch, *prepared, &mut commit, result)
            }
        }
    }
}
