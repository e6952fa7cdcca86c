//! Recovery without forking: rebuilding or extending a log's storage from an
//! entries dump, verified against a checkpoint the log signed.
//!
//! A restored backup (or an empty database after a lost disk) is behind the
//! log's high-water mark, and the log refuses to start over it. Import
//! appends the missing entries from a dump (`quire entries` writes one:
//! one base64 line per entry), rebuilds their hashes, and stores the given
//! signed checkpoint once the rebuilt tree has exactly its root. Nothing is
//! signed: the checkpoint is the log's own, and every size below it keeps
//! the one root it always had.
//!
//! Long imports commit in chunks; the metadata key [`crate::store::IMPORT_META`] records
//! how far an import got, so a log never starts over a half-imported store
//! and a new run of the same import continues where it stopped.

use std::io::BufRead;

use quire_core::{leaf_hash, Checkpoint, CompactRange, Hash, HashReader as _, LogSigner, Note};

use crate::highwater::{HighWater, HighWaterError};
use crate::store::{Commit, Head, Storage, StorageReader, StoreError, StoredCheckpoint};

/// Entries per chunk commit.
const CHUNK: usize = 16_384;

/// Largest dump line read: the base64 of the largest entry, with slack.
const MAX_LINE: usize = 4 * (16 << 20) / 3 + 16;

/// Why an import failed. Nothing is signed in any case; a failure after some
/// chunks were committed leaves the import resumable.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The checkpoint is not this log's.
    #[error("the checkpoint: {0}")]
    Checkpoint(String),
    /// The dump is malformed or does not cover what is needed.
    #[error("the entries dump: {0}")]
    Dump(String),
    /// The rebuilt tree is not the checkpoint's.
    #[error("{0}")]
    Mismatch(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The high-water record failed.
    #[error(transparent)]
    HighWater(#[from] HighWaterError),
}

/// What an import did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportReport {
    /// The size the storage had (or an interrupted import had reached).
    pub from: u64,
    /// The size it has now: the checkpoint's.
    pub to: u64,
}

/// An entries dump: base64 lines, one entry each, the first of index
/// `start`.
pub struct Dump<R> {
    /// The lines.
    pub lines: R,
    /// The index of the first line's entry.
    pub start: u64,
}

