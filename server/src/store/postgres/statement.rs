//! A commit's statements and the checks of what each wrote: row counts.

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
