//! A commit's statements, each checked by PostgreSQL for the rows it wrote.
//!
//! A commit's writes are pipelined with its `COMMIT` in one round trip, so
//! no check of the client's may come between them: a check the client made
//! on an answer would come after the transaction committed. Each statement
//! instead reports its rows to `quire_expect` (schema migration 7), whose
//! error (SQLSTATE `QU001`, [`super::conn::engine`] makes it
//! [`StoreError::Corrupt`]) aborts the transaction, and PostgreSQL answers
//! the `COMMIT` after it with a rollback.
//!
//! A statement's SQL is its write in a `WITH w AS (… RETURNING 1)` and
//! `SELECT quire_expect(count(*), $k, $k+1) FROM w`, where `$k` and `$k+1`
//! are the two parameters after its own: the rows expected and what they
//! are, for the error's message.

use tokio_postgres::types::{ToSql, Type};

use super::conn::int;
use super::session::{Param, Session};
use crate::store::StoreError;

/// One statement that must write `want` rows, `what` naming them.
///
/// # Errors
/// [`StoreError::Corrupt`] when it wrote another number (raised by
/// PostgreSQL, so the transaction is aborted), or what PostgreSQL answers.
pub(super) async fn exec(
    client: &Session,
    sql: &'static str,
    params: Vec<Param<'_>>,
    want: u64,
    what: String,
) -> Result<(), StoreError> {
    let want = int(want)?;
    let mut all: Vec<Param<'_>> = params;
    all.push((&want, Type::INT8));
    all.push((&what, Type::TEXT));
    client.exec(sql, &all).await?;
    Ok(())
}

/// [`exec`] with three `BIGINT` parameters it owns.
///
/// # Errors
/// As [`exec`].
pub(super) async fn exec_owned(
    client: &Session,
    sql: &'static str,
    values: [i64; 3],
    want: u64,
    what: String,
) -> Result<(), StoreError> {
    let params: Vec<Param<'_>> = values
        .iter()
        .map(|v| (v as &(dyn ToSql + Sync), Type::INT8))
        .collect();
    exec(client, sql, params, want, what).await
}
