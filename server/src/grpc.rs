//! The `quire.v1.Log` gRPC face of the [`LogApi`]: requests decoded into
//! API calls, answers encoded, [`ApiError`]s mapped to statuses by their
//! [`Kind`]. No rule of the log lives here.

use std::pin::Pin;

use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::log_server::Log as LogRpc;
use quire_proto::v1::{
    AddEntriesRequest, AddEntriesResponse, AddEntryRequest, AddEntryResponse, AddedEntry,
    EntriesPage, GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest,
    GetConsistencyProofResponse, GetEntriesRequest, GetEntryWithProofRequest,
    GetEntryWithProofResponse, GetInclusionProofRequest, GetInclusionProofResponse,
    ListLogsRequest, ListLogsResponse, LogInfo, TailEntriesRequest, TailPage,
};
use quire_proto::{hash_from_wire, hashes_to_wire};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Code, Request, Response, Status};

use crate::api::{ApiError, Caller, Credential, Identity, Kind, LeafRef, LogApi};
use crate::store::Storage;

/// The gRPC service over a [`LogApi`].
pub struct GrpcLog<S: Storage> {
    api: LogApi<S>,
}

impl<S: Storage> GrpcLog<S> {
    /// The face of `api`.
    pub fn new(api: LogApi<S>) -> Self {
        GrpcLog { api }
    }
}

/// The status of `e`: its kind's code and its message.
pub fn status(e: &ApiError) -> Status {
    e.report();
    let code = match e.kind() {
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::NotFound => Code::NotFound,
        Kind::AlreadyExists => Code::AlreadyExists,
        Kind::OutOfRange => Code::OutOfRange,
        Kind::FailedPrecondition => Code::FailedPrecondition,
        Kind::ResourceExhausted => Code::ResourceExhausted,
        Kind::Unavailable => Code::Unavailable,
        Kind::Unauthenticated => Code::Unauthenticated,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::DataLoss => Code::DataLoss,
        Kind::Internal => Code::Internal,
    };
    let mut status = Status::new(code, e.to_string());
    if let ApiError::Quota {
        retry_after: Some(wait),
        ..
    } = e
    {
        // The retry hint, in a header clients can read without parsing
        // the message.
        let ms = wait.as_millis().max(1).to_string();
        if let Ok(v) = ms.parse() {
            status.metadata_mut().insert("retry-after-ms", v);
        }
    }
    status
}

#[allow(clippy::needless_pass_by_value)]
fn to_status(e: ApiError) -> Status {
    status(&e)
}

/// Who is asking, as the connection proved it, with the credential the
/// request presents.
pub(crate) fn caller<T>(req: &Request<T>) -> Caller {
    Caller {
        peer: req.remote_addr(),
        // The connection's chain itself (an `Arc`), never copied per call.
        identity: match req.peer_certs() {
            Some(chain) if !chain.is_empty() => Identity::Certificate(chain),
            _ => Identity::Anonymous,
        },
        credential: credential(req.metadata()),
    }
}

/// The `authorization` header of a request, read as a bearer token.
pub fn credential(metadata: &tonic::metadata::MetadataMap) -> Credential {
    let Some(value) = metadata.get("authorization") else {
        return Credential::None;
    };
    let Ok(text) = value.to_str() else {
        return Credential::Malformed("the authorization header is not ASCII text");
    };
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Credential::Malformed("the bearer token is empty")
            } else {
                Credential::Bearer(token.into())
            }
        }
        _ => Credential::Malformed(
            "the authorization header is not `Bearer <token>` (the only scheme accepted)",
        ),
    }
}

