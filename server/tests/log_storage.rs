//! The log over redb: appends, dedup, proofs from stored tiles, and the
//! checks at start that refuse a changed origin, a changed key or corrupt data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::{
    leaf_hash, prove_consistency, prove_inclusion, verify_consistency, verify_inclusion,
    Checkpoint, HashReader, LogKeyAlgorithm, LogSigner, NodeId, Note,
};
use quire_server::log::{DedupPolicy, Log, LogLimits, LogOptions, OpenError};
use quire_server::store::redb::{RedbOptions, RedbStore};
use quire_server::store::{Storage, StorageReader};

mod common;

const ORIGIN: &str = "test.example/log";

fn key() -> LogSigner {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap()
}

fn open(
    dir: &std::path::Path,
    origin: &str,
    signer: LogSigner,
) -> Result<Log<RedbStore>, OpenError> {
    common::open_log(
        dir,
        RedbOptions::default(),
        origin,
        signer,
        DedupPolicy::Strict,
        LogLimits::default(),
    )
}

fn entry(i: u64) -> Vec<u8> {
    format!("{{\"event\":\"audit\",\"n\":{i}}}").into_bytes()
}

#[tokio::test]
async fn appends_are_signed_durable_and_provable() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), ORIGIN, key()).unwrap();
    assert_eq!(log.latest().stored.size, 0);
    let mut all = Vec::new();
    for chunk in 0..7u64 {
        let entries: Vec<Vec<u8>> = (chunk * 100..chunk * 100 + 100).map(entry).collect();
        let (added, latest) = log.add(entries.clone()).await.unwrap();
        for (k, a) in added.iter().enumerate() {
            assert_eq!(a.index, chunk * 100 + k as u64);
            assert!(!a.duplicate);
        }
        assert_eq!(latest.stored.size, chunk * 100 + 100);
        all.extend(entries);
    }
    // The checkpoint is signed by the key and its root matches the entries.
    let latest = log.latest();
    let note = Note::parse(&latest.stored.note).unwrap();
    note.verify(log.verifiers()).unwrap();
    let cp = Checkpoint::parse(note.text().as_bytes()).unwrap();
    assert_eq!((cp.origin(), cp.size()), (ORIGIN, 700));
    let mut reference = quire_core::CompactRange::new();
    for e in &all {
        reference.append(leaf_hash(e), |_, _| {}).unwrap();
    }
    assert_eq!(*cp.root(), reference.root());

    // Proofs read from stored tiles verify.
    let reader = log.store().reader().unwrap();
    for i in [0u64, 1, 255, 256, 511, 699] {
        let p = prove_inclusion(&reader, i, 700).unwrap();
        verify_inclusion(&leaf_hash(&all[i as usize]), i, 700, &p, cp.root()).unwrap();
    }
    let old = reader.checkpoint_at(300).unwrap().unwrap();
    let old_cp = Checkpoint::parse(Note::parse(&old.note).unwrap().text().as_bytes()).unwrap();
    let p = prove_consistency(&reader, 300, 700).unwrap();
    verify_consistency(300, 700, &p, old_cp.root(), cp.root()).unwrap();
    assert_eq!(reader.entries(250, 260).unwrap(), all[250..260].to_vec());
    assert_eq!(reader.find_leaf(&leaf_hash(&all[42])).unwrap(), Some(42));

    // Duplicates get their original index, in and across batches.
    let (added, latest) = log
        .add(vec![entry(5), entry(9999), entry(9999)])
        .await
        .unwrap();
    assert_eq!(added[0].index, 5);
    assert!(added[0].duplicate);
    assert_eq!((added[1].index, added[1].duplicate), (700, false));
    assert_eq!((added[2].index, added[2].duplicate), (700, true));
    assert_eq!(latest.stored.size, 701);
    // A read view keeps the database open; the restart below needs it shut.
    drop(reader);
    log.close();
    drop(log);

    // A restart rebuilds the same state.
    let again = open(dir.path(), ORIGIN, key()).unwrap();
    assert_eq!(again.latest().stored.size, 701);
    let (added, _) = again.add(vec![entry(1)]).await.unwrap();
    assert_eq!((added[0].index, added[0].duplicate), (1, true));
}

#[tokio::test]
async fn limits_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), ORIGIN, key()).unwrap();
    let err = log
        .add(vec![vec![0u8; 65_536]])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("65536") && err.contains("65535"), "{err}");
    let err = log
        .add(vec![vec![1u8]; 1001])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1001") && err.contains("1000"), "{err}");
    let err = log.add(vec![Vec::new()]).await.unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    assert!(log.add(Vec::new()).await.is_err());
}

