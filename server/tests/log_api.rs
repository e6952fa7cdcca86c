//! The transport-neutral log API, called directly (no gRPC): its rules, its
//! errors' kinds and messages, and the access policy asked before every
//! request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::{Arc, Mutex};

use quire_core::{leaf_hash, node_hash, Hash, LogKeyAlgorithm, LogSigner};
use quire_server::api::{Access, Action, ApiError, Caller, Kind, LeafRef, LogApi, PAGE_ENTRIES};
use quire_server::log::{Log, LogOptions};
use quire_server::store::memory::MemoryStore;
use tokio_stream::StreamExt as _;

const A: &str = "a.example/log";
const B: &str = "b.example/log";

fn open(dir: &std::path::Path, origin: &str) -> Log<MemoryStore> {
    Log::open(
        MemoryStore::new(),
        LogOptions::new(
            origin,
            vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, origin).unwrap()],
            quire_server::highwater::HighWater::at(
                dir.join(format!("{}.hw", origin.replace('/', "_"))),
            ),
        ),
    )
    .unwrap()
}

/// RFC 9162 §2.1.1 MTH, straight from the definition.
fn mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = n.next_power_of_two() / 2;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Refuses everything on log B; records every question.
#[derive(Clone, Default)]
struct OnlyA(Arc<Mutex<Vec<(String, Action)>>>);

impl Access for OnlyA {
    fn check(
        &self,
        caller: &Caller,
        origin: &str,
        action: Action,
        _entries: u64,
    ) -> Result<(), ApiError> {
        self.0.lock().unwrap().push((origin.to_owned(), action));
        if origin == B {
            return Err(ApiError::Denied {
                caller: caller.to_string(),
                action: action.words(),
                origin: origin.to_owned(),
                why: "no role on this log".into(),
            });
        }
        Ok(())
    }
}

/// Holds writes to log B to a quota that is used up; admits the rest.
struct QuotaOnB;

impl Access for QuotaOnB {
    fn check(&self, _: &Caller, origin: &str, action: Action, n: u64) -> Result<(), ApiError> {
        if origin == B && action == Action::Write && n > 0 {
            return Err(ApiError::Quota {
                message: "a quota of the test holds log B".into(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            });
        }
        Ok(())
    }
}

/// A write refused for a quota paces its log's commits (`pacing`); other
/// logs, reads and other refusals pace nothing.
#[tokio::test]
async fn a_write_refused_for_a_quota_paces_only_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), A), open(dir.path(), B));
    let api = LogApi::new(vec![a.clone(), b.clone()]).with_access(QuotaOnB);
    let who = Caller::default();
    api.add(&who, A, entries(2), false, false).await.unwrap();
    api.checkpoint(&who, B, false).await.unwrap();
    assert!(!a.commits_paced() && !b.commits_paced());
    let e = api
        .add(&who, B, entries(1), false, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::ResourceExhausted, "{e}");
    assert!(b.commits_paced(), "the log over its quota");
    assert!(!a.commits_paced(), "another log");
    // A paced log still takes what is admitted: A's writes go on, B's
    // reads too.
    api.add(&who, A, entries(3), false, false).await.unwrap();
    assert_eq!(api.list(&who).unwrap().len(), 2);
    // A refusal of another kind paces nothing.
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), B);
    let api = LogApi::new(vec![c.clone()]).with_access(OnlyA::default());
    api.add(&who, B, entries(1), false, false)
        .await
        .unwrap_err();
    assert!(!c.commits_paced());
}

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
}

