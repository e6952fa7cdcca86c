//! The sequencer: one thread per log that takes what is queued (group
//! commit), assigns indexes, applies the dedup policy, appends to the right
//! edge, signs the new checkpoint and commits it all in one durable
//! transaction before it answers. Its commits run on a committer thread of
//! the log, one at a time, while it assigns what arrives meanwhile
//! (`flight`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use quire_core::{CompactRange, Hash, LogSigner};
use tokio::sync::{mpsc, oneshot, watch};

use crate::batch::{Added, Clock, DedupPolicy, Latest, Request, WriteError};
use crate::events::EventSeq;
use crate::highwater::HighWater;
use crate::pacing::GroupCommit;
use crate::signing::{Signing, SigningGate};
use crate::store::{Commit, Storage, StoreError};

mod assign;
mod flight;
mod integrate;
mod publish;
mod recent;

use assign::Assigned;
use flight::{wake, Committer, Outcome, Wake};
use integrate::{Prepared, Ready};
use publish::{refusal, stop_on, stop_writes, Committed, Publisher, PUBLISH_QUEUE};
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
    /// Requests the last batch carried (group commit).
    pub(crate) last_requests: usize,
}

/// A commit under way, and the batch it answers.
struct Flight {
    batch: Vec<Request>,
    count: usize,
    started: Instant,
    prepared: Box<Prepared>,
    done: oneshot::Receiver<Outcome>,
}

