//! A typed client of the `quire.v1.Log` service: deadlines on every call,
//! retries with backoff for calls that are safe to repeat (reads), TLS when
//! the address is `https://`. It returns what the server said; checking it
//! is the caller's job ([`crate::bundle`], [`crate::policy`]).

use std::time::Duration;

use quire_core::tlog_proof::TlogProof;
use quire_core::Note;
use quire_proto::hashes_from_wire;
use quire_proto::v1::log_client::LogClient;
pub use quire_proto::v1::LogInfo;
use quire_proto::v1::{
    get_inclusion_proof_request, AddEntriesRequest, GetCheckpointRequest,
    GetConsistencyProofRequest, GetEntriesRequest, GetEntryWithProofRequest,
    GetInclusionProofRequest, ListLogsRequest, TailEntriesRequest,
};
use tonic::transport::Channel;
use tonic::Code;

mod admin;
mod calls;
mod connect;
mod events;

pub use admin::AdminRpc;
use calls::{call_once, call_read, status};
pub use calls::{retry_after, retry_wait, FIRST_BACKOFF, MAX_BACKOFF};
pub use events::EventsRpc;

pub use connect::{Bearer, Endpoint};

/// Largest message sent or taken (a page of entries, a batch of events).
const MAX_MESSAGE: usize = 64 << 20;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The server could not be reached.
    #[error("cannot reach {addr}: {why}")]
    Connect {
        /// Address.
        addr: String,
        /// Why.
        why: String,
    },
    /// The server answered with an error status.
    #[error("{method}: {code:?}: {message}")]
    Status {
        /// The call.
        method: &'static str,
        /// gRPC code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// The answer is malformed or does not verify.
    #[error("{0}")]
    Verify(String),
    /// The request cannot be made as given.
    #[error("{0}")]
    Input(String),
}

/// An entry the log took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Added {
    /// Its index.
    pub index: u64,
    /// It was already in the log (strict dedup): the original index.
    pub duplicate: bool,
}

/// A connection to one server.
pub struct LogRpc {
    client: LogClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>,
    timeout: Duration,
    witnessed: bool,
}

impl LogRpc {
    /// Asks for witnessed checkpoints from now on: [`Self::checkpoint`],
    /// [`Self::watch_checkpoints`] and writes with proofs then answer with a
    /// checkpoint carrying the log's witness quorum of cosignatures. Turn it
    /// on when the trust policy needs cosignatures.
    pub fn set_witnessed(&mut self, on: bool) {
        self.witnessed = on;
    }

    /// `origin` when given, else the server's only log.
    ///
    /// # Errors
    /// [`RpcError::Input`] when the server hosts several logs.
    pub async fn default_origin(&mut self, origin: &str) -> Result<Option<String>, RpcError> {
        if !origin.is_empty() {
            return Ok(Some(origin.to_owned()));
        }
        let logs = self.list_logs().await?;
        match logs.as_slice() {
            [one] => Ok(Some(one.clone())),
            [] => Err(RpcError::Verify("the server hosts no log".into())),
            many => Err(RpcError::Input(format!(
                "the server hosts {} logs; give --origin, one of: {}",
                many.len(),
                many.join(", ")
            ))),
        }
    }