#[tokio::test]
async fn every_request_asks_the_policy_with_its_action_and_a_refusal_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = OnlyA::default();
    let api =
        LogApi::new(vec![open(dir.path(), A), open(dir.path(), B)]).with_access(policy.clone());
    let who = Caller::default();
    api.add(&who, A, entries(3), false, false).await.unwrap();

    let denied = |r: Result<(), ApiError>, action: Action| {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), Kind::PermissionDenied, "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "an anonymous caller may not {} log \"{B}\": no role on this log",
                action.words()
            )
        );
    };
    denied(
        api.add(&who, B, entries(1), false, false).await.map(drop),
        Action::Write,
    );
    denied(
        api.checkpoint(&who, B, false).await.map(drop),
        Action::Audit,
    );
    denied(
        api.inclusion_proof(&who, B, LeafRef::Index(0), 0)
            .await
            .map(drop),
        Action::Audit,
    );
    denied(
        api.consistency_proof(&who, B, 1, 0, false).await.map(drop),
        Action::Audit,
    );
    denied(
        api.entry_with_proof(&who, B, 0).await.map(drop),
        Action::ReadEntries,
    );
    denied(api.entries(&who, B, 0, 0).map(drop), Action::ReadEntries);
    denied(api.tail(&who, B, 0).map(drop), Action::ReadEntries);
    denied(
        api.watch_checkpoints(&who, B, false).map(drop),
        Action::Audit,
    );
    denied(api.tile(&who, B, 0, 0, Some(1)).map(drop), Action::Audit);
    denied(
        api.entry_bundle(&who, B, 0, Some(1)).await.map(drop),
        Action::ReadEntries,
    );
    // Every question about B carried the action of its request.
    let asked: Vec<Action> = policy
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(o, _)| o == B)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        asked,
        [
            Action::Write,
            Action::Audit,
            Action::Audit,
            Action::Audit,
            Action::ReadEntries,
            Action::ReadEntries,
            Action::ReadEntries,
            Action::Audit,
            Action::Audit,
            Action::ReadEntries
        ]
    );
    // The list shows only what the caller may audit.
    let listed: Vec<String> = api
        .list(&who)
        .unwrap()
        .into_iter()
        .map(|l| l.origin)
        .collect();
    assert_eq!(listed, [A]);
    // And log A answers as usual.
    assert_eq!(api.list(&who).unwrap()[0].size, 3);
}

#[tokio::test]
async fn a_log_is_found_by_origin_and_an_empty_origin_only_names_the_only_log() {
    let dir = tempfile::tempdir().unwrap();
    let who = Caller::default();
    let two = LogApi::new(vec![open(dir.path(), A), open(dir.path(), B)]);
    let e = two.checkpoint(&who, "", false).await.unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument);
    assert_eq!(
        e.to_string(),
        format!("this server hosts 2 logs: name one by origin ({A}, {B})")
    );
    let e = two
        .checkpoint(&who, "c.example/typo", false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(
        e.to_string()
            .contains("known: a.example/log, b.example/log"),
        "{e}"
    );
    let e = two.checkpoint(&who, A, true).await.unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition);
    assert!(e.to_string().contains("no witnesses configured"), "{e}");

    let one = LogApi::new(vec![open(&dir.path().join("one"), A)]);
    let note = one.checkpoint(&who, "", false).await.unwrap();
    assert!(note.starts_with(format!("{A}\n0\n").as_bytes()));
}

#[tokio::test]
async fn sizes_default_to_the_latest_and_proofs_verify_against_the_rfc_root() {
    let dir = tempfile::tempdir().unwrap();
    let who = Caller::default();
    let api = LogApi::new(vec![open(dir.path(), A)]);
    let all = entries(10);
    let w = api.add(&who, A, all.clone(), true, false).await.unwrap();
    assert_eq!(w.entries.len(), 10);
    assert_eq!(w.proofs.len(), 10);
    let root = mth(&all);
    for (i, p) in w.proofs.iter().enumerate() {
        quire_core::verify_inclusion(&leaf_hash(&all[i]), i as u64, 10, p, &root).unwrap();
    }
    assert!(w
        .checkpoint
        .unwrap()
        .starts_with(format!("{A}\n10\n").as_bytes()));

    // 0 is the latest size, and its checkpoint comes with the proof.
    let p = api
        .inclusion_proof(&who, A, LeafRef::Hash(leaf_hash(&all[3])), 0)
        .await
        .unwrap();
    assert_eq!((p.index, p.tree_size), (3, 10));
    assert!(p.checkpoint.is_some());
    quire_core::verify_inclusion(&leaf_hash(&all[3]), 3, 10, &p.proof, &root).unwrap();
    // An older size: proven against that size's root, no checkpoint.
    let p = api
        .inclusion_proof(&who, A, LeafRef::Index(3), 5)
        .await
        .unwrap();
    assert!(p.checkpoint.is_none());
    quire_core::verify_inclusion(&leaf_hash(&all[3]), 3, 5, &p.proof, &mth(&all[..5])).unwrap();
    for e in [
        api.inclusion_proof(&who, A, LeafRef::Index(3), 11)
            .await
            .unwrap_err(),
        api.inclusion_proof(&who, A, LeafRef::Index(10), 0)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), Kind::OutOfRange, "{e}");
    }
    let e = api
        .inclusion_proof(&who, A, LeafRef::Hash(leaf_hash(b"never added")), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);

    // Consistency: the seed is the old root for a power-of-two old size
    // (RFC 9162 leaves it out of the proof), else the proof's first hash.
    let c = api.consistency_proof(&who, A, 4, 0, true).await.unwrap();
    assert_eq!((c.old_size, c.new_size), (4, 10));
    assert_eq!(c.seed, Some(mth(&all[..4])));
    quire_core::verify_consistency(4, 10, &c.proof, &mth(&all[..4]), &root).unwrap();
    let c = api.consistency_proof(&who, A, 3, 0, true).await.unwrap();
    assert_eq!(c.seed, c.proof.first().copied());
    assert!(api
        .consistency_proof(&who, A, 3, 0, false)
        .await
        .unwrap()
        .seed
        .is_none());
    let e = api
        .consistency_proof(&who, A, 6, 5, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");

    let e = api.entry_with_proof(&who, A, 7).await.unwrap();
    assert_eq!(e.entry, all[7]);
    quire_core::verify_inclusion(&leaf_hash(&all[7]), 7, 10, &e.proof, &root).unwrap();
}

