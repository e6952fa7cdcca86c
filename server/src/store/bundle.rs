//! Entry bundles: up to 256 consecutive entries in one record.
//!
//! Format: one codec byte (0 = raw, 1 = LZ4 block with its uncompressed
//! length prefixed), then the payload: for each entry a little-endian `u32`
//! length and the bytes. A bundle is compressed only when that makes it
//! smaller.

use super::StoreError;

/// Entries per bundle: those of a C2SP `tlog-tiles` entry bundle.
pub const BUNDLE_SIZE: u64 = quire_core::node::TILE_WIDTH;

/// Largest entry a log stores: C2SP `tlog-tiles` entry bundles prefix each
/// entry with a 16-bit length, so every stored entry can be served by a
/// tiles face.
pub const MAX_ENTRY_BYTES: usize = quire_core::tiles::MAX_BUNDLE_ENTRY;

/// Largest decoded bundle payload: 256 entries of the largest size, each
/// with its 4-byte length. A stored LZ4 size prefix above it is damage, and
/// is refused before anything is allocated.
#[allow(clippy::cast_possible_truncation)] // 256
pub const MAX_PAYLOAD_BYTES: usize = BUNDLE_SIZE as usize * (4 + MAX_ENTRY_BYTES);

const RAW: u8 = 0;
const LZ4: u8 = 1;

/// Encodes entries into a bundle record.
pub fn encode(entries: &[Vec<u8>], compress: bool) -> Vec<u8> {
    let len: usize = entries.iter().map(|e| 4 + e.len()).sum();
    let mut raw = Vec::with_capacity(len + 1);
    raw.push(RAW);
    for e in entries {
        // Entries are bounded far below 4 GiB by the server's limits.
        raw.extend_from_slice(&u32::try_from(e.len()).unwrap_or(u32::MAX).to_le_bytes());
        raw.extend_from_slice(e);
    }
    if compress {
        let packed = lz4_flex::block::compress_prepend_size(&raw[1..]);
        if packed.len() + 1 < raw.len() {
            let mut out = Vec::with_capacity(packed.len() + 1);
            out.push(LZ4);
            out.extend_from_slice(&packed);
            return out;
        }
    }
    raw
}

/// Decodes a bundle record.
///
/// # Errors
/// [`StoreError::Corrupt`] when the record is not a valid bundle.
pub fn decode(record: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("entry bundle: {why}"));
    let (codec, body) = record
        .split_first()
        .ok_or_else(|| corrupt("empty record"))?;
    let unpacked;
    let mut payload = match *codec {
        RAW => body,
        LZ4 => {
            let Some((prefix, packed)) = body.split_first_chunk::<4>() else {
                return Err(corrupt("LZ4 record without its size"));
            };
            let size = u32::from_le_bytes(*prefix) as usize;
            if size > MAX_PAYLOAD_BYTES {
                return Err(corrupt(&format!(
                    "LZ4 size {size} is over the {MAX_PAYLOAD_BYTES} bytes a bundle can hold"
                )));
            }
            unpacked =
                lz4_flex::block::decompress(packed, size).map_err(|e| corrupt(&e.to_string()))?;
            unpacked.as_slice()
        }
        other => return Err(corrupt(&format!("unknown codec {other}"))),
    };
    let mut out = Vec::new();
    while !payload.is_empty() {
        if payload.len() < 4 || out.len() as u64 >= BUNDLE_SIZE {
            return Err(corrupt("truncated or overlong"));
        }
        let n = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        let rest = &payload[4..];
        if rest.len() < n {
            return Err(corrupt("entry runs past the record"));
        }
        out.push(rest[..n].to_vec());
        payload = &rest[n..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_raw_and_compressed() {
        let entries: Vec<Vec<u8>> = (0..200u32)
            .map(|i| format!("{{\"event\":\"login\",\"user\":{i}}}").into_bytes())
            .collect();
        for compress in [false, true] {
            let rec = encode(&entries, compress);
            assert_eq!(decode(&rec).unwrap(), entries);
        }
        assert!(encode(&entries, true).len() < encode(&entries, false).len());
        // Incompressible data stays raw.
        let noise: Vec<Vec<u8>> = (0..4u64)
            .map(|i| {
                (0..64u64)
                    .flat_map(|j| {
                        (i * 977 + j * 7919)
                            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                            .to_le_bytes()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(encode(&noise, true)[0], RAW);
    }

    #[test]
    fn corrupt_records_are_errors() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9]).is_err());
        assert!(decode(&[RAW, 5, 0, 0, 0, 1]).is_err());
        assert!(decode(&[LZ4, 1, 2, 3]).is_err());
        // A damaged size prefix asking for 4 GiB is refused before any
        // allocation.
        let e = decode(&[LZ4, 0xff, 0xff, 0xff, 0xff, 0]).unwrap_err();
        assert!(e.to_string().contains("over the"), "{e}");
    }
}
