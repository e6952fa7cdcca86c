//! The `quire.v1.Admin` gRPC face of [`Admin`]: requests decoded into
//! domain calls, answers encoded, errors mapped to statuses as the log
//! service maps them. No rule lives here.

use quire_proto::v1::admin_server::Admin as AdminRpc;
use quire_proto::v1::{
    CreateLogRequest, CreateLogResponse, FreezeLogRequest, FreezeLogResponse, GetAccessRequest,
    GetAccessResponse, SetAccessRequest, SetAccessResponse,
};
use tonic::{Request, Response, Status};

use super::Admin;
use crate::api::ApiError;
use crate::grpc::{caller, log_info, status};
use crate::store::Storage;

/// Most keys a `CreateLog` request may import.
const MAX_IMPORTED_KEYS: usize = 2;

/// The gRPC service over an [`Admin`].
pub struct GrpcAdmin<S: Storage> {
    admin: Admin<S>,
}

impl<S: Storage> GrpcAdmin<S> {
    /// The face of `admin`.
    pub fn new(admin: Admin<S>) -> Self {
        GrpcAdmin { admin }
    }
}

#[tonic::async_trait]
impl<S: Storage> AdminRpc for GrpcAdmin<S> {
    async fn create_log(
        &self,
        req: Request<CreateLogRequest>,
    ) -> Result<Response<CreateLogResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        if req.private_keys.len() > MAX_IMPORTED_KEYS {
            return Err(status(&ApiError::Invalid(format!(
                "{} private keys; import at most {MAX_IMPORTED_KEYS} (one ECDSA P-256, one Ed25519)",
                req.private_keys.len()
            ))));
        }
        let created = self
            .admin
            .create(&who, &req.origin, &req.like, req.private_keys)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(CreateLogResponse {
            log: Some(log_info(created.log)),
            keys_generated: created.keys_generated,
        }))
    }

    async fn freeze_log(
        &self,
        req: Request<FreezeLogRequest>,
    ) -> Result<Response<FreezeLogResponse>, Status> {
        let who = caller(&req);
        let (log, changed) = self
            .admin
            .freeze(&who, &req.get_ref().log)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(FreezeLogResponse {
            log: Some(log_info(log)),
            changed,
        }))
    }

    async fn get_access(
        &self,
        req: Request<GetAccessRequest>,
    ) -> Result<Response<GetAccessResponse>, Status> {
        let who = caller(&req);
        let admin = self.admin.clone();
        let policy = tokio::task::spawn_blocking(move || admin.access(&who))
            .await
            .map_err(|e| Status::internal(format!("worker failed: {e}")))?
            .map_err(|e| status(&e))?;
        Ok(Response::new(GetAccessResponse {
            policy: policy.text,
            sha256: policy.sha256.to_vec(),
        }))
    }

    async fn set_access(
        &self,
        req: Request<SetAccessRequest>,
    ) -> Result<Response<SetAccessResponse>, Status> {
        let who = caller(&req);
        let req = req.into_inner();
        let replaces = match req.replaces_sha256.len() {
            0 => None,
            _ => Some(
                <[u8; 32]>::try_from(req.replaces_sha256.as_slice()).map_err(|_| {
                    status(&ApiError::Invalid(format!(
                        "replaces_sha256 is {} bytes; a SHA-256 is 32",
                        req.replaces_sha256.len()
                    )))
                })?,
            ),
        };
        let sha = self
            .admin
            .set_access(&who, req.policy, replaces)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(SetAccessResponse {
            sha256: sha.to_vec(),
        }))
    }
}
