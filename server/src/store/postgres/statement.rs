//! A commit's statements and the checks of what each wrote: row counts,
//! and the leaf insert that refuses a hash said new but stored.

use tokio_postgres::types::{ToSql, Type};

use super::session::{Param, Session};
use crate::store::StoreError;

/// A check that a statement wrote `want` rows.
pub(super) fn expect(want: u64, what: String) -> impl FnOnce(u64) -> Result<(), StoreError> + Send {
    move |got: u64| {
        if got == want {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "{what}: {got} rows written, expected {want}"
            )))
        }
    }
}

/// The insert of leaf hashes said new ([`Commit::new_leaves`]): without
/// `ON CONFLICT`, so a hash stored already fails it (a unique violation of
/// the leaf index's key) and aborts the transaction there, as
/// [`StoreError::LeafStored`].
///
/// [`Commit::new_leaves`]: crate::store::Commit::new_leaves
pub(super) async fn insert_new_leaves(
    client: &Session,
    params: Vec<Param<'_>>,
    n: usize,
) -> Result<(), StoreError> {
    let written = client
        .exec(
            "INSERT INTO quire_leaves (log, leaf, idx) SELECT $1, * FROM unnest($2::bytea[], $3::int8[])",
            &params,
        )
        .await;
    match written {
        Ok(got) => expect(n as u64, "leaf hashes".into())(got),
        Err(StoreError::Engine(cause)) if is_stored_leaf(&cause) => Err(StoreError::LeafStored(
            format!("a leaf hash of the commit's {n} said new is stored already ({cause})"),
        )),
        Err(e) => Err(e),
    }
}

/// Whether `cause` is the leaf index refusing a hash it holds.
fn is_stored_leaf(cause: &crate::store::Cause) -> bool {
    cause
        .get()
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
        .is_some_and(|db| {
            *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some("quire_leaves_pkey")
        })
}

/// One statement, its row count checked by `check`.
pub(super) async fn exec(
    client: &Session,
    sql: &'static str,
    params: Vec<Param<'_>>,
    check: impl FnOnce(u64) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let n = client.exec(sql, &params).await?;
    check(n)
}

/// [`exec`] with three `BIGINT` parameters it owns.
pub(super) async fn exec_owned(
    client: &Session,
    sql: &'static str,
    values: [i64; 3],
    check: impl FnOnce(u64) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let params: Vec<Param<'_>> = values
        .iter()
        .map(|v| (v as &(dyn ToSql + Sync), Type::INT8))
        .collect();
    exec(client, sql, params, check).await
}
