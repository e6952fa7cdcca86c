//! Event mode through the log API (no gRPC): envelopes sealed by the log
//! with its time, the authenticated submitter and links to the previous
//! event of each key; payloads stored beside the tree and committed to;
//! the mode fixed with the log. On redb and on the in-memory engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use quire_core::event::{payload_commitment, Envelope, Event, KeyField, Outcome};
use quire_core::{leaf_hash, verify_inclusion, Checkpoint, LogKeyAlgorithm, LogSigner, Note};
use quire_server::api::{ApiError, Caller, EventInput, Kind, LogApi};
use quire_server::log::{Log, LogOptions, OpenError, WriteError};
use quire_server::store::memory::MemoryStore;
use quire_server::store::redb::{RedbOptions, RedbStore};
use quire_server::store::{Storage, StorageReader};

const ORIGIN: &str = "events.example/log";

fn options(dir: &std::path::Path, events: bool) -> LogOptions {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("ed25519");
    let signer = if key.exists() {
        LogSigner::from_private_text(&std::fs::read_to_string(&key).unwrap()).unwrap()
    } else {
        let s = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
        std::fs::write(&key, s.to_private_text().as_bytes()).unwrap();
        s
    };
    let mut o = LogOptions::new(
        ORIGIN,
        vec![signer],
        quire_server::highwater::HighWater::at(dir.join("log.hw")),
    );
    o.events = events;
    o.dedup = quire_server::log::DedupPolicy::Off;
    o
}

fn redb(dir: &std::path::Path) -> RedbStore {
    RedbStore::open(&dir.join("log.redb"), RedbOptions::default()).unwrap()
}

fn event(actor: &str, action: &str, resource: Option<&str>) -> Event {
    let mut e = Event::new("test.event", actor, action);
    e.resource = resource.map(str::to_owned);
    e.outcome = Outcome::Success;
    e.attributes = BTreeMap::from([("n".to_owned(), format!("{actor}/{action}"))]);
    e
}

fn input(actor: &str, action: &str, resource: Option<&str>, payload: Option<&str>) -> EventInput {
    EventInput {
        event: event(actor, action, resource),
        payload: payload.map(|p| p.as_bytes().to_vec()),
    }
}

/// The links a log must give `events` (in index order), from the
/// definition: the previous index with the same value of each field.
fn expected_links(events: &[Envelope]) -> Vec<BTreeMap<KeyField, u64>> {
    let mut last: HashMap<(KeyField, String), u64> = HashMap::new();
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let mut links = BTreeMap::new();
        for f in KeyField::ALL {
            if let Some(v) = e.event.value(f) {
                if let Some(p) = last.insert((f, v.to_owned()), i as u64) {
                    links.insert(f, p);
                }
            }
        }
        out.push(links);
    }
    out
}

/// Every envelope of the log, decoded, each checked against its leaf
/// hash in the tree.
fn all_envelopes<S: Storage>(log: &Log<S>) -> Vec<Envelope> {
    let size = log.latest().stored.size;
    let reader = log.store().reader().unwrap();
    reader
        .checked_entries(0, size)
        .unwrap()
        .iter()
        .map(|b| Envelope::decode(b).unwrap())
        .collect()
}

