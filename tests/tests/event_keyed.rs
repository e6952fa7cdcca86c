//! Searching events by key (`docs/EVENTS.md` §11): the server's answer
//! checked by the client's `KeyCheck`, for actor, action, resource and
//! type, and a server that lies, as a test double that omits, reorders,
//! repeats, replaces or invents an event, or shows another key's map
//! proof or a head that is not one, caught every time. The log's clock
//! is the test's; the map is waited for by bounded polling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use quire_client::keyed::{KeyAnswer, KeyCheck};
use quire_client::policy::LogTrust;
use quire_client::search::SearchError;
use quire_core::event::{Event, KeyField};
use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_proto::v1::KeyPage;
use quire_server::api::{Caller, EventInput, KeyQuery, LogApi};
use quire_server::log::Log;
use quire_server::store::redb::RedbStore;
use tokio_stream::StreamExt as _;

const ORIGIN: &str = "keyed.example/events";
const BATCHES: u64 = 40;
const PER_BATCH: u64 = 10;
const T0: u64 = 1_800_000_000_000;
const ACTIONS: [&str; 3] = ["login", "read", "write"];

/// What the test wrote: each event's index, log time and fields.
struct Written {
    index: u64,
    time: u64,
    actor: String,
    action: String,
    resource: Option<String>,
}

struct Fixture {
    _dir: tempfile::TempDir,
    api: LogApi<RedbStore>,
    trust: LogTrust,
    written: Vec<Written>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    let trust = LogTrust::of_key(ORIGIN, signer.verifier());
    let (now, clock) = quire_tests::eventlog::test_clock(T0);
    let (log, api) = quire_tests::eventlog::open(dir.path(), ORIGIN, &signer, true, Some(clock));
    let mut written = Vec::new();
    for batch in 0..BATCHES {
        let time = T0 + batch * 1000;
        now.store(time, Ordering::SeqCst);
        let fields: Vec<(String, String, Option<String>)> = (0..PER_BATCH)
            .map(|i| {
                let n = batch * PER_BATCH + i;
                let resource = (!n.is_multiple_of(4)).then(|| format!("doc/{}", n % 5));
                (
                    format!("user{}", (batch + i) % 7),
                    ACTIONS[(n % 3) as usize].to_owned(),
                    resource,
                )
            })
            .collect();
        let events = fields
            .iter()
            .map(|(actor, action, resource)| {
                let mut e = Event::new("test.event", actor, action);
                e.resource = resource.clone();
                EventInput {
                    event: e,
                    payload: None,
                }
            })
            .collect();
        let w = api
            .add_events(&Caller::default(), ORIGIN, events)
            .await
            .unwrap();
        for (s, (actor, action, resource)) in w.events.iter().zip(fields) {
            written.push(Written {
                index: s.index,
                time,
                actor,
                action,
                resource,
            });
        }
    }
    // The map covers every event written: bounded polling.
    let last = written.last().unwrap().index;
    let maps = log.keymap().unwrap();
    for _ in 0..1000 {
        if maps.head().is_some_and(|h| h.size > last) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        maps.head().unwrap().size > last,
        "no map of every event within 10 s"
    );
    Fixture {
        _dir: dir,
        api,
        trust,
        written,
    }
}

fn query(field: KeyField, value: &str) -> KeyQuery {
    KeyQuery {
        field,
        value: value.into(),
        before: None,
        from_ms: 0,
        limit: 0,
    }
}

async fn pages(f: &Fixture, q: &KeyQuery) -> Vec<KeyPage> {
    let mut s = f
        .api
        .search_key(&Caller::default(), ORIGIN, q.clone())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(p) = s.next().await {
        out.push(quire_server::events::service::key_page(p.unwrap()));
    }
    out
}

fn check(f: &Fixture, q: &KeyQuery, pages: &[KeyPage]) -> Result<KeyAnswer, SearchError> {
    let mut c = KeyCheck::new(&f.trust, q.field, &q.value, q.before, q.from_ms);
    for p in pages {
        c.page(p)?;
    }
    c.finish()
}