/// Imports entries from `dump` into `store` up to the size of `checkpoint_note`, a
/// checkpoint signed by `primary` for `origin`. The rebuilt tree must have
/// the checkpoint's root, and must contain the high-water mark's tree; then
/// the checkpoint is stored as the latest and recorded as the mark.
/// `progress(done, total)` is called after each chunk.
///
/// # Errors
/// [`ImportError`] naming what does not match.
#[allow(clippy::too_many_lines)]
pub fn import<S: Storage>(
    store: &S,
    origin: &str,
    primary: &LogSigner,
    high_water: &HighWater,
    checkpoint_note: &[u8],
    dump: Dump<impl BufRead>,
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportReport, ImportError> {
    let Dump {
        lines: mut dump,
        start: dump_start,
    } = dump;
    let note = Note::parse(checkpoint_note).map_err(|e| ImportError::Checkpoint(e.to_string()))?;
    note.verify(&[primary.verifier()]).map_err(|e| {
        ImportError::Checkpoint(format!(
            "not signed by this log's key {}: {e}",
            primary.verifier().to_vkey()
        ))
    })?;
    let cp = Checkpoint::parse(note.text().as_bytes())
        .map_err(|e| ImportError::Checkpoint(e.to_string()))?;
    if cp.origin() != origin {
        return Err(ImportError::Checkpoint(format!(
            "of log {:?}, not {origin:?}",
            cp.origin()
        )));
    }
    let target = cp.size();
    let mark = high_water.read()?;
    if let Some(m) = &mark {
        if m.size > target {
            return Err(ImportError::Checkpoint(format!(
                "size {target} is below the size {} the log published (recorded in {}): import up to a checkpoint of at least that size",
                m.size,
                high_water.path().display()
            )));
        }
    }
    let reader = store.reader()?;
    let latest = reader.latest_checkpoint()?;
    let from = match crate::store::import_progress(&reader)? {
        Some((t, stored)) if t == target => stored,
        Some((t, _)) => {
            return Err(ImportError::Checkpoint(format!(
                "an import to size {t} was interrupted; finish it with that checkpoint first"
            )))
        }
        None => latest.as_ref().map_or(0, |c| c.size),
    };
    if from > target {
        return Err(ImportError::Checkpoint(format!(
            "the database already holds size {from}, beyond the checkpoint's {target}"
        )));
    }
    let mut range =
        CompactRange::from_parts(from, reader.read_hashes(&CompactRange::edge_nodes(from))?)
            .map_err(|e| ImportError::Mismatch(e.to_string()))?;
    // The stored prefix must be the log's: its own latest checkpoint's root
    // (when nothing was imported on top of it yet), and the mark's root.
    if let (Some(l), true) = (&latest, from == latest.as_ref().map_or(0, |c| c.size)) {
        let stored_root = crate::highwater::Mark::from_note(&l.note)
            .ok()
            .map(|m| m.root);
        if stored_root != Some(range.root()) {
            return Err(ImportError::Mismatch(format!(
                "the database's hashes at size {from} do not give its own latest checkpoint's root: it is damaged; start from an empty database"
            )));
        }
    }
    let check_mark = |size: u64, root: Hash| -> Result<(), ImportError> {
        match &mark {
            Some(m) if m.size == size && m.root != root => Err(ImportError::Mismatch(format!(
                "at size {size} the rebuilt tree has root {root}, but the log published root {} (recorded in {}): this database or dump holds another history",
                m.root,
                high_water.path().display()
            ))),
            _ => Ok(()),
        }
    };
    if let Some(m) = mark.as_ref().filter(|m| m.size <= from) {
        let root = quire_core::root_at(&reader, m.size)
            .map_err(|e| ImportError::Mismatch(e.to_string()))?;
        check_mark(m.size, root)?;
    }
    drop(reader);
    if from < dump_start {
        return Err(ImportError::Dump(format!(
            "it starts at index {dump_start}, but the database holds only {from} entries: dump from {from} or earlier"
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut index = dump_start;
    let mut line = Vec::new();
    let mut commit = Commit {
        base: Head {
            size: from,
            root: range.root(),
        },
        ..Commit::default()
    };
    while range.size() < target {
        line.clear();
        let n = read_line(&mut dump, &mut line)?;
        if n == 0 {
            return Err(ImportError::Dump(format!(
                "it ends at index {index}, before the checkpoint's size {target}"
            )));
        }
        let at = index;
        index += 1;
        if at < from {
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let entry = {
            use base64::Engine as _;
            b64.decode(text)
                .map_err(|e| ImportError::Dump(format!("line of entry {at}: {e}")))?
        };
        if entry.is_empty() {
            return Err(ImportError::Dump(format!("entry {at} is empty")));
        }
        let leaf = leaf_hash(&entry);
        crate::sequencer::append_entry(&mut range, &mut commit, entry, leaf)
            .map_err(|e| ImportError::Mismatch(e.to_string()))?;
        if mark.as_ref().is_some_and(|m| m.size == range.size()) {
            check_mark(range.size(), range.root())?;
        }
        if commit.entries.len() >= CHUNK && range.size() < target {
            commit.meta = vec![(
                crate::store::IMPORT_META.into(),
                format!("{target} {}", range.size()).into_bytes(),
            )];
            commit.head = Head {
                size: range.size(),
                root: range.root(),
            };
            store.commit(&commit)?;
            progress(range.size(), target);
            commit = Commit {
                base: commit.head,
                ..Commit::default()
            };
        }
    }
    if range.root() != *cp.root() {
        return Err(ImportError::Mismatch(format!(
            "the rebuilt tree of size {target} has root {}, the checkpoint says {}: the dump (or the database's prefix) is not this log's history",
            range.root(),
            cp.root()
        )));
    }
    commit.checkpoint = Some(StoredCheckpoint {
        size: target,
        signed_at_ms: crate::log::now_ms(),
        note: checkpoint_note.to_vec(),
    });
    commit.head = Head {
        size: target,
        root: range.root(),
    };
    commit.meta = vec![(crate::store::IMPORT_META.into(), Vec::new())];
    if latest.is_none() {
        commit
            .meta
            .push(("origin".into(), origin.as_bytes().to_vec()));
    }
    store.commit(&commit)?;
    if mark.as_ref().is_none_or(|m| m.size < target) {
        high_water.write(checkpoint_note)?;
    }
    progress(target, target);
    Ok(ImportReport { from, to: target })
}

/// One line of at most [`MAX_LINE`] bytes into `buf`; 0 at the end.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> Result<usize, ImportError> {
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| ImportError::Dump(e.to_string()))?;
    if buf.len() > MAX_LINE {
        return Err(ImportError::Dump(format!(
            "a line longer than {MAX_LINE} bytes"
        )));
    }
    Ok(n)
}