async fn sealed_and_linked<S: Storage>(make: impl Fn() -> S, dir: &std::path::Path) {
    let log = Log::open(make(), options(dir, true)).unwrap();
    let api = LogApi::new(vec![log.clone()]);
    let who = Caller::default();
    let w = api
        .add_events(
            &who,
            ORIGIN,
            vec![
                input("alice", "login", None, Some("{\"raw\":1}")),
                input("bob", "login", Some("db-1"), None),
                input("alice", "read", Some("db-1"), Some("{\"raw\":2}")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(w.origin, ORIGIN);
    assert_eq!(
        w.events.iter().map(|s| s.index).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let note = Note::parse(&w.checkpoint).unwrap();
    let cp = Checkpoint::parse(note.text().as_bytes()).unwrap();
    assert_eq!(cp.size(), 3);
    for s in &w.events {
        let env = Envelope::decode(&s.envelope).unwrap();
        assert_eq!(env.submitter, "anonymous");
        assert_eq!(env.tenant, None);
        // The writer's copy is the leaf the tree holds.
        let got = api.event(&who, ORIGIN, s.index).await.unwrap();
        assert_eq!(got.envelope, s.envelope);
        verify_inclusion(&leaf_hash(&s.envelope), s.index, 3, &got.proof, cp.root()).unwrap();
        match (&env.payload, s.salt, got.payload) {
            (Some(c), Some(salt), Some((payload, stored_salt))) => {
                assert_eq!(salt, stored_salt);
                assert_eq!(*c, payload_commitment(&salt, &payload));
            }
            (None, None, None) => {}
            other => panic!(
                "event {}: payload, salt and commitment disagree: {other:?}",
                s.index
            ),
        }
    }
    // More, after a restart: the links continue from what is stored.
    log.close();
    drop(api);
    drop(log);
    let log = Log::open(make(), options(dir, true)).unwrap();
    let api = LogApi::new(vec![log.clone()]);
    api.add_events(
        &who,
        ORIGIN,
        vec![
            input("alice", "logout", Some("db-1"), None),
            input("carol", "login", None, None),
        ],
    )
    .await
    .unwrap();
    let envelopes = all_envelopes(&log);
    assert_eq!(envelopes.len(), 5);
    let want = expected_links(&envelopes);
    for (i, (e, w)) in envelopes.iter().zip(&want).enumerate() {
        assert_eq!(&e.prev.0, w, "links of event {i}");
    }
    // Alice's chain: 3 → 2 → 0.
    assert_eq!(envelopes[3].prev.get(KeyField::Actor), Some(2));
    assert_eq!(envelopes[2].prev.get(KeyField::Actor), Some(0));
    // Log time never moves backwards, and indexes by time find commits.
    assert!(envelopes
        .windows(2)
        .all(|w| w[0].log_time_ms <= w[1].log_time_ms));
    let reader = log.store().reader().unwrap();
    assert_eq!(reader.first_logged_at(0).unwrap(), Some(0));
    let t_last = envelopes[4].log_time_ms;
    let first_at_last = reader.first_logged_at(t_last).unwrap().unwrap();
    assert!(envelopes[first_at_last as usize].log_time_ms >= t_last);
    assert!(first_at_last == 0 || envelopes[first_at_last as usize - 1].log_time_ms < t_last);
    assert_eq!(reader.first_logged_at(t_last + 1).unwrap(), None);
    log.close();
}

#[tokio::test]
async fn events_are_sealed_linked_and_committed_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    sealed_and_linked(move || redb(&d), dir.path()).await;
}

#[tokio::test]
async fn events_are_sealed_linked_and_committed_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    sealed_and_linked(move || store.clone(), dir.path()).await;
}

#[tokio::test]
async fn concurrent_writers_get_complete_chains() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(redb(dir.path()), options(dir.path(), true)).unwrap();
    let api = LogApi::new(vec![log.clone()]);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..25 {
                let batch = (0..4)
                    .map(|k| {
                        let actor = format!("user{}", (w + n + k) % 5);
                        let action = ["read", "write", "delete"][(n + k) % 3];
                        let resource = format!("r{}", (w * k) % 7);
                        input(&actor, action, (k % 2 == 0).then_some(&resource), None)
                    })
                    .collect();
                api.add_events(&Caller::default(), ORIGIN, batch)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let envelopes = all_envelopes(&log);
    assert_eq!(envelopes.len(), 8 * 25 * 4);
    for (i, (e, w)) in envelopes.iter().zip(expected_links(&envelopes)).enumerate() {
        assert_eq!(e.prev.0, w, "links of event {i}");
    }
    // The newest of each key is what the store's key index says.
    let reader = log.store().reader().unwrap();
    for f in KeyField::ALL {
        let mut newest: HashMap<String, u64> = HashMap::new();
        for (i, e) in envelopes.iter().enumerate() {
            if let Some(v) = e.event.value(f) {
                newest.insert(v.to_owned(), i as u64);
            }
        }
        for (v, i) in newest {
            let k = quire_core::event::key(f, &v);
            assert_eq!(
                reader.newest_events(&[k]).unwrap(),
                vec![Some(i)],
                "{f:?} {v}"
            );
        }
    }
    log.close();
}

#[tokio::test]
async fn each_kind_of_log_refuses_the_other_kind_of_write_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let events = Log::open(MemoryStore::new(), options(dir.path(), true)).unwrap();
    let other = tempfile::tempdir().unwrap();
    let opaque = Log::open(MemoryStore::new(), options(other.path(), false)).unwrap();
    let e = events.add(vec![b"x".to_vec()]).await.unwrap_err();
    assert!(matches!(e, WriteError::Mode { events: true, .. }), "{e}");
    assert!(e.to_string().contains("is in event mode"), "{e}");
    let api = LogApi::new(vec![opaque.clone()]);
    let e = api
        .add_events(
            &Caller::default(),
            ORIGIN,
            vec![input("a", "b", None, None)],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition, "{e}");
    assert!(
        e.to_string().contains("takes opaque entries, not events"),
        "{e}"
    );
    let e = api.event(&Caller::default(), ORIGIN, 0).await.unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition, "{e}");
    events.close();
    opaque.close();
}

