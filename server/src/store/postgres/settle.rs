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

/// Entries from which a commit is made unsettled. A smaller one commits
/// durably: its next commit has little work to overlap the wait with,
/// and its own settle would be a second transaction with its own flush
/// (64 single-entry writers, about 60 entries a commit, measured 9%
/// slower settled; `docs/PERFORMANCE.md`). One entry bundle, as group
/// commit's gathering ends.
pub(super) const SETTLE_FROM: usize = 256;

/// The settle of one commit, started when it landed.
pub(super) struct Pending {
    size: i64,
    started: Result<Started<()>, StoreError>,
}

/// The settles of one history of commits, each extending the one before:
/// the head the newest made, the settles not yet waited for, the newest
/// commit and the largest size a settle proved.
#[derive(Default)]
struct Line {
    /// Which line this is: a new one for each history.
    id: u64,
    head: Option<Head>,
    pending: VecDeque<Pending>,
    newest: Option<Landed>,
    proven: i64,
}

impl Line {
    /// Takes a commit from `base` to `head`: it continues the line when
    /// `base` is the line's head, and starts a new one otherwise (the
    /// settles still pending belong to commits nobody answers any more,
    /// or already durable, and are dropped; nothing is proven yet: every
    /// commit's size is above 0).
    fn follow(&mut self, base: Head, head: Head) {
        if self.head != Some(base) {
            *self = Line {
                id: self.id.wrapping_add(1),
                ..Line::default()
            };
        }
        self.head = Some(head);
    }
}

/// What settles the unsettled commits, in commit order.
pub(super) struct Settling {
    line: Mutex<Line>,
    next: AtomicUsize,
    /// Settles wait while this is true ([`SettlesPaused`]).
    paused: tokio::sync::watch::Sender<bool>,
}

