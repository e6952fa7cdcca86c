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

use quire_core::VerifierKey;
use quire_server::config::Config;
use quire_server::local::LocalServer;
use quire_server::store::{Storage, StorageReader};
use quire_tests::copy_dir;
use quire_tests::postgres;

#[path = "replicas/common.rs"]
mod common;

use common::*;

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
    let (second, new_epoch) = expire_lease(&db, &all, epoch).await;
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

/// A replica of a formation that creates logs: its own database and key
/// seed, and a log family rolling over by month into that database.
async fn formation_replica(
    data: &Path,
    db: &str,
    name: &str,
    seed: &Path,
    with_family: bool,
) -> LocalServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = postgres::shared().url_of(db);
    let mut rep = replication(&listener, name);
    rep.storage =
        Some(toml::from_str(&format!("engine = \"postgres\"\nurl = \"{url}\"\n")).unwrap());
    rep.keys_seed_file = Some(seed.to_owned());
    let family: quire_server::config::FamilyConfig = toml::from_str(&format!(
        "origin = \"{FAMILY}\"\nperiod = \"month\"\n[shard]\nstorage = {{ engine = \"postgres\", url = \"{url}\" }}\n"
    ))
    .unwrap();
    let config = Config {
        replication: Some(rep),
        families: if with_family {
            vec![family]
        } else {
            Vec::new()
        },
        ..Config::default()
    };
    LocalServer::start_on(listener, data, Vec::new(), config).unwrap()
}

const FAMILY: &str = "family.example/log";
const CREATED: &str = "created.example/log";

/// The logs `r` lists, by origin.
async fn listed(r: &LocalServer) -> BTreeMap<String, quire_proto::v1::LogInfo> {
    let mut c = quire_proto::v1::log_client::LogClient::new(channel(r).await);
    c.list_logs(quire_proto::v1::ListLogsRequest {})
        .await
        .unwrap()
        .into_inner()
        .logs
        .into_iter()
        .map(|l| (l.origin.clone(), l))
        .collect()
}

