//! A typed client of the `quire.v1.Admin` service: create and freeze
//! logs, read and replace the server's access policy. Admin calls change
//! the server, so none is retried: a call whose answer was lost is asked
//! again by its caller, who can see what happened (`ListLogs`,
//! `GetAccess`).

use std::time::Duration;

use quire_proto::v1::admin_client::AdminClient;
use quire_proto::v1::{
    CreateLogRequest, FreezeLogRequest, GetAccessRequest, LogInfo, SetAccessRequest,
};
use tonic::transport::Channel;

use super::{call_once, Bearer, Endpoint, RpcError};

/// A connection to one server's admin service.
pub struct AdminRpc {
    client: AdminClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>,
    timeout: Duration,
}

impl AdminRpc {
    /// Connects (TLS for `https://`).
    ///
    /// # Errors
    /// As [`Endpoint::channel`].
    pub async fn connect(ep: &Endpoint) -> Result<Self, RpcError> {
        let (channel, bearer) = ep.channel().await?;
        Ok(AdminRpc {
            client: AdminClient::with_interceptor(channel, bearer),
            timeout: ep.timeout,
        })
    }

    async fn call<T>(
        &self,
        method: &'static str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, RpcError> {
        call_once(self.timeout, method, call).await
    }

    /// Creates the log `origin`, with the settings of the log `like`
    /// (empty: the defaults) and the private key texts `keys` (empty:
    /// generated). Returns it as listed, and whether its keys were
    /// generated.
    ///
    /// # Errors
    /// [`RpcError`]: the server's refusal (`ALREADY_EXISTS`,
    /// `PERMISSION_DENIED`, …) or no answer.
    pub async fn create_log(
        &mut self,
        origin: &str,
        like: &str,
        keys: Vec<String>,
    ) -> Result<(LogInfo, bool), RpcError> {
        let mut c = self.client.clone();
        let r = self
            .call(
                "CreateLog",
                c.create_log(CreateLogRequest {
                    origin: origin.to_owned(),
                    like: like.to_owned(),
                    private_keys: keys,
                }),
            )
            .await?;
        let log = r
            .log
            .ok_or_else(|| RpcError::Verify("CreateLog answered without the log".into()))?;
        Ok((log, r.keys_generated))
    }

    /// Freezes the log `origin`; returns it as listed, and whether it
    /// changed (false: it was frozen already).
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn freeze_log(&mut self, origin: &str) -> Result<(LogInfo, bool), RpcError> {
        let mut c = self.client.clone();
        let r = self
            .call(
                "FreezeLog",
                c.freeze_log(FreezeLogRequest {
                    log: origin.to_owned(),
                }),
            )
            .await?;
        let log = r
            .log
            .ok_or_else(|| RpcError::Verify("FreezeLog answered without the log".into()))?;
        Ok((log, r.changed))
    }

    /// The server's access policy file and its SHA-256.
    ///
    /// # Errors
    /// [`RpcError`].
    pub async fn access(&mut self) -> Result<(Vec<u8>, [u8; 32]), RpcError> {
        let mut c = self.client.clone();
        let r = self
            .call("GetAccess", c.get_access(GetAccessRequest {}))
            .await?;
        let sha = <[u8; 32]>::try_from(r.sha256.as_slice()).map_err(|_| {
            RpcError::Verify("GetAccess answered a SHA-256 that is not 32 bytes".into())
        })?;
        Ok((r.policy, sha))
    }

    /// Replaces the server's access policy file with `policy` when its
    /// SHA-256 is still `replaces` (`None`: whatever it is); returns the
    /// new SHA-256.
    ///
    /// # Errors
    /// [`RpcError`]: `INVALID_ARGUMENT` for a policy that is not valid,
    /// `FAILED_PRECONDITION` when the file changed since `replaces`.
    pub async fn set_access(
        &mut self,
        policy: Vec<u8>,
        replaces: Option<[u8; 32]>,
    ) -> Result<[u8; 32], RpcError> {
        let mut c = self.client.clone();
        let r = self
            .call(
                "SetAccess",
                c.set_access(SetAccessRequest {
                    policy,
                    replaces_sha256: replaces.map(|h| h.to_vec()).unwrap_or_default(),
                }),
            )
            .await?;
        <[u8; 32]>::try_from(r.sha256.as_slice()).map_err(|_| {
            RpcError::Verify("SetAccess answered a SHA-256 that is not 32 bytes".into())
        })
    }
}
