//! Settling commits. The sequencer's commits
//! ([`crate::store::Storage::commit_unsettled`]) are made with
//! `synchronous_commit = off` for their own transaction: `COMMIT` returns
//! without waiting for the WAL flush or the synchronous standbys, the
//! head row's lock is free at once, and the next commit runs while they
//! confirm this one. Nothing such a commit carries is answered or
//! published before [`settle`] proved it durable.
//!
//! Each such commit is settled ([`start`], waited for by [`settle`]) by a
//! small transaction on a connection of the store's own, with the
//! session's `synchronous_commit` (never below `local`), that writes WAL
//! (a logical message, `quire.settle`) and sees the commit's checkpoint,
//! note for note. A commit seen by a transaction on
//! the same server precedes it in that server's WAL, so the settling
//! `COMMIT`, which waits for its own flush and the standbys', covers it
//! and every commit it extends. A server that does not show that
//! checkpoint (a failover to a standby that never received it, a crash
//! that lost it) leaves the outcome unknown: an error, never a guess.
//! The replication check ([`super::replication::replicated`]) runs in the
//! same transaction, as in a commit.
//!
//! A durable read view ([`durable_view`]) is settled the same way: a read
//! may see a commit not yet flushed, and the flush position it would wait
//! for can sit in a WAL page nobody flushes while no one commits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_postgres::types::Type;

use super::conn::{Column as _, Started};
use super::replication::{flushed_now, replicated, SyncCheck};
use super::session::Session;
use super::Shared;
use crate::store::{Head, StoreError};

/// A commit made unsettled: its checkpoint's size and note.
#[derive(Clone, Debug)]
pub(super) struct Landed {
    pub(super) size: i64,
    pub(super) note: Vec<u8>,
}

/// Settling connections: each runs one settling transaction at a time,
/// so two let the next commit's settle start while one waits for the
/// standbys.
pub(super) const SETTLERS: usize = 2;

/// The settle of one commit, started when it landed.
pub(super) struct Pending {
    size: i64,
    started: Result<Started<()>, StoreError>,
}

/// The settles of one history of commits, each extending the one before:
/// the head the newest made, and the settles not yet waited for.
#[derive(Default)]
struct Line {
    head: Option<Head>,
    pending: VecDeque<Pending>,
}

/// What settles the unsettled commits, in commit order.
pub(super) struct Settling {
    line: Mutex<Line>,
    next: AtomicUsize,
    /// Settles wait while this is true ([`SettlesPaused`]).
    paused: tokio::sync::watch::Sender<bool>,
}

impl Default for Settling {
    fn default() -> Self {
        Settling {
            line: Mutex::default(),
            next: AtomicUsize::new(0),
            paused: tokio::sync::watch::channel(false).0,
        }
    }
}

/// Settles paused for a fault test ([`super::PgStore::pause_settles`]):
/// those started meanwhile wait, within their deadline, until this drops.
pub struct SettlesPaused {
    paused: tokio::sync::watch::Sender<bool>,
}

impl SettlesPaused {
    pub(super) fn new(settling: &Settling) -> Self {
        settling.paused.send_replace(true);
        SettlesPaused {
            paused: settling.paused.clone(),
        }
    }
}

impl Drop for SettlesPaused {
    fn drop(&mut self) {
        self.paused.send_replace(false);
    }
}

/// What a settling transaction sets `synchronous_commit` to: the
/// session's own, as a durable commit waits (the replication check then
/// requires `on` or `remote_apply` when standbys are required), but never
/// below the local flush.
const SYNC_ON: &str = "SELECT set_config('synchronous_commit',
        CASE current_setting('synchronous_commit') WHEN 'off' THEN 'local'
             ELSE current_setting('synchronous_commit') END,
        true)";

/// Starts settling `landed`, a commit from `base` to `head` that just
/// returned unsettled, on the next settling connection: its transaction
/// is sent at once, before the next commit has written much, so the flush
/// it waits for is mostly this commit's. A commit that does not extend
/// the one made before (a new sequencer after a stop, which read the head
/// again; or a durable commit between them, whose flush covered what came
/// before it) starts a new line: the settles still pending belong to
/// commits nobody answers any more, or already durable, and are dropped,
/// so they are never waited for in place of this line's.
pub(super) fn start(shared: &Arc<Shared>, landed: Landed, base: Head, head: Head) {
    let s = Arc::clone(shared);
    let size = landed.size;
    let n = shared.settling.next.fetch_add(1, Ordering::Relaxed) % SETTLERS;
    let started = shared.driver.start("settling a commit", async move {
        on_settler(&s, n, &landed).await
    });
    let mut line = shared
        .settling
        .line
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if line.head != Some(base) {
        line.pending.clear();
    }
    line.head = Some(head);
    line.pending.push_back(Pending { size, started });
}

/// Proves every unsettled commit up to the tree of `size` durable
/// ([`crate::store::Storage::settle`]), waiting for their settles in
/// commit order.
///
/// # Errors
/// [`StoreError::NotReplicated`], or an outcome unknown as
/// [`StoreError::Engine`]: the leaf index's memory is then loaded again
/// before its next use.
pub(super) fn settle(shared: &Arc<Shared>, size: u64) -> Result<(), StoreError> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let waiting = std::time::Instant::now();
    let mut unknown = None;
    let mut unreplicated = None;
    loop {
        let next = {
            let mut line = shared
                .settling
                .line
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match line.pending.front() {
                Some(front) if front.size <= size => line.pending.pop_front(),
                _ => None,
            }
        };
        let Some(Pending { size: at, started }) = next else {
            break;
        };
        match started.and_then(Started::wait) {
            Ok(()) => {}
            Err(StoreError::NotReplicated(why)) => {
                unreplicated.get_or_insert(StoreError::NotReplicated(why));
            }
            Err(e) => {
                unknown.get_or_insert(StoreError::engine(format!(
                    "the outcome of the commit to size {at} is unknown ({e}); read the head again before trusting it"
                )));
            }
        }
    }
    metrics::histogram!("quire_settle_seconds", "log" => shared.origin.clone())
        .record(waiting.elapsed().as_secs_f64());
    if let Some(e) = unknown {
        shared.leaves.forget();
        return Err(e);
    }
    unreplicated.map_or(Ok(()), Err)
}

