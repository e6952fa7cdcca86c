//! What the tests of replicas on PostgreSQL share: replicas with short
//! leases on a database of the shared server, the leader and its lease,
//! writes, and the check of one root per size.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use quire_core::{Checkpoint, Note, VerifierKey};
use quire_server::config::{Config, Engine, LogConfig, ReplicationConfig};
use quire_server::local::LocalServer;
use quire_server::log::WriteError;
use quire_server::store::{Storage, StorageReader};
use quire_tests::postgres;

pub const ORIGIN: &str = "replicated.example/log";

/// The replication settings of replica `name` listening on `listener`,
/// with short leases.
pub fn replication(listener: &tokio::net::TcpListener, name: &str) -> ReplicationConfig {
    let mut rep = ReplicationConfig::new(&format!("http://{}", listener.local_addr().unwrap()));
    rep.name = name.into();
    rep.lease_ms = 1_200;
    rep.renew_ms = 200;
    rep.follow_ms = 50;
    rep
}

pub async fn replica(data: &Path, db: &str, name: &str) -> LocalServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rep = replication(&listener, name);
    let mut cfg = LogConfig::new(ORIGIN);
    cfg.storage.engine = Engine::Postgres;
    cfg.storage.url = Some(postgres::shared().url_of(db));
    let config = Config {
        replication: Some(rep),
        ..Config::default()
    };
    LocalServer::start_on(listener, data, vec![cfg], config).unwrap()
}

/// Polls `f` every 20 ms, at most `tries` times, until it gives a value.
pub async fn poll<T>(what: &str, tries: u32, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..tries {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {tries} polls");
}

/// The one replica that sequences, once there is exactly one.
pub async fn leader(replicas: &[&LocalServer]) -> (usize, i64) {
    poll("one leader", 500, || {
        let leading: Vec<(usize, i64)> = replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.replicas[0].epoch().map(|e| (i, e)))
            .collect();
        (leading.len() == 1).then(|| leading[0])
    })
    .await
}

/// Runs the lease out under its holder in database `db` (as after a pause
/// or a cut) and waits for a replica to hold it in an epoch after `epoch`:
/// that replica's place in `replicas`, and its epoch.
pub async fn expire_lease(db: &str, replicas: &[&LocalServer], epoch: i64) -> (usize, i64) {
    postgres::shared()
        .psql(db, "UPDATE quire_leases SET expires = clock_timestamp()")
        .unwrap();
    poll("a new epoch", 500, || {
        replicas
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.replicas[0].epoch().filter(|e| *e > epoch).map(|e| (i, e)))
    })
    .await
}

/// Writes `entry` through replica `r`, retrying while sequencing moves.
pub async fn write(r: &LocalServer, entry: Vec<u8>) -> u64 {
    for _ in 0..200 {
        match r.logs[0].add(vec![entry.clone()]).await {
            Ok((added, latest)) => {
                assert!(latest.stored.size > added[0].index, "the answer covers it");
                return added[0].index;
            }
            Err(
                WriteError::NotSequencing { .. }
                | WriteError::NotLeader { .. }
                | WriteError::Remote { .. }
                | WriteError::Stopped { .. }
                | WriteError::Forwarded { .. },
            ) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("write: {e}"),
        }
    }
    panic!("no replica took the write");
}

/// Every checkpoint in storage verifies with the log's key, there is one
/// per size, and each is consistent with the next.
pub fn one_root_per_size(r: &LocalServer, key: &VerifierKey) -> usize {
    let reader = r.logs[0].store().reader().unwrap();
    let all = reader.checkpoints(0, 100_000).unwrap();
    let mut roots = BTreeMap::new();
    for c in &all {
        let note = Note::parse(&c.note).unwrap();
        note.verify(std::slice::from_ref(key)).unwrap();
        let cp = Checkpoint::parse(note.text().as_bytes()).unwrap();
        assert_eq!(cp.size(), c.size);
        assert!(roots.insert(cp.size(), *cp.root()).is_none());
    }
    let sizes: Vec<(u64, quire_core::Hash)> = roots.into_iter().collect();
    for w in sizes.windows(2) {
        let ((a, ra), (b, rb)) = (w[0], w[1]);
        if a == 0 {
            continue;
        }
        let proof = quire_core::prove_consistency(&reader, a, b).unwrap();
        quire_core::verify_consistency(a, b, &proof, &ra, &rb).unwrap();
    }
    all.len()
}

/// A gRPC channel to replica `r`.
pub async fn channel(r: &LocalServer) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(r.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}
