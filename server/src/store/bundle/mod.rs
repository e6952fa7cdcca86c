//! Entry bundles: up to 256 consecutive entries in one record.
//!
//! Format: one codec byte, then the payload. The entries' payload is, for
//! each entry, a little-endian `u32` length and the bytes. Codecs:
//! - 0, raw: the entries' payload as it is;
//! - 1, LZ4: one LZ4 block of the whole payload, its uncompressed length
//!   prefixed (written before framed bundles; still read);
//! - 2, framed: the entries in frames of [`FRAME_ENTRIES`] (the last may
//!   hold fewer), each a codec byte (0 raw, 1 LZ4 with its length
//!   prefixed), a little-endian `u32` byte length and the frame's payload.
//!   A read of a few entries decompresses only their frames.
//!
//! A bundle is compressed only when that makes it smaller, a frame only
//! when that saves an eighth of it; a frame that did not spares the next
//! frames the try (`RETRY_EVERY`).

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

/// Largest bundle record any codec writes: an LZ4 record's codec byte,
/// size prefix and the largest block of the largest payload (above a raw
/// record's codec byte and payload, and a framed record, which is kept
/// only when smaller than raw). A stored record above it is damage.
pub const MAX_RECORD_BYTES: usize =
    1 + 4 + lz4_flex::block::get_maximum_output_size(MAX_PAYLOAD_BYTES);

/// Entries per frame of a framed bundle: a read of one entry decompresses
/// at most this many.
pub const FRAME_ENTRIES: usize = 32;

/// Largest decoded frame payload.
const MAX_FRAME_BYTES: usize = FRAME_ENTRIES * (4 + MAX_ENTRY_BYTES);

const RAW: u8 = 0;
const LZ4: u8 = 1;
const FRAMED: u8 = 2;

fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(format!("entry bundle: {why}"))
}

/// The bytes of the entries' payload.
fn payload_len(entries: &[Vec<u8>]) -> usize {
    entries.iter().map(|e| 4 + e.len()).sum()
}

/// Appends the entries' payload to `out`: each entry's length and bytes.
fn write_payload(out: &mut Vec<u8>, entries: &[Vec<u8>]) {
    for e in entries {
        // Entries are bounded far below 4 GiB by the server's limits.
        out.extend_from_slice(&u32::try_from(e.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(e);
    }
}

/// The entries' payload.
fn payload_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(payload_len(entries));
    write_payload(&mut raw, entries);
    raw
}

/// Encodes entries into a bundle record: framed and compressed when
/// `compress` and that makes it smaller, else raw.
pub fn encode(entries: &[Vec<u8>], compress: bool) -> Vec<u8> {
    let raw_len = payload_len(entries);
    // Framed only when a frame packs: otherwise the frames' headers make
    // it longer than raw.
    let packed = if compress {
        pack(entries, 0, false)
    } else {
        Vec::new()
    };
    if packed.iter().any(Option::is_some) {
        let mut out = Vec::with_capacity(framed_len(entries, &packed) + 1);
        out.push(FRAMED);
        push_packed(&mut out, entries, packed);
        if out.len() < raw_len + 1 {
            return out;
        }
    }
    let mut out = Vec::with_capacity(raw_len + 1);
    out.push(RAW);
    write_payload(&mut out, entries);
    out
}

/// One frame of a framed record: its codec byte, its bytes, and the
/// plain payload's length (from the LZ4 prefix, or its own for raw).
struct Frame<'a> {
    codec: u8,
    bytes: &'a [u8],
    plain_len: usize,
}

/// The frames of a framed record's body, their headers checked (not their
/// contents).
fn frames(mut body: &[u8]) -> Result<Vec<Frame<'_>>, StoreError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let Some((&codec, after)) = body.split_first() else {
            return Err(corrupt("truncated frame"));
        };
        let Some((len, after)) = after.split_first_chunk::<4>() else {
            return Err(corrupt("truncated frame"));
        };
        let Some((bytes, after)) = after.split_at_checked(u32::from_le_bytes(*len) as usize) else {
            return Err(corrupt("frame runs past the record"));
        };
        let plain_len = match codec {
            RAW => bytes.len(),
            LZ4 => {
                let size = bytes
                    .first_chunk::<4>()
                    .map(|p| u32::from_le_bytes(*p) as usize)
                    .ok_or_else(|| corrupt("LZ4 frame without its size"))?;
                // Bounded before anything is sized by it.
                if size > MAX_FRAME_BYTES {
                    return Err(corrupt(&format!(
                        "LZ4 size {size} is over the {MAX_FRAME_BYTES} bytes a frame can hold"
                    )));
                }
                size
            }
            other => return Err(corrupt(&format!("unknown frame codec {other}"))),
        };
        out.push(Frame {
            codec,
            bytes,
            plain_len,
        });
        body = after;
    }
    Ok(out)
}

