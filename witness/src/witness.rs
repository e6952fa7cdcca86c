//! The witness: add-checkpoint with durable state, cosigning, and the check
//! of checkpoints someone was shown (gossip from peers, clients, monitors,
//! and what pull mode fetches) against the witness's own view.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use quire_core::verify::consistency_roots;
use quire_core::{seeded_path, Hash, NoteSignature, SplitViewEvidence, VerifierKey, WitnessSigner};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::{GetCheckpointRequest, GetConsistencyProofRequest};
use tonic::transport::Channel;

use crate::check::{self, AddError, Latest, Verified};
use crate::config::WitnessedLog;
use crate::state::{self, EvidenceRecord, State};

/// The source name of what pull mode fetched from the log itself.
const PULL: &str = "pull";

/// What a checked checkpoint turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It fits the witness's view.
    Consistent,
    /// It conflicts; evidence is stored.
    Conflict,
    /// It could not be checked now.
    Unchecked,
    /// Not a validly signed checkpoint of a known log.
    Rejected,
}

struct LogEntry {
    keys: Arc<[VerifierKey]>,
    client: Option<LogClient<Channel>>,
    url: Option<String>,
}

/// A running witness. Cheap to clone.
#[derive(Clone)]
pub struct Witness {
    inner: Arc<Inner>,
}

struct Inner {
    signer: WitnessSigner,
    logs: HashMap<String, LogEntry>,
    state: State,
    timeout: Duration,
}

/// A gRPC channel to `url`, connected lazily.
///
/// # Errors
/// A malformed URL.
pub fn lazy_channel(url: &str, timeout: Duration) -> Result<Channel, String> {
    let ep = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("address {url:?}: {e}"))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .timeout(timeout)
        .tcp_nodelay(true);
    Ok(ep.connect_lazy())
}

impl Witness {
    /// A witness over `state`, signing with `signer`, for `logs`.
    ///
    /// # Errors
    /// A log URL that is not a valid address.
    pub fn new(
        signer: WitnessSigner,
        logs: Vec<WitnessedLog>,
        state: State,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut map = HashMap::with_capacity(logs.len());
        for l in logs {
            let client = match &l.url {
                Some(u) => Some(
                    LogClient::new(lazy_channel(u, timeout)?).max_decoding_message_size(1 << 20),
                ),
                None => None,
            };
            map.insert(
                l.origin,
                LogEntry {
                    keys: l.keys.into(),
                    client,
                    url: l.url,
                },
            );
        }
        Ok(Witness {
            inner: Arc::new(Inner {
                signer,
                logs: map,
                state,
                timeout,
            }),
        })
    }

    /// The witness's public key.
    pub fn verifier(&self) -> VerifierKey {
        self.inner.signer.verifier()
    }

    /// The state.
    pub fn state(&self) -> &State {
        &self.inner.state
    }

    /// The keys of a known log.
    pub fn keys_of(&self, origin: &str) -> Option<Arc<[VerifierKey]>> {
        self.inner.logs.get(origin).map(|l| Arc::clone(&l.keys))
    }

    /// Origins and addresses of the logs this witness polls.
    pub fn polled_logs(&self) -> Vec<String> {
        self.inner
            .logs
            .iter()
            .filter(|(_, l)| l.url.is_some())
            .map(|(o, _)| o.clone())
            .collect()
    }

    fn verify(&self, note: &[u8]) -> Result<Verified, AddError> {
        check::verify_note(note, |o| self.inner.logs.get(o).map(|l| &*l.keys))
    }

    fn cosign(&self, text: &str) -> Result<NoteSignature, AddError> {
        self.inner
            .signer
            .cosign(text.as_bytes(), state::now_secs())
            .map_err(|e| AddError::Storage(e.to_string()))
    }

