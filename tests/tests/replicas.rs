//! Several servers sharing one log in PostgreSQL (a real server started by
//! `scripts/postgres`): one holds the lease and sequences, every replica
//! takes writes and serves reads, a lost lease moves sequencing to another
//! replica, and across all of it there is one root per size.
//!
//! Waits are bounded polls; faults are placed by what the replicas report,
//! never by sleeping a guessed time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use quire_core::{Checkpoint, Note, VerifierKey};
use quire_server::config::{Config, Engine, LogConfig, ReplicationConfig};
use quire_server::local::LocalServer;
use quire_server::log::WriteError;
use quire_server::store::{Storage, StorageReader};
use quire_tests::copy_dir;
use quire_tests::postgres;

const ORIGIN: &str = "replicated.example/log";

async fn replica(data: &Path, db: &str, name: &str) -> LocalServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut rep = ReplicationConfig::new(&format!("http://{}", listener.local_addr().unwrap()));
    rep.name = name.into();
    rep.lease_ms = 1_200;
    rep.renew_ms = 200;
    rep.follow_ms = 50;
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
async fn poll<T>(what: &str, tries: u32, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..tries {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {tries} polls");
}

/// The one replica that sequences, once there is exactly one.
async fn leader(replicas: &[&LocalServer]) -> (usize, i64) {
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

/// Writes `entry` through replica `r`, retrying while sequencing moves.
async fn write(r: &LocalServer, entry: Vec<u8>) -> u64 {
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
fn one_root_per_size(r: &LocalServer, key: &VerifierKey) -> usize {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_sequencer_and_hand_it_over() {
    let pg = postgres::shared();
    let db = pg.create_database("replicas").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = replica(&dir.path().join("a"), &db, "a").await;
    let key = VerifierKey::parse(&a.keys[0].to_vkey()).unwrap();
    for n in ["b", "c"] {
        copy_dir(&dir.path().join("a/keys"), &dir.path().join(n).join("keys"));
    }
    let b = replica(&dir.path().join("b"), &db, "b").await;
    let c = replica(&dir.path().join("c"), &db, "c").await;
    let all = [&a, &b, &c];
    let (first, epoch) = leader(&all).await;

    // Writes through every replica: all sequenced by the one leader, each
    // answered with a checkpoint that covers it.
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in 0..30 {
        let entry = format!("entry {i}").into_bytes();
        let index = write(all[i % 3], entry.clone()).await;
        acked.push((index, entry));
    }
    assert_eq!(
        leader(&all).await,
        (first, epoch),
        "no handover without a fault"
    );

    // The lease runs out under the leader (as after a pause or a cut):
    // another replica takes over in a new epoch, the old one stops.
    pg.psql(&db, "UPDATE quire_leases SET expires = clock_timestamp()")
        .unwrap();
    let (second, new_epoch) = poll("a new leader", 500, || {
        all.iter()
            .enumerate()
            .find_map(|(i, r)| r.replicas[0].epoch().filter(|e| *e > epoch).map(|e| (i, e)))
    })
    .await;
    poll("the old leader steps down", 500, || {
        (first == second || all[first].replicas[0].epoch().is_none()).then_some(())
    })
    .await;
    for i in 30..60 {
        let entry = format!("entry {i}").into_bytes();
        let index = write(all[i % 3], entry.clone()).await;
        acked.push((index, entry));
    }

    // The leader stops cleanly: it gives the lease up, another takes over.
    let (last, last_epoch) = leader(&all).await;
    assert!(last_epoch >= new_epoch);
    let rest: Vec<LocalServer> = [a, b, c]
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            if i == last {
                tokio::spawn(r.stop());
                None
            } else {
                Some(r)
            }
        })
        .collect();
    let left = [&rest[0], &rest[1]];
    let (_, after) = leader(&left).await;
    assert!(after > last_epoch, "a new epoch after the stop");
    for i in 60..80 {
        let entry = format!("entry {i}").into_bytes();
        let index = write(left[i % 2], entry.clone()).await;
        acked.push((index, entry));
    }

    // Every acknowledged entry at its index, byte for byte, seen from every
    // replica still running; one root per size over everything signed.
    let max = acked.iter().map(|(i, _)| *i).max().unwrap();
    for r in left {
        poll("the replica serves every write", 500, || {
            (r.logs[0].latest().stored.size > max).then_some(())
        })
        .await;
        let reader = r.logs[0].store().reader().unwrap();
        for (index, entry) in &acked {
            assert_eq!(&reader.entries(*index, index + 1).unwrap()[0], entry);
        }
    }
    let mut indexes: Vec<u64> = acked.iter().map(|(i, _)| *i).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), acked.len(), "no index given twice");
    assert!(one_root_per_size(left[0], &key) > 3);
    for r in rest {
        r.stop().await;
    }
}