/// The offsets in a raw payload where each entry starts, and its end.
fn entry_starts(payload: &[u8], max: usize) -> Result<Vec<usize>, StoreError> {
    let mut starts = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        if starts.len() >= max {
            return Err(corrupt("truncated or overlong"));
        }
        let Some(len) = payload.get(at..at + 4) else {
            return Err(corrupt("truncated or overlong"));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        starts.push(at);
        at += 4 + len;
    }
    if at != payload.len() {
        return Err(corrupt("entry runs past the record"));
    }
    starts.push(at);
    Ok(starts)
}

/// Appends `new` to `record`, a bundle record holding `have` entries, as
/// [`encode`] of all of them would, without decompressing or compressing
/// again the whole frames it holds: only its last frame, when that is
/// short, is decoded and encoded again with the new entries. A commit of a
/// few entries then costs a few entries' work, not a bundle's.
///
/// # Errors
/// [`StoreError::Corrupt`] when `record` is not a valid bundle of `have`
/// entries (its whole frames are counted, not decoded: a read checks them).
pub fn append(
    record: &[u8],
    have: usize,
    new: &[Vec<u8>],
    compress: bool,
) -> Result<Vec<u8>, StoreError> {
    if have == 0 {
        return Ok(encode(new, compress));
    }
    let (codec, body) = record
        .split_first()
        .ok_or_else(|| corrupt("empty record"))?;
    #[allow(clippy::cast_possible_truncation)] // 256
    let most = BUNDLE_SIZE as usize;
    let whole = have / FRAME_ENTRIES;
    let (kept, mut tail): (Vec<Frame<'_>>, Vec<Vec<u8>>) = match *codec {
        RAW if !compress => {
            let n = entry_starts(body, most)?.len() - 1;
            if n != have {
                return Err(held(n, have));
            }
            let mut out = Vec::with_capacity(record.len() + payload_len(new));
            out.extend_from_slice(record);
            write_payload(&mut out, new);
            return Ok(out);
        }
        RAW => {
            // The whole frames as raw frames, sliced at entry boundaries.
            let starts = entry_starts(body, most)?;
            if starts.len() - 1 != have {
                return Err(held(starts.len() - 1, have));
            }
            let kept = (0..whole)
                .map(|f| {
                    let bytes = &body[starts[f * FRAME_ENTRIES]..starts[(f + 1) * FRAME_ENTRIES]];
                    Frame {
                        codec: RAW,
                        bytes,
                        plain_len: bytes.len(),
                    }
                })
                .collect();
            // The short frame's entries, from the offsets just walked.
            let tail = (whole * FRAME_ENTRIES..have)
                .map(|i| body[starts[i] + 4..starts[i + 1]].to_vec())
                .collect();
            (kept, tail)
        }
        FRAMED => {
            let mut all = frames(body)?;
            if all.len() != have.div_ceil(FRAME_ENTRIES) {
                return Err(corrupt(&format!("{} frames for {have} entries", all.len())));
            }
            // The last frame is decoded, to count what the record holds;
            // kept as it is when whole.
            let last = have.saturating_sub(1) / FRAME_ENTRIES * FRAME_ENTRIES;
            let mut tail = decode_range(record, last, most)?;
            if last + tail.len() != have {
                return Err(held(last + tail.len(), have));
            }
            if last < whole * FRAME_ENTRIES {
                tail.clear();
            }
            all.truncate(whole);
            (all, tail)
        }
        _ => {
            // The whole-bundle codec of older records: all of it again.
            let mut entries = decode(record)?;
            if entries.len() != have {
                return Err(held(entries.len(), have));
            }
            entries.extend_from_slice(new);
            return Ok(encode(&entries, compress));
        }
    };
    tail.extend_from_slice(new);
    let raw_len = kept.iter().map(|f| f.plain_len).sum::<usize>() + payload_len(&tail);
    if compress {
        let mut out = Vec::with_capacity(raw_len / 2 + 16);
        out.push(FRAMED);
        for f in &kept {
            push_frame(&mut out, f.codec, f.bytes);
        }
        let after_lz4 = kept.last().is_some_and(|f| f.codec == LZ4);
        push_frames(&mut out, &tail, kept.len(), after_lz4);
        if out.len() < raw_len + 1 {
            return Ok(out);
        }
    }
    // Raw after all: the whole frames' payloads, then the tail's.
    let mut out = Vec::with_capacity(raw_len + 1);
    out.push(RAW);
    for f in &kept {
        let plain = match f.codec {
            LZ4 => &unpack(f.bytes, MAX_FRAME_BYTES)?,
            _ => f.bytes,
        };
        // Decoded here, so checked: a whole frame of whole entries.
        if entry_starts(plain, FRAME_ENTRIES)?.len() != FRAME_ENTRIES + 1 {
            return Err(corrupt("a short frame before the last"));
        }
        out.extend_from_slice(plain);
    }
    write_payload(&mut out, &tail);
    Ok(out)
}

