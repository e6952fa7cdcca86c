//! What a log in event mode stores beside its tree (`docs/EVENTS.md`):
//! each event's payload and salt (erasable: the leaf holds only their
//! hash), the newest event of each key (actor, action, resource, type),
//! and the log time of each commit's first event. All written in the
//! commit of the events themselves, so they never drift from the log.

use quire_core::event::SALT_LEN;
use quire_core::Hash;

/// An event's payload as stored beside the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPayload {
    /// The event's index.
    pub index: u64,
    /// Its salt.
    pub salt: [u8; SALT_LEN],
    /// The payload.
    pub payload: Vec<u8>,
}

/// What the store holds of an event's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The payload and its salt.
    Stored(StoredPayload),
    /// Erased by the erasure event of that index: the payload and salt
    /// are gone, the envelope and every proof stay.
    Erased {
        /// The erasure event.
        by: u64,
    },
}

/// The rows of a commit of events.
#[derive(Clone, Debug, Default)]
pub struct EventRows {
    /// Payloads of the commit's events that have one.
    pub payloads: Vec<StoredPayload>,
    /// For each key of the commit's events
    /// ([`quire_core::event::key`]), its newest event.
    pub newest: Vec<(Hash, u64)>,
    /// The log time of the commit's events and the index of its first:
    /// one row per commit, in time (and index) order.
    pub time: Option<(u64, u64)>,
    /// Payloads erased by this commit: (the event's index, the index of
    /// the erasure event that erases it, in this commit).
    pub erased: Vec<(u64, u64)>,
    /// Payloads of this commit's events that were erased before they
    /// were copied here (`quire-server migrate`): (the event's index, the
    /// index of the erasure event), stored as erased from the start.
    pub erased_copies: Vec<(u64, u64)>,
}

impl EventRows {
    /// Whether the commit has no event rows.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
            && self.newest.is_empty()
            && self.time.is_none()
            && self.erased.is_empty()
            && self.erased_copies.is_empty()
    }
}

/// The parts of a stored payload record, in order: salt ‖ payload.
pub(crate) fn payload_parts(p: &StoredPayload) -> [&[u8]; 2] {
    [&p.salt, &p.payload]
}

/// The record of an erased payload: `E` and the erasure event's index
/// (9 bytes: shorter than any salt, so never a payload's record).
pub(crate) fn encode_erased(by: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(9);
    b.push(b'E');
    b.extend_from_slice(&by.to_be_bytes());
    b
}

/// Whether a payload record is an erasure's ([`encode_erased`]).
pub(crate) fn is_erased(b: &[u8]) -> bool {
    b.len() == 9 && b.first() == Some(&b'E')
}

/// The payload of event `index` from its record.
///
/// # Errors
/// [`crate::store::StoreError::Corrupt`] for a record that is neither a
/// salt and payload nor an erasure.
pub(crate) fn decode_payload(index: u64, b: &[u8]) -> Result<Payload, crate::store::StoreError> {
    if let (true, Some(by)) = (is_erased(b), b.get(1..9)) {
        let mut n = [0u8; 8];
        n.copy_from_slice(by);
        return Ok(Payload::Erased {
            by: u64::from_be_bytes(n),
        });
    }
    let (Some(salt), Some(payload)) = (b.get(..SALT_LEN), b.get(SALT_LEN..)) else {
        return Err(crate::store::StoreError::Corrupt(format!(
            "payload record of event {index} is {} bytes, shorter than its salt",
            b.len()
        )));
    };
    let mut s = [0u8; SALT_LEN];
    s.copy_from_slice(salt);
    Ok(Payload::Stored(StoredPayload {
        index,
        salt: s,
        payload: payload.to_vec(),
    }))
}

/// The most bytes of payload records one chunk gathers (a record larger
/// than this is a chunk of its own).
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// A chunk's entry: the event's index (8 bytes, big-endian) and its
/// payload record, made of `parts` ([`payload_parts`], or a record as
/// stored), copied once.
pub(crate) fn chunk_entry(index: u64, parts: &[&[u8]]) -> Vec<u8> {
    let mut e = Vec::with_capacity(8 + parts.iter().map(|p| p.len()).sum::<usize>());
    e.extend_from_slice(&index.to_be_bytes());
    for p in parts {
        e.extend_from_slice(p);
    }
    e
}

