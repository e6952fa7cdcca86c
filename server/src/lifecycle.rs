//! A log's lifecycle: ACTIVE (takes writes), DRAINING (takes no new writes,
//! integrates and answers those already queued) and FROZEN (takes no
//! writes, ever again; reads, proofs and witnessing go on).
//!
//! Only FROZEN is durable: it is recorded in the log's own storage (the
//! metadata key [`LIFECYCLE_META`]), in the commit that follows the last
//! write the log took, so that a restart, a replica that follows the
//! storage and a replica that takes the log over all find it frozen. A
//! freeze interrupted while DRAINING (the server stopped) left the log
//! ACTIVE: the freeze was not acknowledged, and is asked again.
//!
//! Admission is decided under a read lock that the freeze takes for
//! writing to turn DRAINING, so every write is either queued before the
//! freeze's barrier (and integrated before the log is frozen) or refused
//! by name: none is queued behind the barrier and lost.
//!
//! A frozen log may later drop its entries ([`Dropped`], the retention of
//! a family's old shards): its entry bundles (and, in event mode, its
//! payloads) are deleted, while its tiles, leaf index, checkpoints and
//! cosignatures stay, so every proof it gave, and every new one, still
//! verifies. The record is the metadata key [`DROPPED_META`], written in
//! the transaction that deletes them.

use std::sync::RwLock;

/// The metadata key of the lifecycle record: `FROZEN <unix ms>`.
pub const LIFECYCLE_META: &str = "lifecycle";

/// Where a log is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogState {
    /// Takes writes.
    Active,
    /// Freezing: takes no new writes; those queued are being integrated.
    Draining,
    /// Takes no writes; reads, proofs and witnessing go on.
    Frozen,
}

impl LogState {
    /// The state's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LogState::Active => "ACTIVE",
            LogState::Draining => "DRAINING",
            LogState::Frozen => "FROZEN",
        }
    }
}

impl std::fmt::Display for LogState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The record of a frozen log, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frozen {
    /// When it was frozen, Unix milliseconds.
    pub at_ms: u64,
}

impl Frozen {
    /// The stored value.
    pub fn encode(self) -> Vec<u8> {
        format!("FROZEN {}", self.at_ms).into_bytes()
    }

    /// Parses a stored value.
    ///
    /// # Errors
    /// A value that is not `FROZEN <unix ms>`, quoted (at most 64 bytes).
    pub fn decode(value: &[u8]) -> Result<Self, String> {
        let [at_ms] = record(value, "lifecycle record", "FROZEN", "<unix ms>")?;
        Ok(Frozen { at_ms })
    }
}