    /// C2SP add-checkpoint: verifies the log's signature, then checks and
    /// stores the checkpoint atomically and durably, then cosigns.
    ///
    /// # Errors
    /// [`AddError`] naming the reason (and its HTTP/gRPC status).
    pub async fn add_checkpoint(
        &self,
        old: u64,
        proof: Vec<Hash>,
        note: &[u8],
        source: &str,
    ) -> Result<NoteSignature, AddError> {
        let verified = self.verify(note)?;
        let keys = self
            .keys_of(&verified.origin)
            .ok_or_else(|| AddError::UnknownLog(verified.origin.clone()))?;
        let result = self
            .inner
            .state
            .add(old, proof, verified, keys, source)
            .await;
        let label = match &result {
            Ok(_) => "cosigned",
            Err(AddError::Conflict { .. }) => "conflict",
            Err(AddError::BadProof { .. }) => "bad_proof",
            Err(_) => "error",
        };
        metrics::counter!("quire_witness_add_checkpoint_total", "result" => label).increment(1);
        self.cosign(&result?.text)
    }

    /// The latest cosigned checkpoint of `origin` as a note with a fresh
    /// cosignature.
    pub fn latest_note(&self, origin: &str) -> Option<Vec<u8>> {
        let l = self.inner.state.latest(origin)?;
        Some(self.with_cosignature(&l))
    }

    /// `latest`'s note with this witness's cosignature appended.
    pub fn with_cosignature(&self, latest: &Latest) -> Vec<u8> {
        let mut note = latest.note.clone();
        if let Ok(n) = quire_core::Note::parse(&latest.note) {
            if let Ok(sig) = self.cosign(n.text()) {
                note.extend_from_slice(sig.to_line().as_bytes());
            }
        }
        note
    }

    /// Keeps evidence handed over by someone else, after checking it.
    pub async fn accept_evidence(&self, json: &str, source: &str) -> (Verdict, String) {
        match state::checked_evidence(json, |o| self.keys_of(o), source) {
            Err(e) => (Verdict::Rejected, e),
            Ok(record) => match self.inner.state.add_evidence(record).await {
                Ok(true) => (Verdict::Conflict, "new evidence kept".into()),
                Ok(false) => (Verdict::Conflict, "evidence already held".into()),
                Err(e) => (Verdict::Unchecked, e),
            },
        }
    }

    async fn keep(&self, origin: &str, ev: &SplitViewEvidence, source: &str) -> (Verdict, String) {
        let record = EvidenceRecord {
            origin: origin.to_owned(),
            json: ev.to_json(),
            found_at: state::now_secs(),
            source: source.chars().take(256).collect(),
        };
        match self.inner.state.add_evidence(record).await {
            Ok(_) => (Verdict::Conflict, "split view: evidence stored".to_owned()),
            Err(e) => (
                Verdict::Unchecked,
                format!("conflict found, storing evidence failed: {e}"),
            ),
        }
    }

    /// Checks a signed checkpoint someone was shown against this witness's
    /// view. A newer one that the log proves consistent is cosigned (that is
    /// how pull mode advances); a conflict becomes evidence. Only pull mode
    /// may give the witness its first view of a log.
    pub async fn observe(&self, note: &[u8], source: &str) -> (Verdict, String) {
        let shown = match self.verify(note) {
            Ok(v) => v,
            Err(e) => return (Verdict::Rejected, e.to_string()),
        };
        let origin = shown.origin.clone();
        let Some(keys) = self.keys_of(&origin) else {
            return (Verdict::Rejected, format!("unknown log {origin:?}"));
        };
        let Some(own) = self.inner.state.latest(&origin) else {
            if source == PULL {
                // The log itself, polled: trust on first use, like a push.
                return self.adopt(0, Vec::new(), shown, keys, source).await;
            }
            // A first view never comes from gossip: what others were shown
            // is compared with this witness's own view, never adopted as it.
            return (
                Verdict::Unchecked,
                "this witness has no view of the log yet to compare with".into(),
            );
        };
        let (p, v) = (shown.checkpoint.size(), own.size);
        if p == v {
            if *shown.checkpoint.root() == own.root {
                return (Verdict::Consistent, format!("same checkpoint, size {p}"));
            }
            return match SplitViewEvidence::new(&own.note, &shown.note, &[], &keys) {
                Ok((ev, _)) => self.keep(&origin, &ev, source).await,
                Err(e) => (Verdict::Unchecked, e.to_string()),
            };
        }
        let Some(mut client) = self.inner.logs.get(&origin).and_then(|l| l.client.clone()) else {
            return (
                Verdict::Unchecked,
                format!("sizes {p} and {v} differ and this witness has no address for the log"),
            );
        };
        if p < v {
            return self
                .compare(
                    &mut client,
                    &origin,
                    &shown.note,
                    p,
                    shown.checkpoint.root(),
                    &own.note,
                    v,
                    &own.root,
                    &keys,
                    source,
                )
                .await;
        }
        self.observe_newer(client, &own, shown, keys, source).await
    }

