//! An event log on a formation of replicas in PostgreSQL (a real server
//! started by `scripts/postgres`): its submitters, key maps and erasures
//! hold on every replica and across a lease handed over.
//!
//! Waits are bounded polls; faults are placed by what the replicas report,
//! never by sleeping a guessed time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::Path;
use std::time::Duration;

use quire_server::config::{Config, Engine, LogConfig};
use quire_server::local::LocalServer;

use quire_tests::copy_dir;
use quire_tests::postgres;

#[path = "replicas/common.rs"]
mod common;

use common::*;

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