    /// The origins of the server's logs.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn list_logs(&mut self) -> Result<Vec<String>, RpcError> {
        Ok(self.logs().await?.into_iter().map(|l| l.origin).collect())
    }

    /// The server's logs as it lists them: origin, keys, state (ACTIVE,
    /// DRAINING, FROZEN), size and times.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn logs(&mut self) -> Result<Vec<LogInfo>, RpcError> {
        let c = self.client.clone();
        let r = self
            .retry("ListLogs", || {
                let mut c = c.clone();
                async move { c.list_logs(ListLogsRequest {}).await }
            })
            .await?;
        Ok(r.logs)
    }

    /// The latest signed checkpoint note, as the server sent it.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn checkpoint(&mut self, origin: &str) -> Result<Vec<u8>, RpcError> {
        let c = self.client.clone();
        let log = origin.to_owned();
        let witnessed = self.witnessed;
        let r = self
            .retry("GetCheckpoint", || {
                let mut c = c.clone();
                let log = log.clone();
                async move {
                    c.get_checkpoint(GetCheckpointRequest { log, witnessed })
                        .await
                }
            })
            .await?;
        Ok(r.checkpoint)
    }

    /// Adds one entry (not retried: a retry could append it twice under a
    /// policy without strict dedup).
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn add(&mut self, origin: &str, entry: Vec<u8>) -> Result<Added, RpcError> {
        let (added, _) = self.add_inner(origin, entry, false).await?;
        Ok(added)
    }

    /// [`Self::add`], with the origin of the log that took the entry: a
    /// family's shard when `origin` names a family.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn add_to(
        &mut self,
        origin: &str,
        entry: Vec<u8>,
    ) -> Result<(Added, String), RpcError> {
        let (added, resp) = self.add_inner(origin, entry, false).await?;
        Ok((added, resp.log))
    }

    /// Adds a batch of entries in one request (not retried); with
    /// `with_proof`, the answer carries each entry's inclusion proof and the
    /// checkpoint they are bound to (not yet verified).
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn add_batch(
        &mut self,
        origin: &str,
        entries: Vec<Vec<u8>>,
        with_proof: bool,
    ) -> Result<quire_proto::v1::AddEntriesResponse, RpcError> {
        let mut req = tonic::Request::new(AddEntriesRequest {
            log: origin.to_owned(),
            entries,
            with_proof,
            witnessed: with_proof && self.witnessed,
        });
        req.set_timeout(self.timeout);
        Ok(self
            .client
            .add_entries(req)
            .await
            .map_err(|s| status("AddEntries", &s))?
            .into_inner())
    }

    /// Follows the log's checkpoints as they are signed (a server stream;
    /// each note still has to be verified).
    ///
    /// # Errors
    /// [`RpcError`] when the stream cannot be opened.
    pub async fn watch_checkpoints(
        &mut self,
        origin: &str,
    ) -> Result<tonic::Streaming<quire_proto::v1::GetCheckpointResponse>, RpcError> {
        Ok(self
            .client
            .watch_checkpoints(GetCheckpointRequest {
                log: origin.to_owned(),
                witnessed: self.witnessed,
            })
            .await
            .map_err(|s| status("WatchCheckpoints", &s))?
            .into_inner())
    }

    /// Follows the log's entries from `start` as they are integrated, each
    /// page with the checkpoint that contains it (unverified).
    ///
    /// # Errors
    /// [`RpcError`] when the stream cannot be opened.
    pub async fn tail(
        &mut self,
        origin: &str,
        start: u64,
    ) -> Result<tonic::Streaming<quire_proto::v1::TailPage>, RpcError> {
        Ok(self
            .client
            .tail_entries(TailEntriesRequest {
                log: origin.to_owned(),
                start,
            })
            .await
            .map_err(|s| status("TailEntries", &s))?
            .into_inner())
    }

    /// Adds one entry and waits for it to be in a signed checkpoint; returns
    /// its proof bundle (entry carried in `extra`), not yet verified.
    ///
    /// # Errors
    /// [`RpcError`]; [`RpcError::Verify`] for a malformed answer.
    pub async fn add_and_prove(
        &mut self,
        origin: &str,
        entry: Vec<u8>,
    ) -> Result<(Added, TlogProof), RpcError> {
        let (added, resp) = self.add_inner(origin, entry.clone(), true).await?;
        let first = resp
            .entries
            .into_iter()
            .next()
            .ok_or_else(|| RpcError::Verify("AddEntries answered with no entry".into()))?;
        let proof = bundle(
            Some(entry),
            added.index,
            &first.inclusion_proof,
            &resp.checkpoint,
        )?;
        Ok((added, proof))
    }

    async fn add_inner(
        &mut self,
        origin: &str,
        entry: Vec<u8>,
        with_proof: bool,
    ) -> Result<(Added, quire_proto::v1::AddEntriesResponse), RpcError> {
        let resp = self.add_batch(origin, vec![entry], with_proof).await?;
        let first = resp
            .entries
            .first()
            .ok_or_else(|| RpcError::Verify("AddEntries answered with no entry".into()))?;
        Ok((
            Added {
                index: first.index,
                duplicate: first.duplicate,
            },
            resp,
        ))
    }

    /// The entry at `index` with its inclusion proof and the checkpoint, as
    /// a proof bundle (not yet verified).
    ///
    /// # Errors
    /// [`RpcError`]; [`RpcError::Verify`] for a malformed answer.
    pub async fn entry_with_proof(
        &mut self,
        origin: &str,
        index: u64,
    ) -> Result<TlogProof, RpcError> {
        let c = self.client.clone();
        let log = origin.to_owned();
        let r = self
            .retry("GetEntryWithProof", || {
                let mut c = c.clone();
                let log = log.clone();
                async move {
                    c.get_entry_with_proof(GetEntryWithProofRequest { log, index })
                        .await
                }
            })
            .await?;
        if r.index != index {
            return Err(RpcError::Verify(format!(
                "asked for entry {index}, the server answered with entry {}",
                r.index
            )));
        }
        bundle(Some(r.entry), index, &r.inclusion_proof, &r.checkpoint)
    }

    /// A consistency proof between two sizes, as the server sent it.
    ///
    /// # Errors
    /// [`RpcError`]; [`RpcError::Verify`] for malformed hashes or an answer
    /// about other sizes.
    pub async fn consistency(
        &mut self,
        origin: &str,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<quire_core::Hash>, RpcError> {
        Ok(self
            .consistency_inner(origin, old_size, new_size, false)
            .await?
            .0)
    }

    /// [`Self::consistency`] with the seed (the root of the largest
    /// complete subtree ending at `old_size`), which split-view evidence
    /// needs when `old_size` is a power of two. The seed is `None` when the
    /// server sent none.
    ///
    /// # Errors
    /// As [`Self::consistency`].
    pub async fn consistency_seeded(
        &mut self,
        origin: &str,
        old_size: u64,
        new_size: u64,
    ) -> Result<(Vec<quire_core::Hash>, Option<quire_core::Hash>), RpcError> {
        self.consistency_inner(origin, old_size, new_size, true)
            .await
    }

    async fn consistency_inner(
        &mut self,
        origin: &str,
        old_size: u64,
        new_size: u64,
        with_seed: bool,
    ) -> Result<(Vec<quire_core::Hash>, Option<quire_core::Hash>), RpcError> {
        let c = self.client.clone();
        let log = origin.to_owned();
        let r = self
            .retry("GetConsistencyProof", || {
                let mut c = c.clone();
                let log = log.clone();
                async move {
                    c.get_consistency_proof(GetConsistencyProofRequest {
                        log,
                        old_size,
                        new_size,
                        with_seed,
                    })
                    .await
                }
            })
            .await?;
        if (r.old_size, r.new_size) != (old_size, new_size) {
            return Err(RpcError::Verify(format!(
                "asked for a consistency proof {old_size} -> {new_size}, got {} -> {}",
                r.old_size, r.new_size
            )));
        }
        let proof = hashes_from_wire(&r.proof)
            .map_err(|e| RpcError::Verify(format!("consistency proof: {e}")))?;
        let seed = quire_proto::optional_hash_from_wire(&r.seed)
            .map_err(|e| RpcError::Verify(format!("consistency seed: {e}")))?;
        Ok((proof, seed))
    }

    /// An inclusion proof of the entry at `index`, or of the entry with
    /// leaf hash `leaf` (when `index` is `None`), in the tree of `tree_size`.
    /// Returns the entry's index and the proof, not yet verified.
    ///
    /// # Errors
    /// [`RpcError`]; [`RpcError::Verify`] for an answer about another size
    /// or index, or malformed hashes.
    pub async fn inclusion(
        &mut self,
        origin: &str,
        index: Option<u64>,
        leaf: quire_core::Hash,
        tree_size: u64,
    ) -> Result<(u64, Vec<quire_core::Hash>), RpcError> {
        let c = self.client.clone();
        let log = origin.to_owned();
        let want = match index {
            Some(i) => get_inclusion_proof_request::Leaf::Index(i),
            None => get_inclusion_proof_request::Leaf::LeafHash(leaf.0.to_vec()),
        };
        let r = self
            .retry("GetInclusionProof", || {
                let mut c = c.clone();
                let (log, want) = (log.clone(), want.clone());
                async move {
                    c.get_inclusion_proof(GetInclusionProofRequest {
                        log,
                        leaf: Some(want),
                        tree_size,
                    })
                    .await
                }
            })
            .await?;
        if r.tree_size != tree_size || index.is_some_and(|i| i != r.index) {
            return Err(RpcError::Verify(format!(
                "asked for a proof in the tree of size {tree_size}, got one for entry {} in size {}",
                r.index, r.tree_size
            )));
        }
        let proof = hashes_from_wire(&r.proof)
            .map_err(|e| RpcError::Verify(format!("inclusion proof: {e}")))?;
        Ok((r.index, proof))
    }

    /// Entries `[start, end)` in order, handed to `each` with their index.
    /// A stream that skips, repeats or stops early is an error.
    ///
    /// # Errors
    /// [`RpcError`]; [`RpcError::Verify`] for a stream out of order.
    pub async fn entries(
        &mut self,
        origin: &str,
        start: u64,
        end: u64,
        mut each: impl FnMut(u64, &[u8]) -> Result<(), RpcError>,
    ) -> Result<(), RpcError> {
        let mut next = start;
        while next < end {
            let mut stream = self
                .client
                .get_entries(GetEntriesRequest {
                    log: origin.to_owned(),
                    start: next,
                    end,
                })
                .await
                .map_err(|s| status("GetEntries", &s))?
                .into_inner();
            let before = next;
            while let Some(page) = stream
                .message()
                .await
                .map_err(|s| status("GetEntries", &s))?
            {
                if page.start != next {
                    return Err(RpcError::Verify(format!(
                        "entries stream jumped to {} while {next} was expected",
                        page.start
                    )));
                }
                for e in &page.entries {
                    if next >= end {
                        return Err(RpcError::Verify(format!(
                            "entries stream went past the requested end {end}"
                        )));
                    }
                    each(next, e)?;
                    next += 1;
                }
            }
            if next == before {
                return Err(RpcError::Verify(format!(
                    "entries stream ended at {next}, before the requested end {end}"
                )));
            }
        }
        Ok(())
    }
}

fn bundle(
    entry: Option<Vec<u8>>,
    index: u64,
    proof: &[Vec<u8>],
    checkpoint: &[u8],
) -> Result<TlogProof, RpcError> {
    let proof =
        hashes_from_wire(proof).map_err(|e| RpcError::Verify(format!("inclusion proof: {e}")))?;
    let checkpoint = Note::parse(checkpoint)
        .map_err(|e| RpcError::Verify(format!("checkpoint from the log: {e}")))?;
    Ok(TlogProof {
        extra: entry,
        index,
        proof,
        checkpoint,
    })
}