    /// A checkpoint newer than the witness's own `own`: cosigned when the
    /// log proves it extends `own`, evidence when the log's material proves
    /// it does not.
    async fn observe_newer(
        &self,
        mut client: LogClient<Channel>,
        own: &Latest,
        shown: Verified,
        keys: Arc<[VerifierKey]>,
        source: &str,
    ) -> (Verdict, String) {
        let origin = shown.origin.clone();
        let (p, v) = (shown.checkpoint.size(), own.size);
        if v == 0 {
            // From the empty tree there is nothing to prove, so nothing ties
            // a gossiped checkpoint to what the log showed this witness:
            // only the log itself (pull mode) moves it from there.
            if source == PULL {
                return self.adopt(0, Vec::new(), shown, keys, source).await;
            }
            return (
                Verdict::Unchecked,
                "this witness has only the empty tree of the log to compare with".into(),
            );
        }
        // Ask for the proof from our size.
        match self.proof(&mut client, &origin, v, p).await {
            Ok((seed, proof)) => {
                if quire_core::verify_consistency(v, p, &proof, &own.root, shown.checkpoint.root())
                    .is_ok()
                {
                    return self.adopt(v, proof, shown, keys, source).await;
                }
                if let Some(path) = seeded_path(v, seed, &proof) {
                    if let Ok((ev, _)) =
                        SplitViewEvidence::new(&own.note, &shown.note, &path, &keys)
                    {
                        return self.keep(&origin, &ev, source).await;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(origin = %origin, error = %e, "no proof for a newer checkpoint");
            }
        }
        // The log's proofs are of another history, or it has not got that
        // far: compare with what the log shows us now.
        let latest = match self.log_checkpoint(&mut client, &origin).await {
            Ok(l) => l,
            Err(e) => return (Verdict::Unchecked, e),
        };
        let l = latest.checkpoint.size();
        if l < p {
            return (
                Verdict::Unchecked,
                format!("size {p} is beyond the log's latest size {l} as the log shows it to this witness"),
            );
        }
        if l == p {
            if latest.checkpoint.root() == shown.checkpoint.root() {
                return (
                    Verdict::Unchecked,
                    format!("the log shows size {p} with the same root, but no proof from {v}"),
                );
            }
            return match SplitViewEvidence::new(&latest.note, &shown.note, &[], &keys) {
                Ok((ev, _)) => self.keep(&origin, &ev, source).await,
                Err(e) => (Verdict::Unchecked, e.to_string()),
            };
        }
        let (ln, lr) = (latest.note.clone(), *latest.checkpoint.root());
        self.compare(
            &mut client,
            &origin,
            &shown.note,
            p,
            shown.checkpoint.root(),
            &ln,
            l,
            &lr,
            &keys,
            source,
        )
        .await
    }

    /// Is the signed checkpoint `small` (size `s`) a prefix of the signed
    /// `big` (size `b > s`) according to the log's proof? Evidence when the
    /// proof rebuilds `big` and implies another root for `s`.
    #[allow(clippy::too_many_arguments)]
    async fn compare(
        &self,
        client: &mut LogClient<Channel>,
        origin: &str,
        small: &[u8],
        s: u64,
        small_root: &Hash,
        big: &[u8],
        b: u64,
        big_root: &Hash,
        keys: &[VerifierKey],
        source: &str,
    ) -> (Verdict, String) {
        let (seed, proof) = match self.proof(client, origin, s, b).await {
            Ok(x) => x,
            Err(e) => return (Verdict::Unchecked, e),
        };
        let Some(path) = seeded_path(s, seed, &proof) else {
            return (Verdict::Unchecked, "the log sent no seed".into());
        };
        let Some((first, rest)) = path.split_first() else {
            return (Verdict::Unchecked, "empty proof".into());
        };
        match consistency_roots(s, b, first, rest) {
            Ok((implied_small, implied_big)) if implied_big == *big_root => {
                if implied_small == *small_root {
                    (
                        Verdict::Consistent,
                        format!("size {s} is a prefix of size {b}"),
                    )
                } else {
                    match SplitViewEvidence::new(small, big, &path, keys) {
                        Ok((ev, _)) => self.keep(origin, &ev, source).await,
                        Err(e) => (Verdict::Unchecked, e.to_string()),
                    }
                }
            }
            Ok(_) => (
                Verdict::Unchecked,
                format!("the log's proof from {s} to {b} does not rebuild the root it signed"),
            ),
            Err(e) => (
                Verdict::Unchecked,
                format!("the log's proof from {s} to {b}: {e}"),
            ),
        }
    }

    async fn adopt(
        &self,
        old: u64,
        proof: Vec<Hash>,
        seen: Verified,
        keys: Arc<[VerifierKey]>,
        source: &str,
    ) -> (Verdict, String) {
        let size = seen.checkpoint.size();
        match self.inner.state.add(old, proof, seen, keys, source).await {
            Ok(_) => (
                Verdict::Consistent,
                format!("verified and cosigned size {size}"),
            ),
            // The state moved on meanwhile: the next round checks again.
            Err(AddError::Conflict { evidence: None, .. }) => (
                Verdict::Consistent,
                format!("size {size} consistent; the witness has moved on"),
            ),
            Err(e) if e.evidence().is_some() => (Verdict::Conflict, e.to_string()),
            Err(e) => (Verdict::Unchecked, e.to_string()),
        }
    }

    async fn proof(
        &self,
        client: &mut LogClient<Channel>,
        origin: &str,
        old: u64,
        new: u64,
    ) -> Result<(Option<Hash>, Vec<Hash>), String> {
        let mut req = tonic::Request::new(GetConsistencyProofRequest {
            log: origin.to_owned(),
            old_size: old,
            new_size: new,
            with_seed: true,
        });
        req.set_timeout(self.inner.timeout);
        let resp = client
            .get_consistency_proof(req)
            .await
            .map_err(|s| {
                format!(
                    "consistency proof {old}→{new} from the log: {}",
                    s.message()
                )
            })?
            .into_inner();
        let proof = quire_proto::hashes_from_wire(&resp.proof).map_err(|e| e.to_string())?;
        let seed = quire_proto::optional_hash_from_wire(&resp.seed).map_err(|e| e.to_string())?;
        Ok((seed, proof))
    }

    /// The log's latest checkpoint note, as it sent it.
    async fn fetch_checkpoint(
        &self,
        client: &mut LogClient<Channel>,
        origin: &str,
    ) -> Result<Vec<u8>, String> {
        let mut req = tonic::Request::new(GetCheckpointRequest {
            log: origin.to_owned(),
            witnessed: false,
        });
        req.set_timeout(self.inner.timeout);
        client
            .get_checkpoint(req)
            .await
            .map(|r| r.into_inner().checkpoint)
            .map_err(|s| format!("checkpoint from the log: {}", s.message()))
    }

    async fn log_checkpoint(
        &self,
        client: &mut LogClient<Channel>,
        origin: &str,
    ) -> Result<Verified, String> {
        let note = self.fetch_checkpoint(client, origin).await?;
        self.verify(&note)
            .map_err(|e| format!("the log's checkpoint: {e}"))
    }

    /// Pull mode, one round for one log: fetch its checkpoint and check it.
    pub async fn poll(&self, origin: &str) -> (Verdict, String) {
        let Some(mut client) = self.inner.logs.get(origin).and_then(|l| l.client.clone()) else {
            return (Verdict::Unchecked, "no address".into());
        };
        match self.fetch_checkpoint(&mut client, origin).await {
            Ok(note) => self.observe(&note, PULL).await,
            Err(e) => (Verdict::Unchecked, format!("polling the log: {e}")),
        }
    }
}
