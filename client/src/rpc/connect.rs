//! Reaching a server: where and how ([`Endpoint`]), the bearer token sent
//! with every call ([`Bearer`]), and the connection itself (TLS for
//! `https://`, client certificates, deadlines and keep-alives).

use std::path::PathBuf;
use std::time::Duration;

use quire_proto::v1::log_client::LogClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::{LogRpc, RpcError};

/// Where and how to reach a server.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `http://HOST:PORT` or `https://HOST:PORT`.
    pub addr: String,
    /// CA certificate (PEM) for `https://`.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Deadline of each call.
    pub timeout: Duration,
    /// A bearer token sent with every call (`authorization: Bearer …`):
    /// a Quire API token or an OIDC/JWT token the server's policy trusts.
    pub token: Option<String>,
}

impl Endpoint {
    /// A plain (or, for `https://`, system-trusted TLS) endpoint with a
    /// 30-second deadline per call.
    pub fn new(addr: &str) -> Self {
        Endpoint {
            addr: addr.to_owned(),
            ca: None,
            client_cert: None,
            timeout: Duration::from_secs(30),
            token: None,
        }
    }
}

/// Adds the endpoint's bearer token to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// Sends `token` (none: nothing) with every call.
    ///
    /// # Errors
    /// [`RpcError::Input`] for a token that is not printable ASCII.
    pub fn new(token: Option<&str>) -> Result<Self, RpcError> {
        token
            .map(|t| {
                format!("Bearer {}", t.trim())
                    .parse()
                    .map_err(|_| RpcError::Input("the token is not printable ASCII text".into()))
            })
            .transpose()
            .map(Bearer)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, RpcError> {
    quire_host::read_bounded(path, 1 << 20).map_err(|e| RpcError::Input(format!("{what}: {e}")))
}

impl Endpoint {
    /// A connection to the server, with the bearer token to send.
    ///
    /// # Errors
    /// [`RpcError::Input`] for unusable settings (address, TLS files,
    /// token), [`RpcError::Connect`] when the server cannot be reached.
    pub async fn channel(&self) -> Result<(Channel, Bearer), RpcError> {
        let ep = self;
        let connect_err = |why: String| RpcError::Connect {
            addr: ep.addr.clone(),
            why,
        };
        let mut channel = Channel::from_shared(ep.addr.clone())
            .map_err(|e| RpcError::Input(format!("address {:?}: {e}", ep.addr)))?
            .timeout(ep.timeout)
            .connect_timeout(ep.timeout.min(Duration::from_secs(10)))
            // Pings keep a quiet follow stream above the server's idle
            // timeout, and find a dead server.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if ep.addr.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &ep.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca, "CA file")?));
            }
            if let Some((cert, key)) = &ep.client_cert {
                tls = tls.identity(Identity::from_pem(
                    read_pem(cert, "client certificate")?,
                    read_pem(key, "client key")?,
                ));
            }
            channel = channel
                .tls_config(tls)
                .map_err(|e| RpcError::Input(format!("TLS settings: {e}")))?;
        }
        let bearer = Bearer::new(ep.token.as_deref())?;
        let channel = channel
            .connect()
            .await
            .map_err(|e| connect_err(format!("{e}: {}", quire_host::error::causes(&e))))?;
        Ok((channel, bearer))
    }
}

impl LogRpc {
    /// Connects (TLS for `https://`).
    ///
    /// # Errors
    /// [`RpcError::Input`] for a bad address or unreadable PEM files,
    /// [`RpcError::Connect`] when the server cannot be reached.
    pub async fn connect(ep: &Endpoint) -> Result<Self, RpcError> {
        let (channel, bearer) = ep.channel().await?;
        Ok(LogRpc {
            client: LogClient::with_interceptor(channel, bearer)
                .max_decoding_message_size(super::MAX_MESSAGE)
                .max_encoding_message_size(super::MAX_MESSAGE),
            timeout: ep.timeout,
            witnessed: false,
        })
    }
}
