//! Log families through the log API, called directly (no gRPC): a family
//! rolls over under concurrent writers, and a write that meets its shard
//! freezing goes to the next.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::{Arc, Mutex};

use quire_core::{leaf_hash, Hash, LogKeyAlgorithm, LogSigner};
use quire_server::api::{Access, Action, ApiError, Caller, Kind, LogApi};
use quire_server::log::{Log, LogOptions};
use quire_server::store::memory::MemoryStore;
use tokio_stream::StreamExt as _;

#[path = "log_api/memory_log.rs"]
mod memory_log;

use memory_log::open;

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
