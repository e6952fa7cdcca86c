//! C2SP `tlog-witness` over HTTP: `POST /add-checkpoint`, byte for byte as
//! the specification gives it, so logs of the public witness ecosystem can
//! use this witness. `GET /metrics` serves Prometheus metrics beside it.
//!
//! Request body: `old <size>\n`, up to 63 base64 proof lines, an empty line,
//! then the signed checkpoint. Answers: 200 with cosignature lines; 400
//! malformed or old size above the checkpoint's; 403 no valid log signature;
//! 404 unknown origin; 409 (`text/x.tlog.size`, the witness's size and a
//! newline) when the old size is not the witness's or the same size has
//! another root; 413 over the body limit; 422 a proof that does not verify.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use quire_core::{Hash, MAX_PROOF_LEN};
use tokio::net::TcpListener;

use crate::check::AddError;
use crate::witness::Witness;

/// Largest request body: a note at its limit, 63 proof lines and the old
/// size line. Checked before the body is read in full.
pub const MAX_BODY_BYTES: usize = quire_core::note::MAX_NOTE_BYTES + 64 * 46 + 32;

#[derive(Clone)]
struct AppState {
    witness: Witness,
    metrics: Option<PrometheusHandle>,
}

/// A malformed body, in words.
fn malformed(why: &str) -> AddError {
    AddError::Malformed(why.to_owned())
}

/// Splits a C2SP add-checkpoint body into old size, proof and checkpoint.
///
/// # Errors
/// [`AddError::Malformed`] naming the line that is wrong.
pub fn parse_body(body: &[u8]) -> Result<(u64, Vec<Hash>, &[u8]), AddError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(AddError::Malformed(format!(
            "body is {} bytes; the limit is {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let mut rest = body;
    let mut line = || -> Result<&[u8], AddError> {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| malformed("a line does not end in a newline"))?;
        let l = &rest[..end];
        rest = &rest[end + 1..];
        Ok(l)
    };
    let first = line()?;
    let digits = first
        .strip_prefix(b"old ")
        .ok_or_else(|| malformed("the first line must be `old <size>`"))?;
    let old = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .filter(|d| *d == "0" || !d.starts_with('0'))
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| malformed("old size must be a decimal u64 without leading zeros"))?;
    let mut proof = Vec::new();
    loop {
        let l = line()?;
        if l.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LEN {
            return Err(AddError::Malformed(format!(
                "more than {MAX_PROOF_LEN} consistency proof lines"
            )));
        }
        let text = std::str::from_utf8(l).map_err(|_| malformed("proof line is not text"))?;
        let h = Hash::from_base64(text)
            .map_err(|e| AddError::Malformed(format!("proof line {}: {e}", proof.len() + 1)))?;
        proof.push(h);
    }
    Ok((old, proof, rest))
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The HTTP answer to an add-checkpoint rejection.
pub fn error_response(e: &AddError) -> Response {
    let status = match e {
        AddError::Malformed(_) | AddError::OldAboveNew { .. } => StatusCode::BAD_REQUEST,
        AddError::UnknownLog(_) => StatusCode::NOT_FOUND,
        AddError::BadSignature(_) => StatusCode::FORBIDDEN,
        AddError::Conflict { size, .. } => {
            return (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{size}\n"),
            )
                .into_response();
        }
        AddError::BadProof { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        AddError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        AddError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    text(status, format!("{e}\n"))
}

async fn add_checkpoint(State(app): State<AppState>, body: Bytes) -> Response {
    let (old, proof, note) = match parse_body(&body) {
        Ok(x) => x,
        Err(e) => return error_response(&e),
    };
    match app.witness.add_checkpoint(old, proof, note, "http").await {
        Ok(sig) => text(StatusCode::OK, sig.to_line()),
        Err(e) => error_response(&e),
    }
}

async fn metrics(State(app): State<AppState>) -> Response {
    match app.metrics {
        Some(h) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => text(StatusCode::NOT_FOUND, "metrics are not enabled\n".into()),
    }
}

/// Serves the HTTP face on `listener` until `shutdown` completes.
///
/// # Errors
/// Transport errors.
pub async fn serve(
    listener: TcpListener,
    witness: Witness,
    metrics_handle: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(AppState {
            witness,
            metrics: metrics_handle,
        });
    let listener = Bounded(quire_host::net::BoundedListener::new(
        listener,
        quire_host::net::NetLimits::default(),
        "witness HTTP",
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A listener with a connection cap and handshake and idle timeouts
/// (see [`quire_host::net`]).
struct Bounded(quire_host::net::BoundedListener);

impl axum::serve::Listener for Bounded {
    type Io = quire_host::net::Guarded;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}
