//! C2SP `tlog-tiles` resources of a log: hash tiles and entry bundles, the
//! bytes a tiles face serves at `tile/<L>/<N>[.p/<W>]` and
//! `tile/entries/<N>[.p/<W>]`. Only what the latest signed checkpoint
//! covers is served, so every tile verifies against a signed root.

use quire_core::node::{TileId, TILE_WIDTH};
use quire_core::tiles::{encode_bundle, encode_tile};

use super::{blocking, read_view, Action, ApiError, Caller, LogApi};
use crate::store::{Storage, StorageReader};

/// The highest tile level: a tree of at most 2^63 − 1 entries has nodes up
/// to level 62, in tiles of level 7.
pub const MAX_TILE_LEVEL: u8 = 7;

/// The width asked for: `None` is a full tile or bundle (256), `Some(w)` a
/// partial one of 1 to 255.
fn wanted(what: &str, width: Option<u16>) -> Result<u64, ApiError> {
    match width {
        None => Ok(TILE_WIDTH),
        Some(w) if (1..256).contains(&w) => Ok(u64::from(w)),
        Some(w) => Err(ApiError::Invalid(format!(
            "a partial {what} is 1 to 255 wide, not {w}"
        ))),
    }
}

/// Refuses a width beyond what the latest signed tree holds.
fn available(name: &str, need: u64, have: u64, size: u64) -> Result<u16, ApiError> {
    if need > have {
        return Err(ApiError::NotFound(if have == 0 {
            format!("{name} does not exist at the latest signed size {size}")
        } else {
            format!(
                "{name} holds {have} at the latest signed size {size}, not {need}: ask for a partial one of width {have} or less"
            )
        }));
    }
    Ok(u16::try_from(need).unwrap_or(u16::MAX))
}

impl<S: Storage> LogApi<S> {
    /// The bytes of hash tile `level`/`index`: full (`width` `None`) or its
    /// first `width` hashes.
    ///
    /// # Errors
    /// A level above [`MAX_TILE_LEVEL`] or a width outside 1 to 255
    /// (`INVALID_ARGUMENT`), a tile beyond the latest signed tree
    /// (`NOT_FOUND` naming what exists), damaged storage, an unknown log, a
    /// refusal of access.
    pub fn tile(
        &self,
        caller: &Caller,
        origin: &str,
        level: u8,
        index: u64,
        width: Option<u16>,
    ) -> Result<Vec<u8>, ApiError> {
        let log = self.log(caller, origin, Action::Audit)?;
        if level > MAX_TILE_LEVEL {
            return Err(ApiError::Invalid(format!(
                "tile level {level} is above {MAX_TILE_LEVEL}, the highest a tree of at most 2^63 - 1 entries has"
            )));
        }
        let need = wanted("tile", width)?;
        let tile = TileId { level, index };
        let size = log.latest().stored.size;
        let name = format!("tile {level}/{index}");
        let width = available(&name, need, tile.width_at(size), size)?;
        // A tile is one stored row: read inline. A face serving tiles from
        // an engine whose reads wait on the network
        // (`Storage::reads_wait_on_network`) calls this on the blocking pool.
        let hashes = read_view(&log)?.tile_hashes(tile, width)?;
        Ok(encode_tile(&hashes))
    }

    /// The bytes of entry bundle `index`: full (`width` `None`) or its
    /// first `width` entries, each checked against its leaf hash. Up to
    /// 16 MiB; the read reserves its worst case from the server's budget of
    /// bytes in flight to clients.
    ///
    /// # Errors
    /// A width outside 1 to 255, a bundle beyond the latest signed tree,
    /// the budget in use, damaged storage, an unknown log, a refusal of
    /// access.
    pub async fn entry_bundle(
        &self,
        caller: &Caller,
        origin: &str,
        index: u64,
        width: Option<u16>,
    ) -> Result<Vec<u8>, ApiError> {
        let log = self.log(caller, origin, Action::ReadEntries)?;
        let need = wanted("entry bundle", width)?;
        let size = log.latest().stored.size;
        let name = format!("entry bundle {index}");
        // Bundle N holds as many entries as level-0 tile N holds hashes.
        let have = TileId { level: 0, index }.width_at(size);
        let width = available(&name, need, have, size)?;
        let worst = usize::from(width) * (crate::store::bundle::MAX_ENTRY_BYTES + 2);
        let _reading = self.budget.reserve(worst).await?;
        blocking(move || {
            let entries = read_view(&log)?.bundle_entries(index, width)?;
            encode_bundle(&entries).map_err(|e| {
                ApiError::Internal(format!(
                    "entry bundle {index} cannot be served as a tlog-tiles bundle: {e}"
                ))
            })
        })
        .await
    }
}