fn indexes(a: &KeyAnswer) -> Vec<u64> {
    a.events.iter().map(|(i, _)| *i).collect()
}

/// The indexes of the key's events, newest first, from what was written.
fn expected(f: &Fixture, field: KeyField, value: &str) -> Vec<u64> {
    f.written
        .iter()
        .rev()
        .filter(|w| match field {
            KeyField::Actor => w.actor == value,
            KeyField::Action => w.action == value,
            KeyField::Resource => w.resource.as_deref() == Some(value),
            KeyField::Type => value == "test.event",
        })
        .map(|w| w.index)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_by_each_key_are_complete_and_proven() {
    let f = fixture().await;
    let cases = [
        (KeyField::Actor, "user3"),
        (KeyField::Actor, "user0"),
        (KeyField::Action, "write"),
        (KeyField::Resource, "doc/2"),
        (KeyField::Type, "test.event"), // every event: two pages
        (KeyField::Actor, "nobody"),    // no event
    ];
    for (field, value) in cases {
        let q = query(field, value);
        let a = check(&f, &q, &pages(&f, &q).await)
            .unwrap_or_else(|e| panic!("{} {value}: {e}", field.name()));
        assert_eq!(
            indexes(&a),
            expected(&f, field, value),
            "{} {value}",
            field.name()
        );
        assert_eq!(a.more_from, None);
        assert!(a.head.1 > f.written.last().unwrap().index);
    }

    // From a time: the events logged since, and the one before them.
    let mut q = query(KeyField::Actor, "user3");
    q.from_ms = T0 + 20 * 1000;
    let a = check(&f, &q, &pages(&f, &q).await).unwrap();
    let all = expected(&f, KeyField::Actor, "user3");
    let since: Vec<u64> = all
        .iter()
        .copied()
        .filter(|i| f.written.iter().find(|w| w.index == *i).unwrap().time >= q.from_ms)
        .collect();
    let got = indexes(&a);
    assert_eq!(&got[..since.len()], &since[..]);
    assert_eq!(got.len(), since.len() + 1, "and the event before: {got:?}");
    assert_eq!(a.more_from, None);

    // Cut at a limit, then continued from the link it names: together,
    // every event once.
    let mut q = query(KeyField::Type, "test.event");
    q.limit = 150;
    let first = check(&f, &q, &pages(&f, &q).await).unwrap();
    let next = first.more_from.expect("cut at 150");
    q.before = Some(next);
    q.limit = 0;
    let rest = check(&f, &q, &pages(&f, &q).await).unwrap();
    let mut got = indexes(&first);
    got.extend(indexes(&rest));
    assert_eq!(got, expected(&f, KeyField::Type, "test.event"));
    assert_eq!(rest.more_from, None);

    // Bad queries, by name.
    let mut q = query(KeyField::Actor, "");
    let e = f
        .api
        .search_key(&Caller::default(), ORIGIN, q.clone())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("must be 1 to 1024"), "{e}");
    q.value = "user3".into();
    q.before = Some(1 << 40);
    let e = f
        .api
        .search_key(&Caller::default(), ORIGIN, q)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("past the tree size"), "{e}");
}

