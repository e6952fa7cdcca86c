//! A commit in one PostgreSQL transaction: the log's head row locked and
//! compared first (the compare-and-swap), then entries, completed bundles,
//! tile and mid rows, the leaf index's step, the checkpoint and metadata, and the new
//! head. Two round trips: the locks, checks and the bundles the commit
//! fills alone, then the other writes and `COMMIT`, pipelined; PostgreSQL
//! checks what each write wrote ([`super::statement`]), so any failure
//! rolls the whole transaction back. The first is sent before the
//! committing thread encodes the bundles and computes the leaf index's
//! step, which it waits for only where it needs them. The locks are in
//! `locks.rs`, the bundles in `bundles.rs`, the writes after them in
//! `statements.rs`, and what is kept beside a log (cosignatures, dropped
//! entries) in `beside.rs`.
//!
//! The sequencer's commits are unsettled: their `COMMIT` does not wait
//! for the WAL flush or the standbys, and [`super::settle`] proves them
//! durable before they are answered.
//!
//! A commit whose outcome is unknown (the connection lost with its
//! `COMMIT` sent, its deadline passed, or a `COMMIT` answered with a
//! warning and not shown on the synchronous standbys: a wait for them cut
//! short) is an error that says so: the caller must read the head again
//! before it trusts anything it did not read back.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use quire_core::node::TileId;
use quire_core::Hash;

mod beside;
mod bundles;
mod locks;
mod statements;

pub(super) use beside::{drop_entries, keep_cosignatures};

use bundles::{Completed, New};

use super::conn::{engine, int, Started};
use super::events::EventPlan;
use super::leaf_plan::LeafPlan;
use super::leaves::Planned;
use super::replication::{flushed_now, mark_replicated, replicated, SyncCheck};
use super::session::Session;
use super::settle::Landed;
use super::statement::with_commit;
use super::Shared;
use crate::store::bundle::{self, BUNDLE_SIZE};
use crate::store::rows::{RowSpan, MID};
use crate::store::{Commit, Head, StoreError};

/// One statement of a commit, pipelined with the others.
pub(super) type Work<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

/// Writes `c` in one transaction, or nothing. `may_defer`: a commit that
/// carries a checkpoint and at least [`super::settle::SETTLE_FROM`]
/// entries is made without waiting for its flush and the standbys, and
/// its settle started ([`super::settle`]).
pub(super) fn commit(shared: &Arc<Shared>, c: &Commit, may_defer: bool) -> Result<(), StoreError> {
    if c.leaf_index.len() != c.entries.len() {
        return Err(StoreError::Corrupt(format!(
            "commit of {} entries carries {} leaf hashes",
            c.entries.len(),
            c.leaf_index.len()
        )));
    }
    if c.head.size != c.base.size + c.entries.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "a commit of {} entries from size {} to size {}",
            c.entries.len(),
            c.base.size,
            c.head.size
        )));
    }
    let mut plan = Plan::of(c, shared.compress, shared.log)?;
    plan.lease = shared.fence()?;
    plan.landed = c
        .checkpoint
        .as_ref()
        .filter(|_| may_defer && c.entries.len() >= super::settle::SETTLE_FROM)
        .map(|cp| -> Result<Landed, StoreError> {
            Ok(Landed {
                size: int(cp.size)?,
                note: cp.note.clone(),
            })
        })
        .transpose()?;
    let unsettled = plan.landed.is_some();
    // The transaction starts (its locks and checks sent) while this thread
    // computes the leaf index's step and encodes the bundles.
    let (leaf_tx, leaf_rx) = tokio::sync::oneshot::channel();
    let (encoded_tx, encoded) = tokio::sync::oneshot::channel();
    let alone = plan.alone();
    let compress = plan.compress;
    let started = run_commit(shared, plan, leaf_rx, encoded);
    // The bundles first: PostgreSQL writes them while this thread computes
    // the step. A range outside the commit (never made by `Plan::of`)
    // sends nothing, and the transaction ends without writing.
    let bundles: Option<Vec<Vec<u8>>> = alone
        .into_iter()
        .map(|r| c.entries.get(r).map(|e| bundle::encode(e, compress)))
        .collect();
    match bundles {
        Some(bundles) => {
            let _ = encoded_tx.send(bundles);
        }
        None => drop(encoded_tx),
    }
    let (planned, leaf) = plan_leaves(shared, c);
    let result = match leaf {
        Ok(leaf) => {
            let _ = leaf_tx.send(leaf);
            started.and_then(Started::wait)
        }
        // Refused before anything signed was sent: the transaction, begun,
        // fails its checks without the step and is rolled back.
        Err(e) => {
            drop(leaf_tx);
            if let Ok(started) = started {
                let _ = started.wait();
            }
            Err(e)
        }
    };
    // An unsettled commit's settle was started as it landed.
    if result.is_ok() && !unsettled {
        super::settle::durable(shared, c.base, c.head);
    }
    match (&result, planned) {
        (Ok(()), Some(p)) => shared.leaves.committed(p, &c.leaf_index),
        // Refused before anything was written: the cache is still the
        // stored index's.
        (Err(StoreError::LeafStored(_)), Some(_)) => {}
        (Err(_), Some(_)) => shared.leaves.forget(),
        _ => {}
    }
    result
}