/// Chunk entries ([`chunk_entry`]) in index order, gathered into chunks:
/// each of at most [`CHUNK_BYTES`] of records (or one record) and at most
/// [`crate::store::bundle::BUNDLE_SIZE`] of them, keyed by its first
/// index. A chunk is stored as an entry bundle (so LZ4-compressed when
/// that is smaller): the payloads of one producer share most of their
/// bytes, which one payload alone does not show the compressor.
pub(crate) fn chunks(entries: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    let first = |e: &[u8]| e.first_chunk::<8>().map_or(0, |b| u64::from_be_bytes(*b));
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (n, e) in entries.iter().enumerate() {
        let record = e.len().saturating_sub(8);
        let open = n - start;
        if open as u64 >= crate::store::bundle::BUNDLE_SIZE
            || (open > 0 && bytes + record > CHUNK_BYTES)
        {
            out.push((
                first(&entries[start]),
                crate::store::bundle::encode(&entries[start..n], true),
            ));
            start = n;
            bytes = 0;
        }
        bytes += record;
    }
    if start < entries.len() {
        out.push((
            first(&entries[start]),
            crate::store::bundle::encode(&entries[start..], true),
        ));
    }
    out
}

/// One chunk's stored bytes, from its records.
pub(crate) fn encode_chunk(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let entries: Vec<Vec<u8>> = records.iter().map(|(i, r)| chunk_entry(*i, &[r])).collect();
    crate::store::bundle::encode(&entries, true)
}

/// A chunk's records, checked: each at least its index, the indexes
/// increasing.
///
/// # Errors
/// [`crate::store::StoreError::Corrupt`] naming the chunk (`first`).
pub(crate) fn decode_chunk(
    first: u64,
    stored: &[u8],
) -> Result<Vec<(u64, Vec<u8>)>, crate::store::StoreError> {
    let corrupt = |why: String| {
        crate::store::StoreError::Corrupt(format!("the payload chunk of event {first}: {why}"))
    };
    let entries = crate::store::bundle::decode(stored).map_err(|e| corrupt(e.to_string()))?;
    let mut out: Vec<(u64, Vec<u8>)> = Vec::with_capacity(entries.len());
    for mut e in entries {
        let Some(index) = e.first_chunk::<8>().map(|b| u64::from_be_bytes(*b)) else {
            return Err(corrupt(format!(
                "a record of {} bytes has no index",
                e.len()
            )));
        };
        let after = out.last().map_or(first, |(i, _)| i + 1);
        if index < after {
            return Err(corrupt(format!("event {index} is out of order")));
        }
        e.drain(..8);
        out.push((index, e));
    }
    if out.first().is_some_and(|(i, _)| *i != first) {
        return Err(corrupt("its first record is of another event".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(records: &[(u64, Vec<u8>)]) -> Vec<Vec<u8>> {
        records.iter().map(|(i, r)| chunk_entry(*i, &[r])).collect()
    }

    fn record(i: u64, len: usize) -> (u64, Vec<u8>) {
        let p = StoredPayload {
            index: i,
            salt: [7; SALT_LEN],
            payload: format!(
                "{{\"seq\":{i},\"verb\":\"get\",\"pad\":\"{}\"}}",
                "x".repeat(len)
            )
            .into_bytes(),
        };
        (i, payload_parts(&p).concat())
    }

    #[test]
    fn chunks_gather_records_up_to_their_bounds_and_decode_to_them() {
        // 600 small records: 256 a chunk at most.
        let small: Vec<_> = (10..610).map(|i| record(i, 10)).collect();
        let c = chunks(&entries(&small));
        assert_eq!(
            c.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
            vec![10, 266, 522]
        );
        let back: Vec<_> = c
            .iter()
            .flat_map(|(f, b)| decode_chunk(*f, b).unwrap())
            .collect();
        assert_eq!(back, small);
        // Similar records compress together.
        let raw: usize = small.iter().map(|(_, r)| r.len()).sum();
        let stored: usize = c.iter().map(|(_, b)| b.len()).sum();
        assert!(stored * 3 < raw, "{stored} of {raw}");
        // Large records: a chunk closes before 64 KiB; one larger record
        // is a chunk alone.
        let big = vec![
            record(0, 30_000),
            record(1, 30_000),
            record(2, 100_000),
            record(3, 10),
        ];
        let c = chunks(&entries(&big));
        assert_eq!(c.iter().map(|(f, _)| *f).collect::<Vec<_>>(), vec![0, 2, 3]);
    }

    #[test]
    fn a_damaged_chunk_is_refused_by_name() {
        let c = chunks(&entries(&[record(5, 10), record(6, 10)]));
        let (first, bytes) = &c[0];
        let e = decode_chunk(first + 1, bytes).unwrap_err();
        assert!(
            e.to_string().contains("the payload chunk of event 6"),
            "{e}"
        );
        let swapped = encode_chunk(&[record(6, 1), record(5, 1)]);
        assert!(decode_chunk(6, &swapped)
            .unwrap_err()
            .to_string()
            .contains("out of order"));
        let short = crate::store::bundle::encode(&[vec![1, 2, 3]], false);
        assert!(decode_chunk(0, &short)
            .unwrap_err()
            .to_string()
            .contains("no index"));
    }
}
