//! The `quire.v1.Log` gRPC service over one or many logs.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use quire_core::{inclusion_plan, root_at, Hash, ProofRequestError, ProveError};
use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::log_server::Log as LogApi;
use quire_proto::v1::{
    AddEntriesRequest, AddEntriesResponse, AddEntryRequest, AddEntryResponse, AddedEntry,
    EntriesPage, GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest,
    GetConsistencyProofResponse, GetEntriesRequest, GetEntryWithProofRequest,
    GetEntryWithProofResponse, GetInclusionProofRequest, GetInclusionProofResponse,
    ListLogsRequest, ListLogsResponse, LogInfo, TailEntriesRequest, TailPage,
};
use quire_proto::{hash_from_wire, hashes_to_wire};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::budget::{split_pages, PageSender, ResponseBudget, StreamSlots};
use crate::log::{Latest, Log, WriteError};
use crate::proofs::{checked_consistency, checked_inclusion, signed_root, ProofError};
use crate::store::{Storage, StorageReader, StoreError};
use crate::witnessing::Witnessing;

/// Most entries per page of `GetEntries` (one bundle); pages are also at
/// most [`crate::budget::PAGE_BYTES`].
pub const PAGE_ENTRIES: u64 = 256;

/// The default budget of entry-page bytes read and queued for clients.
pub const DEFAULT_STREAM_BUDGET: usize = 256 << 20;

/// The default cap on open entry streams.
pub const DEFAULT_ENTRY_STREAMS: usize = 1024;

/// The service: logs by origin.
pub struct LogService<S: Storage> {
    logs: Arc<BTreeMap<String, Log<S>>>,
    /// Witness collection of the logs that have witnesses.
    witnessing: Arc<BTreeMap<String, Witnessing>>,
    /// Turns true when the server shuts down: follow streams end then.
    stopping: tokio::sync::watch::Receiver<bool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Bytes of entry pages in flight to clients, server-wide.
    budget: ResponseBudget,
    /// Open entry streams, server-wide.
    slots: StreamSlots,
}

impl<S: Storage> Clone for LogService<S> {
    fn clone(&self) -> Self {
        LogService {
            logs: Arc::clone(&self.logs),
            witnessing: Arc::clone(&self.witnessing),
            stopping: self.stopping.clone(),
            stop: Arc::clone(&self.stop),
            budget: self.budget.clone(),
            slots: self.slots.clone(),
        }
    }
}

fn write_status(e: WriteError) -> Status {
    match e {
        WriteError::Invalid(m) => Status::invalid_argument(m),
        e @ (WriteError::QueueFull { .. } | WriteError::StorageFull(_)) => {
            Status::resource_exhausted(e.to_string())
        }
        e @ (WriteError::ShuttingDown
        | WriteError::Stopped { .. }
        | WriteError::SigningHeld { .. }) => Status::unavailable(e.to_string()),
        e @ (WriteError::SigningStopped { .. } | WriteError::ClockBackwards { .. }) => {
            Status::failed_precondition(e.to_string())
        }
        e @ WriteError::Store(_) => Status::internal(e.to_string()),
    }
}

fn store_status(e: &StoreError) -> Status {
    if let StoreError::Corrupt(_) = e {
        tracing::error!(error = %e, "stored data is corrupt; not served");
        return Status::data_loss(format!("reading storage: {e}"));
    }
    Status::internal(format!("reading storage: {e}"))
}

/// A read view of the log's storage, or INTERNAL.
fn read_view<S: Storage>(log: &Log<S>) -> Result<S::Reader, Status> {
    log.store().reader().map_err(|e| store_status(&e))
}

/// A boxed server stream of `T`.
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A server stream fed by `rx`.
fn stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<Result<T, Status>>,
) -> Response<BoxStream<T>> {
    Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

fn prove_status(e: ProveError<StoreError>) -> Status {
    match e {
        ProveError::Request(r) => request_status(&r),
        ProveError::Read(e) => store_status(&e),
        ProveError::Combine(e) => Status::internal(e.to_string()),
    }
}

fn proof_status(e: ProofError) -> Status {
    match e {
        ProofError::Request(r) => request_status(&r),
        ProofError::Store(e) => store_status(&e),
        e @ ProofError::Damaged(_) => {
            tracing::error!(error = %e, "a proof built from storage does not verify; not served");
            Status::data_loss(e.to_string())
        }
    }
}

fn request_status(r: &ProofRequestError) -> Status {
    match r {
        ProofRequestError::IndexOutOfRange { .. } | ProofRequestError::SizeTooLarge { .. } => {
            Status::out_of_range(r.to_string())
        }
        ProofRequestError::OldSizeAboveNew { .. } | ProofRequestError::FromEmptyTree => {
            Status::invalid_argument(r.to_string())
        }
    }
}

/// Runs a short storage read inline: proofs touch a few cached pages, and a
/// thread-pool hop costs more than the read. Long scans use
/// [`blocking`].
fn inline<T>(f: impl FnOnce() -> Result<T, Status>) -> Result<T, Status> {
    f()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("worker failed: {e}")))?
}