/// The leaf index's step of `c` (none without entries) and its plan,
/// with the check of leaves said new against the newest leaves here (and
/// against the runs by probes read under the commit's lock). The step is
/// kept when its plan fails, so the cache can be told what happened.
///
/// # Errors
/// [`StoreError`] from the database, or [`StoreError::LeafStored`] when a
/// leaf said new is among the newest.
fn plan_leaves(
    shared: &Arc<Shared>,
    c: &Commit,
) -> (Option<Planned>, Result<Option<LeafPlan>, StoreError>) {
    if c.leaf_index.is_empty() {
        return (None, Ok(None));
    }
    let mut planned = match shared.leaves.plan(shared, c.base.size, &c.leaf_index) {
        Ok(p) => p,
        Err(e) => return (None, Err(e)),
    };
    let leaf = LeafPlan::of(&mut planned).and_then(|mut leaf| {
        if c.new_leaves {
            leaf.new_leaves = Some(shared.leaves.new_leaves(&planned, &c.leaf_index)?);
        }
        Ok(Some(leaf))
    });
    (Some(planned), leaf)
}

/// Starts `plan`'s transaction on the writer's connection: its leaf index
/// step comes on `leaf` and the bundles it fills alone on `encoded`, from
/// the committing thread. Dropped unsent, the leaf step fails the
/// transaction's checks and it is rolled back. An unsettled commit
/// (`plan.landed`) has its settle started by the same task the moment its
/// `COMMIT` succeeds, before the committing thread hears of it: the settle
/// is on the path of every write it carries.
fn run_commit(
    shared: &Arc<Shared>,
    mut plan: Plan,
    leaf: tokio::sync::oneshot::Receiver<Option<LeafPlan>>,
    encoded: tokio::sync::oneshot::Receiver<Vec<Vec<u8>>>,
) -> Result<Started<()>, StoreError> {
    plan.origin.clone_from(&shared.origin);
    plan.replication = shared.replication;
    let ever = shared.replicated.load(std::sync::atomic::Ordering::Relaxed);
    plan.ever_replicated = ever;
    let shared2 = Arc::clone(shared);
    shared.driver.start("a commit", async move {
        let mut tx = InTransaction {
            slot: shared2
                .writer
                .hold(shared2.driver.config(), shared2.driver.tls())
                .await?,
            open: true,
        };
        let Some(client) = tx.slot.as_ref().map(Arc::clone) else {
            return Err(StoreError::engine(
                "no PostgreSQL connection for the commit",
            ));
        };
        let written = plan.write(&client, leaf, encoded).await;
        if let Err(e) = written {
            // The transaction is open when a check refused the commit, and
            // ended when its writes and COMMIT were sent (a ROLLBACK then
            // only warns). A rollback that fails leaves it open: the
            // connection is discarded then, and the server rolls back a
            // transaction whose connection is gone.
            if client.batch_execute("ROLLBACK").await.is_ok() {
                tx.open = false;
            }
            return Err(e);
        }
        tx.open = false;
        drop(tx);
        if let Some(landed) = plan.landed.take() {
            super::settle::start(&shared2, landed, plan.base, plan.head);
        }
        if plan.marked.load(std::sync::atomic::Ordering::Relaxed) {
            shared2
                .replicated
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    })
}

/// The writer's connection while a commit's transaction may be open on it.
/// Dropped before the transaction ended (the call's deadline passed and the
/// commit's future was dropped midway, or a statement failed and so did the
/// rollback), it discards the connection, so the next commit opens a new
/// one instead of sending `BEGIN` into a transaction that still holds the
/// abandoned commit's statements and locks.
struct InTransaction<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<Arc<Session>>>,
    open: bool,
}

