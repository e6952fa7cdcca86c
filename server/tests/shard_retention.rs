//! The retention of a log family's old shards (`drop_entries_after_days`):
//! a frozen shard drops its entries that many days after its period ended,
//! and keeps every hash, checkpoint and proof; its entries answer
//! NOT_FOUND saying when they were dropped; the file holds them no more
//! after compaction; the shard opens again, still dropped, and checks
//! clean. A shard whose final checkpoint is not witnessed keeps its
//! entries. The clock is the test's: days are placed, not waited for.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quire_core::{leaf_hash, Checkpoint, LogKeyAlgorithm, LogSigner, Note};
use quire_server::admin::{Admin, Opener};
use quire_server::api::{Caller, Kind, LeafRef, LogApi};
use quire_server::config::{Config, FamilyConfig};
use quire_server::family::Families;
use quire_server::highwater::HighWater;
use quire_server::lifecycle::LogState;
use quire_server::log::{Log, LogOptions};
use quire_server::store::redb::{RedbOptions, RedbStore};
use tokio_stream::StreamExt as _;

const FAMILY: &str = "acme.example/audit";
/// 2026-12-31T23:59:59.999Z: the last millisecond of December.
const DEC_LAST: u64 = 1_798_761_599_999;
const DAY: u64 = 86_400_000;

fn file_of(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!("{}.redb", origin.replace('/', "_")))
}

fn open(
    dir: &Path,
    origin: &str,
    signer: LogSigner,
    clock: quire_server::log::Clock,
) -> Log<RedbStore> {
    let store = RedbStore::open(&file_of(dir, origin), RedbOptions::default()).unwrap();
    let mut opts = LogOptions::new(
        origin,
        vec![signer],
        HighWater::at(dir.join(format!("{}.hw", origin.replace('/', "_")))),
    );
    opts.clock = clock;
    Log::open(store, opts).unwrap()
}

