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
        let bad = || {
            format!(
                "lifecycle record {:?} is not \"FROZEN <unix ms>\"",
                String::from_utf8_lossy(&value[..value.len().min(64)])
            )
        };
        let text = std::str::from_utf8(value).map_err(|_| bad())?;
        let at = text.strip_prefix("FROZEN ").ok_or_else(bad)?;
        let at_ms = at.parse().map_err(|_| bad())?;
        Ok(Frozen { at_ms })
    }
}

/// A log's lifecycle state, shared by its writers and its freeze.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    state: RwLock<(LogState, Option<Frozen>)>,
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
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
