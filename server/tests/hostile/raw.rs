//! Raw bytes as gRPC messages (`quire_proto::raw::Raw`), the server's memory from `/proc`, and its budget
//! of bytes in flight from `/metrics`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_proto::raw::Raw;
use tonic::transport::Channel;
use tonic::Status;

fn path(method: &str) -> http::uri::PathAndQuery {
    format!("/quire.v1.Log/{method}").parse().unwrap()
}

/// Calls a unary method of the log service with `body` as the message.
pub async fn raw_unary(channel: Channel, method: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(tonic::Request::new(body.into()), path(method), Raw)
        .await
        .map(|r| r.into_inner().to_vec())
}

/// Calls a server-streaming method with `body`; the first message, or the
/// error, whether it comes as the answer or as the stream's first item.
pub async fn server_streaming_first(
    channel: Channel,
    method: &str,
    body: Vec<u8>,
) -> Result<Option<Vec<u8>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(tonic::Request::new(body.into()), path(method), Raw)
        .await?
        .into_inner();
    Ok(stream.message().await?.map(|m| m.to_vec()))
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory of a process, KiB.
pub fn hwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// The body of `GET url` (`http://ADDR/PATH`, HTTP/1.1, the connection
/// closed by the server), with a 10 s read timeout.
pub fn http_get(url: &str) -> String {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The server's budget of bytes in flight and the bytes reserved from it,
/// from `/metrics`, once fewer than 1 MiB are reserved (the honest writer's
/// requests are small; a flood request holds 59 MB): bounded polling, at
/// most 500 × 10 ms, then the last reading.
pub async fn budget_freed(metrics: &str) -> (u64, u64) {
    let mut last = (0, u64::MAX);
    for _ in 0..500 {
        let text = http_get(metrics);
        let read = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        };
        last = (
            read("quire_memory_budget_bytes").unwrap_or(0),
            read("quire_memory_budget_used_bytes").unwrap_or(u64::MAX),
        );
        if last.1 < 1 << 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    last
}
