//! The replication check of every commit: whether PostgreSQL will make it
//! durable on the synchronous standbys required before `COMMIT` returns,
//! and the mark a log gets once a commit of it was checked replicated; and
//! the same durability proven of what a session saw before a server serves
//! it or sequences on it ([`flushed_now`]).

use std::time::Duration;

use tokio_postgres::types::Type;

use super::conn::Column as _;
use super::session::Session;
use crate::store::StoreError;

/// What a commit checks of its replication.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum SyncCheck {
    /// Nothing (`allow_unreplicated`, or not set up).
    #[default]
    Off,
    /// Synchronous standbys: this many, or (`None`) one when the primary
    /// has or names any or the log was replicated before.
    Standbys(Option<u32>),
}

/// Metadata key set by the first commit checked replicated.
pub(crate) const REPLICATED_META: &str = "replicated";
/// Marks log `log` as committed replicated, in the commit's transaction.
pub(super) async fn mark_replicated(client: &Session, log: i64) -> Result<(), StoreError> {
    client
        .exec(
            "INSERT INTO quire_meta (log, key, value) VALUES ($1, $2, '\\x31')
             ON CONFLICT (log, key) DO NOTHING",
            &[(&log, Type::INT8), (&REPLICATED_META, Type::TEXT)],
        )
        .await?;
    Ok(())
}

