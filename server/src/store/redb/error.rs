//! redb's failures as [`StoreError`]s, and the guard that turns a panic
//! inside the engine into one.

use crate::store::{is_full, Cause, StoreError};

/// A redb error as a [`StoreError`]: a full disk, a reached quota or a file
/// size limit become [`StoreError::Full`], so that callers can say so.
pub(crate) fn engine<E: Into<redb::Error>>(e: E) -> StoreError {
    match e.into() {
        redb::Error::Io(io) if is_full(&io) => StoreError::Full(Cause::new(io)),
        other => StoreError::Engine(Cause::new(other)),
    }
}

/// Runs `f`, turning a panic inside the storage engine into
/// [`StoreError::Corrupt`]. redb trusts its own pages: a damaged file can
/// make it panic (an assertion, an index out of bounds). Every call into the
/// engine goes through here, so damage is a clear error, never a crash.
pub(crate) fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(StoreError::Corrupt(format!(
                "{what}: the storage engine failed on damaged data ({msg})"
            )))
        }
    }
}