/// A server's log API, admin and families over redb files in `dir`, timed
/// by `now`, with `family` configured as `text`; each shard's key kept in
/// `keys` so that a test can open it again.
fn server(
    dir: &Path,
    now: &Arc<AtomicU64>,
    text: &str,
    keys: &Arc<Mutex<HashMap<String, LogSigner>>>,
) -> (LogApi<RedbStore>, Families<RedbStore>) {
    let clock: quire_server::log::Clock = {
        let now = Arc::clone(now);
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let opener: Opener<RedbStore> = {
        let (dir, clock, keys) = (dir.to_owned(), Arc::clone(&clock), Arc::clone(keys));
        Arc::new(move |cfg| {
            let signer = keys
                .lock()
                .unwrap()
                .entry(cfg.origin.clone())
                .or_insert_with(|| {
                    LogSigner::generate(LogKeyAlgorithm::Ed25519, &cfg.origin).unwrap()
                })
                .clone();
            let store = RedbStore::open(&file_of(&dir, &cfg.origin), RedbOptions::default())?;
            let mut opts = LogOptions::new(
                &cfg.origin,
                vec![signer],
                HighWater::at(dir.join(format!("{}.hw", cfg.origin.replace('/', "_")))),
            );
            opts.clock = Arc::clone(&clock);
            opts.events = cfg.events;
            Ok(Log::open(store, opts)?)
        })
    };
    let family: FamilyConfig = toml::from_str(text).unwrap();
    let config = Config {
        data_dir: dir.join("data"),
        families: vec![family.clone()],
        ..Config::default()
    };
    let api = LogApi::<RedbStore>::new(Vec::new())
        .with_clock(Arc::clone(&clock))
        .with_families([(family.origin.clone(), family.period)]);
    let admin = Admin::new(api.clone(), config, Some(opener), None);
    (api.clone(), Families::new(admin, vec![family], clock))
}

/// Random-looking entries: their bytes are stored as they are (a
/// compressed bundle keeps unique bytes as literals), so an entry can be
/// looked for in the file by its middle bytes (a match on the repeated
/// length prefix may run a byte or two into an entry's edges).
fn entry(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_shard_drops_its_entries_after_its_days_and_keeps_every_proof() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(DEC_LAST - 60_000));
    let keys = Arc::default();
    let (api, families) = server(
        dir.path(),
        &now,
        &format!("origin = \"{FAMILY}\"\nperiod = \"month\"\ndrop_entries_after_days = 30\n"),
        &keys,
    );
    let (dec, jan) = (format!("{FAMILY}/2026-12"), format!("{FAMILY}/2027-01"));
    assert_eq!(
        families.tick().await.unwrap().created,
        [dec.clone(), jan.clone()]
    );
    let caller = Caller::default();
    let all: Vec<Vec<u8>> = (0..300).map(entry).collect();
    let mut first = None;
    for chunk in all.chunks(100) {
        let w = api
            .add(&caller, FAMILY, chunk.to_vec(), true, false)
            .await
            .unwrap();
        assert_eq!(w.origin, dec);
        first.get_or_insert((w.checkpoint.unwrap(), w.proofs[42].clone()));
    }
    let (first_note, proof_42) = first.unwrap();
    let first_cp = Checkpoint::parse(Note::parse(&first_note).unwrap().text().as_bytes()).unwrap();
    let path = file_of(dir.path(), &dec);
    assert!(
        contains(&std::fs::read(&path).unwrap(), &all[42][8..40]),
        "the entries are in the file to begin with"
    );

    // The period ends: the shard is frozen, and keeps its entries for 30
    // days after.
    now.store(DEC_LAST + 1, Ordering::SeqCst);
    assert_eq!(families.tick().await.unwrap().frozen, [dec.as_str()]);
    now.store(DEC_LAST + 1 + 30 * DAY - 1, Ordering::SeqCst);
    let t = families.tick().await.unwrap();
    assert!(t.dropped.is_empty() && t.kept.is_empty(), "{t:?}");
    assert!(!api
        .entry_bundle(&caller, &dec, 0, None)
        .await
        .unwrap()
        .is_empty());

    // Thirty days after: dropped, once.
    let at = DEC_LAST + 1 + 30 * DAY;
    now.store(at, Ordering::SeqCst);
    assert_eq!(families.tick().await.unwrap().dropped, [dec.as_str()]);
    assert!(families.tick().await.unwrap().dropped.is_empty(), "once");
    let log = api.get(&dec).unwrap();
    assert_eq!(log.state().0, LogState::Frozen);
    assert_eq!(log.dropped().map(|d| (d.size, d.at_ms)), Some((300, at)));
    assert_eq!(api.summary(&log).entries_dropped_at_ms, Some(at));
    let final_root = log.latest().root;

    // Its entries answer NOT_FOUND, naming when they were dropped.
    let e = api.entry_bundle(&caller, &dec, 0, None).await.unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("dropped by retention at {at} ms")),
        "{e}"
    );
    let pages: Vec<_> = api.entries(&caller, &dec, 0, 10).unwrap().collect().await;
    let e = pages
        .into_iter()
        .find_map(Result::err)
        .expect("a failed page");
    assert_eq!(e.kind(), Kind::NotFound, "{e}");

    // Every proof remains: the one a write got, one by leaf hash, a
    // consistency proof from the first checkpoint, the tiles.
    quire_core::verify_inclusion(
        &leaf_hash(&all[42]),
        42,
        first_cp.size(),
        &proof_42,
        first_cp.root(),
    )
    .unwrap();
    let by_hash = api
        .inclusion_proof(&caller, &dec, LeafRef::Hash(leaf_hash(&all[200])), 0)
        .await
        .unwrap();
    assert_eq!((by_hash.index, by_hash.tree_size), (200, 300));
    quire_core::verify_inclusion(&leaf_hash(&all[200]), 200, 300, &by_hash.proof, &final_root)
        .unwrap();
    let c = api
        .consistency_proof(&caller, &dec, first_cp.size(), 300, false)
        .await
        .unwrap();
    quire_core::verify_consistency(first_cp.size(), 300, &c.proof, first_cp.root(), &final_root)
        .unwrap();
    let tile = api.tile(&caller, &dec, 0, 1, Some(44)).unwrap();
    let leaves: Vec<u8> = all[256..300].iter().flat_map(|e| leaf_hash(e).0).collect();
    assert_eq!(tile, leaves);

    // The next shard is untouched.
    let w = api
        .add(&caller, FAMILY, vec![b"january".to_vec()], false, false)
        .await
        .unwrap();
    assert_eq!(w.origin, jan);
    let pages: Vec<_> = api.entries(&caller, &jan, 0, 1).unwrap().collect().await;
    assert_eq!(
        pages.into_iter().next().unwrap().unwrap().entries,
        [b"january".to_vec()]
    );

    // Closed, compacted: the entries are gone from the file; opened
    // again, the shard is still dropped and checks clean.
    let signer = keys.lock().unwrap()[&dec].clone();
    for l in api.logs() {
        l.close();
    }
    drop((log, families, api));
    let before = std::fs::metadata(&path).unwrap().len();
    let after = RedbStore::compact_file(&path).unwrap();
    assert!(
        after < before,
        "compaction returned the pages: {before} -> {after}"
    );
    let bytes = std::fs::read(&path).unwrap();
    for e in [&all[0], &all[42], &all[299]] {
        assert!(
            !contains(&bytes, &e[8..40]),
            "an entry's bytes are in the file"
        );
    }
    let clock: quire_server::log::Clock = Arc::new(move || at);
    let again = open(dir.path(), &dec, signer.clone(), clock);
    assert_eq!(again.state().0, LogState::Frozen);
    assert_eq!(again.dropped().map(|d| d.at_ms), Some(at));
    let report = quire_server::fsck::fsck(
        again.store(),
        &dec,
        &[signer.verifier()],
        &HighWater::at(dir.path().join(format!("{}.hw", dec.replace('/', "_")))),
        |_, _| {},
    )
    .unwrap();
    assert!(report.clean(), "{:?}", report.problems);
    assert_eq!((report.size, report.entries), (300, 0));
    assert!(
        report.hashes >= 300,
        "every leaf hash checked: {}",
        report.hashes
    );
    again.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_whose_final_checkpoint_is_not_witnessed_keeps_its_entries() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(DEC_LAST - 60_000));
    let witness = quire_core::WitnessSigner::generate("witness.example").unwrap();
    // A witness that never answers: nothing is ever witnessed.
    let text = format!(
        "origin = \"{FAMILY}\"\nperiod = \"month\"\ndrop_entries_after_days = 1\n\
         [shard.witnessing]\ntimeout_ms = 100\n\
         [[shard.witnessing.witnesses]]\nurl = \"http://127.0.0.1:1\"\nkey = \"{}\"\n",
        witness.verifier().to_vkey()
    );
    let (api, families) = server(dir.path(), &now, &text, &Arc::default());
    let dec = format!("{FAMILY}/2026-12");
    families.tick().await.unwrap();
    api.add(&Caller::default(), FAMILY, vec![entry(1)], false, false)
        .await
        .unwrap();
    now.store(DEC_LAST + 1, Ordering::SeqCst);
    assert_eq!(families.tick().await.unwrap().frozen, [dec.as_str()]);
    now.store(DEC_LAST + 1 + 2 * DAY, Ordering::SeqCst);
    let t = families.tick().await.unwrap();
    assert!(t.dropped.is_empty(), "{t:?}");
    assert_eq!(t.kept.len(), 1, "{t:?}");
    assert_eq!(t.kept[0].0, dec);
    assert!(
        t.kept[0].1.contains(
            "its final checkpoint (size 1) is not witnessed yet (newest witnessed: none)"
        ),
        "{}",
        t.kept[0].1
    );
    let log = api.get(&dec).unwrap();
    assert_eq!(log.dropped(), None);
    assert!(api
        .entry_bundle(&Caller::default(), &dec, 0, Some(1))
        .await
        .is_ok());
    // An active shard is refused by name, too.
    let jan = api.get(&format!("{FAMILY}/2027-01")).unwrap();
    let e = api
        .drop_entries(&jan, DEC_LAST + 1 + 2 * DAY)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("is ACTIVE: only a frozen log's entries are dropped"),
        "{e}"
    );
    for l in api.logs() {
        l.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_shard_drops_its_envelopes_and_payloads_and_says_so() {
    use quire_core::event::{Event, Outcome};
    use quire_server::api::EventInput;
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(DEC_LAST - 60_000));
    let text = format!(
        "origin = \"{FAMILY}\"\nperiod = \"month\"\ndrop_entries_after_days = 7\n\
         [shard]\nevents = true\nretention_days = 7\nkey_map = false\n"
    );
    let (api, families) = server(dir.path(), &now, &text, &Arc::default());
    let dec = format!("{FAMILY}/2026-12");
    families.tick().await.unwrap();
    let caller = Caller::default();
    let inputs = (0..3)
        .map(|i| {
            let mut e = Event::new("test.event", "alice", "login");
            e.outcome = Outcome::Success;
            EventInput {
                event: e,
                payload: Some(format!("payload {i}").into_bytes()),
            }
        })
        .collect();
    let w = api.add_events(&caller, FAMILY, inputs).await.unwrap();
    assert_eq!(w.origin, dec);
    assert!(api.event(&caller, &dec, 1).await.unwrap().payload.is_some());
    now.store(DEC_LAST + 1, Ordering::SeqCst);
    assert_eq!(families.tick().await.unwrap().frozen, [dec.as_str()]);
    let at = DEC_LAST + 1 + 7 * DAY;
    now.store(at, Ordering::SeqCst);
    assert_eq!(families.tick().await.unwrap().dropped, [dec.as_str()]);
    let e = api.event(&caller, &dec, 1).await.unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("dropped by retention at {at} ms")),
        "{e}"
    );
    // A search by time cannot prove its boundaries without envelopes: it
    // says why, rather than answering with nothing.
    let e = match api.search_events(&caller, &dec, 0, 0, 0).await {
        Err(e) => e,
        Ok(stream) => {
            let pages: Vec<_> = stream.collect().await;
            pages
                .into_iter()
                .find_map(Result::err)
                .expect("a failed page")
        }
    };
    assert_eq!(e.kind(), Kind::NotFound, "{e}");
    let log = api.get(&dec).unwrap();
    let store = log.store();
    use quire_server::store::{Storage as _, StorageReader as _};
    assert_eq!(store.reader().unwrap().payload(1).unwrap(), None);
    for l in api.logs() {
        l.close();
    }
}
