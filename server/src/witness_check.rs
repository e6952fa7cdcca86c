//! Before its first signature after start, a log asks each of its witnesses
//! what it last cosigned (design invariant 7). A witness that holds a
//! checkpoint this log signed, for a larger size than the log's storage
//! has, or another root for a size the log has, proves that the storage is
//! behind or replaced: signing now would fork the log. Signing then stops
//! (whatever the witness fail mode is for reads) until an operator restores
//! the storage.
//!
//! [`compare`] is the pure decision; [`check_at_start`] asks the witnesses
//! and holds, opens or stops the log's signing.

use quire_core::{Checkpoint, Hash, Note, VerifierKey};
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::GetLatestRequest;
use tonic::transport::Channel;

use crate::log::{Latest, Log};
use crate::store::{Storage, StorageReader};
use crate::witnessing::WitnessPolicy;

/// What one witness's latest cosigned checkpoint says about this log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing cosigned yet, or a checkpoint this log's tree contains.
    Consistent,
    /// A checkpoint this log signed, larger than the log's tree.
    Ahead {
        /// Its size.
        size: u64,
        /// Its root.
        root: Hash,
    },
    /// A checkpoint this log signed whose root differs from the log's tree
    /// at that size.
    Diverged {
        /// The size.
        size: u64,
        /// The witness's root.
        theirs: Hash,
        /// The log's root at that size.
        ours: Hash,
    },
    /// Nothing can be concluded (no answer, or a checkpoint this log did not
    /// sign).
    Unknown(String),
}

/// Compares a witness's latest cosigned note with the log's tree (`latest`
/// and the stored hashes in `reader`). Only checkpoints carrying a valid
/// signature of one of `keys` count: anyone can write the rest.
pub fn compare<R: StorageReader>(
    reader: &R,
    latest: &Latest,
    origin: &str,
    keys: &[VerifierKey],
    note: &[u8],
) -> Verdict {
    if note.is_empty() {
        return Verdict::Consistent;
    }
    let parsed = match Note::parse(note) {
        Ok(n) => n,
        Err(e) => return Verdict::Unknown(format!("its checkpoint does not parse: {e}")),
    };
    if let Err(e) = parsed.verify(keys) {
        return Verdict::Unknown(format!(
            "its checkpoint is not signed by this log's keys: {e}"
        ));
    }
    let cp = match Checkpoint::parse(parsed.text().as_bytes()) {
        Ok(c) if c.origin() == origin => c,
        Ok(c) => return Verdict::Unknown(format!("a checkpoint of another log, {:?}", c.origin())),
        Err(e) => return Verdict::Unknown(format!("its checkpoint does not parse: {e}")),
    };
    let size = cp.size();
    if size > latest.stored.size {
        return Verdict::Ahead {
            size,
            root: *cp.root(),
        };
    }
    let ours = if size == latest.stored.size {
        latest.root
    } else {
        match quire_core::root_at(reader, size) {
            Ok(r) => r,
            Err(e) => {
                return Verdict::Unknown(format!(
                    "the log cannot compute its own root at size {size}: {e}"
                ))
            }
        }
    };
    if ours == *cp.root() {
        Verdict::Consistent
    } else {
        Verdict::Diverged {
            size,
            theirs: *cp.root(),
            ours,
        }
    }
}

/// Why the log stops signing, for a verdict that proves a fork risk.
fn stop_reason(url: &str, latest: &Latest, v: &Verdict) -> Option<String> {
    match v {
        Verdict::Ahead { size, root } => Some(format!(
            "witness {url} holds this log's checkpoint of size {size} (root {root}), but the log's storage has only size {} (root {}): the storage is behind what the log published. Signing would fork the log; restore the storage to size {size} (`quire-server import`, README \"Restoring a log\") and restart",
            latest.stored.size, latest.root
        )),
        Verdict::Diverged { size, theirs, ours } => Some(format!(
            "witness {url} holds this log's checkpoint of size {size} with root {theirs}, but the log's storage has root {ours} at that size: the storage holds another tree. Signing would fork the log; restore the storage (README \"Restoring a log\") and restart"
        )),
        Verdict::Consistent | Verdict::Unknown(_) => None,
    }
}

/// Judges one witness's answer against `log`, stopping its signing when
/// the answer proves the storage behind or replaced. Returns the verdict.
pub fn judge<S: Storage>(log: &Log<S>, url: &str, note: &[u8]) -> Verdict {
    let latest = log.latest();
    let verdict = match log.store().reader() {
        Ok(r) => compare(&r, &latest, log.origin(), log.verifiers(), note),
        Err(e) => Verdict::Unknown(format!("reading storage: {e}")),
    };
    if let Some(why) = stop_reason(url, &latest, &verdict) {
        metrics::counter!("quire_witness_ahead_total", "log" => log.origin().to_owned(), "witness" => url.to_owned()).increment(1);
        log.stop_signing(&why);
    }
    verdict
}

/// Asks every witness of `policy` (all at once, each call with its own
/// deadline) for its latest cosigned checkpoint of `log`, while the log's
/// signing is held. A witness ahead or diverged stops signing for good;
/// otherwise signing opens once every witness has answered or failed, so a
/// dead witness costs its timeout and nothing more (the unreachable ones are
/// logged, and the collection rounds keep watching their answers).
pub async fn check_at_start<S: Storage>(
    log: Log<S>,
    policy: WitnessPolicy,
    clients: Vec<WitnessClient<Channel>>,
) {
    let mut calls = tokio::task::JoinSet::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let origin = log.origin().to_owned();
        let timeout = policy.timeout;
        calls.spawn(async move {
            let mut req = tonic::Request::new(GetLatestRequest { origin });
            req.set_timeout(timeout);
            let answer = match tokio::time::timeout(timeout, c.get_latest(req)).await {
                Ok(Ok(r)) => Ok(r.into_inner().checkpoint),
                Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
            };
            (i, answer)
        });
    }
    let mut confirmed = 0;
    while let Some(joined) = calls.join_next().await {
        let Ok((i, answer)) = joined else { continue };
        let url = &policy.witnesses[i].url;
        let verdict = match answer {
            Ok(note) => judge(&log, url, &note),
            Err(e) => Verdict::Unknown(e),
        };
        match verdict {
            Verdict::Consistent => confirmed += 1,
            Verdict::Unknown(why) => {
                tracing::warn!(log = %log.origin(), witness = %url, reason = %why, "a witness could not be asked what it holds before the first signature");
            }
            Verdict::Ahead { .. } | Verdict::Diverged { .. } => return,
        }
    }
    tracing::info!(log = %log.origin(), confirmed, witnesses = policy.witnesses.len(), "witnesses asked before the first signature");
    log.open_signing();
}