/// Whether this commit will be durable on the synchronous standbys
/// required before `COMMIT` returns: commits wait for a standby's flush
/// (`synchronous_commit` on or `remote_apply`), standbys are named
/// (`synchronous_standby_names`), and enough of them stream as synchronous.
/// `required` `None`: one when the primary has or names any standby, or a
/// commit of the log was checked replicated before (`ever`). Read in the
/// commit's own session, so what it says is what this `COMMIT` does; a
/// standby lost after it makes `COMMIT` wait, never return early.
pub(super) async fn replicated(
    client: &Session,
    origin: &str,
    required: Option<u32>,
    ever: bool,
) -> Result<bool, StoreError> {
    let row = client
        .row_one(
            // pg_stat_get_wal_senders() is what pg_stat_replication reads,
            // without the view's join to every backend's activity: about a
            // tenth of the cost, on every commit (both need pg_monitor's
            // pg_read_all_stats to see more than the senders' pids).
            "SELECT current_setting('synchronous_commit'),
                    current_setting('synchronous_standby_names'),
                    count(*) FILTER (WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')),
                    count(*),
                    COALESCE(max(extract(epoch FROM replay_lag)), 0)::float8
               FROM pg_stat_get_wal_senders()",
            &[],
        )
        .await?;
    let (mode, names, sync, all): (String, String, i64, i64) =
        (row.col(0)?, row.col(1)?, row.col(2)?, row.col(3)?);
    // How far the slowest standby's replay is behind (0 without standbys).
    metrics::gauge!("quire_replication_lag_seconds", "log" => origin.to_owned())
        .set(row.col::<f64>(4)?);
    let required = required_count(required, ever, all, &names);
    if required == 0 {
        return Ok(false);
    }
    if !matches!(mode.as_str(), "on" | "remote_apply") {
        return Err(StoreError::NotReplicated(format!(
            "synchronous_commit is {mode:?}, so a commit does not wait for a standby's flush"
        )));
    }
    if names.trim().is_empty() {
        return Err(StoreError::NotReplicated(NO_NAMES.into()));
    }
    if sync < required {
        return Err(StoreError::NotReplicated(format!(
            "{sync} synchronous standbys are streaming, {required} required ({all} standbys connected)"
        )));
    }
    Ok(true)
}

const NO_NAMES: &str = "synchronous_standby_names is empty: the primary runs without a synchronous standby (after a failover?)";

/// The synchronous standbys a commit requires: `required` when set, else
/// one when the primary has or names any standby or the log was replicated
/// before (`ever`). PostgreSQL waits for the standbys it names whatever is
/// connected (a promoted standby may keep the old primary's setting): then
/// at least one is required, and refused at once rather than left to block.
fn required_count(required: Option<u32>, ever: bool, all: i64, names: &str) -> i64 {
    i64::from(required.unwrap_or(u32::from(ever || all > 0 || !names.trim().is_empty())))
}

/// How long [`settled`] waits for the synchronous standbys to flush what a
/// read saw: they do within a commit's round trip while they stream.
const SETTLE_WAIT: Duration = Duration::from_secs(2);

/// Waits until as many synchronous standbys as a commit requires
/// ([`replicated`]) have flushed the primary's WAL up to `lsn`, polling the
/// primary's senders in `client`'s session (the one whose read saw `lsn`):
/// then everything that read saw survives a failover as an acknowledged
/// commit does. A commit becomes visible on the primary once its own flush
/// is done and its wait for the standbys is over or cut short (a primary
/// restarted after a crash shows commits no standby confirmed; a cancelled
/// wait does too), so what a read sees is not durable until this holds.
/// `lsn` `None`: the session reached a standby, whose reads cannot be
/// checked so.
///
/// # Errors
/// [`StoreError::NotDurable`] when standbys are required and the session
/// is on a standby, the primary names none, fewer stream than required,
/// or they have not flushed `lsn` within [`SETTLE_WAIT`];
/// [`StoreError::Engine`] for a failed read.
async fn settled(
    client: &Session,
    lsn: Option<&str>,
    required: Option<u32>,
    ever: bool,
) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        let row = client
            .row_one(
                "SELECT current_setting('synchronous_standby_names'),
                        count(*) FILTER (WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')
                                         AND flush_lsn >= $1::text::pg_lsn),
                        count(*) FILTER (WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')),
                        count(*)
                   FROM pg_stat_get_wal_senders()",
                &[(&lsn.unwrap_or("0/0"), Type::TEXT)],
            )
            .await?;
        let (names, flushed, sync, all): (String, i64, i64, i64) =
            (row.col(0)?, row.col(1)?, row.col(2)?, row.col(3)?);
        let required = required_count(required, ever, all, &names);
        if required == 0 {
            return Ok(());
        }
        let Some(lsn) = lsn else {
            return Err(StoreError::NotDurable(
                "the read reached a standby, where it cannot be checked against the primary's synchronous standbys; point the URL at the primary (target_session_attrs=read-write)".into(),
            ));
        };
        if names.trim().is_empty() {
            return Err(StoreError::NotDurable(NO_NAMES.into()));
        }
        if flushed >= required {
            return Ok(());
        }
        // Too few standbys stream to get there (one lost, a failover):
        // said at once rather than polled for.
        if sync < required || tokio::time::Instant::now() >= deadline {
            return Err(StoreError::NotDurable(format!(
                "{flushed} of {required} required synchronous standbys flushed the WAL up to {lsn} ({sync} streaming as synchronous, {all} connected; waited at most {} ms)",
                SETTLE_WAIT.as_millis()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Waits until the synchronous standbys required have flushed everything
/// `client`'s session has seen so far ([`settled`] from the primary's
/// flush position now, which covers every commit read or made before it).
/// For a durable read view, after its read; and for a `COMMIT` answered
/// with a warning: PostgreSQL answers one whose wait for the standbys was
/// cut short (a cancel request, a statement timeout) with success and a
/// warning, the commit made on the primary and perhaps on no standby;
/// other warnings (a database to vacuum soon) say nothing of it, and their
/// words are translated, so the commit is shown durable rather than told
/// by them.
///
/// # Errors
/// As [`settled`].
pub(super) async fn flushed_now(
    client: &Session,
    required: Option<u32>,
    ever: bool,
) -> Result<(), StoreError> {
    let lsn: Option<String> = client
        .row_one(
            "SELECT CASE WHEN pg_is_in_recovery() THEN NULL
                         ELSE pg_current_wal_flush_lsn()::text END",
            &[],
        )
        .await?
        .col(0)?;
    settled(client, lsn.as_deref(), required, ever).await
}

/// The longest pause between two polls of [`settled`]: streaming standbys
/// flush within a commit's round trip, so the first polls come quickly.
const MAX_PAUSE: Duration = Duration::from_millis(50);
