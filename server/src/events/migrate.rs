//! What `quire-server migrate` copies of a log in event mode beside its
//! tree (`crate::migrate`): the mode record, each event's payload and
//! salt, or its erasure (the erasure event's index, stored as erased from
//! the start), and the event indexes, rebuilt from the copied envelopes
//! and checked against the source's before they are written.
//!
//! Out of scope: a source whose stored indexes disagree with its
//! envelopes (refused by name: `quire-server reindex` it first).

use crate::migrate::MigrateError;
use crate::store::{EventRows, Payload, Storage, StorageReader, StoreError};

use super::reindex::{compare, rebuild, EventIndex};

/// Most payload indexes compared at the end, per read.
const COMPARE_PAGE: usize = 65_536;

/// Checks that the target's mode is the source's: a target that holds
/// entries must already be in event mode when the source is.
///
/// # Errors
/// [`MigrateError::Target`] naming both modes.
pub(crate) fn check_mode<R: StorageReader, D: StorageReader>(
    src: &R,
    dst: &D,
    target_size: u64,
) -> Result<bool, MigrateError> {
    let events = super::stored_mode(src)?;
    let theirs = super::stored_mode(dst)?;
    if target_size > 0 && theirs != events {
        let name = |e: bool| if e { "event mode" } else { "opaque entries" };
        return Err(MigrateError::Target(format!(
            "it holds a log of {}, the source one of {}",
            name(theirs),
            name(events)
        )));
    }
    Ok(events)
}

/// The payload rows of events `[start, end)` of `src`, added to `rows`;
/// returns the bytes of payload added.
///
/// # Errors
/// Storage failures.
pub(crate) fn payload_rows<R: StorageReader>(
    src: &R,
    start: u64,
    end: u64,
    rows: &mut EventRows,
) -> Result<usize, StoreError> {
    let mut bytes = 0;
    for (i, p) in src.payloads(start, end)? {
        match p {
            Payload::Stored(p) => {
                bytes += p.payload.len() + p.salt.len();
                rows.payloads.push(p);
            }
            Payload::Erased { by } => rows.erased_copies.push((i, by)),
        }
    }
    Ok(bytes)
}

/// After the copy: the indexes rebuilt from the target's envelopes must
/// be the source's stored ones, and then replace the target's; the
/// payloads still stored must be at the same events on both.
///
/// # Errors
/// [`MigrateError::Source`] for indexes that disagree with the envelopes,
/// [`MigrateError::Target`] for payloads that differ; storage failures.
pub(crate) fn finish<R: StorageReader, T: Storage>(
    src: &R,
    target: &T,
    size: u64,
) -> Result<(), MigrateError> {
    let dst = target.reader()?;
    let rebuilt = rebuild(&dst, size, |_, _| {})?;
    let (keys, times) = src.event_index()?;
    let diff = compare(&EventIndex::of_rows(keys, times), &rebuilt);
    if !diff.is_empty() {
        return Err(MigrateError::Source(format!(
            "its event indexes differ from its envelopes ({} keys wrong, {} extra, {} log times wrong): run quire-server reindex on it first",
            diff.wrong_keys, diff.extra_keys, diff.wrong_times
        )));
    }
    let mut at = 0;
    while at < size {
        let ours = src.stored_payloads(at, size, COMPARE_PAGE)?;
        let theirs = dst.stored_payloads(at, size, COMPARE_PAGE)?;
        if ours != theirs {
            return Err(MigrateError::Target(format!(
                "after the copy its stored payloads from event {at} are not the source's"
            )));
        }
        at = match ours.last() {
            Some(&last) if ours.len() == COMPARE_PAGE => last + 1,
            _ => size,
        };
    }
    drop(dst);
    let keys: Vec<_> = rebuilt.newest.into_iter().collect();
    let times: Vec<_> = rebuilt.times.into_iter().collect();
    target.replace_event_index(&keys, &times)?;
    Ok(())
}
