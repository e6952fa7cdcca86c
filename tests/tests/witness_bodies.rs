//! The witness's gRPC face bounds request bodies as the log's does: a body
//! that stalls is ended `DEADLINE_EXCEEDED` naming the timeout, and the
//! witness goes on answering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use bytes::Bytes;
use quire_proto::v1::witness_client::WitnessClient;
use quire_witness::config::WitnessConfig;
use quire_witness::local::LocalWitness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_ended_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let w = LocalWitness::start(WitnessConfig::new(
        "bodies.example/witness",
        &dir.path().join("w"),
    ))
    .await
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri("http://localhost/quire.v1.Witness/AddCheckpoint")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(req, false).unwrap();
    // A message of 1,000 bytes announced, 10 sent, then nothing.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&1000u32.to_be_bytes());
    frame.extend_from_slice(&[0x0a; 10]);
    send.send_data(Bytes::from(frame), false).unwrap();
    let resp = response.await.unwrap();
    let (parts, mut body) = resp.into_parts();
    let headers = if parts.headers.contains_key("grpc-status") {
        parts.headers
    } else {
        while body.data().await.is_some() {}
        body.trailers().await.unwrap().unwrap()
    };
    assert_eq!(headers.get("grpc-status").unwrap(), "4", "{headers:?}");
    let message = headers.get("grpc-message").unwrap().to_str().unwrap();
    assert!(
        message
            .replace("%20", " ")
            .contains("sent nothing for 10000 ms"),
        "{message}"
    );
    drop(send);
    // The witness still answers.
    let mut c = WitnessClient::connect(w.url()).await.unwrap();
    let e = c
        .get_latest(quire_proto::v1::GetLatestRequest {
            origin: "unknown.example/log".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    w.stop().await;
}
