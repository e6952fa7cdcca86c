//! The `quire.v1.Witness` gRPC service.

use quire_proto::v1::witness_server::Witness as WitnessApi;
use quire_proto::v1::{
    AddCheckpointRequest, AddCheckpointResponse, Evidence, GetLatestRequest, GetLatestResponse,
    GossipRequest, GossipResponse, GossipResult, GossipVerdict, ListEvidenceRequest,
    ListEvidenceResponse,
};
use tonic::{Request, Response, Status};

use crate::check::AddError;
use crate::witness::{Verdict, Witness};

/// Most checkpoints in one gossip request.
pub const MAX_GOSSIP_CHECKPOINTS: usize = 1024;
/// Most evidence files in one gossip request.
pub const MAX_GOSSIP_EVIDENCE: usize = 64;
/// Largest request message, bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// The trailer that carries the witness's size in a conflict.
pub const SIZE_TRAILER: &str = "quire-witness-size";

/// The gRPC face of a [`Witness`].
#[derive(Clone)]
pub struct WitnessService {
    witness: Witness,
}

impl WitnessService {
    /// Serves `witness`.
    pub fn new(witness: Witness) -> Self {
        WitnessService { witness }
    }
}

/// The gRPC status of an add-checkpoint rejection (the HTTP status of each
/// is in the proto file).
pub fn add_status(e: &AddError) -> Status {
    let msg = e.to_string();
    match e {
        AddError::Malformed(_) | AddError::OldAboveNew { .. } => Status::invalid_argument(msg),
        AddError::UnknownLog(_) => Status::not_found(msg),
        AddError::BadSignature(_) => Status::permission_denied(msg),
        AddError::Conflict { size, .. } => {
            let mut s = Status::failed_precondition(msg);
            s.metadata_mut()
                .insert(SIZE_TRAILER, tonic::metadata::MetadataValue::from(*size));
            s
        }
        AddError::BadProof { .. } => Status::out_of_range(msg),
        AddError::Storage(_) => Status::internal(msg),
        AddError::ShuttingDown => Status::unavailable(msg),
    }
}

fn verdict(v: Verdict) -> i32 {
    match v {
        Verdict::Consistent => GossipVerdict::Consistent,
        Verdict::Conflict => GossipVerdict::Conflict,
        Verdict::Unchecked => GossipVerdict::Unchecked,
        Verdict::Rejected => GossipVerdict::Rejected,
    }
    .into()
}

#[tonic::async_trait]
impl WitnessApi for WitnessService {
    async fn add_checkpoint(
        &self,
        req: Request<AddCheckpointRequest>,
    ) -> Result<Response<AddCheckpointResponse>, Status> {
        let source = req
            .remote_addr()
            .map_or_else(|| "grpc".to_owned(), |a| format!("grpc:{a}"));
        let req = req.into_inner();
        let proof = quire_proto::hashes_from_wire(&req.proof).map_err(|e| {
            Status::invalid_argument(format!("malformed request: consistency proof: {e}"))
        })?;
        let sig = self
            .witness
            .add_checkpoint(req.old_size, proof, &req.checkpoint, &source)
            .await
            .map_err(|e| add_status(&e))?;
        Ok(Response::new(AddCheckpointResponse {
            cosignatures: vec![sig.to_line()],
        }))
    }

    async fn get_latest(
        &self,
        req: Request<GetLatestRequest>,
    ) -> Result<Response<GetLatestResponse>, Status> {
        let origin = req.into_inner().origin;
        if self.witness.keys_of(&origin).is_none() {
            return Err(Status::not_found(format!(
                "unknown log {:?}: this witness is not configured for it",
                origin.chars().take(256).collect::<String>()
            )));
        }
        Ok(Response::new(GetLatestResponse {
            checkpoint: self.witness.latest_note(&origin).unwrap_or_default(),
        }))
    }

    async fn list_evidence(
        &self,
        req: Request<ListEvidenceRequest>,
    ) -> Result<Response<ListEvidenceResponse>, Status> {
        let origin = req.into_inner().origin;
        let filter = (!origin.is_empty()).then_some(origin.as_str());
        let evidence = self
            .witness
            .state()
            .evidence(filter)
            .into_iter()
            .map(|r| Evidence {
                origin: r.origin,
                json: r.json,
                found_at: r.found_at,
                source: r.source,
            })
            .collect();
        Ok(Response::new(ListEvidenceResponse { evidence }))
    }

    async fn gossip(
        &self,
        req: Request<GossipRequest>,
    ) -> Result<Response<GossipResponse>, Status> {
        let req = req.into_inner();
        if req.checkpoints.len() > MAX_GOSSIP_CHECKPOINTS {
            return Err(Status::invalid_argument(format!(
                "{} checkpoints; the limit is {MAX_GOSSIP_CHECKPOINTS} per request",
                req.checkpoints.len()
            )));
        }
        if req.evidence.len() > MAX_GOSSIP_EVIDENCE {
            return Err(Status::invalid_argument(format!(
                "{} evidence files; the limit is {MAX_GOSSIP_EVIDENCE} per request",
                req.evidence.len()
            )));
        }
        let source: String = format!(
            "gossip:{}",
            req.source.chars().take(256).collect::<String>()
        );
        let mut results = Vec::with_capacity(req.checkpoints.len());
        for note in &req.checkpoints {
            let (v, detail) = self.witness.observe(note, &source).await;
            metrics::counter!("quire_witness_gossip_total", "verdict" => format!("{v:?}"))
                .increment(1);
            results.push(GossipResult {
                verdict: verdict(v),
                detail,
            });
        }
        let mut evidence_results = Vec::with_capacity(req.evidence.len());
        for json in &req.evidence {
            let (v, detail) = self.witness.accept_evidence(json, &source).await;
            evidence_results.push(GossipResult {
                verdict: verdict(v),
                detail,
            });
        }
        Ok(Response::new(GossipResponse {
            results,
            evidence_results,
        }))
    }
}
