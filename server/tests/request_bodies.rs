//! Request bodies under the server-wide budget of bytes in flight and the
//! stall timeout, on the real binary, from a raw HTTP/2 client that sends
//! gRPC messages in part and then nothing:
//! - two uploads whose bytes together exceed the budget: a frame that finds
//!   no room waits for it (10 s at most), then one upload is refused
//!   `RESOURCE_EXHAUSTED` naming the budget, and an honest write still goes
//!   through beside the other;
//! - an upload that stalls is ended `DEADLINE_EXCEEDED` naming the timeout,
//!   and the bytes it held are free again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use bytes::Bytes;
use quire_proto::v1::AddEntryRequest;

mod common;
use common::process::ServerProcess;

/// Starts the server with `budget_mib` of bytes in flight and bodies ended
/// after `stall_ms` without a byte.
fn start(dir: &std::path::Path, budget_mib: u64, stall_ms: u64) -> ServerProcess {
    let config = dir.join("quire.toml");
    std::fs::write(
        &config,
        format!(
            "max_message_bytes = 3145728\nmemory_budget_mib = {budget_mib}\nrequest_body_timeout_ms = {stall_ms}\n\n[[logs]]\norigin = \"bodies.example/log\"\nmax_batch = 40\n"
        ),
    )
    .unwrap();
    ServerProcess::start_with(&dir.join("data"), &["--config", config.to_str().unwrap()])
}

/// A gRPC upload to `AddEntries` that declares a message of `declared`
/// bytes, sends `sent` of them, and then nothing (the stream stays open).
struct Upload {
    response: h2::client::ResponseFuture,
    _send: h2::SendStream<Bytes>,
}

async fn upload(client: &mut h2::client::SendRequest<Bytes>, declared: u32, sent: usize) -> Upload {
    let req = http::Request::builder()
        .method("POST")
        .uri("http://localhost/quire.v1.Log/AddEntries")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let mut ready = client.clone().ready().await.unwrap();
    let (response, mut send) = ready.send_request(req, false).unwrap();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&declared.to_be_bytes());
    frame.resize(5 + sent, 0x0a);
    // h2 queues what the flow-control window does not take yet.
    send.send_data(Bytes::from(frame), false).unwrap();
    Upload {
        response,
        _send: send,
    }
}

/// The gRPC status (code, message) an upload ended with: in the headers of
/// a trailers-only answer, or in the trailers.
async fn status(u: Upload) -> (String, String) {
    let resp = u.response.await.unwrap();
    let (parts, mut body) = resp.into_parts();
    let headers = if parts.headers.contains_key("grpc-status") {
        parts.headers
    } else {
        while body.data().await.is_some() {}
        body.trailers().await.unwrap().unwrap()
    };
    let get = |k: &str| {
        headers
            .get(k)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let message = get("grpc-message").replace("%20", " ");
    (get("grpc-status"), message)
}

async fn connect(addr: &str) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_budget_are_refused_by_name_and_honest_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // Stalled bodies are not ended here (60 s): only the budget can end one,
    // after its wait for room (10 s).
    let server = start(dir.path(), 4, 60_000);
    let mut h2c = connect(&server.addr).await;
    // 2.5 MB each, 5 MB together: more than the 4 MiB budget, so whatever
    // order the frames arrive in, one upload must be refused.
    let a = upload(&mut h2c, 3_000_000, 2_500_000).await;
    let b = upload(&mut h2c, 3_000_000, 2_500_000).await;
    let refused = tokio::select! {
        s = status(a) => s,
        s = status(b) => s,
    };
    assert_eq!(refused.0, "8", "RESOURCE_EXHAUSTED: {refused:?}");
    assert!(
        refused.1.contains("budget of 4 MiB for bytes in flight"),
        "{refused:?}"
    );
    // The other still holds its 2.5 MB; an honest write fits beside it.
    let mut c = server.client().await;
    let r = c
        .add_entry(AddEntryRequest {
            entry: b"honest".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.index, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_ended_by_name_and_its_bytes_are_free_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 4, 300);
    let mut h2c = connect(&server.addr).await;
    // 3.5 MB of the 4 MiB budget, then nothing.
    let stalled = upload(&mut h2c, 3_100_000, 3_000_000).await;
    let (code, message) = status(stalled).await;
    assert_eq!(code, "4", "DEADLINE_EXCEEDED: {message}");
    assert!(
        message.contains("the request body sent nothing for 300 ms"),
        "{message}"
    );
    // Its bytes were given back: a full-size write fits the budget again.
    let mut c = server.client().await;
    let entries: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 65_000]).collect();
    let r = c
        .add_entries(quire_proto::v1::AddEntriesRequest {
            entries,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entries.len(), 40);
}