/// The requests that arrived while a commit was under way: the next
/// batch, assigned onto that commit's tree as long as each could be.
#[derive(Default)]
struct Next {
    batch: Vec<Request>,
    count: usize,
    assigned: Option<Assigned>,
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
            settle: {
                let store = Arc::clone(&self.store);
                Box::new(move |size| store.settle(size))
            },
        })
    }

    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let (publish_tx, publish_rx) = std::sync::mpsc::sync_channel::<Committed>(PUBLISH_QUEUE);
        // What resumes writes once stopped: asked once, not per batch.
        let remedy = self.store.resume_after_stop();
        let Some(publisher) = self.publisher(remedy) else {
            return;
        };
        let started = publisher.spawn(publish_rx).and_then(|p| {
            let committer = Committer::spawn(Arc::clone(&self.store), &self.origin)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?;
            Ok((p, committer, rt))
        });
        let (publisher, committer, rt) = match started {
            Ok(s) => s,
            Err(e) => {
                stop_writes(
                    &self.stopped,
                    &self.origin,
                    self.range.size(),
                    &format!("starting the publisher and committer: {e}"),
                );
                return;
            }
        };
        let out = Out {
            committer: &committer,
            publish: &publish_tx,
            remedy,
        };
        let mut flight: Option<Flight> = None;
        let mut next = Next::default();
        let mut closed = false;
        loop {
            if let Some(f) = flight.as_mut() {
                let tick = !closed && self.takes_ahead(&next);
                match wake(&rt, &mut f.done, tick) {
                    Wake::Tick => {
                        let (range, root) = (&f.prepared.range, f.prepared.latest.root);
                        while self.takes_ahead(&next) {
                            match rx.try_recv() {
                                Ok(r) => self.ahead(&mut next, range, root, r),
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    closed = true;
                                    break;
                                }
                            }
                        }
                    }
                    Wake::Landed(outcome) => {
                        let landed = flight.take().map(|f| self.land_flight(&out, f, outcome));
                        if !next.batch.is_empty() {
                            self.queue_depth(&rx);
                            let next = std::mem::take(&mut next);
                            let onto_landed = landed.as_ref().is_some_and(|(c, _)| *c);
                            flight = self.begin(&out, next, onto_landed);
                        }
                        // The landed commit's entries are freed only now,
                        // off the path from one commit to the next.
                        drop(landed);
                    }
                }
                continue;
            }
            if closed {
                break;
            }
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            if let Some(wait) = self.pacing.wait(first.queued_at, Instant::now()) {
                std::thread::sleep(wait);
            }
            let (batch, count) = self.take_batch(&mut rx, first);
            self.queue_depth(&rx);
            flight = self.begin(
                &out,
                Next {
                    batch,
                    count,
                    assigned: None,
                },
                false,
            );
        }
        drop(publish_tx);
        drop(committer);
        if publisher.join().is_err() {
            tracing::error!(origin = %self.origin, "publisher thread panicked");
        }
        tracing::info!(origin = %self.origin, "sequencer stopped");
    }

    fn queue_depth(&self, rx: &mpsc::Receiver<Request>) {
        metrics::gauge!("quire_queue_depth", "log" => self.origin.clone())
            .set(crate::metrics::value_usize(rx.len()));
    }

    /// The batch that starts with `first`: what is queued, up to the
    /// commit's limit. Group commit: after a commit of
    /// [`Sequencer::last_requests`] requests, it gathers
    /// ([`GroupCommit::gather`]), polling the queue.
    fn take_batch(
        &self,
        rx: &mut mpsc::Receiver<Request>,
        first: Request,
    ) -> (Vec<Request>, usize) {
        let gather = self
            .group_commit
            .gather(self.last_requests, self.max_commit, Instant::now());
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
            let now = Instant::now();
            match gather.and_then(|g| g.pause(batch.len(), count, now)) {
                Some(pause) => std::thread::sleep(pause),
                None => return (batch, count),
            }
        }
    }

    /// Whether the sequencer takes another request from the queue while
    /// a commit is under way: only to assign it ahead, up to the commit's
    /// limit. Otherwise requests wait in the queue, whose bound the
    /// writers see (`RESOURCE_EXHAUSTED` when it is full).
    fn takes_ahead(&self, next: &Next) -> bool {
        next.count < self.max_commit
            && (next.batch.is_empty() || next.assigned.is_some())
            && self.ahead_allowed()
    }

    /// Adds `req`, arrived while the commit that makes the tree `range`
    /// (root `root`) is under way, to the next batch: assigned onto that
    /// tree when it carries entries alone and every request before it was
    /// assigned too ([`Sequencer::ahead_allowed`]).
    fn ahead(&mut self, next: &mut Next, range: &CompactRange, root: Hash, mut req: Request) {
        next.count += req.entries.len();
        let plain = req.meta.is_empty() && req.events.is_empty() && !req.entries.is_empty();
        let onto = next.batch.is_empty() || next.assigned.is_some();
        if !(plain && onto && self.ahead_allowed()) {
            unassign(next);
            next.batch.push(req);
            return;
        }
        let assigned = next
            .assigned
            .get_or_insert_with(|| Assigned::new(range.clone(), root));
        let leaves = Request::leaves_of(std::slice::from_ref(&req));
        let mut leaves = leaves.into_iter().map(|h| (h, None));
        // The log time of events only: a request of entries has none.
        match assigned.add(&self.rules(), &mut req, &mut leaves, 0) {
            Ok(()) => next.batch.push(req),
            Err(e) => {
                // Its entries are spent; those before it are given back.
                next.count -= next.count.min(req.leaves.len());
                unassign(next);
                let _ = req.reply.send(Err(e.into_write()));
            }
        }
    }

    /// Starts `next`: when it was assigned ahead onto the commit that just
    /// succeeded (`onto_landed`), and signing is open, it is signed as it
    /// is; otherwise prepared anew. Its commit goes to the committer; a
    /// batch refused, or with nothing to commit, is answered here.
    fn begin(&mut self, out: &Out<'_>, mut next: Next, onto_landed: bool) -> Option<Flight> {
        self.last_requests = next.batch.len();
        let label = [("log", self.origin.clone())];
        if let Some(first) = next.batch.first() {
            metrics::gauge!("quire_oldest_unintegrated_age_seconds", &label)
                .set(first.queued_at.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        let open = onto_landed
            && matches!(self.signing.get(), Signing::Open)
            && refusal(&self.stopped, &self.origin, self.range.size(), out.remedy).is_none()
            && self.ahead_allowed();
        let ready = match next.assigned.take() {
            // Assigned onto the tree storage now holds: the commit before
            // is the one it was assigned onto.
            Some(assigned) if open && self.onto_newest(&assigned) => {
                let now = (self.clock)();
                let unchecked = self.dedup == DedupPolicy::Strict;
                self.seal(assigned, Vec::new(), now, unchecked)
            }
            assigned => {
                next.assigned = assigned;
                unassign(&mut next);
                self.prepare_checked(out, &mut next.batch)
            }
        };
        match ready {
            Ok(Ready::Commit(commit, prepared)) => Some(Flight {
                batch: next.batch,
                count: next.count,
                started,
                prepared,
                done: out.committer.start(commit),
            }),
            Ok(Ready::Done(per_request, latest)) => {
                self.answer(
                    out,
                    next.batch,
                    next.count,
                    started,
                    Ok((per_request, latest)),
                );
                None
            }
            Err(e) => {
                let e = e.into_write();
                self.answer(out, next.batch, next.count, started, Err(e));
                None
            }
        }
    }

    /// Prepares `batch` once signing is open (waiting while it is held)
    /// and writes go on; under strict dedup on an engine that checks new
    /// leaves in its commit, without looking the leaves up unless a batch
    /// lately carried a stored one ([`LOOKUP_AFTER_DUPLICATE`]).
    fn prepare_checked(
        &mut self,
        out: &Out<'_>,
        batch: &mut [Request],
    ) -> Result<Ready, Integrate> {
        if let Some(e) = refusal(&self.stopped, &self.origin, self.range.size(), out.remedy) {
            return Err(Integrate::Write(e));
        }
        match self.signing.wait_while_held(MAX_HOLD) {
            Signing::Open => {}
            Signing::Held(why) => {
                return Err(Integrate::Write(WriteError::SigningHeld {
                    origin: self.origin.clone(),
                    why,
                }))
            }
            Signing::Stopped(why) => {
                return Err(Integrate::Write(WriteError::SigningStopped {
                    origin: self.origin.clone(),
                    why,
                }))
            }
        }
        let unchecked = self.dedup == DedupPolicy::Strict
            && self.store.checks_new_leaves()
            && self.lookup_first == 0;
        self.lookup_first = self.lookup_first.saturating_sub(1);
        self.prepare(batch, unchecked)
    }

    /// Follows the commit of `flight` (`outcome`) and answers its batch.
    /// A batch that carried a stored leaf when its leaves were said new is
    /// integrated again, with a lookup, before anything else. Returns
    /// whether it committed, and the commit, for the caller to free.
    fn land_flight(
        &mut self,
        out: &Out<'_>,
        flight: Flight,
        outcome: Outcome,
    ) -> (bool, Box<Commit>) {
        let Flight {
            mut batch,
            count,
            started,
            prepared,
            ..
        } = flight;
        let (mut commit, result) = outcome;
        let result = match self.land(&mut batch, *prepared, &mut commit, result) {
            Err(Integrate::LeafStored { entries, cause }) => {
                tracing::debug!(origin = %self.origin, cause = %cause, "a batch carried a stored leaf; integrating it again after a lookup");
                metrics::counter!("quire_dedup_retries_total", "log" => self.origin.clone())
                    .increment(1);
                self.lookup_first = LOOKUP_AFTER_DUPLICATE;
                for (req, e) in batch.iter_mut().zip(entries) {
                    req.entries = e;
                }
                self.integrate_now(out.committer, &mut batch, false)
                    .map_err(Integrate::into_write)
            }
            other => other.map_err(Integrate::into_write),
        };
        let committed = result.is_ok();
        self.answer(out, batch, count, started, result);
        (committed, commit)
    }

    /// Answers `batch` (`count` entries, begun at `started`) with
    /// `result`: committed batches through the publisher, in order, once
    /// the record covers them; refusals at once. A storage failure stops
    /// the log's writes.
    fn answer(
        &self,
        out: &Out<'_>,
        batch: Vec<Request>,
        count: usize,
        started: Instant,
        result: Result<(Vec<Vec<Added>>, Arc<Latest>), WriteError>,
    ) {
        let label = [("log", self.origin.clone())];
        if let Err(e) = &result {
            stop_on(&self.stopped, &self.origin, self.range.size(), e);
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
                    out.publish.send(Committed { latest, replies })
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
}

/// Where the sequencer's batches go.
struct Out<'a> {
    committer: &'a Committer,
    publish: &'a std::sync::mpsc::SyncSender<Committed>,
    /// What resumes writes once stopped.
    remedy: &'static str,
}

/// Gives `next`'s requests back their entries if they were assigned
/// ahead: they are prepared anew. Requests whose entries cannot be given
/// back (an answer outside the assignment; never for the requests
/// [`Sequencer::ahead`] assigns) are refused.
fn unassign(next: &mut Next) {
    let Some(assigned) = next.assigned.take() else {
        return;
    };
    let n = assigned.per_request.len().min(next.batch.len());
    match assigned.restore() {
        Some(entries) => {
            for (req, e) in next.batch.iter_mut().zip(entries) {
                req.entries = e;
            }
        }
        None => {
            for req in next.batch.drain(..n) {
                next.count -= next.count.min(req.leaves.len());
                let _ = req.reply.send(Err(WriteError::Store(
                    "a batch assigned ahead could not be given back its entries".into(),
                )));
            }
        }
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

/// A storage failure as the writers are told it.
pub(super) fn write_error(origin: &str, e: StoreError) -> WriteError {
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
