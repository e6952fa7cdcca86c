//! An offline check of a log's whole storage: every entry is hashed again
//! and compared with its stored leaf hash, the tree is rebuilt from the
//! entries and every stored tile and mid-row hash compared with it, every
//! stored checkpoint's signature is verified and its root compared with the
//! rebuilt tree at its size, and the high-water record is compared with the
//! latest checkpoint.
//!
//! The entries are the source of truth (design invariant 2): a stored hash
//! that differs from the one rebuilt from them is damage, and so is an entry
//! that cannot be read. A frozen log that dropped its entries
//! ([`crate::lifecycle::Dropped`]) has its stored leaf hashes as the truth
//! instead: the tree rebuilt from them must match every tile, mid row,
//! checkpoint and the high-water record, and no entry is read. The check
//! reads one bundle at a time, so its memory does not grow with the log.

use quire_core::{leaf_hash, Checkpoint, CompactRange, Hash, NodeId, Note, VerifierKey};

use crate::highwater::HighWater;
use crate::store::bundle::BUNDLE_SIZE;
use crate::store::{Storage, StorageReader, StoreError, StoredCheckpoint};

/// Problems listed in full; more are counted.
const MAX_LISTED: usize = 100;

/// What the check found.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// The latest checkpoint's size.
    pub size: u64,
    /// Entries hashed.
    pub entries: u64,
    /// Stored hashes compared.
    pub hashes: u64,
    /// Stored checkpoints verified.
    pub checkpoints: u64,
    /// The record of the log's dropped entries, if it dropped them.
    pub dropped: Option<crate::lifecycle::Dropped>,
    /// The first `MAX_LISTED` problems.
    pub problems: Vec<String>,
    /// All problems found.
    pub problem_count: u64,
}

impl FsckReport {
    fn problem(&mut self, p: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }

    /// Whether nothing is wrong.
    pub fn clean(&self) -> bool {
        self.problem_count == 0
    }
}

/// Checks `store`, a log of `origin` whose checkpoints `keys[0]` (the
/// primary key) must have signed, against itself and `high_water`.
/// `progress(done, total)` is called after each bundle.
///
/// # Errors
/// Only a storage that cannot be read at all (no read view); damage found
/// while reading is reported in the [`FsckReport`].
pub fn fsck<S: Storage>(
    store: &S,
    origin: &str,
    keys: &[VerifierKey],
    high_water: &HighWater,
    mut progress: impl FnMut(u64, u64),
) -> Result<FsckReport, StoreError> {
    let mut report = FsckReport::default();
    let reader = store.reader()?;
    let latest = match reader.latest_checkpoint() {
        Ok(Some(l)) => l,
        Ok(None) => {
            report.problem("no checkpoint is stored".into());
            return Ok(report);
        }
        Err(e) => {
            report.problem(format!("the latest checkpoint cannot be read: {e}"));
            return Ok(report);
        }
    };
    report.size = latest.size;
    match crate::lifecycle::stored_dropped(&reader) {
        Ok(d) => report.dropped = d,
        Err(e) => report.problem(format!("the dropped-entries record cannot be read: {e}")),
    }
    let mark = match high_water.read() {
        Ok(m) => m,
        Err(e) => {
            report.problem(e.to_string());
            None
        }
    };
    match &mark {
        None => report.problem(format!(
            "no high-water record at {}",
            high_water.path().display()
        )),
        Some(m) if m.size > latest.size => report.problem(format!(
            "the database holds size {} but the log published size {} (recorded in {}): the database is behind",
            latest.size,
            m.size,
            high_water.path().display()
        )),
        Some(_) => {}
    }
    let mut checkpoints = Checkpoints::new(&reader);
    let mut next_cp = checkpoints.next(&mut report);
    let mut range = CompactRange::new();
    while let Some(cp) = next_cp.as_ref().filter(|c| c.size == 0) {
        check_checkpoint(cp, 0, &range, origin, keys, &mut report);
        next_cp = checkpoints.next(&mut report);
    }
    let mut at = 0u64;
    while at < latest.size {
        let end = ((at / BUNDLE_SIZE + 1) * BUNDLE_SIZE).min(latest.size);
        let dropped = report.dropped.is_some_and(|d| end <= d.size);
        let leaves = bundle_leaves(&reader, (at, end), dropped, &mut report);
        let mut rows: Vec<(NodeId, Hash)> = Vec::new();
        for leaf in leaves {
            if let Err(e) = range.append(leaf, |node, h| {
                if node.level > 0 && node.level % 4 == 0 {
                    rows.push((node, *h));
                }
            }) {
                report.problem(e.to_string());
                return Ok(report);
            }
            let size = range.size();
            while let Some(cp) = next_cp.as_ref().filter(|c| c.size <= size) {
                check_checkpoint(cp, size, &range, origin, keys, &mut report);
                next_cp = checkpoints.next(&mut report);
            }
            if let Some(m) = mark.as_ref().filter(|m| m.size == size) {
                if m.root != range.root() {
                    report.problem(format!(
                        "at size {size} the entries give root {}, but the high-water record says {}",
                        range.root(),
                        m.root
                    ));
                }
            }
        }
        compare_rows(&reader, &rows, &mut report);
        at = end;
        progress(at, latest.size);
    }
    Ok(report)
}

