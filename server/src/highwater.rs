//! The high-water record: the newest checkpoint a log ever published, kept
//! outside the log's database (design invariant 7).
//!
//! The sequencer writes it (and syncs it) after each commit and before any
//! writer is answered or any reader sees the new checkpoint, so it is never
//! behind what anyone was shown. At start the log's database must hold that
//! checkpoint or extend it: a database that is behind (a restored backup, a
//! commit redb rolled back after damage), missing, or another tree under the
//! same size is refused, so the log can never sign two roots for one size.
//!
//! Format: one file per log, two slots of [`SLOT_BYTES`] at offsets 0 and
//! [`SLOT_BYTES`], written in turn in place (`pwrite` + `fdatasync`, no
//! rename, so one sync per write). A slot is text:
//!
//! ```text
//! quire-high-water/v1
//! seq 42
//! sha256 <hex of the note>
//!
//! <the signed checkpoint note>
//! ```
//!
//! padded with zero bytes. A torn write can damage only the slot being
//! written; the other still holds the previous record. The valid slot with
//! the highest sequence number is the record.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use quire_core::{Checkpoint, Hash, Note};
use sha2::{Digest as _, Sha256};

/// Bytes of one slot; a record (header and note) must fit in it.
pub const SLOT_BYTES: usize = 4096;

const MAGIC: &str = "quire-high-water/v1\n";

/// Why the record cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HighWaterError {
    /// The file cannot be opened, read, written or synced.
    #[error("high-water record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but neither slot holds a valid record.
    #[error("high-water record {path} is damaged: {why}; it is the only record of what this log published, so the log will not sign until it is restored (see the README, \"Restoring a log\")")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A checkpoint too large for a slot.
    #[error("checkpoint note of {0} bytes does not fit a high-water slot of {SLOT_BYTES} bytes")]
    TooLarge(usize),
    /// Another process holds the record (two servers started from one
    /// configuration, or on one data directory).
    #[error("the high-water record {} is in use by another process (its lock {} is held): another quire-server runs with these files; give each server its own data directory and high-water directory", .path.display(), .lock.display())]
    InUse {
        /// The record.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
}

/// A log's high-water record file.
///
/// Clones share the record (one file, one writer at a time), so that a
/// server's sequencer and its follower of the same log write it in turn.
#[derive(Clone)]
pub struct HighWater {
    path: PathBuf,
    state: std::sync::Arc<Mutex<Slots>>,
}

struct Slots {
    /// The open file, once written or read.
    file: Option<File>,
    /// Sequence number of the newest record.
    seq: u64,
    /// The size recorded last by this process, once read or written.
    size: Option<u64>,
    /// The lock held on the record for this process (see
    /// [`HighWater::lock`]).
    lock: Option<File>,
}

/// The newest published checkpoint, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    /// Its tree size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The signed note.
    pub note: Vec<u8>,
}

impl Mark {
    /// Parses a signed checkpoint note into a mark (signatures are not
    /// checked here: the log checks them against its keys).
    ///
    /// # Errors
    /// A note or checkpoint that does not parse.
    pub fn from_note(note: &[u8]) -> Result<Mark, String> {
        let parsed = Note::parse(note).map_err(|e| e.to_string())?;
        let cp = Checkpoint::parse(parsed.text().as_bytes()).map_err(|e| e.to_string())?;
        Ok(Mark {
            size: cp.size(),
            root: *cp.root(),
            note: note.to_vec(),
        })
    }
}

