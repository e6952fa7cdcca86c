//! Moving a log from one storage engine to another (redb to PostgreSQL and
//! back) without signing anything: every entry, hash and signed checkpoint
//! is copied and checked on the way against the log's own signatures.
//!
//! The source's latest checkpoint must verify with the log's primary key
//! and its stored tree must give that root. The target must be empty, or
//! hold a prefix of the same tree (a migration that stopped, or a log that
//! moves back to where it was): then it is extended from its own head. Each
//! copied checkpoint is stored only once the rebuilt tree has its root and
//! its signature verifies, and at the end the target's head, root and
//! latest checkpoint must be the source's, byte for byte. A log in event
//! mode brings its payloads (or their erasures) with its entries, and its
//! event indexes rebuilt from the copied envelopes
//! (`crate::events::migrate`). Nothing touches the high-water record:
//! the log published what it published, on any engine.

use quire_core::{leaf_hash, Checkpoint, CompactRange, Note, VerifierKey};

use crate::store::{Commit, Head, Storage, StorageReader, StoreError, StoredCheckpoint};

/// Entries read from the source at a time.
const PAGE: u64 = 256;
/// A chunk is committed once it holds this many entries…
const CHUNK_ENTRIES: usize = 16_384;
/// …or this many bytes of entries.
const CHUNK_BYTES: usize = 32 << 20;
/// Checkpoints read from the source at a time.
const CHECKPOINT_PAGE: usize = 1024;

/// Why a migration failed. Nothing is signed in any case; chunks committed
/// before a failure leave the target a verified prefix, which a new run
/// extends.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The source does not hold a log that verifies.
    #[error("the source: {0}")]
    Source(String),
    /// The target holds something else than a prefix of the source's tree.
    #[error("the target: {0}")]
    Target(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a migration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// The size the target held before.
    pub from: u64,
    /// The size it holds now: the source's latest checkpoint's.
    pub to: u64,
    /// Checkpoints copied.
    pub checkpoints: u64,
}

/// The checkpoint of a stored note, verified: signed by `key` for
/// `origin`, of size `size`.
fn verified(note: &[u8], key: &VerifierKey, origin: &str, size: u64) -> Result<Checkpoint, String> {
    let n = Note::parse(note).map_err(|e| format!("checkpoint {size}: {e}"))?;
    n.verify(std::slice::from_ref(key)).map_err(|e| {
        format!(
            "checkpoint {size} is not signed by the log's key {}: {e}",
            key.to_vkey()
        )
    })?;
    let cp =
        Checkpoint::parse(n.text().as_bytes()).map_err(|e| format!("checkpoint {size}: {e}"))?;
    if cp.origin() != origin || cp.size() != size {
        return Err(format!(
            "the checkpoint stored at size {size} is of log {:?} size {}",
            cp.origin(),
            cp.size()
        ));
    }
    Ok(cp)
}

/// Refuses a source log a migration cannot move: one that dropped its
/// entries.
fn refuse_unmovable<R: StorageReader>(src: &R, origin: &str) -> Result<(), MigrateError> {
    if let Some(d) = crate::lifecycle::stored_dropped(src)? {
        return Err(MigrateError::Source(format!(
            "log {origin} dropped its entries at {} ms (frozen at size {}): a migration copies entries, and they are gone",
            d.at_ms, d.size
        )));
    }
    Ok(())
}

/// What the first commit to an empty target carries besides entries: the
/// origin, the mode of a log in event mode, and the source's checkpoint of
/// the empty tree (verified); returns the checkpoints it copies.
fn first_commit<R: StorageReader>(
    src: &R,
    origin: &str,
    key: &VerifierKey,
    events: bool,
    commit: &mut Commit,
) -> Result<u64, MigrateError> {
    commit
        .meta
        .push(("origin".into(), origin.as_bytes().to_vec()));
    if events {
        commit.meta.push(crate::events::mode_meta());
    }
    // The empty tree's checkpoint, signed when the log was created.
    if let Some(c) = src.checkpoint_at(0)? {
        let at = verified(&c.note, key, origin, 0).map_err(MigrateError::Source)?;
        if *at.root() != quire_core::empty_root() {
            return Err(MigrateError::Source(
                "its checkpoint of size 0 is not of the empty tree".into(),
            ));
        }
        commit.history.push(c);
        return Ok(1);
    }
    Ok(0)
}

