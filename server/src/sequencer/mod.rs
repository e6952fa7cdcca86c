//! The sequencer: one thread per log that takes what is queued (group
//! commit), assigns indexes, applies the dedup policy, appends to the right
//! edge, signs the new checkpoint and commits it all in one durable
//! transaction before it answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quire_core::{CompactRange, Hash, LogSigner};
use tokio::sync::{mpsc, watch};

use crate::batch::{sign, Added, Clock, DedupPolicy, Latest, Request, WriteError};
use crate::events::{EventSeq, Sealed};
use crate::highwater::HighWater;
use crate::pacing::GroupCommit;
use crate::signing::{Signing, SigningGate};
use crate::store::leaf_index::LeafMap;
use crate::store::{Commit, Storage, StorageReader, StoreError, StoredCheckpoint};

mod publish;
mod recent;

use publish::{refusal, stop_writes, Committed, Publisher, PUBLISH_QUEUE};
pub(crate) use recent::RecentLeaves;

/// Longest a batch waits for a held gate (start-up checks finish within
/// their own deadlines, far below this) before it is refused.
pub const MAX_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// Appends `entry` (whose leaf hash is `leaf`) to `range` and to `commit`:
/// the entry, the leaf index pair, and every node the append completes (the
/// engine keeps what its layout needs). Returns its index.
///
/// # Errors
/// A tree at its maximum size.
pub(crate) fn append_entry(
    range: &mut CompactRange,
    commit: &mut Commit,
    entry: Vec<u8>,
    leaf: Hash,
) -> Result<u64, quire_core::CompactRangeError> {
    let index = range.size();
    range.append(leaf, |node, h| commit.nodes.push((node, *h)))?;
    // The leaf index serves proof-by-hash under every dedup policy.
    commit.leaf_index.push((leaf, index));
    commit.entries.push(entry);
    Ok(index)
}

pub(crate) struct Sequencer<S> {
    pub(crate) clock: Clock,
    pub(crate) origin: String,
    pub(crate) signers: Vec<LogSigner>,
    pub(crate) dedup: DedupPolicy,
    pub(crate) max_commit: usize,
    /// Group commit: how long to gather after a commit of many requests.
    pub(crate) group_commit: GroupCommit,
    pub(crate) recent: RecentLeaves,
    pub(crate) store: Arc<S>,
    pub(crate) range: CompactRange,
    /// The newest committed state (published once the publisher has
    /// recorded it).
    pub(crate) newest: Arc<Latest>,
    /// Where published state goes; taken by the publisher thread.
    pub(crate) latest: Option<watch::Sender<Arc<Latest>>>,
    /// The storage failure that stopped writes. After one, redb must be
    /// reopened, and what reached the disk is only known after that: every
    /// later batch is refused until restart, without touching storage.
    /// Shared with the publisher, whose record writes can fail too.
    pub(crate) stopped: Arc<Mutex<Option<String>>>,
    /// The record of the newest published checkpoint; taken by the
    /// publisher thread.
    pub(crate) high_water: Option<HighWater>,
    /// Whether signing is allowed (start-up checks, witnesses ahead).
    pub(crate) signing: Arc<SigningGate>,
    /// Batches still to look their leaves up before committing, after one
    /// carried a stored leaf ([`LOOKUP_AFTER_DUPLICATE`]).
    pub(crate) lookup_first: u32,
    /// Event mode: the newest event of each key, for the links.
    pub(crate) events: Option<EventSeq>,
    /// Whether commits gather for a while first (a writer over its quota).
    pub(crate) pacing: Arc<crate::pacing::Pacing>,
}

/// What [`Sequencer::assign`] makes of a batch.
struct Assigned {
    commit: Commit,
    range: CompactRange,
    per_request: Vec<Vec<Added>>,
    /// Each request's sealed events.
    sealed: Vec<Vec<Sealed>>,
    /// The newest event of each key of the batch's events.
    newest: HashMap<Hash, u64>,
}

