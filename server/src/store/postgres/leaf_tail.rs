//! The newest leaves' hashes, read from the level-0 tile rows: what a
//! replica's leaf index memtable is rebuilt from (it costs no write of its
//! own), in statements of [`TAIL_CHUNK`] leaves.

use std::sync::Arc;

use quire_core::Hash;
use tokio_postgres::types::Type;

use super::bounded;
use super::conn::{int, uint, Column as _};
use super::Shared;
use crate::store::StoreError;

/// Leaves read from tile rows per statement.
const TAIL_CHUNK: u64 = 64 * 256;

/// The leaf hashes `[from, to)`, from the level-0 tile rows.
///
/// # Errors
/// [`StoreError`] from the database; [`StoreError::Missing`] when the
/// tile rows do not hold them all; [`StoreError::Corrupt`] for a row over
/// its limit.
pub(super) fn read(shared: &Arc<Shared>, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0));
    let mut at = from;
    while at < to {
        let upto = (at - at % 256 + TAIL_CHUNK).min(to);
        let (first, last) = (int(at / 256)?, int((upto - 1) / 256)?);
        let (s, log) = (Arc::clone(shared), shared.log);
        let rows = shared.driver.run("reading leaf hashes", async move {
            let c = s.reader().await?;
            let rows = c
                .rows(
                    "SELECT idx, substring(hashes FROM 1 FOR $4) FROM quire_tiles
                     WHERE log = $1 AND mid = false AND level = 0 AND idx >= $2 AND idx <= $3
                     ORDER BY idx",
                    &[
                        (&log, Type::INT8),
                        (&first, Type::INT8),
                        (&last, Type::INT8),
                        (&bounded::param(bounded::TILE_ROW), Type::INT4),
                    ],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    let tile = uint(r.col(0)?)?;
                    let hashes = bounded::within(r.col::<Vec<u8>>(1)?, bounded::TILE_ROW, || {
                        format!("stored tile row 0/{tile}")
                    })?;
                    Ok((tile, hashes))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        for (tile, bytes) in rows {
            for (i, h) in (tile * 256..).zip(bytes.chunks_exact(32)) {
                // The next leaf wanted, in order (rows start before `at`).
                if i < upto && i == from + out.len() as u64 {
                    out.push(
                        Hash::from_slice(h)
                            .map_err(|_| StoreError::Corrupt(format!("tile row 0/{tile}")))?,
                    );
                }
            }
        }
        if from + (out.len() as u64) < upto {
            return Err(StoreError::Missing(format!(
                "leaf hashes {}..{upto} in the tile rows",
                from + out.len() as u64
            )));
        }
        at = upto;
    }
    Ok(out)
}
