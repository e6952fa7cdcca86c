//! Writes beside a log's commits: cosignatures kept for a checkpoint, and
//! a frozen log's entries dropped. Each is one statement on a reader
//! connection, outside the writer's transaction.

use std::sync::Arc;

use tokio_postgres::types::Type;

use super::super::conn::{engine, int};
use super::super::Shared;
use crate::store::StoreError;

/// Keeps cosignature lines for the checkpoint of `size`.
pub(in crate::store::postgres) fn keep_cosignatures(
    shared: &Arc<Shared>,
    size: u64,
    lines: &[u8],
) -> Result<(), StoreError> {
    let (shared2, size, lines) = (Arc::clone(shared), int(size)?, lines.to_vec());
    shared.driver.run("keeping cosignatures", async move {
        let c = shared2.reader().await?;
        c.execute(
            "INSERT INTO quire_cosignatures (log, size, lines) VALUES ($1, $2, $3)
             ON CONFLICT (log, size) DO UPDATE SET lines = EXCLUDED.lines",
            &[&shared2.log, &size, &lines],
        )
        .await
        .map_err(engine)?;
        Ok(())
    })
}

/// [`crate::store::Storage::drop_entries`]: one statement, so all or
/// nothing; it deletes only while storage holds the log's freeze record.
pub(in crate::store::postgres) fn drop_entries(
    shared: &Arc<Shared>,
    dropped: crate::lifecycle::Dropped,
) -> Result<(), StoreError> {
    let (s, record) = (Arc::clone(shared), dropped.encode());
    shared.driver.run("dropping entries", async move {
        let c = s.reader().await?;
        let n = c
            .exec(
                "WITH frozen AS (SELECT 1 FROM quire_meta WHERE log = $1 AND key = $2),
                 b AS (DELETE FROM quire_bundles WHERE log = $1 AND EXISTS (SELECT 1 FROM frozen)),
                 e AS (DELETE FROM quire_entries WHERE log = $1 AND EXISTS (SELECT 1 FROM frozen)),
                 p AS (DELETE FROM quire_event_payloads WHERE log = $1 AND EXISTS (SELECT 1 FROM frozen))
                 INSERT INTO quire_meta (log, key, value) SELECT $1, $3, $4 FROM frozen
                 ON CONFLICT (log, key) DO UPDATE SET value = EXCLUDED.value",
                &[
                    (&s.log, Type::INT8),
                    (&crate::lifecycle::LIFECYCLE_META, Type::TEXT),
                    (&crate::lifecycle::DROPPED_META, Type::TEXT),
                    (&record, Type::BYTEA),
                ],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::engine(
                "the log is not frozen in the database: its entries are kept",
            ));
        }
        Ok(())
    })
}
