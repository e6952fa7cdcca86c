//! Opening a log over its storage: the checks that come before its first
//! signature (design invariant 7). The stored tree must rebuild to its
//! latest checkpoint, signed by the configured key for the configured
//! origin, and that checkpoint must be the high-water mark or extend it.
//! [`OpenError`] and [`Refusal`] say what does not match.

use quire_core::{Checkpoint, CompactRange, Hash, Note, VerifierKey};

use crate::highwater::{HighWaterError, Mark};
use crate::store::{Storage, StorageReader, StoreError, StoredCheckpoint};

/// Why a log refused to open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No signing key configured.
    #[error("log {0:?} has no signing key")]
    NoKey(String),
    /// The stored origin differs from the configured one.
    #[error("storage belongs to log {stored:?}, the configuration says {configured:?}: refusing to start")]
    OriginChanged {
        /// Origin in storage.
        stored: String,
        /// Origin configured.
        configured: String,
    },
    /// The latest checkpoint is not signed by the configured primary key.
    #[error("latest checkpoint (size {size}) is not signed by the configured key {key}: {why}; refusing to start with a different key")]
    WrongKey {
        /// Checkpoint size.
        size: u64,
        /// The configured primary key.
        key: String,
        /// Verification error.
        why: String,
    },
    /// Stored data does not match the latest checkpoint.
    #[error("stored tree does not match the latest signed checkpoint: {0}; refusing to sign over corrupt data")]
    Mismatch(String),
    /// The configuration turns event mode on or off for a log that holds
    /// entries of the other kind.
    #[error("log {origin} {stored}, but the configuration says {configured}: a log's mode never changes; start a new log for the other kind")]
    ModeChanged {
        /// The log.
        origin: String,
        /// What storage holds, in words.
        stored: &'static str,
        /// What the configuration says, in words.
        configured: &'static str,
    },
    /// The high-water record cannot be read or written.
    #[error(transparent)]
    HighWater(#[from] HighWaterError),
    /// Starting would fork the log: the database is behind, replaced or
    /// missing against the high-water record.
    #[error(transparent)]
    Refused(#[from] Box<Refusal>),
    /// An import was interrupted.
    #[error("an import to size {target} stopped at {stored} entries; run the same `quire-server import` again to finish it before starting the log")]
    ImportInProgress {
        /// The checkpoint's size.
        target: u64,
        /// Entries stored so far.
        stored: u64,
    },
    /// The database holds checkpoints but there is no high-water record.
    #[error("log {origin}: the database holds checkpoints up to size {size} but there is no high-water record at {record}, so nothing shows that this is the newest tree the log published. Refusing to start. Restore the record; or, if you are sure this database holds the newest checkpoint the log ever published (a log first started before the record existed), start once with --adopt-database")]
    NoHighWater {
        /// The log.
        origin: String,
        /// The database's latest size.
        size: u64,
        /// The high-water file.
        record: String,
    },
}

/// Why a log refuses to start over its database: what it holds does not
/// extend the newest checkpoint the log published.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The database is behind the newest checkpoint the log published.
    #[error("log {origin}: the database holds size {db_size} (root {db_root}) but the log published size {hw_size} (root {hw_root}), recorded in {record}: the database is behind what the log published (a restored backup, or a commit lost to damage). Refusing to start: signing now would fork the log. Bring the database to size {hw_size} with `quire-server import` (README, \"Restoring a log\")")]
    Behind {
        /// The log.
        origin: String,
        /// The database's latest size.
        db_size: u64,
        /// Its root.
        db_root: Hash,
        /// The published size.
        hw_size: u64,
        /// Its root.
        hw_root: Hash,
        /// The high-water file.
        record: String,
    },
    /// The database holds another tree at the published size.
    #[error("log {origin}: at size {size} the database has root {db_root} but the log published root {hw_root}, recorded in {record}: the database holds another tree (replaced or damaged). Refusing to start: it would fork the log. Restore the database and bring it to the published size with `quire-server import` (README, \"Restoring a log\")")]
    Diverged {
        /// The log.
        origin: String,
        /// The size compared.
        size: u64,
        /// The database's root at that size.
        db_root: Hash,
        /// The published root.
        hw_root: Hash,
        /// The high-water file.
        record: String,
    },
    /// The database holds nothing, but the log published checkpoints.
    #[error("log {origin}: the database holds no checkpoint but the log published size {hw_size} (root {hw_root}), recorded in {record}: the database was deleted, truncated or replaced. Refusing to start an empty tree under this log's keys. Restore the database, or rebuild it from an entries dump with `quire-server import` (README, \"Restoring a log\")")]
    DatabaseMissing {
        /// The log.
        origin: String,
        /// The published size.
        hw_size: u64,
        /// Its root.
        hw_root: Hash,
        /// The high-water file.
        record: String,
    },
}

