//! The entry bundle still filling, in `quire_entries`: each commit writes
//! its entries in that bundle as one row from the first one's index, `n`
//! of them (one raw entry when `n` is 1, else a bundle record of `n`
//! entries), and the commit that completes the bundle reads its rows,
//! writes the bundle and deletes them. Rows never span two bundles.
//!
//! One row a commit, not one an entry: a batched commit's tail of a
//! hundred entries or more was as many heap tuples and index entries
//! written, then read and deleted by the next commit, in the same
//! transactions as the bundles.

use super::bounded;
use crate::store::bundle;
use crate::store::StoreError;

/// Most entries one row holds: those of a bundle but one (a commit that
/// fills a whole bundle writes the bundle).
#[allow(clippy::cast_possible_truncation)] // 256
pub(crate) const MOST: usize = bundle::BUNDLE_SIZE as usize - 1;

/// The row of `entries`, from index `first`, all in one bundle: its `n`
/// and its data.
///
/// # Errors
/// [`StoreError::Corrupt`] for more entries than a row holds.
pub(crate) fn encode(entries: &[Vec<u8>], compress: bool) -> Result<(i32, Vec<u8>), StoreError> {
    let n = Some(entries.len())
        .filter(|n| (1..=MOST).contains(n))
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a row of {} entries of a bundle still filling (1 to {MOST})",
                entries.len()
            ))
        })?;
    Ok(match entries {
        [one] => (n, one.clone()),
        _ => (n, bundle::encode(entries, compress)),
    })
}

/// The entries of a stored row from index `idx`, `n` of them, `data` read
/// at most [`bounded::BUNDLE`] bytes and a byte.
///
/// # Errors
/// [`StoreError::Corrupt`] when the row is over its limit, is not a row of
/// `n` entries, or spans two bundles.
pub(crate) fn decode(idx: u64, n: i32, data: Vec<u8>) -> Result<Vec<Vec<u8>>, StoreError> {
    let count = usize::try_from(n)
        .ok()
        .filter(|n| (1..=MOST).contains(n))
        .filter(|n| idx % bundle::BUNDLE_SIZE + *n as u64 <= bundle::BUNDLE_SIZE)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "stored entry row {idx} says it holds {n} entries of its bundle"
            ))
        })?;
    if count == 1 {
        let data = bounded::within(data, bounded::ENTRY, || format!("stored entry {idx}"))?;
        return Ok(vec![data]);
    }
    let data = bounded::within(data, bounded::BUNDLE, || {
        format!("stored entries {idx}..{}", idx.saturating_add(count as u64))
    })?;
    let entries = bundle::decode(&data)?;
    if entries.len() != count {
        return Err(StoreError::Corrupt(format!(
            "stored entry row {idx} holds {} entries, not the {count} it says",
            entries.len()
        )));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| vec![u8::try_from(i % 251).unwrap(); i % 7 + 1])
            .collect()
    }

    #[test]
    fn rows_read_back_as_written() {
        for n in [1, 2, 31, 32, 33, MOST] {
            for compress in [false, true] {
                let e = entries(n);
                let (k, data) = encode(&e, compress).unwrap();
                assert_eq!(usize::try_from(k).unwrap(), n);
                assert_eq!(decode(256, k, data).unwrap(), e);
            }
        }
    }

    #[test]
    fn a_row_that_says_another_count_or_spans_bundles_is_corrupt() {
        let (_, data) = encode(&entries(10), true).unwrap();
        assert!(matches!(
            decode(0, 9, data.clone()),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode(250, 10, data.clone()),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode(0, 0, data.clone()),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(decode(0, 256, data), Err(StoreError::Corrupt(_))));
        assert!(encode(&[], true).is_err());
        assert!(encode(&entries(256), true).is_err());
    }

    #[test]
    fn a_single_entry_is_stored_raw_and_bounded_as_an_entry() {
        let (n, data) = encode(&[b"abc".to_vec()], true).unwrap();
        assert_eq!((n, data.as_slice()), (1, &b"abc"[..]));
        let e = decode(3, 1, vec![0; bounded::ENTRY + 1]).unwrap_err();
        assert!(e.to_string().contains("stored entry 3"), "{e}");
    }
}