#[tokio::test]
async fn start_refuses_changed_origin_key_or_corrupt_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), ORIGIN, key()).unwrap();
        log.add((0..300).map(entry).collect()).await.unwrap();
        log.close();
        drop(log);
    }
    match open(dir.path(), "other.example/log", key()) {
        Err(OpenError::OriginChanged { stored, configured }) => {
            assert_eq!(
                (stored.as_str(), configured.as_str()),
                (ORIGIN, "other.example/log")
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened with a changed origin"),
    }
    let other = LogSigner::generate(LogKeyAlgorithm::EcdsaP256, ORIGIN).unwrap();
    match open(dir.path(), ORIGIN, other) {
        Err(OpenError::WrongKey { size: 300, .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened with another key"),
    }
    // Flip one byte of a stored entry in the newest bundle.
    {
        let store = RedbStore::open(&dir.path().join("log.redb"), RedbOptions::default()).unwrap();
        let mut entries = store.reader().unwrap().entries(256, 300).unwrap();
        entries[3][0] ^= 1;
        store.overwrite_bundle_unchecked(1, &entries).unwrap();
    }
    match open(dir.path(), ORIGIN, key()) {
        Err(OpenError::Mismatch(why)) => assert!(why.contains("entry 259"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened over corrupt data"),
    }
}

fn open_with(dir: &std::path::Path, dedup: DedupPolicy, cache: usize) -> Log<RedbStore> {
    let limits = LogLimits {
        dedup_cache_entries: cache,
        ..LogLimits::default()
    };
    let store = RedbOptions {
        compress: false,
        ..RedbOptions::default()
    };
    common::open_log(dir, store, ORIGIN, key(), dedup, limits).unwrap()
}

#[tokio::test]
async fn dedup_policies() {
    // Best effort: recent duplicates are caught, evicted ones appended again.
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(dir.path(), DedupPolicy::BestEffort, 3);
    log.add((0..5).map(entry).collect()).await.unwrap();
    let (added, _) = log
        .add(vec![entry(4), entry(0), entry(9), entry(9)])
        .await
        .unwrap();
    let got: Vec<(u64, bool)> = added.iter().map(|a| (a.index, a.duplicate)).collect();
    assert_eq!(got, vec![(4, true), (5, false), (6, false), (6, true)]);
    // Proof by hash still finds entries.
    let r = log.store().reader().unwrap();
    assert_eq!(r.find_leaf(&leaf_hash(&entry(2))).unwrap(), Some(2));
    log.close();

    // Off: everything is appended.
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(dir.path(), DedupPolicy::Off, 0);
    let (added, latest) = log.add(vec![entry(1), entry(1)]).await.unwrap();
    assert_eq!((added[0].index, added[1].index), (0, 1));
    assert!(!added[1].duplicate);
    assert_eq!(latest.stored.size, 2);
    log.close();
}

#[tokio::test]
async fn a_clock_that_goes_back_stops_signing() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let now = Arc::new(AtomicU64::new(1_000_000));
    let clock_now = Arc::clone(&now);
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(
        &dir.path().join("log.redb"),
        RedbOptions {
            compress: false,
            ..RedbOptions::default()
        },
    )
    .unwrap();
    let log = Log::open(
        store,
        LogOptions {
            clock: Arc::new(move || clock_now.load(Ordering::SeqCst)),
            ..LogOptions::new(
                ORIGIN,
                vec![key()],
                quire_server::highwater::HighWater::at(dir.path().join("log.highwater")),
            )
        },
    )
    .unwrap();
    now.store(2_000_000, Ordering::SeqCst);
    let (_, latest) = log.add(vec![entry(1)]).await.unwrap();
    assert_eq!(latest.stored.signed_at_ms, 2_000_000);
    // Back in time: refused, nothing acknowledged, nothing stored.
    now.store(1_999_000, Ordering::SeqCst);
    let err = log.add(vec![entry(2)]).await.unwrap_err();
    assert!(
        matches!(
            err,
            quire_server::log::WriteError::ClockBackwards {
                now_ms: 1_999_000,
                last_ms: 2_000_000
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("clock went backwards"));
    assert_eq!(log.latest().stored.size, 1);
    let r = log.store().reader().unwrap();
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 1);
    assert_eq!(r.find_leaf(&leaf_hash(&entry(2))).unwrap(), None);
    drop(r);
    // The clock recovers: signing resumes, at the later time.
    now.store(2_000_001, Ordering::SeqCst);
    let (added, latest) = log.add(vec![entry(2)]).await.unwrap();
    assert_eq!((added[0].index, latest.stored.signed_at_ms), (1, 2_000_001));
    log.close();
}

/// Every complete node of a 66,770-leaf tree (tile rows, mid rows and the
/// levels between, up to level 16) read from storage equals the node built
/// level by level in memory.
#[tokio::test]
async fn stored_nodes_match_the_tree_at_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), ORIGIN, key()).unwrap();
    let n = (1u64 << 16) + 1234;
    let mut levels: Vec<Vec<quire_core::Hash>> = vec![Vec::new()];
    for start in (0..n).step_by(1000) {
        let entries: Vec<Vec<u8>> = (start..n.min(start + 1000)).map(entry).collect();
        levels[0].extend(entries.iter().map(|e| leaf_hash(e)));
        log.add(entries).await.unwrap();
    }
    while levels.last().unwrap().len() > 1 {
        let next: Vec<_> = levels
            .last()
            .unwrap()
            .chunks_exact(2)
            .map(|p| quire_core::node_hash(&p[0], &p[1]))
            .collect();
        levels.push(next);
    }
    let reader = log.store().reader().unwrap();
    for (level, hashes) in levels.iter().enumerate() {
        let step = if level < 3 { 97 } else { 1 };
        // A sample, and every node at the end of a tile row (stored apart
        // from the rest of its row).
        let nodes: Vec<NodeId> = (0..hashes.len() as u64)
            .filter(|i| i % step as u64 == 0 || i % 256 == 255)
            .map(|i| NodeId::new(level as u8, i))
            .collect();
        let got = reader.read_hashes(&nodes).unwrap();
        for (node, h) in nodes.iter().zip(got) {
            assert_eq!(h, hashes[node.index as usize], "{node:?}");
        }
    }
    // A node not yet complete is not stored.
    assert!(reader.read_hashes(&[NodeId::new(0, n)]).is_err());
    assert!(reader.read_hashes(&[NodeId::new(4, n / 16)]).is_err());
}

/// Freezing under concurrent writers: every write is either acknowledged
/// (and then in the log, below the frozen size) or refused by name as the
/// log is DRAINING or FROZEN; nothing else fails, the tree does not grow
/// after the freeze, what it signed still proves, and a restart keeps the
/// log frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_freeze_under_concurrent_writers_loses_no_write_and_survives_restart() {
    use quire_server::lifecycle::LogState;
    use quire_server::log::WriteError;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), ORIGIN, key()).unwrap();
    const WRITERS: u64 = 8;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0u64.. {
                let e = entry(w * 1_000_000 + n);
                match log
                    .add(vec![e.clone(), entry(w * 1_000_000 + 500_000 + n)])
                    .await
                {
                    Ok((added, latest)) => {
                        assert!(added
                            .iter()
                            .all(|a| !a.duplicate && a.index < latest.stored.size));
                        acked.push((added[0].index, e));
                    }
                    Err(WriteError::Frozen { origin, state }) => {
                        assert_eq!(origin, ORIGIN);
                        assert!(matches!(state, LogState::Draining | LogState::Frozen));
                        return acked;
                    }
                    Err(other) => panic!("writer {w}: a write failed otherwise: {other}"),
                }
            }
            acked
        }));
    }
    // Frozen while writes flow: once the log holds 400 entries (bounded poll).
    for _ in 0..2000 {
        if log.latest().stored.size >= 400 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(log.latest().stored.size >= 400, "the writers did not write");
    let frozen = log.freeze().await.unwrap();
    let size = log.latest().stored.size;
    assert_eq!(log.state(), (LogState::Frozen, Some(frozen)));
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    // Every entry the log holds was acknowledged (two per write), and each
    // acknowledged entry is where its answer said.
    assert_eq!(acked.len() as u64 * 2, size);
    let reader = log.store().reader().unwrap();
    let cp_note = Note::parse(&log.latest().stored.note).unwrap();
    let cp = Checkpoint::parse(cp_note.text().as_bytes()).unwrap();
    for (index, e) in acked.iter().step_by(17) {
        assert_eq!(&reader.entries(*index, index + 1).unwrap()[0], e);
        let p = prove_inclusion(&reader, *index, size).unwrap();
        verify_inclusion(&leaf_hash(e), *index, size, &p, cp.root()).unwrap();
    }
    drop(reader);
    // Refused by name; freezing again changes nothing.
    let e = log.add(vec![entry(42_424_242)]).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("log {ORIGIN} is FROZEN: it takes no more writes (reads and proofs go on); write to its successor")
    );
    assert_eq!(log.freeze().await.unwrap(), frozen);
    assert_eq!(log.latest().stored.size, size);
    log.close();
    drop(log);

    // A restart finds it frozen, at the same size.
    let again = open(dir.path(), ORIGIN, key()).unwrap();
    assert_eq!(again.state(), (LogState::Frozen, Some(frozen)));
    assert_eq!(again.latest().stored.size, size);
    assert!(matches!(
        again.add(vec![entry(7_777_777)]).await,
        Err(WriteError::Frozen {
            state: LogState::Frozen,
            ..
        })
    ));
}