#[tokio::test]
async fn invalid_events_are_refused_naming_the_event_the_field_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(MemoryStore::new(), options(dir.path(), true)).unwrap();
    let api = LogApi::new(vec![log.clone()]);
    let mut bad = input("", "login", None, None);
    bad.event.actor = String::new();
    let e = api
        .add_events(
            &Caller::default(),
            ORIGIN,
            vec![input("a", "b", None, None), bad],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument);
    assert_eq!(
        e.to_string(),
        "event 1: event field actor: must be 1 to 256 bytes, is 0"
    );
    let mut huge = input("a", "b", None, None);
    for i in 0..63 {
        huge.event
            .attributes
            .insert(format!("k{i}"), "v".repeat(1100));
    }
    let e = api
        .add_events(&Caller::default(), ORIGIN, vec![huge])
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("event 0: its envelope could reach"),
        "{e}"
    );
    let big = input("a", "b", None, Some(&"p".repeat(256 * 1024 + 1)));
    let e = api
        .add_events(&Caller::default(), ORIGIN, vec![big])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "event 0: the payload is 262145 bytes; the limit is 262144"
    );
    // Nothing was written by the refused requests: the first event of the
    // first request is not in the log either.
    assert_eq!(log.latest().stored.size, 0);
    let e = api
        .add_events(&Caller::default(), ORIGIN, Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Write(WriteError::Invalid(_))), "{e}");
    log.close();
}

#[tokio::test]
async fn the_mode_is_fixed_with_the_log() {
    // An event log reopened without event mode.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(redb(dir.path()), options(dir.path(), true)).unwrap();
    log.close();
    drop(log);
    let e = Log::open(redb(dir.path()), options(dir.path(), false))
        .err()
        .unwrap();
    assert!(matches!(e, OpenError::ModeChanged { .. }), "{e}");
    assert!(e.to_string().contains("is in event mode"), "{e}");
    // A log of opaque entries turned to event mode.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(redb(dir.path()), options(dir.path(), false)).unwrap();
    log.add(vec![b"opaque".to_vec()]).await.unwrap();
    log.close();
    drop(log);
    let e = Log::open(redb(dir.path()), options(dir.path(), true))
        .err()
        .unwrap();
    assert!(e.to_string().contains("holds opaque entries"), "{e}");
    // An empty log of opaque entries may become an event log, for good.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(redb(dir.path()), options(dir.path(), false)).unwrap();
    log.close();
    drop(log);
    let log = Log::open(redb(dir.path()), options(dir.path(), true)).unwrap();
    assert!(log.events());
    log.close();
    drop(log);
    let e = Log::open(redb(dir.path()), options(dir.path(), false))
        .err()
        .unwrap();
    assert!(matches!(e, OpenError::ModeChanged { .. }), "{e}");
}

/// Writes batches whose events share keys and, often, a log time; then
/// checks the index against the envelopes, damages it, checks and mends it.
async fn index_rebuilds<S: Storage>(log: Log<S>, engine: &str) {
    use quire_server::events::reindex::reindex;
    let api = LogApi::new(vec![log.clone()]);
    for n in 0..30 {
        let batch = (0..7)
            .map(|k| {
                input(
                    &format!("user{}", (n * k) % 5),
                    ["read", "write"][k % 2],
                    (k % 3 == 0).then_some("r1"),
                    None,
                )
            })
            .collect();
        api.add_events(&Caller::default(), ORIGIN, batch)
            .await
            .unwrap();
    }
    let run = |write: bool| reindex(log.store(), write, |_, _| {}).unwrap();
    let (diff, rebuilt) = run(false);
    assert!(diff.is_empty(), "{engine}: {diff:?}");
    assert_eq!(
        rebuilt.newest.len(),
        5 + 2 + 1 + 1,
        "{engine}: actors, actions, r1, the type"
    );
    // Damaged on purpose: a key dropped, one pointing elsewhere, one no
    // event has, a log time dropped.
    let mut keys: Vec<_> = rebuilt.newest.iter().map(|(k, i)| (*k, *i)).collect();
    keys.remove(0);
    keys[0].1 += 1;
    keys.push((quire_core::leaf_hash(b"no such key"), 3));
    let mut times: Vec<_> = rebuilt.times.iter().map(|(t, i)| (*t, *i)).collect();
    times.remove(0);
    log.store().replace_event_index(&keys, &times).unwrap();
    let (diff, _) = run(false);
    assert_eq!(
        (diff.wrong_keys, diff.extra_keys, diff.wrong_times),
        (2, 1, 1),
        "{engine}: {diff:?}"
    );
    // Checking wrote nothing; rebuilding mends it.
    assert!(!run(false).0.is_empty());
    assert!(!run(true).0.is_empty());
    let (diff, again) = run(false);
    assert!(diff.is_empty(), "{engine}: {diff:?}");
    assert_eq!(again, rebuilt);
    log.close();
}

