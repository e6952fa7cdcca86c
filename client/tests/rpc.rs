//! The typed client against a real server: every call, its answers checked
//! with quire-core, and the follow streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_client::rpc::{Endpoint, LogRpc, RpcError};
use quire_core::{leaf_hash, verify_consistency, verify_inclusion, Checkpoint, Note};
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;

const ORIGIN: &str = "rpc.example/log";

fn checkpoint(note: &[u8], server: &LocalServer) -> Checkpoint {
    let n = Note::parse(note).unwrap();
    n.verify(&server.keys).unwrap();
    Checkpoint::parse(n.text().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_answers_what_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(dir.path(), vec![LogConfig::new(ORIGIN)], Config::default())
        .await
        .unwrap();
    let ep = Endpoint {
        addr: server.url(),
        ca: None,
        client_cert: None,
        timeout: std::time::Duration::from_secs(10),
        token: None,
    };
    let mut rpc = LogRpc::connect(&ep).await.unwrap();
    assert_eq!(rpc.list_logs().await.unwrap(), vec![ORIGIN.to_owned()]);
    assert_eq!(
        rpc.default_origin("").await.unwrap().as_deref(),
        Some(ORIGIN)
    );

    // Follow streams opened before the writes see them.
    let mut watch = rpc.watch_checkpoints(ORIGIN).await.unwrap();
    let mut tail = rpc.tail(ORIGIN, 0).await.unwrap();

    let entries: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("rpc event {i}").into_bytes())
        .collect();
    let resp = rpc.add_batch(ORIGIN, entries.clone(), true).await.unwrap();
    let cp = checkpoint(&resp.checkpoint, &server);
    assert_eq!(cp.size(), 10);
    for (i, (e, a)) in entries.iter().zip(&resp.entries).enumerate() {
        assert_eq!(a.index, i as u64);
        let proof = quire_proto::hashes_from_wire(&a.inclusion_proof).unwrap();
        verify_inclusion(&leaf_hash(e), a.index, 10, &proof, cp.root()).unwrap();
    }

    // Checkpoints arrive until one covers the batch; entries in order.
    loop {
        let m = watch.message().await.unwrap().unwrap();
        if checkpoint(&m.checkpoint, &server).size() == 10 {
            break;
        }
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        let page = tail.message().await.unwrap().unwrap();
        assert_eq!(page.start, got.len() as u64);
        let covering = checkpoint(&page.checkpoint, &server);
        assert!(covering.size() >= page.start + page.entries.len() as u64);
        got.extend(page.entries);
    }
    assert_eq!(got, entries);

    // Proofs by index and by leaf hash, consistency, entries, one entry.
    let (i, proof) = rpc
        .inclusion(ORIGIN, Some(3), leaf_hash(&entries[3]), 10)
        .await
        .unwrap();
    verify_inclusion(&leaf_hash(&entries[3]), i, 10, &proof, cp.root()).unwrap();
    let (i, proof) = rpc
        .inclusion(ORIGIN, None, leaf_hash(&entries[7]), 10)
        .await
        .unwrap();
    assert_eq!(i, 7);
    verify_inclusion(&leaf_hash(&entries[7]), 7, 10, &proof, cp.root()).unwrap();
    rpc.add(ORIGIN, b"one more".to_vec()).await.unwrap();
    let cp11 = checkpoint(&rpc.checkpoint(ORIGIN).await.unwrap(), &server);
    let proof = rpc.consistency(ORIGIN, 10, 11).await.unwrap();
    verify_consistency(10, 11, &proof, cp.root(), cp11.root()).unwrap();
    let mut all = Vec::new();
    rpc.entries(ORIGIN, 0, 11, |i, e| {
        assert_eq!(i, all.len() as u64);
        all.push(e.to_vec());
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(&all[..10], &entries[..]);
    let b = rpc.entry_with_proof(ORIGIN, 4).await.unwrap();
    assert_eq!(b.extra.as_deref(), Some(&entries[4][..]));

    // The server's refusals come back as statuses naming the problem.
    match rpc
        .inclusion("nope.example/log", Some(0), leaf_hash(b"x"), 0)
        .await
    {
        Err(RpcError::Status { code, message, .. }) => {
            assert_eq!(code, tonic::Code::NotFound);
            assert!(message.contains("nope.example/log"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// A retry waits at least the backoff and the server's hint, at most half
/// as long again, and callers refused together do not all wait alike.
#[test]
fn retries_wait_for_the_hint_and_spread() {
    use quire_client::rpc::{retry_wait, FIRST_BACKOFF, MAX_BACKOFF};
    use std::time::Duration;
    for (backoff, hint) in [
        (FIRST_BACKOFF, None),
        (FIRST_BACKOFF, Some(Duration::from_millis(5))),
        (FIRST_BACKOFF, Some(Duration::from_millis(700))),
        (MAX_BACKOFF, Some(Duration::from_millis(700))),
    ] {
        let base = hint.map_or(backoff, |h| h.max(backoff));
        let waits: std::collections::BTreeSet<Duration> =
            (0..64).map(|_| retry_wait(backoff, hint)).collect();
        let (lo, hi) = (*waits.first().unwrap(), *waits.last().unwrap());
        assert!(lo >= base, "{lo:?} is shorter than {base:?}");
        assert!(hi < base + base / 2, "{hi:?} is longer than 1.5 × {base:?}");
        assert!(
            waits.len() > 32,
            "64 waits took only {} values",
            waits.len()
        );
    }
}
