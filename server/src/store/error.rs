//! The storage error every engine returns ([`StoreError`]), keeping its
//! engine's error as the [`Cause`], and what counts as a full disk.

use super::Head;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed.
    #[error("storage engine: {0}")]
    Engine(Cause),
    /// The disk is full, a quota is reached or a file hit its size limit
    /// (ENOSPC, EDQUOT, EFBIG).
    #[error("storage is full: {0}")]
    Full(Cause),
    /// Stored data is not what it must be.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A node or entry that must exist is absent.
    #[error("not stored: {0}")]
    Missing(String),
    /// Entries asked for were dropped with every other entry of their
    /// frozen log ([`Storage::drop_entries`](super::Storage::drop_entries)); its hashes, checkpoints and
    /// proofs remain.
    #[error("the entries of this log were dropped by retention at {} ms, after it was frozen at size {}: its tiles, checkpoints and proofs remain, its entries and payloads do not", .0.at_ms, .0.size)]
    Dropped(crate::lifecycle::Dropped),
    /// This writer does not hold the log's lease (it expired, or another
    /// replica took it over): nothing was written, and nothing may be
    /// signed.
    #[error("not the log's sequencer: {0}; nothing was written")]
    NotLeader(String),
    /// The database would not make the commit durable on the synchronous
    /// standbys required (none configured, too few streaming, or commits
    /// that do not wait for them): nothing was written.
    #[error("the commit would not be replicated: {0}; nothing was written")]
    NotReplicated(String),
    /// What storage holds is not yet as durable as an acknowledged commit
    /// (PostgreSQL: not flushed by the synchronous standbys the log's
    /// commits require): it is not served, recorded or sequenced on.
    #[error("storage's latest commit is not yet on the synchronous standbys its commits require: {0}; it is not served or built on")]
    NotDurable(String),
    /// A commit that said its leaves were all new ([`Commit::new_leaves`](super::Commit::new_leaves))
    /// carried a leaf hash the log stores already: nothing was written.
    /// The sequencer integrates such a batch again, looking its leaves up
    /// first.
    #[error("{0}; nothing was written")]
    LeafStored(String),
    /// The store's head is not the one the commit extends: another writer
    /// committed, or this one's view is stale. Nothing was written.
    #[error("the log's storage holds size {} (root {}), not the size {} (root {}) this commit extends: another writer committed; nothing was written", found.size, found.root, expected.size, expected.root)]
    Conflict {
        /// The head the commit extends.
        expected: Head,
        /// The head the store holds.
        found: Head,
    },
}

/// The error an engine failed with, kept whole: its text, its causes, and
/// its type for a caller that looks into it ([`Cause::get`]).
///
/// It shows its whole chain of causes in its own text, as
/// `kind: cause: cause`: PostgreSQL's client says only "db error" or
/// "error communicating with the server" and keeps the server's message
/// (or the socket's error) in its source, which a log line or a gRPC
/// status that prints one error would drop. A cause whose text its error
/// shows already is not shown again (`quire_host::error::Report`), and
/// the chain ends here
/// ([`std::error::Error::source`] is `None`; [`StoreError`] shows it in
/// its text and gives no source either), so nothing that walks the chain
/// (`{:#}` of `anyhow`) prints a cause twice.
#[derive(Clone, Debug)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// The cause `e`.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(std::sync::Arc::new(e))
    }

    /// A cause that is only words (a failure found by Quire itself).
    pub fn msg(text: impl Into<String>) -> Self {
        Cause(std::sync::Arc::new(Words(text.into())))
    }

    /// The error itself.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        quire_host::error::Report(&*self.0).fmt(f)
    }
}

impl std::error::Error for Cause {}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Words(String);

impl StoreError {
    /// [`StoreError::Engine`] with a cause that is only words.
    pub fn engine(text: impl Into<String>) -> Self {
        StoreError::Engine(Cause::msg(text))
    }
}

/// Whether an I/O error means a full disk, a reached quota or a file size
/// limit (ENOSPC, EDQUOT, EFBIG).
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge
    )
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn a_full_disk_a_quota_and_a_file_size_limit_are_full() {
        for errno in [28, 122, 27] {
            let e = crate::store::redb::engine(redb::Error::Io(std::io::Error::from_raw_os_error(
                errno,
            )));
            assert!(matches!(e, StoreError::Full(_)), "errno {errno}: {e:?}");
        }
        let e = crate::store::redb::engine(redb::Error::Io(std::io::Error::from_raw_os_error(5)));
        assert!(matches!(e, StoreError::Engine(_)), "EIO: {e:?}");
        // The engine's error is kept, not flattened into words.
        let StoreError::Engine(cause) = &e else {
            unreachable!()
        };
        let kept = cause.get().downcast_ref::<redb::Error>();
        assert!(
            matches!(kept, Some(redb::Error::Io(io)) if io.raw_os_error() == Some(5)),
            "{e:?}"
        );
        let e = crate::store::redb::engine(redb::Error::PreviousIo);
        assert!(matches!(e, StoreError::Engine(_)), "{e:?}");
    }

    /// An error that says only its kind and keeps the detail in its
    /// source, as PostgreSQL's client does.
    #[derive(Debug)]
    struct Terse(std::io::Error);

    impl std::fmt::Display for Terse {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("db error")
        }
    }

    impl std::error::Error for Terse {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// An error that shows its source in its own text.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect: {0}")]
    struct Wordy(#[source] Terse);

    /// The engine's detail reaches the error's text once, however the
    /// error is printed: alone, or by walking its chain.
    #[test]
    fn a_cause_shows_its_chain_once() {
        use std::error::Error as _;
        let detail = || std::io::Error::other("ERROR: relation \"quire_heads\" does not exist");
        let e = StoreError::Engine(super::Cause::new(Terse(detail())));
        assert_eq!(
            e.to_string(),
            "storage engine: db error: ERROR: relation \"quire_heads\" does not exist"
        );
        // The typed error is still there for a caller that looks.
        let StoreError::Engine(cause) = &e else {
            unreachable!()
        };
        assert!(cause.get().downcast_ref::<Terse>().is_some());
        // Walking the chain adds nothing the text did not show.
        assert!(e.source().is_none());
        let shown = e.to_string();
        assert_eq!(format!("{:#}", anyhow::Error::new(e)), shown);
        // A source its error shows already is not repeated.
        let e = StoreError::Engine(super::Cause::new(Wordy(Terse(detail()))));
        assert_eq!(
            e.to_string(),
            "storage engine: cannot connect: db error: ERROR: relation \"quire_heads\" does not exist"
        );
    }
}