/// The checkpoint of `note`, checked to be of `origin` and signed by
/// `primary`.
pub(crate) fn check_origin_and_key(
    note: &Note,
    origin: &str,
    primary: &VerifierKey,
) -> Result<Checkpoint, OpenError> {
    let cp = Checkpoint::parse(note.text().as_bytes())
        .map_err(|e| OpenError::Mismatch(format!("checkpoint: {e}")))?;
    if cp.origin() != origin {
        return Err(OpenError::OriginChanged {
            stored: cp.origin().to_owned(),
            configured: origin.to_owned(),
        });
    }
    note.verify(std::slice::from_ref(primary))
        .map_err(|e| OpenError::WrongKey {
            size: cp.size(),
            key: primary.to_vkey(),
            why: e.to_string(),
        })?;
    Ok(cp)
}

/// The view a server serves (or sequences) from: `reader` when nothing it
/// holds is `news` to this server, and otherwise a durable view
/// ([`Storage::durable_reader`]), read again: what a server takes from
/// storage for the first time must be as durable as an acknowledged
/// commit, never what the database shows but a failover may drop.
///
/// # Errors
/// [`StoreError::NotDurable`] when there is news and its durability cannot
/// be shown in time, or [`StoreError`] from the engine.
pub(crate) fn view_to_serve<S: Storage>(
    store: &S,
    reader: S::Reader,
    news: bool,
) -> Result<S::Reader, StoreError> {
    if news {
        drop(reader);
        store.durable_reader()
    } else {
        // No newer than what was published (or served): durable.
        store.shown_durable(&reader);
        Ok(reader)
    }
}

/// Whether `reader`'s latest checkpoint is newer than `published`, the
/// size a server published before (its high-water record); with none,
/// anything stored is. A view at or below it is not news: the checks that
/// follow accept it or refuse it.
///
/// # Errors
/// [`StoreError`] from the engine.
pub(crate) fn newer_than<R: StorageReader>(
    reader: &R,
    published: Option<u64>,
) -> Result<bool, StoreError> {
    Ok(reader
        .latest_checkpoint()?
        .is_some_and(|c| published.is_none_or(|p| c.size > p)))
}

/// Checks that the database's latest checkpoint (`stored`, whose tree was
/// rebuilt to `root`) is the high-water mark or extends it: the same root
/// at the same size, or, for a larger size, stored hashes that give the
/// mark's root at the mark's size.
pub(crate) fn check_extends<R: StorageReader>(
    reader: &R,
    stored: &StoredCheckpoint,
    root: Hash,
    mark: &Mark,
    origin: &str,
    record: &str,
) -> Result<(), OpenError> {
    let diverged = |db_root| {
        OpenError::Refused(Box::new(Refusal::Diverged {
            origin: origin.to_owned(),
            size: mark.size,
            db_root,
            hw_root: mark.root,
            record: record.to_owned(),
        }))
    };
    if stored.size < mark.size {
        return Err(OpenError::Refused(Box::new(Refusal::Behind {
            origin: origin.to_owned(),
            db_size: stored.size,
            db_root: root,
            hw_size: mark.size,
            hw_root: mark.root,
            record: record.to_owned(),
        })));
    }
    let at_mark = if stored.size == mark.size {
        root
    } else {
        quire_core::root_at(reader, mark.size).map_err(|e| match e {
            quire_core::ProveError::Read(e) => read_failed(e),
            e => OpenError::Mismatch(e.to_string()),
        })?
    };
    if at_mark != mark.root {
        return Err(diverged(at_mark));
    }
    Ok(())
}

/// A read of the checks that failed: damage (data corrupt or absent) is a
/// mismatch; anything else (the database unreachable, a timeout) is the
/// storage's own error, which a retry may clear, never called corruption.
fn read_failed(e: StoreError) -> OpenError {
    match e {
        StoreError::Corrupt(_) | StoreError::Missing(_) => OpenError::Mismatch(e.to_string()),
        e => OpenError::Store(e),
    }
}

/// Rebuilds the right edge from storage and checks it against the checkpoint.
pub(crate) fn check_stored<R: StorageReader>(
    reader: &R,
    stored: &StoredCheckpoint,
    origin: &str,
    primary: &VerifierKey,
) -> Result<CompactRange, OpenError> {
    let note = Note::parse(&stored.note)
        .map_err(|e| OpenError::Mismatch(format!("latest checkpoint: {e}")))?;
    let cp = check_origin_and_key(&note, origin, primary)?;
    let size = cp.size();
    let edge = reader
        .read_hashes(&CompactRange::edge_nodes(size))
        .map_err(read_failed)?;
    let range =
        CompactRange::from_parts(size, edge).map_err(|e| OpenError::Mismatch(e.to_string()))?;
    if range.root() != *cp.root() {
        return Err(OpenError::Mismatch(format!(
            "size {size}: stored hashes give root {}, the checkpoint says {}",
            range.root(),
            cp.root()
        )));
    }
    // The newest entries (the last bundle) must hash to the stored leaves,
    // unless the frozen log dropped its entries.
    if size > 0 {
        let start =
            (size - 1) / crate::store::bundle::BUNDLE_SIZE * crate::store::bundle::BUNDLE_SIZE;
        match reader.checked_entries(start, size) {
            Ok(_) | Err(StoreError::Dropped(_)) => {}
            Err(e) => return Err(read_failed(e)),
        }
    }
    Ok(range)
}