fn held(n: usize, have: usize) -> StoreError {
    corrupt(&format!("holds {n} entries, expected {have}"))
}

/// A frame is stored compressed only when LZ4 saves at least this part
/// of it (an eighth). Random entries behind a short header (a counter, a
/// length) shrink by about 3 bytes each, 1%, which is worth neither
/// the compression work nor a decompression on every read.
const SAVES_AT_LEAST: usize = 8;

/// After a frame that did not shrink by [`SAVES_AT_LEAST`], the frames of
/// a bundle are stored raw without trying LZ4 until the next multiple of
/// this position; a frame after one that shrank is always tried.
/// Incompressible entries (encrypted or hashed payloads) then cost a
/// quarter of the compression work; compressible ones lose nothing, and a
/// bundle that turns compressible midway is tried again within 4 frames.
const RETRY_EVERY: usize = 4;

/// Appends `entries` in frames of [`FRAME_ENTRIES`], the first of them
/// the bundle's frame number `first`, after a frame compressed or not
/// (`after_lz4`). A frame is compressed when that saves an eighth, and
/// tried only as [`RETRY_EVERY`] says, which depends on the frames before
/// it alone: an append writes what encoding the whole bundle writes.
fn push_frames(out: &mut Vec<u8>, entries: &[Vec<u8>], first: usize, after_lz4: bool) {
    let packed = pack(entries, first, after_lz4);
    push_packed(out, entries, packed);
}

/// The frames of `entries` that are stored compressed, packed, the first
/// frame the bundle's frame number `first`, after a frame compressed or
/// not (`after_lz4`): the rule of [`push_frames`].
fn pack(entries: &[Vec<u8>], first: usize, mut after_lz4: bool) -> Vec<Option<Vec<u8>>> {
    entries
        .chunks(FRAME_ENTRIES)
        .enumerate()
        .map(|(n, frame)| {
            let packed = (after_lz4 || (first + n).is_multiple_of(RETRY_EVERY))
                .then(|| {
                    let plain = payload_of(frame);
                    let packed = lz4_flex::block::compress_prepend_size(&plain);
                    (packed.len() <= plain.len() - plain.len() / SAVES_AT_LEAST).then_some(packed)
                })
                .flatten();
            after_lz4 = packed.is_some();
            packed
        })
        .collect()
}

/// The bytes the frames of `entries` take, `packed` as [`pack`] says.
fn framed_len(entries: &[Vec<u8>], packed: &[Option<Vec<u8>>]) -> usize {
    entries
        .chunks(FRAME_ENTRIES)
        .zip(packed)
        .map(|(frame, p)| 5 + p.as_ref().map_or_else(|| payload_len(frame), Vec::len))
        .sum()
}

/// Appends the frames of `entries`, those `packed` says compressed.
fn push_packed(out: &mut Vec<u8>, entries: &[Vec<u8>], packed: Vec<Option<Vec<u8>>>) {
    for (frame, p) in entries.chunks(FRAME_ENTRIES).zip(packed) {
        if let Some(p) = p {
            push_frame(out, LZ4, &p);
        } else {
            push_frame_header(out, RAW, payload_len(frame));
            write_payload(out, frame);
        }
    }
}

