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

/// The replication settings of replica `name` listening on `listener`,
/// with short leases.
fn replication(listener: &tokio::net::TcpListener, name: &str) -> ReplicationConfig {
    let mut rep = ReplicationConfig::new(&format!("http://{}", listener.local_addr().unwrap()));
    rep.name = name.into();
    rep.lease_ms = 1_200;
    rep.renew_ms = 200;
    rep.follow_ms = 50;
    rep
}

async fn replica(data: &Path, db: &str, name: &str) -> LocalServer {
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

/// Runs the lease out under its holder in database `db` (as after a pause
/// or a cut) and waits for a replica to hold it in an epoch after `epoch`:
/// that replica's place in `replicas`, and its epoch.
async fn expire_lease(db: &str, replicas: &[&LocalServer], epoch: i64) -> (usize, i64) {
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

async fn channel(r: &LocalServer) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(r.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

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

const EVENTS: &str = "events.example/log";

/// A replica of an event log, under an access policy with tokens: the
/// formation's own (`token_file`) and alice's.
async fn event_replica(data: &Path, db: &str, name: &str, dir: &Path) -> LocalServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut rep = replication(&listener, name);
    rep.token_file = Some(dir.join("replica.token"));
    let mut cfg = LogConfig::new(EVENTS);
    cfg.events = true;
    cfg.storage.engine = Engine::Postgres;
    cfg.storage.url = Some(postgres::shared().url_of(db));
    let config = Config {
        replication: Some(rep),
        access: Some(dir.join("access.toml")),
        ..Config::default()
    };
    LocalServer::start_on(listener, data, vec![cfg], config).unwrap()
}

fn bearer<T>(mut r: tonic::Request<T>, token: &str) -> tonic::Request<T> {
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Alice's events in a search-by-key answer, checked by the client.
async fn alices_events(
    mut s: tonic::Streaming<quire_proto::v1::KeyPage>,
    trust: &quire_client::policy::LogTrust,
) -> quire_client::keyed::KeyAnswer {
    let mut check = quire_client::keyed::KeyCheck::new(
        trust,
        quire_core::event::KeyField::Actor,
        "alice",
        None,
        0,
    );
    while let Some(p) = s.message().await.unwrap() {
        check.page(&p).unwrap();
    }
    check.finish().unwrap()
}

fn one_event(actor: &str) -> quire_proto::v1::AddEventsRequest {
    let mut e = quire_core::event::Event::new("auth.login", actor, "login");
    e.outcome = quire_core::event::Outcome::Success;
    quire_proto::v1::AddEventsRequest {
        log: EVENTS.into(),
        events: vec![quire_proto::event_to_wire(
            &e,
            Some(b"{\"raw\":1}".to_vec()),
        )],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_log_on_a_formation_keeps_its_submitters_maps_and_erasures() {
    use quire_proto::v1::events_client::EventsClient;
    let pg = postgres::shared();
    let db = pg.create_database("formation_events").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (replica_token, replica_hash) = quire_server::access::new_token();
    let (alice, alice_hash) = quire_server::access::new_token();
    std::fs::write(dir.path().join("replica.token"), &replica_token).unwrap();
    std::fs::write(
        dir.path().join("access.toml"),
        format!(
            r#"public = []
[[tokens]]
name = "replica"
sha256 = "{replica_hash}"
[[tokens]]
name = "alice"
sha256 = "{alice_hash}"
[[grants]]
who = "token:replica"
roles = ["writer", "reader", "admin"]
logs = ["*"]
[[grants]]
who = "token:alice"
roles = ["writer", "reader", "auditor", "admin"]
logs = ["{EVENTS}"]
"#
        ),
    )
    .unwrap();
    let a = event_replica(&dir.path().join("a"), &db, "a", dir.path()).await;
    copy_dir(&dir.path().join("a/keys"), &dir.path().join("b/keys"));
    let b = event_replica(&dir.path().join("b"), &db, "b", dir.path()).await;
    let both = [&a, &b];
    let (holder, _) = leader(&both).await;
    let (mut holder, mut other) = (both[holder], both[1 - holder]);
    // The replica that does not sequence knows where the holder is.
    poll("a route to the holder", 500, || {
        other.logs[0]
            .route_description()
            .filter(|d| d.starts_with("http"))
    })
    .await;

    // Alice writes through either replica: the envelope names her, not
    // the replica that passed the events on.
    let mut sealed = Vec::new();
    for r in [other, holder] {
        let mut c = EventsClient::new(channel(r).await);
        let w = c
            .add_events(bearer(tonic::Request::new(one_event("alice")), &alice))
            .await
            .unwrap()
            .into_inner();
        let e = &w.events[0];
        let env = quire_core::event::Envelope::decode(&e.envelope).unwrap();
        assert_eq!(env.submitter, "token:alice", "through {}", r.url());
        sealed.push(e.index);
    }

    // Only the formation's token may name another submitter.
    let mut spoof = tonic::Request::new(one_event("mallory"));
    spoof.metadata_mut().insert_bin(
        quire_server::replica::ON_BEHALF_OF,
        tonic::metadata::MetadataValue::from_bytes(b"token:bob"),
    );
    let refused = EventsClient::new(channel(holder).await)
        .add_events(bearer(spoof, &alice))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("token_file"), "{refused:?}");

    // Searches by key: proven complete by the client at the holder, which
    // keeps the map (polled until its head covers both events); the other
    // replica says where to ask.
    let trust = quire_client::policy::LogTrust::of_key(EVENTS, holder.keys[0].clone());
    let search = || quire_proto::v1::SearchKeyRequest {
        log: EVENTS.into(),
        field: "actor".into(),
        value: "alice".into(),
        before: None,
        from_ms: 0,
        limit: 0,
    };
    // Both replicas answer, each proven complete by the client: the
    // holder from its sequencer's map, the other from the map it keeps
    // from storage (polled until the head covers both events).
    for r in [holder, other] {
        let mut answer = None;
        for _ in 0..500 {
            let mut c = EventsClient::new(channel(r).await);
            match c
                .search_key(bearer(tonic::Request::new(search()), &alice))
                .await
            {
                Ok(s) => {
                    let a = alices_events(s.into_inner(), &trust).await;
                    if a.events.len() == 2 {
                        answer = Some(a);
                        break;
                    }
                }
                Err(s) => assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answer = answer.expect("both of alice's events in a proven answer");
        let mut got: Vec<u64> = answer.events.iter().map(|(i, _)| *i).collect();
        got.sort_unstable();
        sealed.sort_unstable();
        assert_eq!(got, sealed, "through {}", r.url());
    }

    // The lease runs out under the holder: a sequencer opens again in a new
    // epoch (on either replica) with its key map follower. Alice writes
    // once more and both replicas answer all three events, proven.
    let (_, epoch) = leader(&both).await;
    let (next, _) = expire_lease(&db, &both, epoch).await;
    (holder, other) = (both[next], both[1 - next]);
    let mut third = None;
    for _ in 0..200 {
        let mut c = EventsClient::new(channel(other).await);
        match c
            .add_events(bearer(tonic::Request::new(one_event("alice")), &alice))
            .await
        {
            Ok(w) => {
                third = Some(w.into_inner().events[0].index);
                break;
            }
            // The other replica learns the new holder within a renewal.
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    sealed.push(third.expect("a write after the handover"));
    sealed.sort_unstable();
    for r in [holder, other] {
        let mut found = false;
        for _ in 0..500 {
            let mut c = EventsClient::new(channel(r).await);
            if let Ok(s) = c
                .search_key(bearer(tonic::Request::new(search()), &alice))
                .await
            {
                let a = alices_events(s.into_inner(), &trust).await;
                let mut got: Vec<u64> = a.events.iter().map(|(i, _)| *i).collect();
                got.sort_unstable();
                if got == sealed {
                    found = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(found, "all three events, proven, through {}", r.url());
    }

    // An erasure asked of the replica that does not sequence is made by the
    // holder, named for alice; the payload is gone when read there.
    let erased = EventsClient::new(channel(other).await)
        .erase_event(bearer(
            tonic::Request::new(quire_proto::v1::EraseEventRequest {
                log: EVENTS.into(),
                index: sealed[0],
                reason: "request of the data subject".into(),
            }),
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let env = quire_core::event::Envelope::decode(&erased.events[0].envelope).unwrap();
    assert_eq!(env.submitter, "token:alice");
    let read = EventsClient::new(channel(other).await)
        .get_event(bearer(
            tonic::Request::new(quire_proto::v1::GetEventRequest {
                log: EVENTS.into(),
                index: sealed[0],
            }),
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(read.payload.is_empty());
    assert_eq!(read.erased_by, Some(erased.events[0].index));

    // Frozen through the replica that does not sequence: the holder ends
    // the log on a head of its whole map, so a search by key of the
    // frozen log is proven complete up to its last event.
    let frozen = quire_proto::v1::admin_client::AdminClient::new(channel(other).await)
        .freeze_log(bearer(
            tonic::Request::new(quire_proto::v1::FreezeLogRequest { log: EVENTS.into() }),
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    let info = frozen.log.unwrap();
    assert_eq!(info.state, "FROZEN");
    for r in [holder, other] {
        let mut last = None;
        for _ in 0..500 {
            let s = EventsClient::new(channel(r).await)
                .search_key(bearer(tonic::Request::new(search()), &alice))
                .await
                .unwrap()
                .into_inner();
            let a = alices_events(s, &trust).await;
            if a.head.0 + 1 == info.size {
                last = Some(a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let last = last.expect("an answer from the final head, the last event");
        assert_eq!(last.events.len(), 3, "through {}", r.url());
    }
    for r in [a, b] {
        r.stop().await;
    }
}