impl HighWater {
    /// The record at `path` (the file need not exist yet).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        HighWater {
            path: path.into(),
            state: std::sync::Arc::new(Mutex::new(Slots {
                file: None,
                seq: 0,
                size: None,
                lock: None,
            })),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the record for this process: an exclusive lock on a file
    /// beside it (`<record>.lock`), held while any clone of this record
    /// lives. A second server on the same files is refused rather than
    /// writing the record in turn with the first.
    ///
    /// # Errors
    /// [`HighWaterError::InUse`] when another process holds it;
    /// [`HighWaterError::Io`] when the lock file cannot be created.
    pub fn lock(&self) -> Result<(), HighWaterError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.lock.is_some() {
            return Ok(());
        }
        let mut lock = self.path.clone().into_os_string();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let io = |source| HighWaterError::Io {
            path: lock.clone(),
            source,
        };
        if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {
                state.lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(HighWaterError::InUse {
                path: self.path.clone(),
                lock,
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// Reads the record: `None` when the file does not exist.
    ///
    /// # Errors
    /// [`HighWaterError::Io`] when it cannot be read (or is not a regular
    /// file); [`HighWaterError::Damaged`] when neither slot is valid.
    pub fn read(&self) -> Result<Option<Mark>, HighWaterError> {
        let io = |source| HighWaterError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = match quire_host::read_bounded(&self.path, 2 * SLOT_BYTES as u64) {
            Ok(b) => b,
            Err(quire_host::ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(quire_host::ReadError::TooLarge { .. }) => {
                return Err(self.damaged(format!(
                    "the file is larger than its {} bytes",
                    2 * SLOT_BYTES
                )))
            }
            Err(quire_host::ReadError::Io { source, .. }) => return Err(io(source)),
            Err(e @ quire_host::ReadError::NotRegular { .. }) => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    e.to_string(),
                )))
            }
        };
        let (seq, mark, damage) = parse_file(&bytes).map_err(|why| self.damaged(why))?;
        if let Some(why) = damage {
            tracing::warn!(path = %self.path.display(), damage = %why, "one high-water slot is damaged (a torn write?); the other holds the record");
        }
        if let Ok(mut s) = self.state.lock() {
            s.seq = seq;
            s.size = Some(mark.size);
        }
        Ok(Some(mark))
    }

    fn damaged(&self, why: String) -> HighWaterError {
        HighWaterError::Damaged {
            path: self.path.clone(),
            why,
        }
    }

    /// Records `note` (a signed checkpoint) durably: written over the older
    /// slot and synced before it returns.
    ///
    /// # Errors
    /// [`HighWaterError::Io`] when it cannot be written or synced (then the
    /// checkpoint must not be published), [`HighWaterError::TooLarge`].
    pub fn write(&self, note: &[u8]) -> Result<(), HighWaterError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.write_locked(&mut state, note)
    }

    fn write_locked(&self, state: &mut Slots, note: &[u8]) -> Result<(), HighWaterError> {
        use std::os::unix::fs::FileExt as _;
        let io = |source| HighWaterError::Io {
            path: self.path.clone(),
            source,
        };
        let seq = state.seq + 1;
        let slot = encode_slot(seq, note)?;
        if state.file.is_none() {
            state.file = Some(self.create().map_err(io)?);
        }
        let Some(file) = state.file.as_ref() else {
            return Err(io(std::io::Error::other("not open")));
        };
        let offset = (seq % 2) * SLOT_BYTES as u64;
        file.write_all_at(&slot, offset).map_err(io)?;
        file.sync_data().map_err(io)?;
        state.seq = seq;
        state.size = Mark::from_note(note).ok().map(|m| m.size);
        Ok(())
    }

    /// Records `note`, of tree size `size`, unless this process recorded a
    /// size at least as large already (a follower of a log whose sequencer
    /// runs in the same server records only what it has not).
    ///
    /// # Errors
    /// As [`HighWater::write`].
    pub fn write_if_newer(&self, size: u64, note: &[u8]) -> Result<bool, HighWaterError> {
        let unknown = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .size
            .is_none();
        if unknown {
            self.read()?;
        }
        // Checked and written under one lock: a larger record written
        // meanwhile by a clone is never overwritten by a smaller one.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.size.is_some_and(|k| k >= size) {
            return Ok(false);
        }
        self.write_locked(&mut state, note)?;
        Ok(true)
    }

    /// Opens the file for writing, creating it (and syncing its directory)
    /// when it does not exist.
    fn create(&self) -> std::io::Result<File> {
        match quire_host::open_regular(&self.path, true) {
            Ok(f) => Ok(f),
            Err(quire_host::ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&self.path)?;
                f.set_len(2 * SLOT_BYTES as u64)?;
                f.sync_all()?;
                if let Some(dir) = self.path.parent() {
                    File::open(dir)?.sync_all()?;
                }
                Ok(f)
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }
}

fn encode_slot(seq: u64, note: &[u8]) -> Result<Vec<u8>, HighWaterError> {
    let mut slot = format!("{MAGIC}seq {seq}\nsha256 {}\n\n", sha256_hex(note)).into_bytes();
    slot.extend_from_slice(note);
    if slot.len() > SLOT_BYTES {
        return Err(HighWaterError::TooLarge(note.len()));
    }
    slot.resize(SLOT_BYTES, 0);
    Ok(slot)
}

