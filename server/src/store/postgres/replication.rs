//! The replication check of every commit: whether PostgreSQL will make it
//! durable on the synchronous standbys required before `COMMIT` returns,
//! and the mark a log gets once a commit of it was checked replicated.

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
    // PostgreSQL waits for the standbys it names whatever is connected (a
    // promoted standby may keep the old primary's setting): then at least
    // one is required, and refused at once rather than left to block.
    let required =
        i64::from(required.unwrap_or(u32::from(ever || all > 0 || !names.trim().is_empty())));
    if required == 0 {
        return Ok(false);
    }
    if !matches!(mode.as_str(), "on" | "remote_apply") {
        return Err(StoreError::NotReplicated(format!(
            "synchronous_commit is {mode:?}, so a commit does not wait for a standby's flush"
        )));
    }
    if names.trim().is_empty() {
        return Err(StoreError::NotReplicated(
            "synchronous_standby_names is empty: the primary runs without a synchronous standby (after a failover?)".into(),
        ));
    }
    if sync < required {
        return Err(StoreError::NotReplicated(format!(
            "{sync} synchronous standbys are streaming, {required} required ({all} standbys connected)"
        )));
    }
    Ok(true)
}
