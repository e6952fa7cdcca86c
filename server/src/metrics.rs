//! Prometheus metrics: a recorder, a minimal HTTP endpoint serving
//! `GET /metrics`, and a tower layer that counts and times every RPC by
//! method and gRPC status code.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `quire_entries_integrated_total` | counter | log |
//! | `quire_queue_depth` | gauge | log |
//! | `quire_oldest_unintegrated_age_seconds` | gauge | log |
//! | `quire_batch_entries` | histogram | log |
//! | `quire_integration_seconds` | histogram | log |
//! | `quire_tree_size` | gauge | log |
//! | `quire_writes_stopped` | gauge (1 after a storage failure stopped the log's writes) | log |
//! | `quire_rpc_requests_total` | counter | method, code |
//! | `quire_rpc_seconds` | histogram | method, code |
//! | `quire_memory_budget_bytes` | gauge: the budget of bytes in flight | |
//! | `quire_memory_budget_used_bytes` | gauge: bytes of it reserved now (request bodies, entry pages) | |

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Installs the process-wide Prometheus recorder. `None` when a recorder is
/// already installed.
pub fn install() -> Option<PrometheusHandle> {
    let buckets = [
        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        2.5, 5.0, 10.0,
    ];
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &buckets,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("quire_batch_entries".into()),
                &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0],
            )
        })
        .ok()?;
    builder.install_recorder().ok()
}

/// The budget of bytes in flight whose use `/metrics` reports, set by the
/// server that serves it (one per process, like the recorder).
static BUDGET: std::sync::Mutex<Option<quire_host::budget::ByteBudget>> =
    std::sync::Mutex::new(None);

/// Reports `budget` as `quire_memory_budget_bytes` and
/// `quire_memory_budget_used_bytes`, read when `/metrics` is rendered.
pub fn report_budget(budget: &quire_host::budget::ByteBudget) {
    *BUDGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(budget.clone());
}

/// The metrics text, with the gauges read at render time brought up to date.
fn render(handle: &PrometheusHandle) -> String {
    let budget = BUDGET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(b) = budget {
        metrics::gauge!("quire_memory_budget_bytes").set(value_usize(b.capacity()));
        metrics::gauge!("quire_memory_budget_used_bytes").set(value_usize(b.in_use()));
    }
    handle.render()
}

/// Largest HTTP request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` until `shutdown` completes, with at
/// most [`quire_host::net::NetLimits::default`]'s connections at once.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) {
    let mut listener = quire_host::net::BoundedListener::new(
        listener,
        quire_host::net::NetLimits::default(),
        "metrics",
    );
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => return,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_REQUEST_HEAD];
            let mut len = 0;
            let mut complete = false;
            // Read until the end of the head, the limit or the time limit.
            let read = async {
                while len < buf.len() {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        complete = true;
                        break;
                    }
                }
            };
            let timed_out = tokio::time::timeout(HEAD_TIMEOUT, read).await.is_err();
            let head = String::from_utf8_lossy(&buf[..len]);
            let (status, body) = if timed_out {
                (
                    "408 Request Timeout",
                    format!("no request head within {} s\n", HEAD_TIMEOUT.as_secs()),
                )
            } else if !complete && len == MAX_REQUEST_HEAD {
                (
                    "431 Request Header Fields Too Large",
                    format!("the request head limit is {MAX_REQUEST_HEAD} bytes\n"),
                )
            } else if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
                ("200 OK", render(&handle))
            } else {
                (
                    "404 Not Found",
                    "only GET /metrics is served here\n".to_string(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// A tower layer recording `quire_rpc_requests_total` and `quire_rpc_seconds`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

/// The service of [`RpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

/// gRPC code names by number.
fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "Cancelled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Other",
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await;
            // Errors come back as trailers-only responses whose headers carry
            // grpc-status; a success carries it in trailers (so: OK).
            let code = match &resp {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map_or("OK", code_name),
                Err(_) => "Transport",
            };
            let labels = [("method", method), ("code", code.to_owned())];
            metrics::counter!("quire_rpc_requests_total", &labels).increment(1);
            metrics::histogram!("quire_rpc_seconds", &labels).record(start.elapsed().as_secs_f64());
            resp
        })
    }
}

/// A count as a metric value. Metric values are `f64`; counts above 2^53
/// lose precision, which no gauge here reaches.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn value(n: u64) -> f64 {
    n as f64
}

/// A `usize` count as a metric value.
pub(crate) fn value_usize(n: usize) -> f64 {
    value(u64::try_from(n).unwrap_or(u64::MAX))
}
