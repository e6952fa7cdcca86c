//! Rebuilding a log's event indexes from its envelopes alone
//! (`quire-server reindex`): the newest event of each key, and the first
//! event of each log time. The index written at ingestion must equal the
//! rebuilt one; `--check` compares without writing, a rebuild replaces
//! both tables in one transaction.

use std::collections::BTreeMap;

use quire_core::event::Envelope;
use quire_core::Hash;

use crate::store::{Storage, StorageReader, StoreError};

/// A log's event indexes: the newest event of each key, and for each log
/// time the index of its first event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventIndex {
    /// Key → newest event.
    pub newest: BTreeMap<Hash, u64>,
    /// Log time → first event logged then.
    pub times: BTreeMap<u64, u64>,
}

impl EventIndex {
    /// The index as stored, in the rebuilt form: a log time stored once per
    /// commit is kept once, with its first event.
    pub fn of_rows(keys: Vec<(Hash, u64)>, times: Vec<(u64, u64)>) -> Self {
        let mut index = EventIndex {
            newest: keys.into_iter().collect(),
            times: BTreeMap::new(),
        };
        for (t, i) in times {
            let first = index.times.entry(t).or_insert(i);
            *first = (*first).min(i);
        }
        index
    }
}

/// Entries read at a time.
const CHUNK: u64 = 4096;

/// The event indexes of the first `size` events of `r`, from their
/// envelopes; `progress(done, size)` after each chunk.
///
/// # Errors
/// [`StoreError::Corrupt`] for an entry that is not an envelope, or log
/// time that goes backwards; storage failures.
pub fn rebuild<R: StorageReader>(
    r: &R,
    size: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<EventIndex, StoreError> {
    let mut index = EventIndex::default();
    let mut last_time = 0;
    let mut at = 0;
    while at < size {
        let end = (at + CHUNK).min(size);
        for (i, bytes) in (at..).zip(r.checked_entries(at, end)?) {
            let env = Envelope::decode(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("event {i}: {e}")))?;
            if env.log_time_ms < last_time {
                return Err(StoreError::Corrupt(format!(
                    "event {i} was logged at {} ms, before the event ahead of it ({last_time} ms)",
                    env.log_time_ms
                )));
            }
            last_time = env.log_time_ms;
            index.times.entry(env.log_time_ms).or_insert(i);
            for (_, k) in env.event.keys() {
                index.newest.insert(k, i);
            }
        }
        at = end;
        progress(at, size);
    }
    Ok(index)
}

/// How a stored index differs from the rebuilt one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexDiff {
    /// Keys the stored index lacks or names another event for.
    pub wrong_keys: u64,
    /// Keys the stored index has that no event has.
    pub extra_keys: u64,
    /// Log times missing, extra or naming another first event.
    pub wrong_times: u64,
}

impl IndexDiff {
    /// Whether the two are equal.
    pub fn is_empty(&self) -> bool {
        *self == IndexDiff::default()
    }
}

/// How `stored` differs from `rebuilt`.
pub fn compare(stored: &EventIndex, rebuilt: &EventIndex) -> IndexDiff {
    let mut d = IndexDiff::default();
    for (k, i) in &rebuilt.newest {
        if stored.newest.get(k) != Some(i) {
            d.wrong_keys += 1;
        }
    }
    d.extra_keys = stored
        .newest
        .keys()
        .filter(|k| !rebuilt.newest.contains_key(*k))
        .count() as u64;
    let all_times: std::collections::BTreeSet<&u64> =
        stored.times.keys().chain(rebuilt.times.keys()).collect();
    d.wrong_times = all_times
        .into_iter()
        .filter(|t| stored.times.get(t) != rebuilt.times.get(t))
        .count() as u64;
    d
}

/// Checks the stored event indexes of `store` against its envelopes, and
/// with `write` replaces them by the rebuilt ones when they differ.
/// Returns the differences found (before any rewrite) and the rebuilt
/// index's size.
///
/// # Errors
/// As [`rebuild`]; storage failures.
pub fn reindex<S: Storage>(
    store: &S,
    write: bool,
    progress: impl FnMut(u64, u64),
) -> Result<(IndexDiff, EventIndex), StoreError> {
    let r = store.reader()?;
    let size = r.head()?.map_or(0, |h| h.size);
    let rebuilt = rebuild(&r, size, progress)?;
    let (keys, times) = r.event_index()?;
    drop(r);
    let diff = compare(&EventIndex::of_rows(keys, times), &rebuilt);
    if write && !diff.is_empty() {
        store.replace_event_index(
            &rebuilt
                .newest
                .iter()
                .map(|(k, i)| (*k, *i))
                .collect::<Vec<_>>(),
            &rebuilt
                .times
                .iter()
                .map(|(t, i)| (*t, *i))
                .collect::<Vec<_>>(),
        )?;
    }
    Ok((diff, rebuilt))
}
