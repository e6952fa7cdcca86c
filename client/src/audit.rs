//! Offline audit from saved material only, no network:
//! - a chain of checkpoints, each with the consistency proof from the one
//!   before (what `quire consistency --chain` appends, one JSON line each);
//! - an entries dump (one base64 entry per line, from index 0, as written by
//!   `quire entries`) against a signed checkpoint of that size;
//! - a split-view evidence file.

use std::io::{BufRead, Read as _};

use base64::Engine as _;
use quire_core::{
    leaf_hash, verify_consistency, Checkpoint, CompactRange, Conflict, Hash, Note,
    SplitViewEvidence,
};

use crate::policy::LogTrust;

/// Largest line of a chain file or dump accepted (checked while reading).
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// What an audit found wrong, naming where.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The material is malformed.
    #[error("{what}: {why}")]
    Malformed {
        /// Which item.
        what: String,
        /// Why.
        why: String,
    },
    /// The material does not verify: the log misbehaved or the material was
    /// altered.
    #[error("{what}: {why}")]
    Failed {
        /// Which item.
        what: String,
        /// Why.
        why: String,
    },
}

fn malformed(what: impl Into<String>, why: impl std::fmt::Display) -> AuditError {
    AuditError::Malformed {
        what: what.into(),
        why: why.to_string(),
    }
}

fn failed(what: impl Into<String>, why: impl std::fmt::Display) -> AuditError {
    AuditError::Failed {
        what: what.into(),
        why: why.to_string(),
    }
}

/// One link of a checkpoint chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    /// The signed checkpoint note.
    pub checkpoint: Vec<u8>,
    /// Consistency proof from the previous link's size (empty for the first).
    pub proof: Vec<Hash>,
}

impl ChainLink {
    /// The link as one JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::json!({
            "checkpoint": String::from_utf8_lossy(&self.checkpoint),
            "proof": self.proof.iter().map(Hash::to_base64).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// Parses one JSON line.
    ///
    /// # Errors
    /// [`AuditError::Malformed`].
    pub fn from_json_line(line: &str, what: &str) -> Result<Self, AuditError> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| malformed(what, e))?;
        let checkpoint = v["checkpoint"]
            .as_str()
            .ok_or_else(|| malformed(what, "no \"checkpoint\" string"))?
            .as_bytes()
            .to_vec();
        let proof = v["proof"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|h| {
                        h.as_str()
                            .and_then(|s| Hash::from_base64(s).ok())
                            .ok_or_else(|| {
                                malformed(what, "a proof hash is not base64 of 32 bytes")
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(ChainLink { checkpoint, proof })
    }
}

fn lines<R: BufRead>(
    reader: R,
    what: &str,
) -> impl Iterator<Item = Result<(usize, String), AuditError>> + use<R> {
    let what = what.to_owned();
    let mut reader = reader;
    let mut n = 0;
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        n += 1;
        let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64 + 1);
        match std::io::BufRead::read_until(&mut limited, b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) if buf.len() > MAX_LINE_BYTES => Some(Err(malformed(
                format!("{what} line {n}"),
                format!("over the {MAX_LINE_BYTES}-byte line limit"),
            ))),
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                Some(
                    String::from_utf8(buf)
                        .map(|s| (n, s))
                        .map_err(|_| malformed(format!("{what} line {n}"), "not UTF-8")),
                )
            }
            Err(e) => Some(Err(malformed(format!("{what} line {n}"), e))),
        }
    })
}

/// Verifies a chain: every checkpoint signed by the log (and meeting the
/// witness policy), sizes never decreasing, equal sizes with equal roots,
/// and each consistency proof connecting a checkpoint to the one before.
/// Returns the last checkpoint.
///
/// # Errors
/// [`AuditError`] naming the line that failed.
pub fn audit_chain(reader: impl BufRead, trust: &LogTrust) -> Result<Checkpoint, AuditError> {
    let mut prev: Option<Checkpoint> = None;
    for line in lines(reader, "chain") {
        let (n, text) = line?;
        if text.trim().is_empty() {
            continue;
        }
        let what = format!("chain line {n}");
        let link = ChainLink::from_json_line(&text, &what)?;
        let note = Note::parse(&link.checkpoint).map_err(|e| malformed(&what, e))?;
        let (cp, _) = trust.verify_note(&note).map_err(|e| failed(&what, e))?;
        if let Some(p) = &prev {
            if cp.size() < p.size() {
                return Err(failed(
                    &what,
                    format!("size {} after size {}: a rollback", cp.size(), p.size()),
                ));
            }
            if cp.size() == p.size() && cp.root() != p.root() {
                return Err(failed(
                    &what,
                    format!("size {} signed with two roots: a fork", cp.size()),
                ));
            }
            if cp.size() > p.size() {
                verify_consistency(p.size(), cp.size(), &link.proof, p.root(), cp.root()).map_err(
                    |e| failed(&what, format!("not consistent with size {}: {e}", p.size())),
                )?;
            }
        }
        prev = Some(cp);
    }
    prev.ok_or_else(|| malformed("chain", "no checkpoint in it"))
}

/// Recomputes the tree of an entries dump (base64 entries, one per line,
/// from index 0) and compares it with a signed checkpoint of that size.
///
/// # Errors
/// [`AuditError`]: a malformed dump or checkpoint, a size or root mismatch.
pub fn audit_entries(
    dump: impl BufRead,
    checkpoint: &[u8],
    trust: &LogTrust,
) -> Result<Checkpoint, AuditError> {
    audit_entries_with(dump, checkpoint, trust, |_, _| {})
}

/// [`audit_entries`], handing each entry and its index to `visit` as it
/// is read (what it concludes stands only once the dump verifies).
///
/// # Errors
/// As [`audit_entries`].
pub fn audit_entries_with(
    dump: impl BufRead,
    checkpoint: &[u8],
    trust: &LogTrust,
    mut visit: impl FnMut(u64, &[u8]),
) -> Result<Checkpoint, AuditError> {
    let note = Note::parse(checkpoint).map_err(|e| malformed("checkpoint", e))?;
    let (cp, _) = trust
        .verify_note(&note)
        .map_err(|e| failed("checkpoint", e))?;
    let mut range = CompactRange::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    for line in lines(dump, "entries dump") {
        let (n, text) = line?;
        let entry = b64
            .decode(text.trim_end())
            .map_err(|e| malformed(format!("entries dump line {n}"), e))?;
        visit(range.size(), &entry);
        range
            .append(leaf_hash(&entry), |_, _| {})
            .map_err(|e| malformed(format!("entries dump line {n}"), e))?;
    }
    if range.size() != cp.size() {
        return Err(failed(
            "entries dump",
            format!(
                "holds {} entries, the checkpoint is of size {}",
                range.size(),
                cp.size()
            ),
        ));
    }
    if &range.root() != cp.root() {
        return Err(failed(
            "entries dump",
            format!(
                "its {} entries have root {}, the signed checkpoint says {}: an entry was altered, dropped or reordered",
                cp.size(),
                range.root(),
                cp.root()
            ),
        ));
    }
    Ok(cp)
}

/// Checks a split-view evidence file with the log's keys.
///
/// # Errors
/// [`AuditError`] when it proves nothing.
pub fn audit_evidence(json: &[u8], trust: &LogTrust) -> Result<Conflict, AuditError> {
    let ev = SplitViewEvidence::from_json(json).map_err(|e| malformed("evidence", e))?;
    ev.check(&trust.log_keys).map_err(|e| failed("evidence", e))
}