impl Drop for InTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            *self.slot = None;
        }
    }
}

/// Rows of one tile or mid row that a commit appends: the bytes, and the
/// length the stored row must have before them.
struct RowAppend {
    mid: bool,
    level: i16,
    index: i64,
    at: i32,
    bytes: Vec<u8>,
}

/// What a commit writes, computed before the transaction opens.
struct Plan {
    base: Head,
    head: Head,
    /// The new head as stored: size and root.
    head_row: (i64, Vec<u8>),
    /// Entries of a bundle still filling, in one row: the first one's
    /// index, how many, and the row's data ([`super::filling`]).
    filling: Option<(i64, i32, Vec<u8>)>,
    completed: Vec<Completed>,
    /// Rows appended to.
    rows: Vec<RowAppend>,
    /// New rows, one statement for all: mid or not, levels, indexes, bytes.
    new_rows: (Vec<bool>, Vec<i16>, Vec<i64>, Vec<Vec<u8>>),
    /// Checkpoints: sizes, signing times, notes.
    checkpoints: (Vec<i64>, Vec<i64>, Vec<Vec<u8>>),
    meta: (Vec<String>, Vec<Vec<u8>>),
    compress: bool,
    log: i64,
    /// The log's origin (for metrics).
    origin: String,
    /// The lease the commit is conditional on, when the store is fenced.
    lease: Option<super::Lease>,
    /// The synchronous standbys the commit requires.
    replication: SyncCheck,
    /// Whether a commit of the log was checked replicated before.
    ever_replicated: bool,
    /// Set when this commit is the first checked replicated (it marks the
    /// log so in the same transaction).
    marked: std::sync::atomic::AtomicBool,
    /// The rows of its events.
    events: EventPlan,
    /// Set when the commit is made without waiting for its flush and the
    /// standbys: what its settle proves ([`super::settle`]).
    landed: Option<Landed>,
}

