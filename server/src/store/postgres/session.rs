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
//! A pooler in front of PostgreSQL must keep prepared statements to its
//! server connection: `PgBouncer` in session mode, or transaction mode with
//! `max_prepared_statements` set (1.21 and later).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::conn::engine;
use crate::store::StoreError;

/// A parameter and its type, as the engine passes them.
pub(crate) type Param<'a> = (&'a (dyn ToSql + Sync), Type);

/// A connection with its prepared statements.
pub(crate) struct Session {
    client: Client,
    prepared: Mutex<HashMap<&'static str, Statement>>,
}

impl std::ops::Deref for Session {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Session {
    pub(crate) fn new(client: Client) -> Self {
        Session {
            client,
            prepared: Mutex::new(HashMap::new()),
        }
    }

    /// `sql` prepared on this connection with the types of `params`
    /// (prepared on its first use).
    async fn statement(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Statement, StoreError> {
        if let Some(s) = self.cached(sql) {
            return Ok(s);
        }
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let s = self
            .client
            .prepare_typed(sql, &types)
            .await
            .map_err(engine)?;
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(sql, s.clone());
        Ok(s)
    }

    fn cached(&self, sql: &'static str) -> Option<Statement> {
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(sql)
            .cloned()
    }

    /// The rows of `sql`.
    ///
    /// # Errors
    /// What PostgreSQL answers, as [`engine`] maps it.
    pub(crate) async fn rows(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql, params).await?;
        self.client.query(&s, &values(params)).await.map_err(engine)
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
        let s = self.statement(sql, params).await?;
        self.client
            .query_opt(&s, &values(params))
            .await
            .map_err(engine)
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
        let s = self.statement(sql, params).await?;
        self.client
            .query_one(&s, &values(params))
            .await
            .map_err(engine)
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
        let s = self.statement(sql, params).await?;
        self.client
            .execute(&s, &values(params))
            .await
            .map_err(engine)
    }
}

fn values<'a>(params: &[Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(v, _)| *v).collect()
}
