//! Follow streams, health and reflection, in-process on 127.0.0.1:0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::{checkpoint, entry, Server};
use quire_proto::v1::*;

#[tokio::test]
async fn follow_streams_deliver_new_checkpoints_and_entries() {
    let s = Server::start(&["a.example/log"]).await;
    let mut c = s.client.clone();
    c.add_entries(AddEntriesRequest {
        log: String::new(),
        entries: (0..300).map(entry).collect(),
        with_proof: false,
        witnessed: false,
    })
    .await
    .unwrap();
    let mut checkpoints = c
        .watch_checkpoints(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = checkpoints.message().await.unwrap().unwrap();
    assert_eq!(checkpoint(&first.checkpoint, &s.keys).size(), 300);
    let mut tail = c
        .tail_entries(TailEntriesRequest {
            log: String::new(),
            start: 250,
        })
        .await
        .unwrap()
        .into_inner();
    // What is there already.
    let mut got = Vec::new();
    while got.len() < 50 {
        let page = tail.message().await.unwrap().unwrap();
        assert_eq!(page.start, 250 + got.len() as u64);
        assert!(
            checkpoint(&page.checkpoint, &s.keys).size() >= page.start + page.entries.len() as u64
        );
        got.extend(page.entries);
    }
    // Then what arrives: no polling by the client.
    c.add_entries(AddEntriesRequest {
        log: String::new(),
        entries: (300..310).map(entry).collect(),
        with_proof: false,
        witnessed: false,
    })
    .await
    .unwrap();
    while got.len() < 60 {
        got.extend(tail.message().await.unwrap().unwrap().entries);
    }
    assert_eq!(got, (250..310).map(entry).collect::<Vec<_>>());
    let next = checkpoints.message().await.unwrap().unwrap();
    assert_eq!(checkpoint(&next.checkpoint, &s.keys).size(), 310);
    s.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let s = Server::start(&["a.example/log"]).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "quire.v1.Log".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    let (mut v1, mut v1alpha) = quire_host::grpc::advertised_services(s.channel().await)
        .await
        .unwrap();
    v1.sort();
    v1alpha.sort();
    // Only what is served (the log, events and admin services, not the witness
    // service whose descriptor the same file set holds), and the same by v1alpha, which grpcio-reflection
    // and many tools speak.
    assert_eq!(
        v1,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "quire.v1.Admin",
            "quire.v1.Events",
            "quire.v1.Log"
        ],
        "{v1:?}"
    );
    assert_eq!(
        v1alpha,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "quire.v1.Admin",
            "quire.v1.Events",
            "quire.v1.Log"
        ],
        "{v1alpha:?}"
    );
    s.stop().await;
}