/// A boxed server stream of `T`.
/// A server stream of the gRPC faces.
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl<S: Storage> LogRpc for GrpcLog<S> {
    async fn add_entry(
        &self,
        req: Request<AddEntryRequest>,
    ) -> Result<Response<AddEntryResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let w = self
            .api
            .add(
                &who,
                &req.log,
                vec![req.entry],
                req.with_proof,
                req.witnessed,
            )
            .await
            .map_err(to_status)?;
        let Some(a) = w.entries.first().copied() else {
            return Err(Status::internal("no result for the entry"));
        };
        Ok(Response::new(AddEntryResponse {
            log: w.origin,
            index: a.index,
            duplicate: a.duplicate,
            checkpoint: w.checkpoint.unwrap_or_default(),
            inclusion_proof: w
                .proofs
                .first()
                .map(|p| hashes_to_wire(p))
                .unwrap_or_default(),
        }))
    }

    async fn add_entries(
        &self,
        req: Request<AddEntriesRequest>,
    ) -> Result<Response<AddEntriesResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let w = self
            .api
            .add(&who, &req.log, req.entries, req.with_proof, req.witnessed)
            .await
            .map_err(to_status)?;
        let mut proofs = w.proofs.iter();
        Ok(Response::new(AddEntriesResponse {
            log: w.origin.clone(),
            entries: w
                .entries
                .iter()
                .map(|a| AddedEntry {
                    index: a.index,
                    duplicate: a.duplicate,
                    inclusion_proof: proofs.next().map(|p| hashes_to_wire(p)).unwrap_or_default(),
                })
                .collect(),
            checkpoint: w.checkpoint.unwrap_or_default(),
        }))
    }

    async fn get_checkpoint(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let checkpoint = self
            .api
            .checkpoint(&who, &req.log, req.witnessed)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetCheckpointResponse { checkpoint }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let leaf = match req.leaf {
            None => {
                return Err(Status::invalid_argument(
                    "give the leaf by index or by leaf_hash",
                ))
            }
            Some(Leaf::Index(i)) => LeafRef::Index(i),
            Some(Leaf::LeafHash(h)) => LeafRef::Hash(
                hash_from_wire(&h)
                    .map_err(|e| Status::invalid_argument(format!("leaf_hash: {e}")))?,
            ),
        };
        let p = self
            .api
            .inclusion_proof(&who, &req.log, leaf, req.tree_size)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetInclusionProofResponse {
            index: p.index,
            tree_size: p.tree_size,
            proof: hashes_to_wire(&p.proof),
            checkpoint: p.checkpoint.unwrap_or_default(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let c = self
            .api
            .consistency_proof(&who, &req.log, req.old_size, req.new_size, req.with_seed)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetConsistencyProofResponse {
            old_size: c.old_size,
            new_size: c.new_size,
            proof: hashes_to_wire(&c.proof),
            seed: c.seed.map(|h| h.as_bytes().to_vec()).unwrap_or_default(),
        }))
    }

    type GetEntriesStream = BoxStream<EntriesPage>;

    async fn get_entries(
        &self,
        req: Request<GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let pages = self
            .api
            .entries(&who, &req.log, req.start, req.end)
            .map_err(to_status)?;
        // `map` polls the pages only when the transport asks: the stream's
        // demand-driven bound holds.
        Ok(Response::new(Box::pin(pages.map(|p| {
            p.map(|p| EntriesPage {
                start: p.start,
                entries: p.entries,
            })
            .map_err(to_status)
        }))))
    }

    async fn get_entry_with_proof(
        &self,
        req: Request<GetEntryWithProofRequest>,
    ) -> Result<Response<GetEntryWithProofResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let e = self
            .api
            .entry_with_proof(&who, &req.log, req.index)
            .await
            .map_err(to_status)?;
        Ok(Response::new(GetEntryWithProofResponse {
            index: e.index,
            entry: e.entry,
            inclusion_proof: hashes_to_wire(&e.proof),
            checkpoint: e.checkpoint,
        }))
    }

    type WatchCheckpointsStream = BoxStream<GetCheckpointResponse>;

    async fn watch_checkpoints(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<Self::WatchCheckpointsStream>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let notes = self
            .api
            .watch_checkpoints(&who, &req.log, req.witnessed)
            .map_err(to_status)?;
        Ok(Response::new(Box::pin(notes.map(|checkpoint| {
            Ok(GetCheckpointResponse { checkpoint })
        }))))
    }

    type TailEntriesStream = BoxStream<TailPage>;

    async fn tail_entries(
        &self,
        req: Request<TailEntriesRequest>,
    ) -> Result<Response<Self::TailEntriesStream>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let pages = self
            .api
            .tail(&who, &req.log, req.start)
            .map_err(to_status)?;
        Ok(Response::new(Box::pin(pages.map(|p| {
            p.map(|p| TailPage {
                start: p.start,
                entries: p.entries,
                checkpoint: p.checkpoint,
            })
            .map_err(to_status)
        }))))
    }

    async fn list_logs(
        &self,
        req: Request<ListLogsRequest>,
    ) -> Result<Response<ListLogsResponse>, Status> {
        let who = caller(&req);
        Ok(Response::new(ListLogsResponse {
            logs: self
                .api
                .list(&who)
                .map_err(to_status)?
                .into_iter()
                .map(log_info)
                .collect(),
        }))
    }
}

/// A log's summary on the wire.
pub(crate) fn log_info(l: crate::api::LogSummary) -> LogInfo {
    LogInfo {
        origin: l.origin,
        verifier_keys: l
            .verifier_keys
            .iter()
            .map(quire_core::VerifierKey::to_vkey)
            .collect(),
        state: l.state.as_str().into(),
        size: l.size,
        signed_at_ms: l.signed_at_ms,
        frozen_at_ms: l.frozen_at_ms.unwrap_or(0),
        entries_dropped_at_ms: l.entries_dropped_at_ms.unwrap_or(0),
        family: l.shard.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
        period_start_ms: l.shard.as_ref().map_or(0, |s| s.1),
        period_end_ms: l.shard.as_ref().map_or(0, |s| s.2),
    }
}
