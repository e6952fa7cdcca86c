//! Values read with a bound that PostgreSQL applies before a byte is sent.
//!
//! The driver reads a row whole, so a row damaged or altered beside the
//! server (a gigabyte where a checkpoint note belongs) would reach this
//! process in full before any check of ours. Every variable-length value
//! the engine reads is therefore selected as `substring(col FROM 1 FOR
//! $n)`, `$n` being one byte over the value's limit ([`param`]): at most
//! that travels, and [`within`] refuses a value longer than its limit as
//! [`StoreError::Corrupt`], naming the value and the limit. Hashes and
//! keys of fixed length are checked where they are decoded.

use crate::store::StoreError;

/// A checkpoint note (C2SP signed note), as every note parser bounds it.
pub(super) const NOTE: usize = quire_core::note::MAX_NOTE_BYTES;
/// Kept cosignature lines: they are served appended to their note, which
/// must stay within [`NOTE`].
pub(super) const COSIGNATURES: usize = quire_core::note::MAX_NOTE_BYTES;
/// An entry bundle record, whatever its codec.
pub(super) const BUNDLE: usize = crate::store::bundle::MAX_RECORD_BYTES;
/// An entry in a single row.
pub(super) const ENTRY: usize = crate::store::bundle::MAX_ENTRY_BYTES;
/// An event's salt and payload.
pub(super) const PAYLOAD: usize = quire_core::event::SALT_LEN + crate::events::MAX_PAYLOAD_BYTES;
/// A metadata value: the largest is the leaf index's state.
pub(super) const META: usize = crate::store::leaf_index::state::MAX_STATE_BYTES;
/// A tile row: a full tile's hashes.
#[allow(clippy::cast_possible_truncation)] // 256
pub(super) const TILE_ROW: usize = quire_core::node::TILE_WIDTH as usize * 32;
/// A log's origin, as a catalog row's text.
pub(super) const ORIGIN: usize = super::catalog::MAX_ROW_BYTES;
/// A lease's holder or address (text: read as at most this many
/// characters and a character, then checked in bytes).
pub(super) const LEASE_TEXT: usize = 4096;
/// A block of the leaf index's pairs.
pub(super) const LEAF_BLOCK: usize =
    crate::store::leaf_index::BLOCK_PAIRS * crate::store::leaf_index::PAIR;

/// The length to select of a value whose limit is `limit`: one byte
/// more, so that a value over it is seen to be.
pub(super) const fn param(limit: usize) -> i32 {
    if limit >= i32::MAX as usize {
        i32::MAX
    } else {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // checked above
        {
            limit as i32 + 1
        }
    }
}

/// `value` (bytes, or text measured in bytes), read as [`param`] says,
/// when it is within `limit`.
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` and the limit when it is over.
pub(super) fn within<T: AsRef<[u8]>>(
    value: T,
    limit: usize,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    if value.as_ref().len() > limit {
        return Err(StoreError::Corrupt(format!(
            "{} is over {limit} bytes, the most it can hold",
            what()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_at_its_limit_is_taken_and_one_byte_over_refused() {
        assert_eq!(param(10), 11);
        assert_eq!(param(usize::MAX), i32::MAX);
        assert_eq!(within(vec![0; 10], 10, || "x".into()).unwrap().len(), 10);
        let e = within(vec![0; 11], 10, || "the note of size 7".into()).unwrap_err();
        assert!(
            e.to_string()
                .contains("the note of size 7 is over 10 bytes"),
            "{e}"
        );
    }
}
