//! How the log reaches a witness: the C2SP `tlog-witness` add-checkpoint
//! call over Quire's gRPC service or over HTTP exactly as the specification
//! gives it (`POST <url>/add-checkpoint`), which is what the public witness
//! ecosystem speaks. Collection ([`super`]) and the start-up
//! check ([`super::check`]) use the [`WitnessTransport`] trait and
//! never see the wire.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use quire_core::Hash;
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::{AddCheckpointRequest, GetLatestRequest};
use tonic::transport::Channel;

/// A boxed future of a transport call.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send + 'a>>;

/// A witness's answer to add-checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Its cosignature lines (to be verified by the caller).
    Cosigned(Vec<String>),
    /// 409: the old size is not the witness's; its size.
    Conflict(u64),
}

/// Why a call gave no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TransportError {
    /// The witness answered with a refusal (a status other than 200/409).
    #[error("refused ({code}): {message}")]
    Refused {
        /// The status: a gRPC code or an HTTP status.
        code: String,
        /// What it said.
        message: String,
    },
    /// No answer: connection, timeout, or an answer that is not the
    /// protocol's.
    #[error("{0}")]
    Failed(String),
}

/// One witness, reached over some wire.
pub trait WitnessTransport: Send + Sync + 'static {
    /// add-checkpoint: `note` (the log's signed checkpoint) with the
    /// consistency `proof` from `old`, the size the caller believes the
    /// witness holds.
    fn add_checkpoint<'a>(
        &'a self,
        old: u64,
        proof: &'a [Hash],
        note: &'a [u8],
    ) -> Call<'a, Answer>;

    /// The witness's latest cosigned checkpoint of `origin`: `Some(empty)`
    /// when it holds none, `None` when the protocol cannot say (C2SP HTTP
    /// has no such call).
    fn latest<'a>(&'a self, origin: &'a str) -> Call<'a, Option<Vec<u8>>>;
}

/// Quire's `quire.v1.Witness` gRPC service.
pub struct GrpcWitness {
    client: WitnessClient<Channel>,
    timeout: Duration,
}

impl GrpcWitness {
    /// A lazily connected client of `url`, each call bounded by `timeout`.
    ///
    /// # Errors
    /// An address that is not a valid URL.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let ep = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("witness address {url:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(GrpcWitness {
            client: WitnessClient::new(ep.connect_lazy()),
            timeout,
        })
    }
}

impl WitnessTransport for GrpcWitness {
    fn add_checkpoint<'a>(
        &'a self,
        old: u64,
        proof: &'a [Hash],
        note: &'a [u8],
    ) -> Call<'a, Answer> {
        Box::pin(async move {
            let mut req = tonic::Request::new(AddCheckpointRequest {
                old_size: old,
                proof: quire_proto::hashes_to_wire(proof),
                checkpoint: note.to_vec(),
            });
            req.set_timeout(self.timeout);
            match self.client.clone().add_checkpoint(req).await {
                Ok(r) => Ok(Answer::Cosigned(r.into_inner().cosignatures)),
                Err(s) if s.code() == tonic::Code::FailedPrecondition => s
                    .metadata()
                    .get("quire-witness-size")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Answer::Conflict)
                    .ok_or_else(|| {
                        TransportError::Failed(format!("conflict without a size: {}", s.message()))
                    }),
                Err(s)
                    if s.code() == tonic::Code::Unavailable
                        || s.code() == tonic::Code::DeadlineExceeded
                        || s.code() == tonic::Code::Unknown =>
                {
                    Err(TransportError::Failed(format!(
                        "{:?}: {}",
                        s.code(),
                        s.message()
                    )))
                }
                Err(s) => Err(TransportError::Refused {
                    code: format!("{:?}", s.code()),
                    message: s.message().to_owned(),
                }),
            }
        })
    }

    fn latest<'a>(&'a self, origin: &'a str) -> Call<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut req = tonic::Request::new(GetLatestRequest {
                origin: origin.to_owned(),
            });
            req.set_timeout(self.timeout);
            self.client
                .clone()
                .get_latest(req)
                .await
                .map(|r| Some(r.into_inner().checkpoint))
                .map_err(|s| TransportError::Failed(format!("{:?}: {}", s.code(), s.message())))
        })
    }
}

/// C2SP `tlog-witness` over HTTP/1.1.
pub struct HttpWitness {
    /// `host:port` to connect to.
    authority: String,
    /// The path of add-checkpoint under the witness's URL.
    path: String,
    timeout: Duration,
}

/// Largest answer read from an HTTP witness (cosignature lines or a size).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

impl HttpWitness {
    /// A client of the witness at `url` (`http://host:port[/prefix]`).
    ///
    /// # Errors
    /// A URL that is not `http://` with a host and port.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("witness address {url:?} must start with http://"))?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || !authority.contains(':') {
            return Err(format!("witness address {url:?} needs a host and a port"));
        }
        let prefix = prefix.trim_end_matches('/');
        Ok(HttpWitness {
            authority: authority.to_owned(),
            path: if prefix.is_empty() {
                "/add-checkpoint".to_owned()
            } else {
                format!("/{prefix}/add-checkpoint")
            },
            timeout,
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.authority))?;
        let _ = stream.set_nodelay(true);
        let req = http::Request::post(&self.path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        crate::http1::request(stream, req, MAX_ANSWER_BYTES).await
    }
}

impl WitnessTransport for HttpWitness {
    fn add_checkpoint<'a>(
        &'a self,
        old: u64,
        proof: &'a [Hash],
        note: &'a [u8],
    ) -> Call<'a, Answer> {
        Box::pin(async move {
            let mut body = format!("old {old}\n").into_bytes();
            for h in proof {
                body.extend_from_slice(h.to_base64().as_bytes());
                body.push(b'\n');
            }
            body.push(b'\n');
            body.extend_from_slice(note);
            let (status, answer) = tokio::time::timeout(self.timeout, self.post(body))
                .await
                .map_err(|_| {
                    TransportError::Failed(format!(
                        "no answer within {} ms",
                        self.timeout.as_millis()
                    ))
                })?
                .map_err(TransportError::Failed)?;
            let text = String::from_utf8_lossy(&answer);
            match status {
                200 => Ok(Answer::Cosigned(
                    text.lines()
                        .filter(|l| !l.is_empty())
                        .map(|l| format!("{l}\n"))
                        .collect(),
                )),
                409 => text
                    .trim_end_matches('\n')
                    .parse::<u64>()
                    .map(Answer::Conflict)
                    .map_err(|_| TransportError::Failed(format!("409 without a size: {text:?}"))),
                s => Err(TransportError::Refused {
                    code: s.to_string(),
                    message: text.trim_end().chars().take(512).collect(),
                }),
            }
        })
    }

    fn latest<'a>(&'a self, _origin: &'a str) -> Call<'a, Option<Vec<u8>>> {
        Box::pin(async { Ok(None) })
    }
}