#[tokio::test]
async fn entry_streams_page_at_bundle_bounds_and_refuse_empty_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let who = Caller::default();
    let api = LogApi::new(vec![open(dir.path(), A)]);
    let n = PAGE_ENTRIES as usize + 44;
    let all = entries(n);
    api.add(&who, A, all.clone(), false, false).await.unwrap();

    let mut pages = api.entries(&who, A, 200, 0).unwrap();
    let mut got = Vec::new();
    let mut starts = Vec::new();
    while let Some(p) = pages.next().await {
        let p = p.unwrap();
        starts.push(p.start);
        got.extend(p.entries);
    }
    // The first page ends at the bundle boundary, 256.
    assert_eq!(starts, [200, PAGE_ENTRIES]);
    assert_eq!(got, all[200..]);

    let e = api.entries(&who, A, 5, 5).map(drop).unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument);
    assert_eq!(e.to_string(), "start 5 is not below the end 5 asked for");
    let e = api.entries(&who, A, n as u64, 0).map(drop).unwrap_err();
    assert_eq!(e.kind(), Kind::OutOfRange);
    let e = api.tail(&who, A, n as u64 + 1).map(drop).unwrap_err();
    assert_eq!(e.kind(), Kind::OutOfRange);

    // A tail page carries a checkpoint that covers it.
    let mut tail = api.tail(&who, A, n as u64 - 2).unwrap();
    let p = tail.next().await.unwrap().unwrap();
    assert_eq!(p.entries, all[n - 2..]);
    assert!(p.checkpoint.starts_with(format!("{A}\n{n}\n").as_bytes()));
}