impl Plan {
    fn of(c: &Commit, compress: bool, log: i64) -> Result<Plan, StoreError> {
        let mut filling = None;
        let mut completed = Vec::new();
        let mut index = c.base.size;
        let mut pending = c.entries.as_slice();
        while !pending.is_empty() {
            let b = index / BUNDLE_SIZE;
            let have = index % BUNDLE_SIZE;
            let take = usize::try_from((BUNDLE_SIZE - have).min(pending.len() as u64))
                .unwrap_or(pending.len());
            let at = c.entries.len() - pending.len();
            let (part, rest) = pending.split_at(take);
            if have + take as u64 == BUNDLE_SIZE {
                completed.push(Completed {
                    bundle: int(b)?,
                    from: int(b * BUNDLE_SIZE)?,
                    new: if have == 0 {
                        New::Alone(at..at + take)
                    } else {
                        New::After {
                            prior: int(have)?,
                            entries: part.to_vec(),
                        }
                    },
                });
            } else {
                // Only the last part fills a bundle only partly.
                let (n, data) = super::filling::encode(part, compress)?;
                filling = Some((int(index)?, n, data));
            }
            index += take as u64;
            pending = rest;
        }
        let mut by_row: BTreeMap<(bool, TileId), Vec<(u64, Hash)>> = BTreeMap::new();
        for (node, hash) in &c.nodes {
            if node.level % MID != 0 {
                continue;
            }
            let span = RowSpan::of(*node);
            by_row
                .entry((span.mid, span.tile))
                .or_default()
                .push((span.offset, *hash));
        }
        let mut rows = Vec::new();
        let mut new_rows = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((mid, tile), mut hashes) in by_row {
            hashes.sort_by_key(|(slot, _)| *slot);
            let first = hashes.first().map_or(0, |(s, _)| *s);
            let mut bytes = Vec::with_capacity(hashes.len() * 32);
            for (k, (slot, h)) in (first..).zip(&hashes) {
                if *slot != k {
                    return Err(node_gap(mid, tile, k, *slot));
                }
                bytes.extend_from_slice(&h.0);
            }
            if first == 0 {
                new_rows.0.push(mid);
                new_rows.1.push(i16::from(tile.level));
                new_rows.2.push(int(tile.index)?);
                new_rows.3.push(bytes);
            } else {
                rows.push(RowAppend {
                    mid,
                    level: i16::from(tile.level),
                    index: int(tile.index)?,
                    at: i32::try_from(first * 32).unwrap_or(i32::MAX),
                    bytes,
                });
            }
        }
        let mut checkpoints = (Vec::new(), Vec::new(), Vec::new());
        for cp in c.history.iter().chain(&c.checkpoint) {
            checkpoints.0.push(int(cp.size)?);
            checkpoints.1.push(int(cp.signed_at_ms)?);
            checkpoints.2.push(cp.note.clone());
        }
        Ok(Plan {
            base: c.base,
            head: c.head,
            head_row: (int(c.head.size)?, c.head.root.0.to_vec()),
            filling,
            completed,
            rows,
            new_rows,
            checkpoints,
            meta: c.meta.iter().cloned().unzip(),
            compress,
            log,
            origin: String::new(),
            lease: None,
            replication: SyncCheck::Off,
            ever_replicated: false,
            marked: std::sync::atomic::AtomicBool::new(false),
            events: EventPlan::of(&c.events)?,
            landed: None,
        })
    }