/// Appends a frame: its codec, its length and its bytes.
fn push_frame(out: &mut Vec<u8>, codec: u8, bytes: &[u8]) {
    push_frame_header(out, codec, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a frame's codec and length.
fn push_frame_header(out: &mut Vec<u8>, codec: u8, len: usize) {
    out.push(codec);
    // A frame is bounded far below 4 GiB (32 entries of 64 KiB).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// Decompresses an LZ4 block with its size prefixed, refusing a size above
/// `max` before allocating.
fn unpack(body: &[u8], max: usize) -> Result<Vec<u8>, StoreError> {
    let Some((prefix, packed)) = body.split_first_chunk::<4>() else {
        return Err(corrupt("LZ4 record without its size"));
    };
    let size = u32::from_le_bytes(*prefix) as usize;
    if size > max {
        return Err(corrupt(&format!(
            "LZ4 size {size} is over the {max} bytes it can hold"
        )));
    }
    lz4_flex::block::decompress(packed, size).map_err(|e| corrupt(&e.to_string()))
}

/// Walks an entries' payload whose first entry is entry `first` of the
/// bundle, copying those in `[from, to)` into `out`; returns how many it
/// held, at most `max`.
fn walk(
    mut payload: &[u8],
    first: usize,
    (from, to): (usize, usize),
    max: usize,
    out: &mut Vec<Vec<u8>>,
) -> Result<usize, StoreError> {
    let mut n = 0;
    while !payload.is_empty() {
        if payload.len() < 4 || n >= max {
            return Err(corrupt("truncated or overlong"));
        }
        let len = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
        let rest = &payload[4..];
        if rest.len() < len {
            return Err(corrupt("entry runs past the record"));
        }
        if (from..to).contains(&(first + n)) {
            out.push(rest[..len].to_vec());
        }
        payload = &rest[len..];
        n += 1;
    }
    Ok(n)
}

/// Decodes a bundle record.
///
/// # Errors
/// [`StoreError::Corrupt`] when the record is not a valid bundle.
pub fn decode(record: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    #[allow(clippy::cast_possible_truncation)] // 256
    decode_range(record, 0, BUNDLE_SIZE as usize)
}

/// The entries of a bundle record at positions `[from, to)` within it (as
/// many of them as it holds), decompressing only the frames that hold
/// them. Every frame read is checked; frames skipped are not.
///
/// # Errors
/// [`StoreError::Corrupt`] when what is read is not a valid bundle.
pub fn decode_range(record: &[u8], from: usize, to: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    #[allow(clippy::cast_possible_truncation)] // 256
    let most = BUNDLE_SIZE as usize;
    let (codec, body) = record
        .split_first()
        .ok_or_else(|| corrupt("empty record"))?;
    let mut out = Vec::with_capacity(to.saturating_sub(from).min(most));
    match *codec {
        RAW => {
            walk(body, 0, (from, to), most, &mut out)?;
        }
        LZ4 => {
            let payload = unpack(body, MAX_PAYLOAD_BYTES)?;
            walk(&payload, 0, (from, to), most, &mut out)?;
        }
        FRAMED => {
            let mut rest = body;
            let mut first = 0;
            let mut short = false;
            while !rest.is_empty() {
                if short || first >= most {
                    return Err(corrupt("a frame after the last"));
                }
                let Some((&codec, after)) = rest.split_first() else {
                    return Err(corrupt("truncated frame"));
                };
                let Some((len, after)) = after.split_first_chunk::<4>() else {
                    return Err(corrupt("truncated frame"));
                };
                let len = u32::from_le_bytes(*len) as usize;
                let Some((frame, after)) = after.split_at_checked(len) else {
                    return Err(corrupt("frame runs past the record"));
                };
                rest = after;
                if !(from < first + FRAME_ENTRIES && first < to) {
                    first += FRAME_ENTRIES;
                    continue;
                }
                let held = match codec {
                    RAW => walk(frame, first, (from, to), FRAME_ENTRIES, &mut out)?,
                    LZ4 => {
                        let plain = unpack(frame, MAX_FRAME_BYTES)?;
                        walk(&plain, first, (from, to), FRAME_ENTRIES, &mut out)?
                    }
                    other => return Err(corrupt(&format!("unknown frame codec {other}"))),
                };
                if held == 0 {
                    return Err(corrupt("an empty frame"));
                }
                short = held < FRAME_ENTRIES;
                first += held;
            }
        }
        other => return Err(corrupt(&format!("unknown codec {other}"))),
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