impl<S: Storage> LogService<S> {
    /// A service over `logs`.
    pub fn new(logs: Vec<Log<S>>) -> Self {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        LogService {
            logs: Arc::new(
                logs.into_iter()
                    .map(|l| (l.origin().to_owned(), l))
                    .collect(),
            ),
            witnessing: Arc::default(),
            stopping,
            stop: Arc::new(stop),
            budget: ResponseBudget::new(DEFAULT_STREAM_BUDGET),
            slots: StreamSlots::new(DEFAULT_ENTRY_STREAMS),
        }
    }

    /// Sets the cap on open entry streams (`GetEntries`, `TailEntries`).
    #[must_use]
    pub fn with_entry_streams(mut self, max: usize) -> Self {
        self.slots = StreamSlots::new(max);
        self
    }

    /// Sets the server-wide budget of entry-page bytes in flight to clients
    /// (see [`crate::budget`]).
    #[must_use]
    pub fn with_stream_budget(mut self, bytes: usize) -> Self {
        self.budget = ResponseBudget::new(bytes);
        self
    }

    /// Starts witness collection for each log of `configs` that has
    /// witnesses (on the current runtime; it stops with the streams).
    ///
    /// # Errors
    /// An invalid witness configuration.
    pub fn start_witnessing(
        mut self,
        configs: &[crate::config::LogConfig],
    ) -> anyhow::Result<Self> {
        let mut map = BTreeMap::new();
        for cfg in configs {
            let Some(policy) = cfg.witness_policy()? else {
                continue;
            };
            let Some(log) = self.logs.get(&cfg.origin) else {
                continue;
            };
            let w = Witnessing::start(log, policy, self.stopping.clone())
                .map_err(anyhow::Error::msg)?;
            map.insert(cfg.origin.clone(), w);
        }
        self.witnessing = Arc::new(map);
        Ok(self)
    }

    fn witnessing_of(&self, log: &Log<S>) -> Result<&Witnessing, Status> {
        self.witnessing.get(log.origin()).ok_or_else(|| {
            Status::failed_precondition(format!(
                "log {:?} has no witnesses configured: ask without `witnessed`",
                log.origin()
            ))
        })
    }

    /// Ends every follow stream (the server is shutting down).
    pub fn stop_streams(&self) {
        self.stop.send_replace(true);
    }

    /// The logs served.
    pub fn logs(&self) -> impl Iterator<Item = &Log<S>> {
        self.logs.values()
    }

    fn log(&self, origin: &str) -> Result<Log<S>, Status> {
        if origin.is_empty() && self.logs.len() == 1 {
            if let Some(l) = self.logs.values().next() {
                return Ok(l.clone());
            }
        }
        self.logs.get(origin).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.logs.keys().map(String::as_str).collect();
            if origin.is_empty() {
                Status::invalid_argument(format!(
                    "this server hosts {} logs: name one by origin ({})",
                    known.len(),
                    known.join(", ")
                ))
            } else {
                Status::not_found(format!(
                    "no log with origin {:?} here; known: {}",
                    origin.chars().take(256).collect::<String>(),
                    known.join(", ")
                ))
            }
        })
    }
}

/// Resolves a requested size (0 = latest) against the latest size.
fn tree_size(requested: u64, latest: u64) -> Result<u64, Status> {
    match requested {
        0 => Ok(latest),
        n if n > latest => Err(Status::out_of_range(format!(
            "tree size {n} is beyond the latest checkpoint size {latest}"
        ))),
        n => Ok(n),
    }
}

type PageStream = BoxStream<EntriesPage>;
type CheckpointStream = BoxStream<GetCheckpointResponse>;
type TailStream = BoxStream<TailPage>;

/// The end of the page that starts at `at`: the next bundle boundary, or `end`.
fn page_end(at: u64, end: u64) -> u64 {
    ((at / PAGE_ENTRIES + 1) * PAGE_ENTRIES).min(end)
}