    /// The whole transaction, in two round trips. First, pipelined:
    /// `BEGIN`, the locks, the replication check, the rows a completed
    /// bundle starts with, and the bundles the commit fills alone as soon
    /// as they are encoded (PostgreSQL writes them while the committing
    /// thread computes the leaf index's step, whose check comes behind
    /// them); PostgreSQL runs them in the order sent, so the lease and the
    /// head are locked before anything is read or written, and their
    /// answers are checked in that order. Those bundles carry entries and
    /// nothing signed: a commit its checks refuse rolls them back, and
    /// every writer takes the head row's lock before writing any, so two
    /// never wait on each other's bundles. Only then the other writes and
    /// `COMMIT`, pipelined: nothing that carries the commit's signed
    /// checkpoint reaches the database (its WAL, its standbys) unless the
    /// commit extends the stored head under this server's lease and will
    /// be replicated as required, and its leaf index step extends the
    /// stored index state. Each write is checked by PostgreSQL
    /// ([`super::statement`]): one that fails aborts the transaction, and
    /// the `COMMIT` behind it rolls back.
    ///
    /// # Errors
    /// A check that refused the commit (the transaction is still open),
    /// the first write that failed (it is rolled back), or an outcome
    /// that is unknown: the connection closed with the `COMMIT` sent.
    async fn write(
        &self,
        client: &Session,
        leaf: tokio::sync::oneshot::Receiver<Option<LeafPlan>>,
        encoded: tokio::sync::oneshot::Receiver<Vec<Vec<u8>>>,
    ) -> Result<(), StoreError> {
        let log = self.log;
        let replication = async {
            match self.replication {
                SyncCheck::Standbys(required) => {
                    replicated(client, &self.origin, required, self.ever_replicated).await
                }
                SyncCheck::Off => Ok(false),
            }
        };
        // Polled in this order, so sent in it when both the bundles and
        // the step are ready; the answers are checked in the order sent,
        // so a failed write is reported, not the aborted transaction the
        // statements behind it met.
        let (begun, lease, head, (replicated, after), (alone, leaf)) = futures_util::future::join5(
            client.batch_execute("BEGIN"),
            self.lock_lease(client, log),
            self.lock_head(client, log),
            futures_util::future::join(replication, self.bundle_after(client, log)),
            futures_util::future::join(self.bundles_alone(client, encoded), async {
                let leaf = leaf.await.map_err(|_| {
                    StoreError::engine("the commit's leaf index step was not computed")
                })?;
                match leaf {
                    Some(leaf) => leaf.check(client, log).await.map(|()| Some(leaf)),
                    None => Ok(None),
                }
            }),
        )
        .await;
        begun.map_err(engine)?;
        lease?;
        head?;
        let mark = replicated? && !self.ever_replicated;
        let after = after?;
        alone?;
        let leaf = leaf?;
        let mut work = self.bundle_statements(client, after.as_ref());
        if mark {
            work.push(Box::pin(async move {
                mark_replicated(client, self.log).await?;
                self.marked
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }));
        }
        self.statements(client, leaf.as_ref(), &mut work);
        let warned = client.warnings().count();
        // Unsettled: the setting read by this `COMMIT` alone (the
        // replication check above read the session's own).
        let end = if self.landed.is_some() {
            "SET LOCAL synchronous_commit = off; COMMIT"
        } else {
            "COMMIT"
        };
        let (written, committed) = with_commit(work, || client.batch_execute(end)).await;
        let failed = written.into_iter().find_map(Result::err);
        let Some(committed) = committed else {
            // A write failed before it was sent: no COMMIT went behind it,
            // and the caller rolls the open transaction back.
            return Err(failed.unwrap_or_else(|| {
                StoreError::engine("a commit's write was not sent, and neither was its COMMIT")
            }));
        };
        match (failed, committed) {
            // A COMMIT answered with a warning: a success only once shown
            // on the standbys required (`flushed_now`).
            (None, Ok(())) if client.warnings().count() != warned => {
                let SyncCheck::Standbys(required) = self.replication else {
                    return Ok(());
                };
                flushed_now(client, required, self.ever_replicated || mark)
                    .await
                    .map_err(|e| {
                        self.unknown(&format!(
                            ": PostgreSQL committed it with a warning ({}) and it is not shown to be on the synchronous standbys ({e})",
                            client.warnings().newest().unwrap_or_default()
                        ))
                    })
            }
            (None, Ok(())) => Ok(()),
            (failed, committed) if client.is_closed() => {
                let why = failed.map_or_else(
                    || {
                        committed
                            .err()
                            .map(|e| quire_host::error::Report(&e).to_string())
                            .unwrap_or_default()
                    },
                    |e| e.to_string(),
                );
                Err(self.unknown(&format!(
                    " (the PostgreSQL connection closed with its COMMIT sent: {why})"
                )))
            }
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(engine(e)),
        }
    }

    /// The error of this commit when its outcome is unknown, `why` said
    /// after "is unknown".
    fn unknown(&self, why: &str) -> StoreError {
        StoreError::engine(format!(
            "the outcome of the commit to size {} is unknown{why}; read the head again before trusting it",
            self.head.size
        ))
    }
}

fn node_gap(mid: bool, tile: TileId, want: u64, got: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "a commit's {} row {}/{} skips from slot {want} to {got}",
        if mid { "mid" } else { "tile" },
        tile.level,
        tile.index
    ))
}