impl<S: Storage> Sequencer<S> {
    /// Its publisher, once: it takes the high-water record and where
    /// published state goes.
    fn publisher(&mut self, remedy: &'static str) -> Option<Publisher> {
        Some(Publisher {
            high_water: self.high_water.take()?,
            latest: self.latest.take()?,
            stopped: Arc::clone(&self.stopped),
            remedy,
            origin: self.origin.clone(),
        })
    }

    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let (publish_tx, publish_rx) = std::sync::mpsc::sync_channel::<Committed>(PUBLISH_QUEUE);
        // What resumes writes once stopped: asked once, not per batch.
        let remedy = self.store.resume_after_stop();
        let Some(publisher) = self.publisher(remedy) else {
            return;
        };
        let publisher = publisher.spawn(publish_rx);
        let publisher = match publisher {
            Ok(p) => p,
            Err(e) => {
                stop_writes(
                    &self.stopped,
                    &self.origin,
                    self.range.size(),
                    &format!("starting the publisher: {e}"),
                );
                return;
            }
        };
        // Requests the last batch carried (group commit).
        let mut last_requests = 0;
        while let Some(first) = rx.blocking_recv() {
            if let Some(wait) = self.pacing.wait(first.queued_at, std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            let (mut batch, count) = self.take_batch(&mut rx, first, last_requests);
            last_requests = batch.len();
            let label = [("log", self.origin.clone())];
            metrics::gauge!("quire_oldest_unintegrated_age_seconds", &label)
                .set(batch[0].queued_at.elapsed().as_secs_f64());
            metrics::gauge!("quire_queue_depth", &label).set(crate::metrics::value_usize(rx.len()));
            let started = std::time::Instant::now();
            let signing = self.signing.wait_while_held(MAX_HOLD);
            let stopped = refusal(&self.stopped, &self.origin, self.range.size(), remedy);
            let result = match (stopped, signing) {
                (Some(e), _) => Err(e),
                (None, Signing::Held(why)) => Err(WriteError::SigningHeld {
                    origin: self.origin.clone(),
                    why,
                }),
                (None, Signing::Stopped(why)) => Err(WriteError::SigningStopped {
                    origin: self.origin.clone(),
                    why,
                }),
                (None, Signing::Open) => self.integrate(&mut batch),
            };
            if let Err(
                WriteError::Store(cause)
                | WriteError::StorageFull(cause)
                | WriteError::NotLeader { why: cause, .. },
            ) = &result
            {
                // An epoch once lost never writes again: a new sequencer
                // takes over from what storage holds.
                stop_writes(&self.stopped, &self.origin, self.range.size(), cause);
            }
            metrics::histogram!("quire_integration_seconds", &label)
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("quire_batch_entries", &label)
                .record(crate::metrics::value_usize(count));
            match result {
                Ok((per_request, latest)) => {
                    let replies = batch
                        .into_iter()
                        .map(|r| r.reply)
                        .zip(per_request)
                        .collect();
                    // Answered by the publisher once the record covers it.
                    if let Err(std::sync::mpsc::SendError(c)) =
                        publish_tx.send(Committed { latest, replies })
                    {
                        for (reply, _) in c.replies {
                            let _ = reply.send(Err(WriteError::ShuttingDown));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(origin = %self.origin, error = %e, "batch not integrated");
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
        drop(publish_tx);
        if publisher.join().is_err() {
            tracing::error!(origin = %self.origin, "publisher thread panicked");
        }
        tracing::info!(origin = %self.origin, "sequencer stopped");
    }

    /// The batch that starts with `first`: what is queued, up to the
    /// commit's limit. Group commit: after a commit of `last` requests,
    /// it gathers ([`GroupCommit::gather`]), polling the queue.
    fn take_batch(
        &self,
        rx: &mut mpsc::Receiver<Request>,
        first: Request,
        last: usize,
    ) -> (Vec<Request>, usize) {
        let gather = self
            .group_commit
            .gather(last, self.max_commit, std::time::Instant::now());
        let mut count = first.entries.len();
        let mut batch = vec![first];
        loop {
            while count < self.max_commit {
                match rx.try_recv() {
                    Ok(r) => {
                        count += r.entries.len();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let now = std::time::Instant::now();
            match gather.and_then(|g| g.pause(batch.len(), count, now)) {
                Some(pause) => std::thread::sleep(pause),
                None => return (batch, count),
            }
        }
    }

    /// Integrates `batch`: under strict dedup on an engine that checks new
    /// leaves in its commit, first without looking the leaves up (one
    /// round trip to a database server fewer), and again with the lookup
    /// when the commit finds one stored already. After such a duplicate
    /// the next [`LOOKUP_AFTER_DUPLICATE`] batches look up first.
    fn integrate(
        &mut self,
        batch: &mut [Request],
    ) -> Result<(Vec<Vec<Added>>, Arc<Latest>), WriteError> {
        let unchecked = self.dedup == DedupPolicy::Strict
            && self.store.checks_new_leaves()
            && self.lookup_first == 0;
        self.lookup_first = self.lookup_first.saturating_sub(1);
        match self.integrate_once(batch, unchecked) {
            Err(Integrate::LeafStored { entries, cause }) => {
                tracing::debug!(origin = %self.origin, cause = %cause, "a batch carried a stored leaf; integrating it again after a lookup");
                metrics::counter!("quire_dedup_retries_total", "log" => self.origin.clone())
                    .increment(1);
                self.lookup_first = LOOKUP_AFTER_DUPLICATE;
                for (req, e) in batch.iter_mut().zip(entries) {
                    req.entries = e;
                }
                self.integrate_once(batch, false)
                    .map_err(Integrate::into_write)
            }
            other => other.map_err(Integrate::into_write),
        }
    }

    /// Strict dedup: one batched lookup of a batch's leaves in the index, in
    /// a view of the newest commit (read from nothing: this sequencer made
    /// it, and a commit by anyone else fails this one's compare-and-swap).
    fn look_up(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let head = crate::store::Head {
            size: self.newest.stored.size,
            root: self.newest.root,
        };
        self.store
            .reader_at(head, &self.newest.stored)?
            .find_leaves(leaves)
    }

    /// One attempt at `batch`; `unchecked`: its leaves are not looked up,
    /// and the commit says they are new.
    fn integrate_once(
        &mut self,
        batch: &mut [Request],
        unchecked: bool,
    ) -> Result<(Vec<Vec<Added>>, Arc<Latest>), Integrate> {
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
        // events: never below the last checkpoint's (checked below).
        let now = (self.clock)();
        if let Some(events) = &mut self.events {
            let store = &self.store;
            events
                .prepare(batch.iter().flat_map(|r| r.events.iter()), || {
                    store.reader()
                })
                .map_err(store_err)?;
        }
        let Assigned {
            mut commit,
            range,
            per_request,
            sealed,
            newest,
        } = self.assign(batch, leaves, stored, now)?;
        commit.events.newest = newest.iter().map(|(k, i)| (*k, *i)).collect();
        if commit.entries.is_empty() {
            if !meta.is_empty() {
                // No new tree: the metadata alone, on the same head.
                self.store.writable().map_err(store_err)?;
                commit.head = commit.base;
                commit.meta = meta;
                self.store.commit(&commit).map_err(store_err)?;
            }
            // Only duplicates: answered with the newest committed state,
            // which covers them, once it is recorded.
            return Ok((per_request, Arc::clone(&self.newest)));
        }
        commit.meta = meta;
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
        commit.head = crate::store::Head {
            size: range.size(),
            root,
        };
        commit.new_leaves = unchecked;
        match self.store.commit(&commit) {
            Ok(()) => {}
            Err(StoreError::LeafStored(cause)) if unchecked => {
                let Some(entries) = restore(&per_request, &commit.entries, commit.base.size) else {
                    return Err(Integrate::Write(WriteError::Store(format!(
                        "{cause}, and the batch's entries could not be restored to integrate it again"
                    ))));
                };
                return Err(Integrate::LeafStored { entries, cause });
            }
            Err(e) => return Err(store_err(e)),
        }
        if self.dedup == DedupPolicy::BestEffort {
            for (h, i) in &commit.leaf_index {
                self.recent.insert(*h, *i);
            }
        }
        if let Some(events) = &mut self.events {
            events.committed(newest, commit.base.size + commit.entries.len() as u64);
        }
        // Before the publisher answers: the writer reads them once its
        // answer says the batch is durable. The envelopes move out of the
        // commit, which is done with them but for its count.
        let integrated = commit.entries.len();
        let mut sealed = sealed;
        crate::events::fill_envelopes(&mut sealed, &mut commit.entries, commit.base.size);
        for (req, sealed) in batch.iter_mut().zip(sealed) {
            if let Some(tx) = req.sealed.take() {
                let _ = tx.send(sealed);
            }
        }
        self.range = range;
        let latest = Arc::new(Latest { stored, root });
        self.newest = Arc::clone(&latest);
        metrics::counter!("quire_entries_integrated_total", "log" => self.origin.clone())
            .increment(integrated as u64);
        tracing::debug!(origin = %self.origin, size = self.range.size(), entries = integrated, "integrated");
        Ok((per_request, latest))
    }

    /// Assigns the entries of `batch` (whose leaf hashes are `leaves`,
    /// and `stored` the indexes a lookup found, if one was made) their
    /// indexes under the dedup policy: the commit, the tree after it, and
    /// each request's answers. The entries move into the commit.
    fn assign(
        &self,
        batch: &mut [Request],
        leaves: Vec<Hash>,
        stored: Vec<Option<u64>>,
        now: u64,
    ) -> Result<Assigned, Integrate> {
        let mut range = self.range.clone();
        let mut commit = Commit {
            base: crate::store::Head {
                size: range.size(),
                root: self.newest.root,
            },
            ..Commit::default()
        };
        let mut leaves = leaves
            .into_iter()
            .zip(stored.into_iter().chain(std::iter::repeat(None)));
        let mut in_batch: LeafMap<Hash, u64> = LeafMap::default();
        let mut per_request = Vec::with_capacity(batch.len());
        let mut sealed = Vec::with_capacity(batch.len());
        let mut newest = HashMap::new();
        for req in batch.iter_mut() {
            let mut added = Vec::with_capacity(req.entries.len());
            // The entries move into the commit: no copy on the write path.
            for entry in std::mem::take(&mut req.entries) {
                let Some((leaf, in_store)) = leaves.next() else {
                    return Err(Integrate::Write(WriteError::Invalid(
                        "batch changed while integrating".into(),
                    )));
                };
                let seen = match self.dedup {
                    DedupPolicy::Off => None,
                    DedupPolicy::BestEffort => in_batch
                        .get(&leaf)
                        .copied()
                        .or_else(|| self.recent.get(&leaf)),
                    DedupPolicy::Strict => in_store.or_else(|| in_batch.get(&leaf).copied()),
                };
                if let Some(index) = seen {
                    added.push(Added {
                        index,
                        duplicate: true,
                    });
                    continue;
                }
                let index = append_entry(&mut range, &mut commit, entry, leaf)
                    .map_err(|e| Integrate::Write(WriteError::Invalid(e.to_string())))?;
                if self.dedup != DedupPolicy::Off {
                    in_batch.insert(leaf, index);
                }
                added.push(Added {
                    index,
                    duplicate: false,
                });
            }
            let drafts = std::mem::take(&mut req.events);
            let sealed_here = match &self.events {
                None if drafts.is_empty() => Vec::new(),
                None => {
                    return Err(Integrate::Write(WriteError::Invalid(
                        "events sent to a log not in event mode".into(),
                    )))
                }
                Some(events) => events
                    .seal(drafts, now, &mut range, &mut commit, &mut newest)
                    .map_err(|e| Integrate::Write(WriteError::Invalid(e)))?,
            };
            added.extend(sealed_here.iter().map(|s| Added {
                index: s.index,
                duplicate: false,
            }));
            per_request.push(added);
            sealed.push(sealed_here);
        }
        Ok(Assigned {
            commit,
            range,
            per_request,
            sealed,
            newest,
        })
    }
}

/// Batches that look their leaves up first after one carried a stored
/// leaf (a client retrying, or sending duplicates on purpose): each costs a
/// lookup, not a refused commit.
const LOOKUP_AFTER_DUPLICATE: u32 = 64;

/// Why one attempt at a batch did not commit.
enum Integrate {
    /// Refused for the writers.
    Write(WriteError),
    /// The commit said its leaves were new and one was stored: the
    /// batch's entries, given back to be integrated again.
    LeafStored {
        entries: Vec<Vec<Vec<u8>>>,
        cause: String,
    },
}

impl Integrate {
    fn into_write(self) -> WriteError {
        match self {
            Integrate::Write(e) => e,
            // Only from an attempt without a lookup, which is never the
            // second one.
            Integrate::LeafStored { cause, .. } => WriteError::Store(cause),
        }
    }
}

/// Each request's entries again, from its answers and the commit's
/// entries (a duplicate within the batch names the index of its first
/// copy, which is in the commit: nothing was looked up). `None` if an
/// answer names an index outside the commit.
fn restore(
    per_request: &[Vec<Added>],
    entries: &[Vec<u8>],
    first: u64,
) -> Option<Vec<Vec<Vec<u8>>>> {
    per_request
        .iter()
        .map(|added| {
            added
                .iter()
                .map(|a| {
                    let at = usize::try_from(a.index.checked_sub(first)?).ok()?;
                    entries.get(at).cloned()
                })
                .collect()
        })
        .collect()
}

/// A storage failure as the writers are told it.
fn write_error(origin: &str, e: StoreError) -> WriteError {
    match e {
        StoreError::Full(m) => WriteError::StorageFull(m.to_string()),
        StoreError::NotReplicated(why) => WriteError::Unreplicated {
            origin: origin.to_owned(),
            why,
        },
        StoreError::NotLeader(why) => WriteError::NotLeader {
            origin: origin.to_owned(),
            why,
        },
        e => WriteError::Store(e.to_string()),
    }
}