/// The leaf hashes of entries `[start, end)`, from the entries themselves,
/// each compared with its stored leaf hash. Where the entries cannot be
/// read, the stored leaf hashes stand in (so the tiles can still be
/// checked) and the damage is reported; where they were `dropped`, the
/// stored leaf hashes are the truth and no entry is read.
fn bundle_leaves<R: StorageReader>(
    reader: &R,
    (start, end): (u64, u64),
    dropped: bool,
    report: &mut FsckReport,
) -> Vec<Hash> {
    let nodes: Vec<NodeId> = (start..end).map(NodeId::leaf).collect();
    let stored = match reader.read_hashes(&nodes) {
        Ok(s) => Some(s),
        Err(e) => {
            report.problem(format!(
                "the leaf hashes of entries {start}..{end} cannot be read: {e}"
            ));
            None
        }
    };
    if dropped {
        let stored = stored.unwrap_or_else(|| vec![Hash::default(); nodes.len()]);
        report.hashes += stored.len() as u64;
        return stored;
    }
    match (reader.entries(start, end), stored) {
        (Ok(entries), stored) => {
            report.entries += entries.len() as u64;
            let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
            if let Some(stored) = stored {
                report.hashes += stored.len() as u64;
                for ((i, got), want) in (start..).zip(&leaves).zip(&stored) {
                    if got != want {
                        report.problem(format!("entry {i} does not hash to its stored leaf hash"));
                    }
                }
            }
            leaves
        }
        (Err(e), Some(stored)) => {
            report.problem(format!("entries {start}..{end} cannot be read: {e}"));
            stored
        }
        (Err(e), None) => {
            report.problem(format!("entries {start}..{end} cannot be read: {e}"));
            // Nothing to rebuild from: later roots cannot match, and say so.
            vec![Hash::default(); usize::try_from(end - start).unwrap_or(0)]
        }
    }
}

/// Compares stored tile and mid-row hashes with the rebuilt ones.
fn compare_rows<R: StorageReader>(reader: &R, rows: &[(NodeId, Hash)], report: &mut FsckReport) {
    if rows.is_empty() {
        return;
    }
    let nodes: Vec<NodeId> = rows.iter().map(|(n, _)| *n).collect();
    match reader.read_hashes(&nodes) {
        Ok(stored) => {
            report.hashes += stored.len() as u64;
            for ((node, want), got) in rows.iter().zip(stored) {
                if got != *want {
                    report.problem(format!(
                        "stored hash of node (level {}, index {}) differs from the one rebuilt from the entries",
                        node.level, node.index
                    ));
                }
            }
        }
        Err(e) => report.problem(format!("stored hashes cannot be read: {e}")),
    }
}

fn check_checkpoint(
    cp: &StoredCheckpoint,
    size: u64,
    range: &CompactRange,
    origin: &str,
    keys: &[VerifierKey],
    report: &mut FsckReport,
) {
    report.checkpoints += 1;
    let parsed = Note::parse(&cp.note)
        .map_err(|e| e.to_string())
        .and_then(|n| {
            let primary = keys.first().ok_or("no key")?;
            n.verify(std::slice::from_ref(primary))
                .map_err(|e| format!("not signed by the log's key: {e}"))?;
            Checkpoint::parse(n.text().as_bytes()).map_err(|e| e.to_string())
        });
    match parsed {
        Err(e) => report.problem(format!("checkpoint of size {}: {e}", cp.size)),
        Ok(c) if c.origin() != origin => report.problem(format!(
            "checkpoint of size {} names the log {:?}",
            cp.size,
            c.origin()
        )),
        Ok(c) if c.size() != cp.size || cp.size != size => report.problem(format!(
            "checkpoint stored under size {} says size {}",
            cp.size,
            c.size()
        )),
        Ok(c) if *c.root() != range.root() => report.problem(format!(
            "checkpoint of size {} has root {}, the entries give {}",
            cp.size,
            c.root(),
            range.root()
        )),
        Ok(_) => {}
    }
}

/// The stored checkpoints in size order, a page at a time.
struct Checkpoints<'a, R> {
    reader: &'a R,
    page: std::vec::IntoIter<StoredCheckpoint>,
    from: u64,
    done: bool,
}

impl<'a, R: StorageReader> Checkpoints<'a, R> {
    fn new(reader: &'a R) -> Self {
        Checkpoints {
            reader,
            page: Vec::new().into_iter(),
            from: 0,
            done: false,
        }
    }

    fn next(&mut self, report: &mut FsckReport) -> Option<StoredCheckpoint> {
        loop {
            if let Some(c) = self.page.next() {
                self.from = c.size + 1;
                return Some(c);
            }
            if self.done {
                return None;
            }
            match self.reader.checkpoints(self.from, 1024) {
                Ok(p) if p.is_empty() => self.done = true,
                Ok(p) => self.page = p.into_iter(),
                Err(e) => {
                    report.problem(format!("stored checkpoints cannot be read: {e}"));
                    self.done = true;
                }
            }
        }
    }
}
