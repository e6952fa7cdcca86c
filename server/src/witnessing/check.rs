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
use std::sync::Arc;

use super::policy::WitnessPolicy;
use super::transport::{Answer, WitnessTransport};
use crate::log::{Latest, Log};
use crate::store::{Storage, StorageReader};

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
    /// A witness that answered add-checkpoint with a size larger than the
    /// log's tree (C2SP HTTP says only the size).
    AheadBySize {
        /// Its size.
        size: u64,
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
        Verdict::AheadBySize { size } => Some(format!(
            "witness {url} answered that it holds this log's checkpoint of size {size}, but the log's storage has only size {} (root {}): the storage is behind what the log published. Signing would fork the log; restore the storage to size {size} (`quire-server import`, README \"Restoring a log\") and restart",
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
    act_on(log, url, verdict)
}

/// [`judge`] on the blocking pool: its storage reads never hold one of the
/// runtime's workers (a database round trip on a replicated engine).
async fn judge_off_runtime<S: Storage>(log: &Log<S>, url: &str, note: Vec<u8>) -> Verdict {
    let (l, u) = (log.clone(), url.to_owned());
    tokio::task::spawn_blocking(move || judge(&l, &u, &note))
        .await
        .unwrap_or_else(|e| Verdict::Unknown(format!("judging the witness's checkpoint: {e}")))
}

/// Stops `log`'s signing when `verdict` says signing would fork it.
fn act_on<S: Storage>(log: &Log<S>, url: &str, verdict: Verdict) -> Verdict {
    let latest = log.latest();
    if let Some(why) = stop_reason(url, &latest, &verdict) {
        metrics::counter!("quire_witness_ahead_total", "log" => log.origin().to_owned(), "witness" => url.to_owned()).increment(1);
        log.stop_signing(&why);
    }
    verdict
}

/// A witness said (a 409) that it holds `size`, beyond the log's tree:
/// asks it for the checkpoint itself where the protocol can, to judge it
/// with the roots; where it cannot (C2SP HTTP), the configured witness's
/// word on its own size is taken. Returns the verdict.
pub async fn judge_claim<S: Storage>(
    log: &Log<S>,
    url: &str,
    client: &dyn WitnessTransport,
    size: u64,
) -> Verdict {
    match client.latest(log.origin()).await {
        Ok(Some(note)) => judge_off_runtime(log, url, note).await,
        Ok(None) => act_on(log, url, Verdict::AheadBySize { size }),
        Err(e) => Verdict::Unknown(e.to_string()),
    }
}

/// What one witness holds of `log`, asked at start: its latest cosigned
/// checkpoint where the protocol can say, else (C2SP HTTP) the size its
/// add-checkpoint answer gives for the log's latest checkpoint.
async fn ask<S: Storage>(log: &Log<S>, url: &str, client: &dyn WitnessTransport) -> Verdict {
    match client.latest(log.origin()).await {
        Ok(Some(note)) => judge_off_runtime(log, url, note).await,
        Ok(None) => {
            let latest = log.latest();
            match client.add_checkpoint(0, &[], &latest.stored.note).await {
                Ok(Answer::Conflict(size)) if size > latest.stored.size => {
                    judge_claim(log, url, client, size).await
                }
                // It held nothing and now holds our latest, or it holds a
                // size at or below ours (collection proves the rest).
                Ok(Answer::Cosigned(_) | Answer::Conflict(_)) => Verdict::Consistent,
                Err(e) => Verdict::Unknown(e.to_string()),
            }
        }
        Err(e) => Verdict::Unknown(e.to_string()),
    }
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
    clients: Vec<Arc<dyn WitnessTransport>>,
) {
    use futures_util::StreamExt as _;
    // The calls run concurrently inside this task, not in tasks of their
    // own: when shutdown aborts this task, they and the log they hold are
    // dropped with it.
    let mut calls: futures_util::stream::FuturesUnordered<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let (log, url, timeout) = (&log, policy.witnesses[i].url.clone(), policy.timeout);
            async move {
                let verdict =
                    match tokio::time::timeout(timeout, ask(log, &url, client.as_ref())).await {
                        Ok(v) => v,
                        Err(_) => {
                            Verdict::Unknown(format!("no answer within {} ms", timeout.as_millis()))
                        }
                    };
                (url, verdict)
            }
        })
        .collect();
    let mut confirmed = 0;
    while let Some((url, verdict)) = calls.next().await {
        match verdict {
            Verdict::Consistent => confirmed += 1,
            Verdict::Unknown(why) => {
                tracing::warn!(log = %log.origin(), witness = %url, reason = %why, "a witness could not be asked what it holds before the first signature");
            }
            Verdict::Ahead { .. } | Verdict::AheadBySize { .. } | Verdict::Diverged { .. } => {
                return
            }
        }
    }
    tracing::info!(log = %log.origin(), confirmed, witnesses = policy.witnesses.len(), "witnesses asked before the first signature");
    log.open_signing();
}
