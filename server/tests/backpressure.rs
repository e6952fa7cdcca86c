//! A full queue answers RESOURCE_EXHAUSTED with the limit, and nothing in it
//! is lost: what was queued is integrated once the sequencer moves again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::gated::Gated;
use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_server::log::{Log, LogLimits, LogOptions, WriteError};
use quire_server::store::redb::{RedbOptions, RedbStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_resource_exhausted_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Gated::new(
        RedbStore::open(
            &dir.path().join("log.redb"),
            RedbOptions {
                compress: false,
                ..RedbOptions::default()
            },
        )
        .unwrap(),
    );
    let log = Log::open(
        store.clone(),
        LogOptions {
            limits: LogLimits {
                queue_depth: 2,
                ..LogLimits::default()
            },
            ..LogOptions::new(
                "q.example/log",
                vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, "q.example/log").unwrap()],
                quire_server::highwater::HighWater::at(dir.path().join("log.highwater")),
            )
        },
    )
    .unwrap();

    // First write: the sequencer takes it and waits at the gate.
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.add(vec![b"first".to_vec()]).await }
    });
    store.wait_entered(1);
    // Two more fill the queue (depth 2); the next is refused with the limit.
    let queued: Vec<_> = (0..2)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.add(vec![format!("queued {i}").into_bytes()]).await })
        })
        .collect();
    // Wait (on the condition, not on time) until both are in the queue.
    while log.queued() < 2 {
        tokio::task::yield_now().await;
    }
    let err = match log.add(vec![b"one too many".to_vec()]).await {
        Err(e) => e,
        Ok(_) => panic!("accepted past the queue limit"),
    };
    assert!(
        err.to_string()
            .contains("queue is full (2 requests waiting"),
        "{err}"
    );
    let status_err = err.clone();
    assert!(matches!(status_err, WriteError::QueueFull { depth: 2, .. }));

    // Open the gate: everything queued is integrated.
    store.open();
    let (a, _) = first.await.unwrap().unwrap();
    assert_eq!(a[0].index, 0);
    let mut indexes = Vec::new();
    for q in queued {
        indexes.push(q.await.unwrap().unwrap().0[0].index);
    }
    indexes.sort();
    assert_eq!(indexes, vec![1, 2]);
    assert_eq!(log.latest().stored.size, 3);
    log.close();
}