/// The record in a file's bytes (at most two slots): its sequence number,
/// the mark, and the damage of the other slot if any.
///
/// # Errors
/// Neither slot valid: what is wrong.
pub(crate) fn parse_file(bytes: &[u8]) -> Result<(u64, Mark, Option<String>), String> {
    let mut best: Option<(u64, Mark)> = None;
    let mut why = Vec::new();
    for (i, slot) in bytes.chunks(SLOT_BYTES).take(2).enumerate() {
        match parse_slot(slot) {
            Ok(Some((seq, mark))) => {
                if best.as_ref().is_none_or(|(s, _)| seq > *s) {
                    best = Some((seq, mark));
                }
            }
            Ok(None) => {}
            Err(e) => why.push(format!("slot {i}: {e}")),
        }
    }
    match best {
        Some((seq, mark)) => Ok((seq, mark, (!why.is_empty()).then(|| why.join("; ")))),
        None if why.is_empty() => Err("no record in it".into()),
        None => Err(why.join("; ")),
    }
}

/// One slot: `Ok(None)` when empty (all zero), the record when valid.
fn parse_slot(slot: &[u8]) -> Result<Option<(u64, Mark)>, String> {
    let end = slot.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    if end == 0 {
        return Ok(None);
    }
    let text = &slot[..end];
    let rest = text
        .strip_prefix(MAGIC.as_bytes())
        .ok_or("no quire-high-water/v1 header")?;
    let (seq_line, rest) = split_line(rest).ok_or("no seq line")?;
    let seq = seq_line
        .strip_prefix(b"seq ")
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("bad seq line")?;
    let (sum_line, rest) = split_line(rest).ok_or("no sha256 line")?;
    let sum = sum_line.strip_prefix(b"sha256 ").ok_or("bad sha256 line")?;
    let note = rest.strip_prefix(b"\n").ok_or("no blank line")?;
    if sum != sha256_hex(note).as_bytes() {
        return Err("checksum does not match (a torn or damaged write)".into());
    }
    let mark = Mark::from_note(note).map_err(|e| format!("checkpoint: {e}"))?;
    Ok(Some((seq, mark)))
}

fn split_line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nl = b.iter().position(|c| *c == b'\n')?;
    Some((&b[..nl], &b[nl + 1..]))
}

fn sha256_hex(b: &[u8]) -> String {
    Hash(Sha256::digest(b).into()).to_hex()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use quire_core::{LogKeyAlgorithm, LogSigner};

    fn note(size: u64) -> Vec<u8> {
        let s = LogSigner::generate(LogKeyAlgorithm::Ed25519, "hw.example/log").unwrap();
        crate::batch::sign("hw.example/log", size, quire_core::empty_root(), &[s]).unwrap()
    }

    #[test]
    fn newest_record_wins_and_survives_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::at(dir.path().join("x.highwater"));
        assert_eq!(hw.read().unwrap(), None);
        for size in 1..=5 {
            hw.write(&note(size)).unwrap();
            assert_eq!(hw.read().unwrap().unwrap().size, size);
        }
        // A reopened record continues the sequence.
        let again = HighWater::at(hw.path());
        assert_eq!(again.read().unwrap().unwrap().size, 5);
        again.write(&note(6)).unwrap();
        assert_eq!(HighWater::at(hw.path()).read().unwrap().unwrap().size, 6);
        // Tear the newest slot: the previous record is read.
        let mut bytes = std::fs::read(hw.path()).unwrap();
        let newest = 0; // seq 6 was the last write: the even slot
        bytes[newest + 40] ^= 1;
        std::fs::write(hw.path(), &bytes).unwrap();
        assert_eq!(HighWater::at(hw.path()).read().unwrap().unwrap().size, 5);
        // Both torn: damaged, never "no record".
        let other = SLOT_BYTES; // seq 5: the odd slot
        bytes[other + 40] ^= 1;
        std::fs::write(hw.path(), &bytes).unwrap();
        let e = HighWater::at(hw.path()).read().unwrap_err();
        assert!(matches!(e, HighWaterError::Damaged { .. }), "{e}");
        // An emptied (truncated) file is damaged too.
        std::fs::write(hw.path(), b"").unwrap();
        assert!(matches!(
            HighWater::at(hw.path()).read().unwrap_err(),
            HighWaterError::Damaged { .. }
        ));
    }

    #[test]
    fn a_device_or_a_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // FIFOs and the rest: quire_host's own tests.
        assert!(matches!(
            HighWater::at("/dev/zero").read().unwrap_err(),
            HighWaterError::Io { .. }
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 3 * SLOT_BYTES]).unwrap();
        assert!(matches!(
            HighWater::at(&big).read().unwrap_err(),
            HighWaterError::Damaged { .. }
        ));
    }
}
