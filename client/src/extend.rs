//! The one check the verifying client and the monitor both make before
//! accepting a new checkpoint: does it extend the accepted one? Equal sizes
//! must have equal roots; a larger size needs a consistency proof from the
//! log (RFC 9162 §2.1.4) that connects both signed roots. A conflict becomes
//! split-view evidence when the material proves one; a proof that merely
//! fails proves nothing about the log (anyone could forge it) and is
//! reported as inconsistent.

use quire_core::{seeded_path, verify_consistency, Checkpoint, SplitViewEvidence, VerifierKey};

use crate::rpc::{LogRpc, RpcError};

/// Why a checkpoint does not extend the accepted one.
#[derive(Debug)]
pub enum ExtendError {
    /// The log could not be asked for the proof.
    Rpc(RpcError),
    /// The offered tree is smaller.
    Rollback {
        /// Accepted size.
        old: u64,
        /// Offered size.
        new: u64,
    },
    /// Two signed histories.
    Fork(Box<SplitViewEvidence>),
    /// No valid proof, and no evidence either.
    Inconsistent {
        /// Accepted size.
        old: u64,
        /// Offered size.
        new: u64,
        /// What failed.
        why: String,
    },
}

/// A signed checkpoint: its note bytes and the parsed, verified checkpoint.
#[derive(Clone, Copy)]
pub struct Signed<'a> {
    /// The signed note.
    pub note: &'a [u8],
    /// Its checkpoint (already verified against the log's keys).
    pub checkpoint: &'a Checkpoint,
}

/// Checks that `new` extends `old`, asking the log for a consistency proof
/// when the sizes differ.
///
/// # Errors
/// [`ExtendError`].
pub async fn check_extension(
    rpc: &mut LogRpc,
    origin: &str,
    log_keys: &[VerifierKey],
    old: Signed<'_>,
    new: Signed<'_>,
) -> Result<(), ExtendError> {
    let (m, n) = (old.checkpoint.size(), new.checkpoint.size());
    if n < m {
        return Err(ExtendError::Rollback { old: m, new: n });
    }
    let conflict = |path: &[quire_core::Hash], why: String| match SplitViewEvidence::new(
        old.note, new.note, path, log_keys,
    ) {
        Ok((ev, _)) => ExtendError::Fork(Box::new(ev)),
        Err(_) => ExtendError::Inconsistent {
            old: m,
            new: n,
            why,
        },
    };
    if n == m {
        if old.checkpoint.root() == new.checkpoint.root() {
            return Ok(());
        }
        return Err(conflict(&[], format!("size {m} signed with two roots")));
    }
    let (proof, seed) = rpc
        .consistency_seeded(origin, m, n)
        .await
        .map_err(ExtendError::Rpc)?;
    verify_consistency(m, n, &proof, old.checkpoint.root(), new.checkpoint.root())
        // A proof that rebuilds the new signed root but implies another old
        // root is evidence (with the seed when m is a power of two); one
        // that merely fails is not.
        .map_err(|e| {
            let path = seeded_path(m, seed, &proof).unwrap_or_default();
            conflict(&path, e.to_string())
        })
}

/// Writes `bytes` to `path` durably: a temporary file, fsync, rename, and
/// fsync of the directory, so a crash leaves the old file or the new one.
///
/// # Errors
/// The I/O error.
pub fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
