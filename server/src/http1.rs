//! One HTTP/1.1 request over a connection the caller opened (TCP, or TLS
//! over it), its answer read whole up to a bound: what the server's HTTP
//! clients share (the C2SP `tlog-witness` client, issuers' key sets).

use http_body_util::BodyExt as _;

/// Sends `req` on `io` and returns the answer's status and body, read up
/// to `limit` bytes.
///
/// # Errors
/// The handshake, the request, or a body over `limit`, in words.
pub(crate) async fn request<T, B>(
    io: T,
    req: http::Request<B>,
    limit: usize,
) -> Result<(u16, Vec<u8>), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let answer = async {
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| format!("reading the answer (at most {limit} bytes): {e}"))?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    }
    .await;
    conn.abort();
    answer
}