/// The numbers of a record `WORD <n> …` stored as `what`, or why it is
/// not one: the record quoted (at most 64 bytes) beside the form `fields`.
fn record<const N: usize>(
    value: &[u8],
    what: &str,
    word: &str,
    fields: &str,
) -> Result<[u64; N], String> {
    let bad = || {
        format!(
            "{what} {:?} is not \"{word} {fields}\"",
            String::from_utf8_lossy(&value[..value.len().min(64)])
        )
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let mut parts = text.split(' ');
    if parts.next() != Some(word) {
        return Err(bad());
    }
    let mut out = [0u64; N];
    for n in &mut out {
        *n = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// The metadata key of the record of dropped entries: `DROPPED <size>
/// <unix ms>`.
pub const DROPPED_META: &str = "entries_dropped";

/// The record of a frozen log whose entries were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The tree size whose entries are gone (the frozen log's size).
    pub size: u64,
    /// When they were dropped, Unix milliseconds.
    pub at_ms: u64,
}

impl Dropped {
    /// The stored value.
    pub fn encode(self) -> Vec<u8> {
        format!("DROPPED {} {}", self.size, self.at_ms).into_bytes()
    }

    /// Parses a stored value.
    ///
    /// # Errors
    /// A value that is not `DROPPED <size> <unix ms>`, quoted (at most 64
    /// bytes).
    pub fn decode(value: &[u8]) -> Result<Self, String> {
        let [size, at_ms] = record(
            value,
            "dropped-entries record",
            "DROPPED",
            "<size> <unix ms>",
        )?;
        Ok(Dropped { size, at_ms })
    }
}

/// A log's lifecycle state, shared by its writers and its freeze.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    state: RwLock<(LogState, Option<Frozen>)>,
    dropped: RwLock<Option<Dropped>>,
}

impl Lifecycle {
    /// A lifecycle starting from what storage recorded.
    pub(crate) fn new(frozen: Option<Frozen>) -> Self {
        let state = if frozen.is_some() {
            LogState::Frozen
        } else {
            LogState::Active
        };
        Lifecycle {
            state: RwLock::new((state, frozen)),
            dropped: RwLock::new(None),
        }
    }

    /// A lifecycle starting from what storage recorded, entries dropped
    /// or not.
    pub(crate) fn with_dropped(frozen: Option<Frozen>, dropped: Option<Dropped>) -> Self {
        let l = Self::new(frozen);
        l.set_dropped(dropped);
        l
    }

    /// Whether, and when, the log's entries were dropped.
    pub(crate) fn dropped(&self) -> Option<Dropped> {
        *self
            .dropped
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that the log's entries were dropped.
    pub(crate) fn set_dropped(&self, dropped: Option<Dropped>) {
        *self
            .dropped
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = dropped;
    }

    /// The state now.
    pub(crate) fn get(&self) -> (LogState, Option<Frozen>) {
        *self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `admit` while the state is ACTIVE and cannot change, else
    /// returns the state.
    pub(crate) fn admit<T>(&self, admit: impl FnOnce() -> T) -> Result<T, LogState> {
        let guard = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.0 {
            LogState::Active => Ok(admit()),
            other => Err(other),
        }
    }

    /// Sets the state; returns the one before.
    pub(crate) fn set(&self, state: LogState, frozen: Option<Frozen>) -> LogState {
        let mut guard = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = guard.0;
        *guard = (state, frozen);
        before
    }

    /// From ACTIVE to DRAINING; returns the state before (unchanged when
    /// it was not ACTIVE).
    pub(crate) fn start_draining(&self) -> LogState {
        let mut guard = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = guard.0;
        if before == LogState::Active {
            guard.0 = LogState::Draining;
        }
        before
    }
}

/// Reads the lifecycle record of a store.
///
/// # Errors
/// [`crate::store::StoreError`] from the engine, or
/// [`crate::store::StoreError::Corrupt`] for a damaged record.
pub fn stored<R: crate::store::StorageReader>(
    reader: &R,
) -> Result<Option<Frozen>, crate::store::StoreError> {
    reader
        .meta(LIFECYCLE_META)?
        .map(|v| Frozen::decode(&v).map_err(crate::store::StoreError::Corrupt))
        .transpose()
}

/// Reads the record of dropped entries of a store.
///
/// # Errors
/// [`crate::store::StoreError`] from the engine, or
/// [`crate::store::StoreError::Corrupt`] for a damaged record.
pub fn stored_dropped<R: crate::store::StorageReader + ?Sized>(
    reader: &R,
) -> Result<Option<Dropped>, crate::store::StoreError> {
    reader
        .meta(DROPPED_META)?
        .map(|v| Dropped::decode(&v).map_err(crate::store::StoreError::Corrupt))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dropped_record_round_trips_and_damage_is_named() {
        let d = Dropped {
            size: 70_000,
            at_ms: 1_764_806_400_000,
        };
        assert_eq!(Dropped::decode(&d.encode()), Ok(d));
        for bad in [
            &b"DROPPED"[..],
            b"DROPPED 5",
            b"DROPPED x 5",
            b"DROPPED 5 x",
            b"FROZEN 5",
            b"\xff",
            b"",
        ] {
            let e = Dropped::decode(bad).unwrap_err();
            assert!(e.contains("is not \"DROPPED <size> <unix ms>\""), "{e}");
        }
    }

    #[test]
    fn the_record_round_trips_and_damage_is_named() {
        let f = Frozen {
            at_ms: 1_764_806_400_000,
        };
        assert_eq!(Frozen::decode(&f.encode()), Ok(f));
        for bad in [&b"FROZEN"[..], b"FROZEN x", b"ACTIVE 1", b"\xff", b""] {
            let e = Frozen::decode(bad).unwrap_err();
            assert!(e.contains("is not \"FROZEN <unix ms>\""), "{e}");
        }
    }

    #[test]
    fn only_an_active_log_admits_and_draining_starts_once() {
        let l = Lifecycle::new(None);
        assert_eq!(l.admit(|| 7), Ok(7));
        assert_eq!(l.start_draining(), LogState::Active);
        assert_eq!(l.admit(|| 7), Err(LogState::Draining));
        assert_eq!(l.start_draining(), LogState::Draining);
        l.set(LogState::Frozen, Some(Frozen { at_ms: 5 }));
        assert_eq!(l.admit(|| 7), Err(LogState::Frozen));
        assert_eq!(l.get(), (LogState::Frozen, Some(Frozen { at_ms: 5 })));
        let stored = Lifecycle::new(Some(Frozen { at_ms: 9 }));
        assert_eq!(stored.admit(|| 7), Err(LogState::Frozen));
    }
}