impl Settling {
    /// The line, locked.
    fn line(&self) -> std::sync::MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
/// the line's head (another writer's commits between them, or a new
/// sequencer after a stop, which read the head again) starts a new line
/// ([`Line::follow`]).
pub(super) fn start(shared: &Arc<Shared>, landed: Landed, base: Head, head: Head) {
    let size = landed.size;
    let n = shared.settling.next.fetch_add(1, Ordering::Relaxed) % SETTLERS;
    let mut line = shared.settling.line();
    line.follow(base, head);
    line.newest = Some(landed.clone());
    let (s, id) = (Arc::clone(shared), line.id);
    let started = shared.driver.start("settling a commit", async move {
        on_settler(&s, n, id, &landed).await
    });
    line.pending.push_back(Pending { size, started });
}

/// Follows a durable commit from `base` to `head`: it proves every
/// commit of its line before it (its flush and standby wait covered
/// them), or starts a new line when it does not extend the line's head.
pub(super) fn durable(shared: &Shared, base: Head, head: Head) {
    let mut line = shared.settling.line();
    line.follow(base, head);
    line.proven = line
        .proven
        .max(i64::try_from(head.size).unwrap_or(i64::MAX));
    drop(line);
    shared.leaves.durable(head.size);
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
    let through = size;
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let waiting = std::time::Instant::now();
    let mut unknown = None;
    let mut unreplicated = None;
    loop {
        let next = {
            let mut line = shared.settling.line();
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
    if let Some(e) = unreplicated {
        return Err(e);
    }
    shared.leaves.durable(through);
    Ok(())
}

/// Settles `own`, a commit of line `line`, on settling connection `n`,
/// held alone. Once the connection is free: when a settle of the line
/// proved a size at least `own`'s meanwhile, `own` extends into it and
/// is proven too (nothing sent); otherwise the transaction checks the
/// line's newest commit, which extends `own` (one settle for every
/// commit landed by then, those behind it then proven without one).
async fn on_settler(shared: &Shared, n: usize, line: u64, own: &Landed) -> Result<(), StoreError> {
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
    let mut held = Held::new(
        conn.hold(shared.driver.config(), shared.driver.tls())
            .await?,
    );
    let Some(client) = held.session() else {
        return Err(StoreError::engine("no PostgreSQL connection to settle on"));
    };
    let target = {
        let l = shared.settling.line();
        if l.id == line && l.proven >= own.size {
            held.clean();
            return Ok(());
        }
        match &l.newest {
            Some(newest) if l.id == line && newest.size > own.size => newest.clone(),
            _ => own.clone(),
        }
    };
    let ever = shared.replicated.load(Ordering::Relaxed);
    transaction(&client, shared, &target, ever).await?;
    held.clean();
    let mut l = shared.settling.line();
    if l.id == line {
        l.proven = l.proven.max(target.size);
    }
    Ok(())
}

/// A connection of its own (settling, or writing runs) while its
/// transaction may be open: unless it ended cleanly (a failure, or the
/// deadline dropped it midway), the connection is discarded, so the next
/// use never sends `BEGIN` behind a transaction still under way.
pub(super) struct Held<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<Arc<Session>>>,
    clean: bool,
}

impl<'a> Held<'a> {
    pub(super) fn new(slot: tokio::sync::MutexGuard<'a, Option<Arc<Session>>>) -> Self {
        Held { slot, clean: false }
    }

    /// The connection's session, if it has one.
    pub(super) fn session(&self) -> Option<Arc<Session>> {
        self.slot.as_ref().map(Arc::clone)
    }

    /// Its transaction ended: the connection is kept.
    pub(super) fn clean(&mut self) {
        self.clean = true;
    }
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
/// commit. On the primary, a statement that writes WAL and commits with
/// `synchronous_commit = local` (its own transaction, so other calls
/// pipelined on a shared session are not drawn in, and no wait for a
/// standby) flushes everything the read saw; then the standbys required
/// are shown to hold it ([`flushed_now`]: they stream what the primary
/// flushed; too few streaming is refused at once). On a standby, what a
/// read sees was flushed on the primary before it was sent; that is
/// enough without standbys required, and [`flushed_now`] refuses it
/// otherwise.
///
/// # Errors
/// [`StoreError::NotDurable`] as [`flushed_now`] says, or
/// [`StoreError::Engine`] for a failed statement.
pub(super) async fn durable_view(
    client: &Session,
    replication: SyncCheck,
    ever: bool,
) -> Result<(), StoreError> {
    let standby: bool = client
        .row_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .col(0)?;
    if !standby {
        client
            .row_one(
                "SELECT set_config('synchronous_commit', 'local', true),
                        pg_logical_emit_message(true, 'quire.settle', '')::text",
                &[],
            )
            .await?;
    }
    match replication {
        SyncCheck::Standbys(required) => flushed_now(client, required, ever).await,
        SyncCheck::Off => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(size: u64) -> Head {
        Head {
            size,
            root: quire_core::Hash([u8::try_from(size % 256).unwrap_or(0); 32]),
        }
    }

    /// Only a commit from the line's head continues it; any other base
    /// (lost commits after a failover, another writer's commits) starts a
    /// new line with nothing pending or proven, so a stale settle of a
    /// larger size never stands before the new line's own.
    #[test]
    fn a_commit_off_the_line_starts_a_new_one() {
        let mut line = Line::default();
        line.follow(head(0), head(10));
        let first = line.id;
        line.pending.push_back(Pending {
            size: 10,
            started: Err(StoreError::engine("a settle")),
        });
        line.proven = 5;
        line.follow(head(10), head(20));
        assert_eq!(line.id, first);
        assert_eq!(line.pending.len(), 1);
        assert_eq!(line.proven, 5);
        assert_eq!(line.head, Some(head(20)));
        line.follow(head(3), head(30));
        assert_ne!(line.id, first);
        assert!(line.pending.is_empty());
        assert_eq!(line.proven, 0);
        assert_eq!(line.head, Some(head(30)));
    }
}