/// The settling transaction on settling connection `n`, held alone.
async fn on_settler(shared: &Shared, n: usize, target: &Landed) -> Result<(), StoreError> {
    let Some(conn) = shared.settlers.get(n) else {
        return Err(StoreError::engine("no settling connection"));
    };
    // Ends at once unless a fault test paused settles; the sender lives
    // as long as `shared`.
    let _ = shared
        .settling
        .paused
        .subscribe()
        .wait_for(|paused| !*paused)
        .await;
    let mut held = Held {
        slot: conn
            .hold(shared.driver.config(), shared.driver.tls())
            .await?,
        clean: false,
    };
    let Some(client) = held.slot.as_ref().map(Arc::clone) else {
        return Err(StoreError::engine("no PostgreSQL connection to settle on"));
    };
    let ever = shared.replicated.load(Ordering::Relaxed);
    transaction(&client, shared, target, ever).await?;
    held.clean = true;
    Ok(())
}

/// A settling connection while its transaction may be open: unless it
/// ended cleanly (a failure, or the deadline dropped it midway), the
/// connection is discarded, so the next settle never sends `BEGIN`
/// behind a transaction still under way.
struct Held<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<Arc<Session>>>,
    clean: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if !self.clean {
            *self.slot = None;
        }
    }
}

/// `BEGIN`, `synchronous_commit` on, the replication check, the checkpoint
/// seen and a WAL record written, `COMMIT`: one round trip. Each answer is
/// checked; any failure means nothing is proven.
async fn transaction(
    client: &Session,
    shared: &Shared,
    target: &Landed,
    ever: bool,
) -> Result<(), StoreError> {
    let replication = async {
        match shared.replication {
            SyncCheck::Standbys(required) => {
                replicated(client, &shared.origin, required, ever).await
            }
            SyncCheck::Off => Ok(false),
        }
    };
    let warned = client.warnings().count();
    let (begun, on, replicated, seen, committed) = futures_util::future::join5(
        client.batch_execute("BEGIN"),
        client.row_one(SYNC_ON, &[]),
        replication,
        client.row_one(
            "SELECT EXISTS (SELECT 1 FROM quire_checkpoints
                            WHERE log = $1 AND size = $2 AND note = $3),
                    pg_logical_emit_message(true, 'quire.settle', '')::text",
            &[
                (&shared.log, Type::INT8),
                (&target.size, Type::INT8),
                (&target.note, Type::BYTEA),
            ],
        ),
        client.batch_execute("COMMIT"),
    )
    .await;
    begun.map_err(super::conn::engine)?;
    on?;
    let replicated = replicated?;
    if !seen?.col::<bool>(0)? {
        return Err(StoreError::engine(format!(
            "the PostgreSQL server that answered does not hold the checkpoint of size {} this server committed (a failover, or a crash that lost it)",
            target.size
        )));
    }
    committed.map_err(super::conn::engine)?;
    if client.warnings().count() != warned {
        // A wait for the standbys cut short: shown, or not proven.
        if let SyncCheck::Standbys(required) = shared.replication {
            flushed_now(client, required, ever || replicated)
                .await
                .map_err(|e| {
                    StoreError::engine(format!(
                        "PostgreSQL committed the settling transaction with a warning ({}) and it is not shown to be on the synchronous standbys ({e})",
                        client.warnings().newest().unwrap_or_default()
                    ))
                })?;
        }
    }
    Ok(())
}

/// Makes what `client`'s session has read so far as durable as a settled
/// commit. Standbys required and too few streaming: refused at once
/// ([`flushed_now`]). Then a statement that writes WAL and commits with
/// `synchronous_commit = local` (its own transaction, so other calls
/// pipelined on a shared session are not drawn in) flushes everything the
/// read saw, and the standbys required are shown to hold it
/// ([`flushed_now`] again: they stream what the primary flushed). On a
/// standby, what a read sees was flushed on the primary before it was
/// sent; that is enough without standbys required, and cannot be checked
/// against them otherwise.
///
/// # Errors
/// [`StoreError::NotDurable`] as [`flushed_now`] says, or
/// [`StoreError::Engine`] for a failed statement.
pub(super) async fn durable_view(
    client: &Session,
    replication: SyncCheck,
    ever: bool,
) -> Result<(), StoreError> {
    if let SyncCheck::Standbys(required) = replication {
        flushed_now(client, required, ever).await?;
    }
    let standby: bool = client
        .row_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .col(0)?;
    if standby {
        return Ok(());
    }
    client
        .row_one(
            "SELECT set_config('synchronous_commit', 'local', true),
                    pg_logical_emit_message(true, 'quire.settle', '')::text",
            &[],
        )
        .await?;
    match replication {
        SyncCheck::Standbys(required) => flushed_now(client, required, ever).await,
        SyncCheck::Off => Ok(()),
    }
}
