//! RFC 9162 §2.1.1 hashing: leaf hashes, interior node hashes and the root of
//! the empty tree, all with SHA-256.

use std::fmt;

use base64::Engine as _;
#[allow(deprecated)]
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// The hash as bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Builds a hash from a slice.
    ///
    /// # Errors
    /// [`HashLengthError`] when the slice is not exactly [`HASH_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashLengthError> {
        let array: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| HashLengthError { got: bytes.len() })?;
        Ok(Hash(array))
    }

    /// Standard base64 (RFC 4648 §4), as in checkpoints.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// Parses standard, padded base64 of exactly 32 bytes. Non-canonical
    /// encodings (stray bits in the last character) are rejected, so each hash
    /// has one text form.
    ///
    /// # Errors
    /// [`HashLengthError`] when the text is not the canonical base64 of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, HashLengthError> {
        // 32 bytes encode to exactly 44 characters; check before decoding.
        if text.len() != 44 {
            return Err(HashLengthError {
                got: text.len() * 3 / 4,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| HashLengthError { got: 0 })?;
        Hash::from_slice(&bytes)
    }

    /// Lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(HASH_LEN * 2);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        s
    }

    /// Parses [`Self::to_hex`]'s form: exactly 64 hexadecimal digits (either
    /// case); `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != HASH_LEN * 2 {
            return None;
        }
        let mut out = [0u8; HASH_LEN];
        for (b, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let digit = |c: u8| char::from(c).to_digit(16);
            *b = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
        }
        Some(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A byte string that was not a 32-byte hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a hash must be exactly {HASH_LEN} bytes (canonical base64 of 44 characters); got {got} bytes"
)]
pub struct HashLengthError {
    /// How many bytes were given (approximate for bad base64).
    pub got: usize,
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The leaf hash of an entry: SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// SHA-256 initial state (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The hash of an interior node: SHA-256(0x01 ‖ left ‖ right).
///
/// The 65-byte message always fills exactly two SHA-256 blocks, so the padding
/// is laid out once here and both blocks go straight to the compression
/// function (SHA-NI where the CPU has it), without the streaming buffer.
#[inline]
#[allow(deprecated)] // generic-array 0.14 is what sha2 0.10 takes.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut blocks = [[0u8; 64]; 2];
    blocks[0][0] = 0x01;
    blocks[0][1..33].copy_from_slice(&left.0);
    blocks[0][33..64].copy_from_slice(&right.0[..31]);
    blocks[1][0] = right.0[31];
    blocks[1][1] = 0x80;
    // Message length in bits: 65 * 8 = 520, big-endian in the last 8 bytes.
    blocks[1][56..64].copy_from_slice(&520u64.to_be_bytes());
    let mut state = H0;
    sha2::compress256(
        &mut state,
        &[
            *GenericArray::from_slice(&blocks[0]),
            *GenericArray::from_slice(&blocks[1]),
        ],
    );
    let mut out = [0u8; HASH_LEN];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    Hash(out)
}

/// The root of a perfect subtree from its bottom row of hashes, whose length
/// must be a power of two; `None` otherwise. Used to rebuild the hashes above
/// a stored tile row.
pub fn perfect_root(row: &[Hash]) -> Option<Hash> {
    if !row.len().is_power_of_two() {
        return None;
    }
    let mut level: Vec<Hash> = row.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_hash_matches_streaming_sha256() {
        let mut l = Hash::default();
        let mut r = Hash::default();
        for i in 0..200u8 {
            l.0[usize::from(i) % 32] ^= i.wrapping_mul(31);
            r.0[usize::from(i) % 29] ^= i.wrapping_mul(17).wrapping_add(3);
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(l.0);
            h.update(r.0);
            let want: [u8; 32] = h.finalize().into();
            assert_eq!(node_hash(&l, &r).0, want);
        }
    }

    #[test]
    fn perfect_root_of_rows() {
        let row: Vec<Hash> = (0..8u8).map(|i| leaf_hash(&[i])).collect();
        let mut cr = crate::CompactRange::new();
        for h in &row {
            cr.append(*h, |_, _| {}).unwrap();
        }
        assert_eq!(perfect_root(&row), Some(cr.root()));
        assert_eq!(perfect_root(&row[..1]), Some(row[0]));
        assert_eq!(perfect_root(&row[..3]), None);
        assert_eq!(perfect_root(&[]), None);
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_anything_else() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex(&h.to_hex().to_uppercase()), Some(h));
        let hex = h.to_hex();
        for bad in [
            &hex[..62],
            &format!("{hex}00"),
            &format!("{}g", &hex[..63]),
            "",
            &format!("+{}", &hex[1..]),
        ] {
            assert_eq!(Hash::from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn base64_round_trip_and_rejects_non_canonical() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
        assert!(Hash::from_base64("AAAA").is_err());
        // 44 characters but a stray bit in the last data character.
        let mut s = Hash::default().to_base64();
        s.replace_range(42..43, "B");
        assert!(Hash::from_base64(&s).is_err());
    }
}