/// A log family rolls over under concurrent writers that name the family:
/// its shards are created ahead, the one whose period is over is frozen,
/// and one frozen early by an admin hands over to the next; no write
/// fails, every acknowledged entry is in exactly one shard where its answer
/// said, with a proof that verifies against the checkpoint it got, and
/// each shard's last checkpoint is consistent with every one it gave out.
/// The clock is the test's: the boundary is placed, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_family_rolls_over_under_concurrent_writers_and_no_write_fails() {
    use quire_server::admin::{Admin, Opener};
    use quire_server::config::{Config, FamilyConfig};
    use quire_server::family::{Families, Period};
    use quire_server::lifecycle::LogState;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const FAMILY: &str = "acme.example/audit";
    /// 2026-12-31T23:59:59.999Z: the last millisecond of December.
    const DEC_LAST: u64 = 1_798_761_599_999;
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(DEC_LAST - 60_000));
    let clock: quire_server::log::Clock = {
        let now = Arc::clone(&now);
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let opener: Opener<MemoryStore> = {
        let (dir, clock) = (dir.path().to_owned(), Arc::clone(&clock));
        Arc::new(move |cfg| {
            let mut opts = LogOptions::new(
                &cfg.origin,
                vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, &cfg.origin)?],
                quire_server::highwater::HighWater::at(
                    dir.join(format!("{}.hw", cfg.origin.replace('/', "_"))),
                ),
            );
            opts.clock = Arc::clone(&clock);
            Ok(Log::open(MemoryStore::new(), opts)?)
        })
    };
    let family: FamilyConfig =
        toml::from_str(&format!("origin = \"{FAMILY}\"\nperiod = \"month\"\n")).unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        families: vec![family.clone()],
        ..Config::default()
    };
    let api = LogApi::<MemoryStore>::new(Vec::new())
        .with_clock(Arc::clone(&clock))
        .with_families([(FAMILY.to_owned(), Period::Month)]);
    let admin = Admin::new(api.clone(), config, Some(opener), None);
    let families = Families::new(admin.clone(), vec![family], Arc::clone(&clock));
    let (dec, jan, feb) = (
        format!("{FAMILY}/2026-12"),
        format!("{FAMILY}/2027-01"),
        format!("{FAMILY}/2027-02"),
    );
    let t = families.tick().await.unwrap();
    assert_eq!(
        t.created,
        [dec.clone(), jan.clone()],
        "the shard of now and one ahead"
    );
    assert!(t.frozen.is_empty());
    assert_eq!(families.tick().await.unwrap().created.len(), 0, "once");

    // Writers naming the family, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    type Acked = (String, u64, Vec<u8>, Vec<u8>, Vec<Hash>);
    let mut writers = Vec::new();
    for w in 0..6 {
        let (api, stop) = (api.clone(), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut acked: Vec<Acked> = Vec::new();
            let mut failed = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let e = format!("writer {w} event {n}").into_bytes();
                match api
                    .add(&Caller::default(), FAMILY, vec![e.clone()], true, false)
                    .await
                {
                    Ok(mut written) => acked.push((
                        written.origin,
                        written.entries[0].index,
                        e,
                        written.checkpoint.unwrap(),
                        written.proofs.remove(0),
                    )),
                    Err(err) => failed.push(err.to_string()),
                }
            }
            (acked, failed)
        }));
    }
    let size = |origin: &str| api.get(origin).map_or(0, |l| l.latest().stored.size);
    let wait = |origin: String, at_least: u64| {
        let api = api.clone();
        async move {
            for _ in 0..4000 {
                if api.get(&origin).map_or(0, |l| l.latest().stored.size) >= at_least {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            panic!("{origin} did not reach {at_least} entries");
        }
    };
    wait(dec.clone(), 200).await;
    assert_eq!(size(&jan), 0, "nothing goes ahead of its period");
    // The boundary: writes go to January by the clock; the tick freezes
    // December (those in flight there are integrated or sent on) and
    // creates February ahead.
    now.store(DEC_LAST + 1, Ordering::SeqCst);
    wait(jan.clone(), 50).await;
    let t = families.tick().await.unwrap();
    assert_eq!(
        (t.created, t.frozen),
        (vec![feb.clone()], vec![dec.clone()])
    );
    wait(jan.clone(), 200).await;
    // An admin freezes January early: the family's writes go on in
    // February, the next shard that takes writes.
    let january = api.get(&jan).unwrap();
    admin.freeze_shard(&january).await.unwrap();
    wait(feb.clone(), 200).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for w in writers {
        let (a, failed) = w.await.unwrap();
        assert!(
            failed.is_empty(),
            "no write fails at a boundary: {failed:?}"
        );
        acked.extend(a);
    }

    // Every acknowledged entry is in exactly one shard, where its answer
    // said, and each shard holds nothing else.
    let mut by_shard: BTreeMap<String, Vec<&Acked>> = BTreeMap::new();
    for a in &acked {
        by_shard.entry(a.0.clone()).or_default().push(a);
    }
    assert_eq!(
        by_shard.keys().cloned().collect::<Vec<_>>(),
        [dec.clone(), jan.clone(), feb.clone()]
    );
    for (origin, list) in &by_shard {
        let log = api.get(origin).unwrap();
        let final_size = log.latest().stored.size;
        let mut indexes: Vec<u64> = list.iter().map(|a| a.1).collect();
        indexes.sort_unstable();
        assert_eq!(
            indexes,
            (0..final_size).collect::<Vec<_>>(),
            "{origin}: every entry once"
        );
        let final_root = log.latest().root;
        let page = api
            .entries(&Caller::default(), origin, 0, final_size)
            .unwrap();
        let stored: Vec<Vec<u8>> = page
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .flat_map(|p| p.unwrap().entries)
            .collect();
        for (_, index, entry, note, proof) in list {
            assert_eq!(&stored[*index as usize], entry);
            // The proof verifies against the checkpoint the write got, and
            // that checkpoint is consistent with the shard's last one.
            let text = quire_core::Note::parse(note).unwrap();
            let cp = quire_core::Checkpoint::parse(text.text().as_bytes()).unwrap();
            assert_eq!(cp.origin(), origin);
            quire_core::verify_inclusion(&leaf_hash(entry), *index, cp.size(), proof, cp.root())
                .unwrap();
            let c = api
                .consistency_proof(&Caller::default(), origin, cp.size(), final_size, false)
                .await
                .unwrap();
            quire_core::verify_consistency(cp.size(), final_size, &c.proof, cp.root(), &final_root)
                .unwrap();
        }
    }
    assert_eq!(api.get(&dec).unwrap().state().0, LogState::Frozen);
    assert_eq!(api.get(&jan).unwrap().state().0, LogState::Frozen);
    assert_eq!(api.get(&feb).unwrap().state().0, LogState::Active);
    // ListLogs names each shard's family and period.
    let listed = api.list(&Caller::default()).unwrap();
    let december = listed.iter().find(|l| l.origin == dec).unwrap();
    let (family_name, start, end) = december.shard.clone().unwrap();
    assert_eq!((family_name.as_str(), end), (FAMILY, DEC_LAST + 1));
    assert_eq!(Period::Month.label(start), "2026-12");
    assert_eq!(december.state, LogState::Frozen);
}

/// Freezes one log the first time a write to it is allowed, and returns
/// only once the freeze has begun: the write was routed to a shard that
/// stops taking writes before the write reaches it.
struct FreezeOnFirstWrite {
    target: Mutex<Option<Log<MemoryStore>>>,
    runtime: tokio::runtime::Handle,
}

impl Access for FreezeOnFirstWrite {
    fn check(&self, _: &Caller, origin: &str, action: Action, _: u64) -> Result<(), ApiError> {
        let mut target = self.target.lock().unwrap();
        if action == Action::Write && target.as_ref().is_some_and(|l| l.origin() == origin) {
            let log = target.take().unwrap();
            let freezing = log.clone();
            self.runtime.spawn(async move { freezing.freeze().await });
            for _ in 0..5000 {
                if log.state().0 != quire_server::lifecycle::LogState::Active {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            panic!("the freeze did not begin");
        }
        Ok(())
    }
}

/// A write naming a family whose shard begins to freeze between the
/// routing and the write is sent again to the next shard, and succeeds
/// there: the write path's answer to the boundary race, placed by the
/// access check (which runs between the two), not by timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_family_write_that_meets_its_shard_freezing_goes_to_the_next() {
    use quire_server::family::Period;
    use quire_server::lifecycle::LogState;
    const FAMILY: &str = "acme.example/audit";
    let dir = tempfile::tempdir().unwrap();
    let (dec, jan) = (
        open(dir.path(), &format!("{FAMILY}/2026-12")),
        open(dir.path(), &format!("{FAMILY}/2027-01")),
    );
    // 2026-12-31T12:00:00Z: December's shard is the one of now.
    let clock: quire_server::log::Clock = Arc::new(|| 1_798_718_400_000);
    let api = LogApi::new(vec![dec.clone(), jan.clone()])
        .with_clock(clock)
        .with_families([(FAMILY.to_owned(), Period::Month)])
        .with_access(FreezeOnFirstWrite {
            target: Mutex::new(Some(dec.clone())),
            runtime: tokio::runtime::Handle::current(),
        });
    let who = Caller::default();
    let w = api
        .add(
            &who,
            FAMILY,
            vec![b"the event at the boundary".to_vec()],
            false,
            false,
        )
        .await
        .unwrap();
    assert_eq!(w.origin, jan.origin(), "sent again, to the next shard");
    assert_eq!((w.entries[0].index, jan.latest().stored.size), (0, 1));
    // December took nothing after the freeze began, and is frozen.
    for _ in 0..5000 {
        if dec.state().0 == LogState::Frozen {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(
        (dec.state().0, dec.latest().stored.size),
        (LogState::Frozen, 0)
    );
    // Named directly, the frozen shard refuses by name.
    let e = api
        .add(&who, dec.origin(), vec![b"late".to_vec()], false, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition);
}
