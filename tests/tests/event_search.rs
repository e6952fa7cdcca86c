//! Searching events by log time: the server's answer checked by the
//! client's `TimeRangeCheck`, and a server that lies, as a test double
//! that omits, reorders, invents or moves events, or drops runs, caught
//! every time. The log's clock is the test's: every time is placed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::atomic::Ordering;

use quire_client::policy::LogTrust;
use quire_client::search::{SearchError, TimeRangeCheck};
use quire_core::event::{Envelope, Event};
use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_proto::v1::EventsPage;
use quire_server::api::{Caller, EventInput, LogApi};
use quire_server::log::Log;
use quire_server::store::redb::RedbStore;
use tokio_stream::StreamExt as _;

const ORIGIN: &str = "search.example/events";
/// Events in the log: batches of 10, the clock 1000 ms apart per batch.
const EVENTS: u64 = 700;
const T0: u64 = 1_800_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    api: LogApi<RedbStore>,
    log: Log<RedbStore>,
    trust: LogTrust,
    /// Each event's log time, by index.
    times: Vec<u64>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    let trust = LogTrust::of_key(ORIGIN, signer.verifier());
    let (now, clock) = quire_tests::eventlog::test_clock(T0);
    let (log, api) = quire_tests::eventlog::open(dir.path(), ORIGIN, &signer, false, Some(clock));
    for batch in 0..EVENTS / 10 {
        now.store(T0 + batch * 1000, Ordering::SeqCst);
        let events = (0..10)
            .map(|i| EventInput {
                event: Event::new("test.event", &format!("user{}", (batch + i) % 7), "act"),
                payload: None,
            })
            .collect();
        api.add_events(&Caller::default(), ORIGIN, events)
            .await
            .unwrap();
    }
    let times = (0..EVENTS).map(|i| T0 + (i / 10) * 1000).collect();
    Fixture {
        _dir: dir,
        api,
        log,
        trust,
        times,
    }
}

async fn pages(f: &Fixture, from: u64, to: u64, limit: u32) -> Vec<EventsPage> {
    let mut runs = f
        .api
        .search_events(&Caller::default(), ORIGIN, from, to, limit)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(r) = runs.next().await {
        let r = r.unwrap();
        out.push(EventsPage {
            checkpoint: r.checkpoint.to_vec(),
            first_index: r.first,
            envelopes: r.envelopes,
            left: quire_proto::hashes_to_wire(&r.left),
            consistency: quire_proto::hashes_to_wire(&r.consistency),
        });
    }
    out
}

fn check(
    f: &Fixture,
    from: u64,
    to: u64,
    pages: &[EventsPage],
) -> Result<(Vec<u64>, Option<u64>), SearchError> {
    let mut c = TimeRangeCheck::new(&f.trust, from, to);
    for p in pages {
        c.page(p)?;
    }
    let a = c.finish(None)?;
    Ok((a.events.iter().map(|(i, _)| *i).collect(), a.more_from))
}

/// The indexes of `[from, to)`, from the definition.
fn expected(f: &Fixture, from: u64, to: u64) -> Vec<u64> {
    (0..EVENTS)
        .filter(|i| {
            let t = f.times[*i as usize];
            t >= from && (to == 0 || t < to)
        })
        .collect()
}

