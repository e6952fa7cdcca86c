//! C2SP `tlog-tiles` resources, encoded byte for byte: a tile is the
//! concatenation of its hashes (32 bytes each, at most 256); an entry bundle
//! is its entries (at most 256), each prefixed by its length as a big-endian
//! `uint16`. Which tiles and bundles exist at a tree size is
//! [`crate::node::TileId::width_at`]: entry bundle `N` holds as many
//! entries as level-0 tile `N` holds leaf hashes.
//!
//! Out of scope: paths and HTTP (the tiles face), and decoding.

use crate::hash::{Hash, HASH_LEN};

/// Largest entry an entry bundle can hold: its length is a `uint16`.
pub const MAX_BUNDLE_ENTRY: usize = u16::MAX as usize;

/// An entry too large for an entry bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("entry {index} is {len} bytes; an entry bundle holds entries of at most {MAX_BUNDLE_ENTRY} bytes")]
pub struct EntryTooLarge {
    /// Its position in the bundle.
    pub index: usize,
    /// Its length.
    pub len: usize,
}

/// The bytes of a tile holding `hashes`.
pub fn encode_tile(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * HASH_LEN);
    for h in hashes {
        out.extend_from_slice(h.as_bytes());
    }
    out
}

/// The bytes of an entry bundle holding `entries`.
///
/// # Errors
/// [`EntryTooLarge`] for the first entry over [`MAX_BUNDLE_ENTRY`] bytes.
pub fn encode_bundle(entries: &[Vec<u8>]) -> Result<Vec<u8>, EntryTooLarge> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for (index, e) in entries.iter().enumerate() {
        let len = u16::try_from(e.len()).map_err(|_| EntryTooLarge {
            index,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bundles_prefix_each_entry_with_its_big_endian_length() {
        let b = encode_bundle(&[b"ab".to_vec(), Vec::new(), vec![7; 300]]).unwrap();
        assert_eq!(&b[..4], &[0, 2, b'a', b'b']);
        assert_eq!(&b[4..6], &[0, 0]);
        assert_eq!(&b[6..8], &[1, 44]);
        assert_eq!(b.len(), 4 + 2 + 2 + 300);
        let e = encode_bundle(&[vec![0; 65_535], vec![0; 65_536]]).unwrap_err();
        assert_eq!(
            e,
            EntryTooLarge {
                index: 1,
                len: 65_536
            }
        );
    }

    #[test]
    fn tiles_are_their_hashes_in_order() {
        let hs = [Hash([1; 32]), Hash([2; 32])];
        let t = encode_tile(&hs);
        assert_eq!(t.len(), 64);
        assert_eq!(&t[..32], &[1; 32]);
        assert_eq!(&t[32..], &[2; 32]);
    }

    #[test]
    fn bundle_widths_are_level_0_tile_widths() {
        let bundle = |index| crate::node::TileId { level: 0, index };
        assert_eq!(bundle(0).width_at(0), 0);
        assert_eq!(bundle(0).width_at(10), 10);
        assert_eq!(bundle(0).width_at(256), 256);
        assert_eq!(bundle(1).width_at(256), 0);
        assert_eq!(bundle(1).width_at(300), 44);
        assert_eq!(bundle(u64::MAX).width_at(u64::MAX), 0);
    }
}
