//! One PostgreSQL connection and the statements prepared on it.
//!
//! The engine's statements are few and fixed, and run thousands of times a
//! second: each is parsed and planned once per connection (a named
//! prepared statement, kept while the connection lives) instead of on
//! every call. Planning was a large part of the cheap ones: 0.7 ms of the
//! 1.4 ms a strict-dedup lookup of 32 leaf hashes took, and most of a
//! commit's replication check. PostgreSQL replans a prepared statement by
//! itself when a table it reads changes (a migration).
//!
//! A statement is prepared again once it is [`REPREPARE_AFTER`] old.
//! PostgreSQL plans a prepared statement for any values after five uses
//! (its generic plan) on the table's size at that moment, and keeps that
//! plan while the connection lives unless the table's statistics change.
//! Prepared while a log was new, the hash read's plan was a hash join
//! over every tile row of the log, and stayed so after a burst of writes
//! had made the table a thousand rows (0.33 ms a read against 0.08 ms on
//! the nested loop over the primary key; proofs at 60% of the rate of a
//! connection that planned later). Preparing again bounds how long a plan
//! made on a small table outlives it.
//!
//! A statement runs unnamed on its first use on a connection and is
//! prepared after it: preparing first would hold it back a round trip
//! while statements polled after it, prepared already, overtook it, and
//! a commit's pipelined statements must run in the order sent (the locks
//! before the writes, the leaf insert before the checkpoint's).
//!
//! A pooler in front of PostgreSQL must keep prepared statements to its
//! server connection: `PgBouncer` in session mode, or transaction mode with
//! `max_prepared_statements` set (1.21 and later).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::conn::{engine, Warnings};
use crate::store::StoreError;

/// How long a statement stays prepared on a connection before its next
/// use prepares it again (and PostgreSQL plans it again, on the tables as
/// they are then).
const REPREPARE_AFTER: Duration = Duration::from_secs(30);

/// A parameter and its type, as the engine passes them.
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A connection with its prepared statements.
pub(crate) struct Session {
    client: Client,
    /// Each statement prepared, and when.
    prepared: Mutex<HashMap<&'static str, (Statement, Instant)>>,
    warnings: std::sync::Arc<Warnings>,
}

impl std::ops::Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Session {
    pub(crate) fn new(client: Client, warnings: std::sync::Arc<Warnings>) -> Self {
        Session {
            client,
            prepared: Mutex::new(HashMap::new()),
            warnings,
        }
    }

    /// The warnings PostgreSQL sent on this connection.
    pub(crate) fn warnings(&self) -> &Warnings {
        &self.warnings
    }

    /// `sql` prepared on this connection, if it is and was prepared less
    /// than [`REPREPARE_AFTER`] ago; an older one is forgotten (and closed
    /// on the connection once no call uses it), so that this use runs
    /// unnamed and prepares it again.
    fn cached(&self, sql: &'static str) -> Option<Statement> {
        let mut prepared = self
            .prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match prepared.get(sql) {
            Some((s, at)) if fresh(*at, Instant::now()) => Some(s.clone()),
            Some(_) => {
                prepared.remove(sql);
                None
            }
            None => None,
        }
    }

    /// Prepares `sql` for its next uses, once this one has run. A failure
    /// (the transaction aborted meanwhile) only leaves it unprepared.
    async fn prepare(&self, sql: &'static str, params: &[Param<'_>]) {
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        if let Ok(s) = self.client.prepare_typed(sql, &types).await {
            self.prepared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(sql, (s, Instant::now()));
        }
    }

    // Each call sends its statement when first polled, prepared or not
    // (a statement not prepared yet runs unnamed, then is prepared):
    // statements pipelined on the connection run in the order their calls
    // were polled, which the commit's checks depend on.

    /// The rows of `sql`.
    ///
    /// # Errors
    /// What PostgreSQL answers, as [`engine`] maps it.
    pub(crate) async fn rows(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        if let Some(s) = self.cached(sql) {
            return self.client.query(&s, &values(params)).await.map_err(engine);
        }
        let rows = self.client.query_typed(sql, params).await.map_err(engine)?;
        self.prepare(sql, params).await;
        Ok(rows)
    }

    /// The rows of `sql`, planned for its values on every call (an
    /// unnamed statement, still one round trip): for the leaf index's
    /// probes, whose generic plan (the one a prepared statement settles
    /// on) reads about ten times the index pages of a plan made for the
    /// probes at hand.
    ///
    /// # Errors
    /// What PostgreSQL answers, as [`engine`] maps it.
    pub(crate) async fn rows_planned(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        self.client.query_typed(sql, params).await.map_err(engine)
    }

    /// The one row of `sql`, or none.
    ///
    /// # Errors
    /// What PostgreSQL answers; more than one row is an error.
    pub(crate) async fn row_opt(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        let mut rows = self.rows(sql, params).await?;
        if rows.len() > 1 {
            return Err(StoreError::engine(format!(
                "PostgreSQL returned {} rows where at most one was expected",
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    /// The one row of `sql`.
    ///
    /// # Errors
    /// What PostgreSQL answers; no row or more than one is an error.
    pub(crate) async fn row_one(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Row, StoreError> {
        self.row_opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::engine("PostgreSQL returned no row where one was expected"))
    }

    /// The number of rows `sql` wrote.
    ///
    /// # Errors
    /// What PostgreSQL answers.
    pub(crate) async fn exec(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<u64, StoreError> {
        if let Some(s) = self.cached(sql) {
            return self
                .client
                .execute(&s, &values(params))
                .await
                .map_err(engine);
        }
        let n = self
            .client
            .execute_typed(sql, params)
            .await
            .map_err(engine)?;
        self.prepare(sql, params).await;
        Ok(n)
    }
}

/// A statement prepared at `at` may still be used at `now`.
fn fresh(at: Instant, now: Instant) -> bool {
    now.saturating_duration_since(at) < REPREPARE_AFTER
}

fn values<'a>(params: &[Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_prepared_again_once_it_is_old() {
        let at = Instant::now();
        assert!(fresh(at, at));
        assert!(fresh(
            at,
            at + REPREPARE_AFTER.saturating_sub(Duration::from_millis(1))
        ));
        assert!(!fresh(at, at + REPREPARE_AFTER));
        assert!(!fresh(at, at + REPREPARE_AFTER * 10));
        // A clock read before the statement was prepared is not "old".
        assert!(fresh(at + Duration::from_secs(1), at));
    }
}