#[tokio::test]
async fn the_index_written_at_ingestion_equals_the_one_rebuilt_from_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    index_rebuilds(
        Log::open(redb(dir.path()), options(dir.path(), true)).unwrap(),
        "redb",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let memory = Log::open(MemoryStore::new(), options(dir.path(), true)).unwrap();
    index_rebuilds(memory, "memory").await;
}

#[tokio::test]
async fn retention_erases_old_payloads_by_an_erasure_event() {
    use std::sync::atomic::{AtomicU64, Ordering};
    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_800_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(T0));
    let mut opts = options(dir.path(), true);
    let clock = Arc::clone(&now);
    opts.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    let log = Log::open(redb(dir.path()), opts).unwrap();
    let api = LogApi::new(vec![log.clone()]);
    // Day 0: events 0-2 (1 without a payload); day 1: 3-4; day 2: 5.
    for (day, events) in [
        (0, vec![Some("a0"), None, Some("a2")]),
        (1, vec![Some("b3"), Some("b4")]),
        (2, vec![Some("c5")]),
    ] {
        now.store(T0 + day * DAY, Ordering::SeqCst);
        let batch = events
            .into_iter()
            .map(|p| input("alice", "act", None, p))
            .collect();
        api.add_events(&Caller::default(), ORIGIN, batch)
            .await
            .unwrap();
    }
    // Retention's own now: one day kept, so day 0 goes (the log's clock
    // stays at day 2).
    let at = T0 + 2 * DAY - 1;
    let w = api.retain(ORIGIN, at, 1).await.unwrap().unwrap();
    let erasure = Envelope::decode(&w.events[0].envelope).unwrap();
    assert_eq!(w.events[0].index, 6);
    assert_eq!(erasure.event.kind, "quire.erasure");
    assert_eq!(erasure.event.action, "retain");
    assert_eq!(erasure.submitter, "server");
    assert_eq!(erasure.event.attributes["from"], "0");
    assert_eq!(erasure.event.attributes["to"], "3");
    let r = log.store().reader().unwrap();
    use quire_server::store::Payload;
    assert_eq!(r.payload(0).unwrap(), Some(Payload::Erased { by: 6 }));
    assert_eq!(r.payload(1).unwrap(), None, "it never had one");
    assert_eq!(r.payload(2).unwrap(), Some(Payload::Erased { by: 6 }));
    for i in [3, 4, 5] {
        assert!(
            matches!(r.payload(i).unwrap(), Some(Payload::Stored(_))),
            "{i}"
        );
    }
    // Nothing more to erase until time moves on.
    assert!(api.retain(ORIGIN, at, 1).await.unwrap().is_none());
    let later = T0 + 3 * DAY;
    now.store(later, Ordering::SeqCst);
    let w = api.retain(ORIGIN, later, 1).await.unwrap().unwrap();
    let erasure = Envelope::decode(&w.events[0].envelope).unwrap();
    assert_eq!(
        (
            erasure.event.attributes["from"].as_str(),
            erasure.event.attributes["to"].as_str()
        ),
        ("3", "5")
    );
    let r = log.store().reader().unwrap();
    assert!(matches!(r.payload(5).unwrap(), Some(Payload::Stored(_))));
    // A reader is told which erasure took it.
    let got = api.event(&Caller::default(), ORIGIN, 4).await.unwrap();
    assert_eq!(got.erased_by, Some(w.events[0].index));
    assert_eq!(got.payload, None);
    log.close();
}