/// Polls `r`'s list of logs every 20 ms, at most 500 times, until `f`
/// holds of it.
async fn listed_until(
    r: &LocalServer,
    what: &str,
    f: impl Fn(&BTreeMap<String, quire_proto::v1::LogInfo>) -> bool,
) -> BTreeMap<String, quire_proto::v1::LogInfo> {
    for _ in 0..500 {
        let logs = listed(r).await;
        if f(&logs) {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 500 polls");
}

/// Writes `entry` to `log` through `r` over gRPC, retrying while the
/// lease of a new log is being taken.
async fn add_over_grpc(r: &LocalServer, log: &str, entry: &[u8]) -> Result<u64, tonic::Status> {
    let mut c = quire_proto::v1::log_client::LogClient::new(channel(r).await);
    let mut last = None;
    for _ in 0..200 {
        match c
            .add_entries(quire_proto::v1::AddEntriesRequest {
                log: log.into(),
                entries: vec![entry.to_vec()],
                with_proof: false,
                witnessed: false,
            })
            .await
        {
            Ok(a) => return Ok(a.into_inner().entries[0].index),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                last = Some(s);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => return Err(s),
        }
    }
    Err(last.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formation_creates_freezes_and_rolls_over_logs_on_every_replica() {
    use quire_proto::v1::admin_client::AdminClient;
    let pg = postgres::shared();
    let db = pg.create_database("formation").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    let a = formation_replica(&dir.path().join("a"), &db, "a", &seed, true).await;
    let b = formation_replica(&dir.path().join("b"), &db, "b", &seed, true).await;

    // The family's shards (this month's and the next) are created once and
    // served by both replicas with the same keys.
    let shards = |logs: &BTreeMap<String, quire_proto::v1::LogInfo>| {
        logs.keys()
            .filter(|o| o.starts_with(FAMILY))
            .cloned()
            .collect::<Vec<_>>()
    };
    let on_a = listed_until(&a, "a's shards", |l| shards(l).len() >= 2).await;
    let on_b = listed_until(&b, "b's shards", |l| shards(l) == shards(&on_a)).await;
    for o in shards(&on_a) {
        assert_eq!(on_a[&o].verifier_keys, on_b[&o].verifier_keys, "{o}");
        assert_eq!(on_a[&o].verifier_keys.len(), 2, "{o}");
    }
    let rows = pg.psql(&db, "SELECT count(*) FROM quire_catalog").unwrap();
    assert_eq!(
        rows.trim(),
        shards(&on_a).len().to_string(),
        "one row per shard"
    );

    // A log created on a is served by b, with the same keys, and takes
    // writes through either.
    let mut admin_a = AdminClient::new(channel(&a).await);
    let created = admin_a
        .create_log(quire_proto::v1::CreateLogRequest {
            origin: CREATED.into(),
            like: String::new(),
            private_keys: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.keys_generated);
    let keys = created.log.unwrap().verifier_keys;
    let on_b = listed_until(&b, "b serves the created log", |l| l.contains_key(CREATED)).await;
    assert_eq!(on_b[CREATED].verifier_keys, keys);
    let i0 = add_over_grpc(&a, CREATED, b"through a").await.unwrap();
    let i1 = add_over_grpc(&b, CREATED, b"through b").await.unwrap();
    assert_ne!(i0, i1);

    // Created again, on either replica: it exists. Keys cannot be
    // imported into a formation's log.
    let mut admin_b = AdminClient::new(channel(&b).await);
    let again = admin_b
        .create_log(quire_proto::v1::CreateLogRequest {
            origin: CREATED.into(),
            like: String::new(),
            private_keys: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again:?}");
    let imported = admin_b
        .create_log(quire_proto::v1::CreateLogRequest {
            origin: "imported.example/log".into(),
            like: String::new(),
            private_keys: vec!["PRIVATE+KEY+x".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(imported.code(), tonic::Code::InvalidArgument);
    assert!(
        imported.message().contains("keys_seed_file"),
        "{imported:?}"
    );

    // Frozen through the replica that does not hold the log's lease (the
    // holder makes the freeze): both list it frozen, and both refuse
    // writes by its state.
    let holder = pg
        .psql(
            &db,
            &format!(
                "SELECT l.holder FROM quire_leases l JOIN quire_logs g ON g.id = l.log WHERE g.origin = '{CREATED}'"
            ),
        )
        .unwrap();
    let mut admin_other = match holder.trim().split('/').next() {
        Some("a") => admin_b,
        Some("b") => admin_a,
        h => panic!("holder {h:?}"),
    };
    let frozen = admin_other
        .freeze_log(quire_proto::v1::FreezeLogRequest {
            log: CREATED.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(frozen.changed);
    assert_eq!(frozen.log.unwrap().state, "FROZEN");
    listed_until(&a, "a lists it frozen", |l| l[CREATED].state == "FROZEN").await;
    for r in [&a, &b] {
        let refused = add_over_grpc(r, CREATED, b"late").await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(refused.message().contains("FROZEN"), "{refused:?}");
    }

    // A replica started later serves every log of the catalog at start.
    let c = formation_replica(&dir.path().join("c"), &db, "c", &seed, true).await;
    let on_c = listed_until(&c, "c serves the catalog", |l| {
        l.contains_key(CREATED) && shards(l) == shards(&on_a)
    })
    .await;
    assert_eq!(on_c[CREATED].verifier_keys, keys);
    assert_eq!(on_c[CREATED].state, "FROZEN");

    // A replica with another seed derives other keys: it refuses to serve
    // the formation's logs rather than sign with them.
    let other = dir.path().join("other-seed");
    std::fs::write(&other, "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=\n").unwrap();
    let d = formation_replica(&dir.path().join("d"), &db, "d", &other, false).await;
    // It answers once its first reading of the catalog is done (that
    // reading comes before it serves): none of the formation's logs.
    let on_d = listed(&d).await;
    assert!(
        !on_d.contains_key(CREATED) && shards(&on_d).is_empty(),
        "a replica with another seed serves none of the formation's logs: {:?}",
        on_d.keys()
    );
    for r in [a, b, c, d] {
        r.stop().await;
    }
}
