//! The leaf-hash index (an LSM tree: memtable, sorted runs, step-wise
//! merges) against a model, with tiny flush sizes so that flushes, merges,
//! deletions and restarts in the middle of a merge all happen many times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;

use quire_core::{leaf_hash, Hash, LogKeyAlgorithm, LogSigner};
use quire_server::log::{DedupPolicy, Log, LogLimits};
use quire_server::store::redb::{RedbOptions, RedbStore};
use quire_server::store::{Storage, StorageReader};
use rand::{Rng, SeedableRng};

mod common;

const ORIGIN: &str = "test.example/index";

/// Filters are on under strict dedup (as the server configures them), off
/// otherwise: the model runs cover both.
fn open(dir: &std::path::Path, flush: usize, dedup: DedupPolicy) -> Log<RedbStore> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let signer = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let store = RedbOptions {
        leaf_flush: flush,
        leaf_filters: dedup == DedupPolicy::Strict,
        ..RedbOptions::default()
    };
    common::open_log(dir, store, ORIGIN, signer, dedup, LogLimits::default()).unwrap()
}

fn pool_entry(n: u64) -> Vec<u8> {
    format!("entry {n}").into_bytes()
}

/// Every pool entry's lowest index (or absence) as the index answers it.
fn check(log: &Log<RedbStore>, pool: u64, model: &HashMap<Hash, u64>, ctx: &str) {
    let leaves: Vec<Hash> = (0..pool).map(|n| leaf_hash(&pool_entry(n))).collect();
    let got = log.store().reader().unwrap().find_leaves(&leaves).unwrap();
    for (leaf, got) in leaves.iter().zip(got) {
        assert_eq!(got, model.get(leaf).copied(), "{ctx}");
    }
}

async fn run_model(seed: u64, flush: usize, dedup: DedupPolicy) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pool = 400u64;
    let mut log = open(dir.path(), flush, dedup);
    let mut model: HashMap<Hash, u64> = HashMap::new();
    let mut size = 0u64;
    for step in 0..120 {
        let n = rng.gen_range(1..=40);
        let batch: Vec<Vec<u8>> = (0..n).map(|_| pool_entry(rng.gen_range(0..pool))).collect();
        let (added, _) = log.add(batch.clone()).await.unwrap();
        for (e, a) in batch.iter().zip(&added) {
            let leaf = leaf_hash(e);
            match (dedup, model.get(&leaf)) {
                (DedupPolicy::Strict, Some(&first)) => {
                    assert!(a.duplicate);
                    assert_eq!(a.index, first, "seed {seed} step {step}: original index");
                }
                _ => {
                    assert_eq!(a.index, size);
                    size += 1;
                    model.entry(leaf).or_insert(a.index);
                }
            }
        }
        check(
            &log,
            pool,
            &model,
            &format!("seed {seed} flush {flush} step {step}"),
        );
        if rng.gen_ratio(1, 10) {
            log.close();
            drop(log);
            log = open(dir.path(), flush, dedup);
            check(
                &log,
                pool,
                &model,
                &format!("seed {seed} step {step} after restart"),
            );
        }
    }
    // Merges keep the runs few: about log2(size / flush) and a few more.
    let runs = log.store().leaf_index_runs().unwrap();
    let bound = 2 * (64 - (size / flush as u64).leading_zeros()) as usize + 3;
    assert!(
        runs <= bound,
        "{runs} runs for {size} leaves, flush {flush}"
    );
    if size >= 4 * flush as u64 {
        assert!(runs >= 1, "nothing was flushed");
    }
}

#[tokio::test]
async fn index_matches_a_model_through_flushes_merges_and_restarts() {
    for (seed, flush) in [(1, 1), (2, 3), (3, 7), (4, 64), (5, 1000)] {
        run_model(seed, flush, DedupPolicy::Off).await;
        run_model(seed + 100, flush, DedupPolicy::Strict).await;
    }
}

#[tokio::test]
async fn an_older_read_view_never_sees_later_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 4, DedupPolicy::Strict);
    log.add((0..10).map(pool_entry).collect()).await.unwrap();
    let old = log.store().reader().unwrap();
    // Many flushes and merges after the view was taken.
    for k in 1..20 {
        log.add((k * 10..k * 10 + 10).map(pool_entry).collect())
            .await
            .unwrap();
    }
    let leaves: Vec<Hash> = (0..200).map(|n| leaf_hash(&pool_entry(n))).collect();
    let got = old.find_leaves(&leaves).unwrap();
    for (n, g) in got.iter().enumerate() {
        let want = (n < 10).then_some(n as u64);
        assert_eq!(*g, want, "entry {n} in the old view");
    }
    // Runs written by this process have their filters at once.
    assert!(log.store().leaf_index_runs().unwrap() > 0);
    assert!(log.store().leaf_index_filter_bytes() > 0);
    let now = log.store().reader().unwrap().find_leaves(&leaves).unwrap();
    assert_eq!(now, (0..200).map(Some).collect::<Vec<_>>());
}