/// Copies log `origin` from `source` to `target`, checking every checkpoint
/// against `key` (the log's primary key). `progress(done, total)` is called
/// after each chunk.
///
/// # Errors
/// [`MigrateError`] naming what does not verify or match.
pub fn migrate<S: Storage, T: Storage>(
    source: &S,
    target: &T,
    origin: &str,
    key: &VerifierKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<MigrateReport, MigrateError> {
    let src = source.reader()?;
    refuse_unmovable(&src, origin)?;
    let (latest, cp) = check_source(&src, origin, key)?;
    let size = latest.size;
    let dst = target.reader()?;
    let (head, mut range) = check_target(&src, &dst, origin, size)?;
    let events = crate::events::migrate::check_mode(&src, &dst, head.size)?;
    drop(dst);
    let from = head.size;
    let mut copied = 0u64;
    let mut pending = std::collections::VecDeque::<StoredCheckpoint>::new();
    let mut next_checkpoint = from.saturating_add(1);
    let mut commit = Commit {
        base: head,
        ..Commit::default()
    };
    if from == 0 {
        copied += first_commit(&src, origin, key, events, &mut commit)?;
    }
    let mut bytes = 0usize;
    while range.size() < size {
        let start = range.size();
        let end = (start + PAGE).min(size);
        for entry in src.checked_entries(start, end)? {
            bytes += entry.len();
            let leaf = leaf_hash(&entry);
            crate::sequencer::append_entry(&mut range, &mut commit, entry, leaf)
                .map_err(|e| MigrateError::Target(e.to_string()))?;
            if pending.is_empty() && next_checkpoint <= range.size() {
                pending.extend(src.checkpoints(next_checkpoint, CHECKPOINT_PAGE)?);
                next_checkpoint = pending.back().map_or(u64::MAX, |c| c.size + 1);
            }
            while let Some(c) = pending.front().filter(|c| c.size <= range.size()) {
                let c = c.clone();
                pending.pop_front();
                let at = verified(&c.note, key, origin, c.size).map_err(MigrateError::Source)?;
                if c.size != range.size() || *at.root() != range.root() {
                    return Err(MigrateError::Source(format!(
                        "its checkpoint of size {} does not match its entries (root {} at size {})",
                        c.size,
                        range.root(),
                        range.size()
                    )));
                }
                commit.history.push(c);
                copied += 1;
            }
        }
        if events {
            bytes += crate::events::migrate::payload_rows(&src, start, end, &mut commit.events)?;
        }
        if commit.entries.len() >= CHUNK_ENTRIES || bytes >= CHUNK_BYTES || range.size() == size {
            commit.head = Head {
                size: range.size(),
                root: range.root(),
            };
            if commit
                .history
                .last()
                .is_some_and(|c| c.size == range.size())
            {
                commit.checkpoint = commit.history.pop();
            }
            target.commit(&commit)?;
            progress(range.size(), size);
            bytes = 0;
            commit = Commit {
                base: commit.head,
                ..Commit::default()
            };
        }
    }
    if !commit.history.is_empty() || !commit.meta.is_empty() {
        // A source of size 0: its one checkpoint, and the origin.
        commit.head = commit.base;
        target.commit(&commit)?;
    }
    if let Some((at, lines)) = src.latest_cosignatures()? {
        target.keep_cosignatures(at, &lines)?;
    }
    if events {
        crate::events::migrate::finish(&src, target, size)?;
    }
    check_result(target, &latest, &cp)?;
    progress(size, size);
    Ok(MigrateReport {
        from,
        to: size,
        checkpoints: copied,
    })
}

/// The source's latest checkpoint, verified, with its stored tree's root.
fn check_source<R: StorageReader>(
    src: &R,
    origin: &str,
    key: &VerifierKey,
) -> Result<(StoredCheckpoint, Checkpoint), MigrateError> {
    let latest = src
        .latest_checkpoint()?
        .ok_or_else(|| MigrateError::Source("it holds no signed checkpoint".into()))?;
    let size = latest.size;
    let cp = verified(&latest.note, key, origin, size).map_err(MigrateError::Source)?;
    let root = quire_core::root_at(src, size)
        .map_err(|e| MigrateError::Source(format!("its tree at size {size}: {e}")))?;
    if root != *cp.root() {
        return Err(MigrateError::Source(format!(
            "its hashes give root {root} at size {size}, its latest checkpoint says {}: run quire-server fsck",
            cp.root()
        )));
    }
    Ok((latest, cp))
}

/// The target's head and right edge: empty, or a prefix of the source's
/// tree holding only the source's own checkpoints.
fn check_target<R: StorageReader, D: StorageReader>(
    src: &R,
    dst: &D,
    origin: &str,
    size: u64,
) -> Result<(Head, CompactRange), MigrateError> {
    let head = dst.head()?.unwrap_or_default();
    if let Some(o) = dst.meta("origin")? {
        if o != origin.as_bytes() {
            return Err(MigrateError::Target(format!(
                "it holds log {:?}, not {origin:?}",
                String::from_utf8_lossy(&o)
            )));
        }
    }
    if head.size > size {
        return Err(MigrateError::Target(format!(
            "it holds size {}, more than the source's {size}",
            head.size
        )));
    }
    let range = CompactRange::from_parts(
        head.size,
        dst.read_hashes(&CompactRange::edge_nodes(head.size))?,
    )
    .map_err(|e| MigrateError::Target(e.to_string()))?;
    let source_root = quire_core::root_at(src, head.size)
        .map_err(|e| MigrateError::Source(format!("its tree at size {}: {e}", head.size)))?;
    if range.root() != head.root || head.root != source_root {
        return Err(MigrateError::Target(format!(
            "at size {} it holds root {}, the source {source_root}: another history",
            head.size, head.root
        )));
    }
    // The target's checkpoints must be the source's own: the same tree
    // under another key is another log.
    if let Some(c) = dst.latest_checkpoint()? {
        let ours = src.checkpoint_at(c.size)?;
        if ours.as_ref().map(|o| &o.note) != Some(&c.note) {
            return Err(MigrateError::Target(format!(
                "it holds a checkpoint of size {} that the source does not hold (signed by another key, or by another log of this origin)",
                c.size
            )));
        }
    }
    Ok((head, range))
}

/// The target after the copy: the source's head and latest checkpoint.
fn check_result<T: Storage>(
    target: &T,
    latest: &StoredCheckpoint,
    cp: &Checkpoint,
) -> Result<(), MigrateError> {
    let size = latest.size;
    // What the target holds now is the source's tree and latest checkpoint.
    let dst = target.reader()?;
    let head = dst.head()?;
    let stored = dst.latest_checkpoint()?;
    if head
        != Some(Head {
            size,
            root: *cp.root(),
        })
        || stored.as_ref().map(|c| &c.note) != Some(&latest.note)
    {
        return Err(MigrateError::Target(format!(
            "after the copy it holds {head:?} and a latest checkpoint of size {:?}, not the source's size {size}",
            stored.map(|c| c.size)
        )));
    }
    Ok(())
}