#[tokio::test]
async fn answers_are_complete_and_proven_for_every_kind_of_range() {
    let f = fixture().await;
    let t = |i: u64| f.times[i as usize];
    let cases = [
        (t(250), t(520)),     // the middle, across pages
        (0, 0),               // everything
        (t(0), t(10)),        // the first batch
        (t(690), 0),          // the last batch, open-ended
        (t(300) + 1, t(310)), // between batches: no event
        (t(699) + 1, 0),      // after the last event
        (0, t(0)),            // before the first event
        (t(100), t(100) + 1), // one batch exactly
    ];
    for (from, to) in cases {
        let p = pages(&f, from, to, 0).await;
        let (events, more) =
            check(&f, from, to, &p).unwrap_or_else(|e| panic!("[{from}, {to}): {e}"));
        assert_eq!(events, expected(&f, from, to), "[{from}, {to})");
        assert_eq!(more, None, "[{from}, {to})");
    }
    // Cut by the limit: complete up to where it says, never claimed whole.
    let (from, to) = (t(250), t(520));
    let p = pages(&f, from, to, 25).await;
    let (events, more) = check(&f, from, to, &p).unwrap();
    assert_eq!(events, expected(&f, from, to)[..25].to_vec());
    assert_eq!(more, Some(events[24] + 1));
    f.log.close();
}

/// What the lying server did, and the pages it sent.
fn lies(honest: &[EventsPage]) -> Vec<(String, Vec<EventsPage>)> {
    let mut out = Vec::new();
    let fake = Envelope::decode(&honest[1].envelopes[5])
        .map(|mut e| {
            e.event.actor = "mallory".into();
            e.encode().unwrap()
        })
        .unwrap();
    for (p, page) in honest.iter().enumerate() {
        let n = page.envelopes.len();
        for at in [0, n / 2, n - 1] {
            let mut omit = honest.to_vec();
            omit[p].envelopes.remove(at);
            if !omit[p].envelopes.is_empty() {
                out.push((format!("omits event {at} of run {p}"), omit));
            }
            let mut invent = honest.to_vec();
            invent[p].envelopes.insert(at, fake.clone());
            out.push((format!("invents an event at {at} of run {p}"), invent));
            let mut replace = honest.to_vec();
            replace[p].envelopes[at] = fake.clone();
            out.push((format!("replaces event {at} of run {p}"), replace));
            if n > 1 {
                let mut swap = honest.to_vec();
                let other = if at + 1 < n { at + 1 } else { at - 1 };
                swap[p].envelopes.swap(at, other);
                out.push((format!("swaps events {at} and {other} of run {p}"), swap));
            }
        }
        // A run left out, and a run sent twice.
        let mut drop = honest.to_vec();
        drop.remove(p);
        out.push((format!("leaves run {p} out"), drop));
        let mut twice = honest.to_vec();
        twice.insert(p, honest[p].clone());
        out.push((format!("sends run {p} twice"), twice));
        // A run claimed at another place.
        let mut moved = honest.to_vec();
        moved[p].first_index += 1;
        out.push((format!("moves run {p} by one"), moved));
    }
    // Two runs in the wrong order.
    let mut order = honest.to_vec();
    order.swap(0, 1);
    out.push(("sends runs 0 and 1 in the wrong order".into(), order));
    // The event before the range left out: the answer starts inside.
    let mut start = honest.to_vec();
    start[0].envelopes.remove(0);
    start[0].first_index += 1;
    out.push(("starts after the event before the range".into(), start));
    out
}

#[tokio::test]
async fn a_lying_server_is_caught_every_time() {
    let f = fixture().await;
    let (from, to) = (f.times[250], f.times[520]);
    let honest = pages(&f, from, to, 0).await;
    assert!(honest.len() >= 3, "the answer spans several runs");
    let want = check(&f, from, to, &honest).unwrap();
    assert_eq!(want, (expected(&f, from, to), None));
    let lies = lies(&honest);
    assert!(lies.len() > 30);
    for (what, pages) in lies {
        match check(&f, from, to, &pages) {
            Err(_) => {}
            // Stopping early is allowed only when the client says so, and
            // then what it has must be the honest prefix.
            Ok((events, Some(more))) => {
                assert_eq!(
                    events,
                    want.0
                        .iter()
                        .copied()
                        .filter(|i| *i < more)
                        .collect::<Vec<_>>(),
                    "{what}: an answer cut short must be the honest prefix"
                );
            }
            Ok(answer) => panic!("a server that {what} was not caught: {answer:?}"),
        }
    }
    f.log.close();
}