#[tonic::async_trait]
impl<S: Storage> LogApi for LogService<S> {
    async fn add_entry(
        &self,
        req: Request<AddEntryRequest>,
    ) -> Result<Response<AddEntryResponse>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let witnessing = if req.with_proof && req.witnessed {
            Some(self.witnessing_of(&log)?)
        } else {
            None
        };
        let (added, latest) = log.add(vec![req.entry]).await.map_err(write_status)?;
        let Some(a) = added.first().copied() else {
            return Err(Status::internal("no result for the entry"));
        };
        let mut resp = AddEntryResponse {
            index: a.index,
            duplicate: a.duplicate,
            ..AddEntryResponse::default()
        };
        if req.with_proof {
            let (size, note) = match witnessing {
                Some(w) => w.for_write(&latest, a.index).await?,
                None => (latest.stored.size, latest.stored.note.clone()),
            };
            let proofs = inclusion_proofs(&log, vec![a.index], size).await?;
            resp.checkpoint = note;
            resp.inclusion_proof = proofs.into_iter().next().unwrap_or_default();
        }
        Ok(Response::new(resp))
    }

    async fn add_entries(
        &self,
        req: Request<AddEntriesRequest>,
    ) -> Result<Response<AddEntriesResponse>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let witnessing = if req.with_proof && req.witnessed {
            Some(self.witnessing_of(&log)?)
        } else {
            None
        };
        let (added, latest) = log.add(req.entries).await.map_err(write_status)?;
        let mut resp = AddEntriesResponse::default();
        let proofs = if req.with_proof {
            let last = added.iter().map(|a| a.index).max().unwrap_or(0);
            let (size, note) = match witnessing {
                Some(w) => w.for_write(&latest, last).await?,
                None => (latest.stored.size, latest.stored.note.clone()),
            };
            resp.checkpoint = note;
            inclusion_proofs(&log, added.iter().map(|a| a.index).collect(), size).await?
        } else {
            Vec::new()
        };
        let mut proofs = proofs.into_iter();
        resp.entries = added
            .iter()
            .map(|a| AddedEntry {
                index: a.index,
                duplicate: a.duplicate,
                inclusion_proof: proofs.next().unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(resp))
    }

    async fn get_checkpoint(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let checkpoint = if req.witnessed {
            self.witnessing_of(&log)?.for_read(&log.latest()).await?
        } else {
            log.latest().stored.note.clone()
        };
        Ok(Response::new(GetCheckpointResponse { checkpoint }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let latest = log.latest();
        let size = tree_size(req.tree_size, latest.stored.size)?;
        let index = match req.leaf {
            None => {
                return Err(Status::invalid_argument(
                    "give the leaf by index or by leaf_hash",
                ))
            }
            Some(Leaf::Index(i)) => i,
            Some(Leaf::LeafHash(h)) => {
                let h = hash_from_wire(&h)
                    .map_err(|e| Status::invalid_argument(format!("leaf_hash: {e}")))?;
                let l = log.clone();
                let found = inline(move || {
                    let r = read_view(&l)?;
                    r.find_leaf(&h).map_err(|e| store_status(&e))
                })?;
                match found {
                    Some(i) => i,
                    None => {
                        return Err(Status::not_found(format!(
                            "no entry with leaf hash {h} in this log"
                        )))
                    }
                }
            }
        };
        // Impossible requests (index ≥ size) come back as OUT_OF_RANGE from
        // the proof's own plan.
        let proof = inclusion_proofs(&log, vec![index], size)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(Response::new(GetInclusionProofResponse {
            index,
            tree_size: size,
            proof,
            checkpoint: if req.tree_size == 0 {
                latest.stored.note.clone()
            } else {
                Vec::new()
            },
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let latest = log.latest();
        let new = tree_size(req.new_size, latest.stored.size)?;
        let old = req.old_size;
        // A consistency proof reads a few cached pages, like one inclusion
        // proof: inline.
        let (proof, seed) = inline(|| {
            let r = read_view(&log)?;
            let proof = checked_consistency(&r, &latest, old, new).map_err(proof_status)?;
            // The seed: the old root itself when old is a power of two
            // (RFC 9162 leaves it out then), else the proof's first hash.
            let seed = match proof.first() {
                _ if !req.with_seed || old == 0 || old >= new => None,
                _ if old.is_power_of_two() => Some(root_at(&r, old).map_err(prove_status)?),
                first => first.copied(),
            };
            Ok((proof, seed))
        })?;
        Ok(Response::new(GetConsistencyProofResponse {
            old_size: old,
            new_size: new,
            proof: hashes_to_wire(&proof),
            seed: seed.map(|h| h.as_bytes().to_vec()).unwrap_or_default(),
        }))
    }

    type GetEntriesStream = PageStream;

    async fn get_entries(
        &self,
        req: Request<GetEntriesRequest>,
    ) -> Result<Response<PageStream>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let size = log.latest().stored.size;
        let end = if req.end == 0 {
            size
        } else {
            req.end.min(size)
        };
        if req.end != 0 && req.start >= req.end {
            return Err(Status::invalid_argument(format!(
                "start {} is not below the end {} asked for",
                req.start, req.end
            )));
        }
        if req.start >= end {
            return Err(Status::out_of_range(format!(
                "start {} is not below the end {end} (the tree size is {size})",
                req.start
            )));
        }
        let (mut tx, rx) = crate::budget::channel(self.slots.take()?);
        let budget = self.budget.clone();
        let start = req.start;
        tokio::spawn(async move {
            let mut at = start;
            while at < end {
                let to = page_end(at, end);
                if !send_entries(&log, &budget, &mut tx, at, to, |start, entries| {
                    EntriesPage { start, entries }
                })
                .await
                {
                    return;
                }
                at = to;
            }
        });
        Ok(Response::new(Box::pin(rx)))
    }

    async fn get_entry_with_proof(
        &self,
        req: Request<GetEntryWithProofRequest>,
    ) -> Result<Response<GetEntryWithProofResponse>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let latest = log.latest();
        let size = latest.stored.size;
        let index = req.index;
        inclusion_plan(index, size).map_err(|e| request_status(&e))?;
        let l = log.clone();
        let latest_root = Arc::clone(&latest);
        let (entry, proof) = blocking(move || {
            let latest = latest_root;
            let r = read_view(&l)?;
            let entry = r
                .checked_entries(index, index + 1)
                .map_err(|e| store_status(&e))?
                .pop()
                .ok_or_else(|| Status::internal("entry missing from storage"))?;
            let proof = checked_inclusion(&r, index, size, &latest.root).map_err(proof_status)?;
            Ok((entry, proof))
        })
        .await?;
        Ok(Response::new(GetEntryWithProofResponse {
            index,
            entry,
            inclusion_proof: hashes_to_wire(&proof),
            checkpoint: latest.stored.note.clone(),
        }))
    }

    type WatchCheckpointsStream = CheckpointStream;

    async fn watch_checkpoints(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<CheckpointStream>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        if req.witnessed {
            let w = self.witnessing_of(&log)?;
            return Ok(stream(w.watch(self.stopping.clone())));
        }
        let mut watch = log.subscribe();
        let mut stopping = self.stopping.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let note = watch.borrow_and_update().stored.note.clone();
                if tx
                    .send(Ok(GetCheckpointResponse { checkpoint: note }))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(stream(rx))
    }

    type TailEntriesStream = TailStream;

    async fn tail_entries(
        &self,
        req: Request<TailEntriesRequest>,
    ) -> Result<Response<TailStream>, Status> {
        let req = req.into_inner();
        let log = self.log(&req.log)?;
        let size = log.latest().stored.size;
        if req.start > size {
            // A stream parked far in the future would be held open for
            // nothing: follow from at most the current size.
            return Err(Status::out_of_range(format!(
                "start {} is past the tree size {size}; tail from the size or below",
                req.start
            )));
        }
        let mut watch = log.subscribe();
        let mut stopping = self.stopping.clone();
        let (mut tx, rx) = crate::budget::channel(self.slots.take()?);
        let budget = self.budget.clone();
        let mut at = req.start;
        tokio::spawn(async move {
            loop {
                let latest = Arc::clone(&watch.borrow_and_update());
                let size = latest.stored.size;
                while at < size {
                    let to = page_end(at, size);
                    let note = &latest.stored.note;
                    if !send_entries(&log, &budget, &mut tx, at, to, |start, entries| TailPage {
                        start,
                        entries,
                        checkpoint: note.clone(),
                    })
                    .await
                    {
                        return;
                    }
                    at = to;
                }
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(rx)))
    }

    async fn list_logs(
        &self,
        _req: Request<ListLogsRequest>,
    ) -> Result<Response<ListLogsResponse>, Status> {
        Ok(Response::new(ListLogsResponse {
            logs: self
                .logs
                .values()
                .map(|l| LogInfo {
                    origin: l.origin().to_owned(),
                    verifier_keys: l
                        .verifiers()
                        .iter()
                        .map(quire_core::VerifierKey::to_vkey)
                        .collect(),
                    state: "ACTIVE".into(),
                    size: l.latest().stored.size,
                })
                .collect(),
        }))
    }
}

/// Sends entries `[from, to)` (one bundle at most) as pages of at most
/// [`crate::budget::PAGE_BYTES`], each produced only when the transport asks
/// for it: read on the blocking pool, checked against the leaf hashes, with
/// its bytes reserved from `budget` while it is read and queued. What does
/// not fit the page is dropped and read again for the next one, so a stream
/// whose client stops reading holds nothing here. Returns false when the
/// stream is over (client gone, or a failure sent).
async fn send_entries<S: Storage, T: Send + 'static>(
    log: &Log<S>,
    budget: &ResponseBudget,
    tx: &mut PageSender<T>,
    from: u64,
    to: u64,
    page: impl Fn(u64, Vec<Vec<u8>>) -> T,
) -> bool {
    let mut at = from;
    while at < to {
        if !tx.wanted().await {
            return false;
        }
        // The read's worst case, reserved before it is read; the page then
        // holds what it really is.
        let worst = usize::try_from(to - at)
            .unwrap_or(usize::MAX)
            .saturating_mul(crate::store::bundle::MAX_ENTRY_BYTES + 8);
        let reading = match budget.reserve(worst).await {
            Ok(p) => p,
            Err(s) => {
                tx.fail(s);
                return false;
            }
        };
        let l = log.clone();
        let read = blocking(move || {
            let r = read_view(&l)?;
            r.checked_entries(at, to).map_err(|e| store_status(&e))
        })
        .await;
        let entries = match read {
            Ok(e) => e,
            Err(s) => {
                tx.fail(s);
                return false;
            }
        };
        let Some((start, entries, bytes)) = split_pages(at, entries).into_iter().next() else {
            return true;
        };
        drop(reading);
        let permit = match budget.reserve(bytes).await {
            Ok(p) => p,
            Err(s) => {
                tx.fail(s);
                return false;
            }
        };
        at = start + entries.len() as u64;
        if !tx.send(page(start, entries), permit).await {
            return false;
        }
    }
    true
}

/// Inclusion proofs of `indexes` in the tree of `size`, from one read view.
async fn inclusion_proofs<S: Storage>(
    log: &Log<S>,
    indexes: Vec<u64>,
    size: u64,
) -> Result<Vec<Vec<Vec<u8>>>, Status> {
    let indexes_len = indexes.len();
    let l = log.clone();
    let latest: Arc<Latest> = log.latest();
    let work = move || {
        let r = read_view(&l)?;
        // Impossible requests (index ≥ size) are OUT_OF_RANGE from the
        // proof's own plan, before the root is looked up.
        for &i in &indexes {
            inclusion_plan(i, size).map_err(|e| request_status(&e))?;
        }
        let root = signed_root(&r, &latest, size).map_err(proof_status)?;
        indexes
            .iter()
            .map(|&i| {
                checked_inclusion(&r, i, size, &root)
                    .map(|p: Vec<Hash>| hashes_to_wire(&p))
                    .map_err(proof_status)
            })
            .collect()
    };
    // One proof is a few cached page reads: inline. Many go to a worker.
    if indexes_len <= 4 {
        inline(work)
    } else {
        blocking(work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_map_to_statuses_naming_the_problem() {
        let cases = [
            (
                WriteError::Invalid("entry 0 is 70000 bytes; the entry size limit is 65535".into()),
                tonic::Code::InvalidArgument,
            ),
            (
                WriteError::QueueFull {
                    origin: "o".into(),
                    depth: 2,
                },
                tonic::Code::ResourceExhausted,
            ),
            (WriteError::ShuttingDown, tonic::Code::Unavailable),
            (
                WriteError::ClockBackwards {
                    now_ms: 1,
                    last_ms: 2,
                },
                tonic::Code::FailedPrecondition,
            ),
            (WriteError::Store("engine".into()), tonic::Code::Internal),
            (
                WriteError::StorageFull("No space left on device (os error 28)".into()),
                tonic::Code::ResourceExhausted,
            ),
            (
                WriteError::Stopped {
                    origin: "o".into(),
                    size: 7,
                    cause: "disk full".into(),
                },
                tonic::Code::Unavailable,
            ),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let s = write_status(e);
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), text);
        }
    }
}