/// Every way the double alters an honest answer, by name.
fn lies(honest: &[KeyPage], other: &[KeyPage]) -> Vec<(String, Vec<KeyPage>)> {
    let flat: Vec<_> = honest.iter().flat_map(|p| p.events.clone()).collect();
    let n = flat.len();
    // The answer as pages again, from a changed list of events.
    let repage = |events: Vec<quire_proto::v1::ProvenEvent>| -> Vec<KeyPage> {
        let mut out = honest.to_vec();
        for p in &mut out {
            p.events.clear();
        }
        out.truncate(1);
        out[0].events = events;
        out
    };
    let mut out = Vec::new();
    // Every position of a short answer; of a long one, its ends, its
    // middle and the edges of its first page.
    let positions: Vec<usize> = (0..n.saturating_sub(1))
        .filter(|j| n <= 80 || *j < 3 || *j + 4 > n || *j == n / 2 || (254..=256).contains(j))
        .collect();
    for j in positions {
        let mut e = flat.clone();
        e.remove(j);
        out.push((format!("omit event {j}"), repage(e)));
        let mut e = flat.clone();
        e.swap(j, j + 1);
        out.push((format!("swap events {j} and {}", j + 1), repage(e)));
        let mut e = flat.clone();
        e.insert(j, flat[j].clone());
        out.push((format!("repeat event {j}"), repage(e)));
        let mut e = flat.clone();
        e.insert(j, other[0].events[0].clone());
        out.push((format!("invent an event of another key at {j}"), repage(e)));
        if j + 2 < n {
            let mut e = flat.clone();
            e[j] = flat[j + 2].clone();
            out.push((
                format!("replace event {j} by a later one of the key"),
                repage(e),
            ));
        }
    }
    let mut e = flat.clone();
    if let Some(b) = e.get_mut(n / 2).and_then(|x| x.envelope.get_mut(10)) {
        *b ^= 1;
    }
    out.push(("alter an envelope".into(), repage(e)));
    out.push(("omit every event".into(), repage(Vec::new())));
    let mut p = honest.to_vec();
    p[0].map_proof = other[0].map_proof.clone();
    out.push(("another key's map proof".into(), p));
    let mut p = honest.to_vec();
    p[0].head = Some(flat[0].clone());
    out.push(("an event that is not a map head as the head".into(), p));
    let mut p = honest.to_vec();
    p[0].head = None;
    p[0].map_proof = None;
    out.push(("no map head".into(), p));
    let mut p = honest.to_vec();
    if let Some(mp) = p[0].map_proof.as_mut() {
        mp.leaf_index += 1;
    }
    out.push(("the map names another newest event".into(), p));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lies_about_a_key_is_caught_every_time() {
    let f = fixture().await;
    let other = pages(&f, &query(KeyField::Actor, "user5")).await;
    for (field, value) in [
        (KeyField::Actor, "user3"),
        (KeyField::Action, "login"),
        (KeyField::Resource, "doc/4"),
        (KeyField::Type, "test.event"),
    ] {
        let q = query(field, value);
        let honest = pages(&f, &q).await;
        let want = expected(&f, field, value);
        assert_eq!(indexes(&check(&f, &q, &honest).unwrap()), want);
        for (lie, p) in lies(&honest, &other) {
            match check(&f, &q, &p) {
                Err(_) => {}
                // Dropping the oldest events is an answer cut short: the
                // client says so, and what it shows is the true newest.
                Ok(a) => {
                    assert!(
                        a.more_from.is_some(),
                        "{} {value}: {lie}: taken as complete",
                        field.name()
                    );
                    let got = indexes(&a);
                    assert_eq!(
                        &want[..got.len()],
                        &got[..],
                        "{} {value}: {lie}",
                        field.name()
                    );
                }
            }
        }
    }
}

fn open(
    dir: &std::path::Path,
    signer: &LogSigner,
    key_map: bool,
) -> (Log<RedbStore>, LogApi<RedbStore>) {
    quire_tests::eventlog::open(dir, ORIGIN, signer, key_map, None)
}

async fn add(api: &LogApi<RedbStore>, actors: &[&str]) {
    let events = actors
        .iter()
        .map(|a| EventInput {
            event: Event::new("test.event", a, "act"),
            payload: None,
        })
        .collect();
    api.add_events(&Caller::default(), ORIGIN, events)
        .await
        .unwrap();
}

/// The published map head once the map is quiet: its head is the log's
/// last event and covers every event before it (bounded polling).
async fn quiet_head(log: &Log<RedbStore>) -> Arc<quire_server::events::map::MapHead> {
    let maps = log.keymap().unwrap();
    for _ in 0..1000 {
        if let Some(h) = maps.head() {
            if h.size == h.index && log.latest().stored.size == h.index + 1 {
                return h;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the key map did not settle within 10 s");
}

/// Alice's events, searched by actor and checked by the client.
async fn alice(api: &LogApi<RedbStore>, trust: &LogTrust) -> KeyAnswer {
    let q = query(KeyField::Actor, "alice");
    let mut s = api
        .search_key(&Caller::default(), ORIGIN, q.clone())
        .await
        .unwrap();
    let mut c = KeyCheck::new(trust, q.field, &q.value, None, 0);
    while let Some(p) = s.next().await {
        c.page(&quire_server::events::service::key_page(p.unwrap()))
            .unwrap();
    }
    c.finish().unwrap()
}

async fn close(log: Log<RedbStore>, api: LogApi<RedbStore>) {
    api.stop_streams();
    api.stopped().await;
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_log_takes_its_last_map_head_again_or_commits_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    let trust = LogTrust::of_key(ORIGIN, signer.verifier());
    let search = |api: LogApi<RedbStore>| {
        let trust = trust.clone();
        async move { indexes(&alice(&api, &trust).await) }
    };

    // Without a map: no head, and keyed searches are refused by name.
    let (log, api) = open(dir.path(), &signer, false);
    add(&api, &["alice", "bob", "alice"]).await;
    let e = api
        .search_key(&Caller::default(), ORIGIN, query(KeyField::Actor, "alice"))
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("has not committed to a key map"),
        "{e}"
    );
    close(log, api).await;

    // With one: a head of the map of the three events is appended.
    let (log, api) = open(dir.path(), &signer, true);
    let head = quiet_head(&log).await;
    assert_eq!((head.index, head.size), (3, 3));
    assert_eq!(search(api.clone()).await, vec![2, 0]);
    add(&api, &["alice"]).await;
    let head = quiet_head(&log).await;
    assert_eq!((head.index, head.size), (5, 5));
    assert_eq!(search(api.clone()).await, vec![4, 2, 0]);
    close(log, api).await;

    // Restarted: the last event is a head of everything before it, taken
    // again without a new one.
    let (log, api) = open(dir.path(), &signer, true);
    let again = quiet_head(&log).await;
    assert_eq!(
        (again.index, again.size, again.root),
        (head.index, head.size, head.root)
    );
    assert_eq!(log.latest().stored.size, 6);
    assert_eq!(search(api.clone()).await, vec![4, 2, 0]);
    close(log, api).await;
}

/// A log frozen right after its last events ends on a head of its whole
/// key map, sealed in the commit that records the freeze: searches by key
/// of the frozen log are proven complete up to its last event, before and
/// after a restart, and no head is left to append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_log_ends_on_a_head_of_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    let trust = LogTrust::of_key(ORIGIN, signer.verifier());
    let search = |api: LogApi<RedbStore>| {
        let trust = trust.clone();
        async move {
            let a = alice(&api, &trust).await;
            assert!(a.more_from.is_none());
            (indexes(&a), a.head)
        }
    };
    let (log, api) = open(dir.path(), &signer, true);
    add(&api, &["alice", "bob"]).await;
    quiet_head(&log).await;
    // Frozen at once: the follower may or may not have headed these.
    add(&api, &["alice", "carol"]).await;
    log.freeze().await.unwrap();
    let size = log.latest().stored.size;
    let head = log.keymap().unwrap().head().unwrap();
    assert_eq!(
        (head.index, head.size),
        (size - 1, size - 1),
        "the last event is a head of every event before it"
    );
    let (found, proven_by) = search(api.clone()).await;
    assert_eq!(found, vec![3, 0]);
    assert_eq!(proven_by, (size - 1, size - 1), "proven by the final head");
    close(log, api).await;

    let (log, api) = open(dir.path(), &signer, true);
    assert_eq!(log.state().0, quire_server::lifecycle::LogState::Frozen);
    let again = quiet_head(&log).await;
    assert_eq!((again.index, again.root), (head.index, head.root));
    assert_eq!(
        search(api.clone()).await,
        (vec![3, 0], (size - 1, size - 1))
    );
    assert_eq!(log.latest().stored.size, size, "nothing appended");
    close(log, api).await;
}
