//! Strict dedup on an engine that checks new leaves inside its commit
//! (PostgreSQL, and the in-memory engine used here): batches go to the
//! commit without a lookup, a batch carrying a stored leaf is refused by
//! the engine and integrated again after a lookup, and the next batches
//! look up first. Against a model: every answer is the entry's first
//! index, duplicates within a batch and across batches alike, whichever
//! path a batch took; the stored tree holds each distinct entry once, in
//! order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;

use quire_core::{leaf_hash, Hash, LogKeyAlgorithm, LogSigner};
use quire_server::log::{Log, LogOptions};
use quire_server::store::memory::MemoryStore;
use quire_server::store::{Storage, StorageReader};
use rand::{Rng, SeedableRng};

const ORIGIN: &str = "test.example/unchecked";

fn open(dir: &std::path::Path) -> Log<MemoryStore> {
    Log::open(
        MemoryStore::new(),
        LogOptions::new(
            ORIGIN,
            vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap()],
            quire_server::highwater::HighWater::at(dir.join("hw")),
        ),
    )
    .unwrap()
}

fn entry(n: u64) -> Vec<u8> {
    format!("entry {n}").into_bytes()
}

/// Submits `batch` and checks every answer against `model` (leaf → first
/// index), which it extends; `order` gets each new entry.
async fn add(
    log: &Log<MemoryStore>,
    batch: Vec<Vec<u8>>,
    model: &mut HashMap<Hash, u64>,
    order: &mut Vec<Vec<u8>>,
    ctx: &str,
) {
    let (added, _) = log.add(batch.clone()).await.unwrap();
    assert_eq!(added.len(), batch.len(), "{ctx}: one answer an entry");
    for (e, a) in batch.iter().zip(&added) {
        let leaf = leaf_hash(e);
        match model.get(&leaf) {
            Some(&first) => {
                assert!(a.duplicate, "{ctx}: a stored entry is a duplicate");
                assert_eq!(a.index, first, "{ctx}: its first index");
            }
            None => {
                assert!(!a.duplicate, "{ctx}: a new entry");
                assert_eq!(a.index, order.len() as u64, "{ctx}: the next index");
                model.insert(leaf, a.index);
                order.push(e.clone());
            }
        }
    }
}

#[tokio::test]
async fn duplicates_are_caught_with_or_without_a_lookup() {
    assert!(MemoryStore::new().checks_new_leaves());
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut model = HashMap::new();
    let mut order = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut fresh = 0u64;
    let mut next = || {
        fresh += 1;
        entry(1_000_000 + fresh)
    };
    // Phases: unique batches (no lookup made), then one batch with a
    // stored entry and a repeat within itself (refused by the engine,
    // integrated again), then more than the look-up-first window of
    // batches mixing stored and new entries, then unique again.
    for round in 0..3 {
        for i in 0..10 {
            let batch: Vec<Vec<u8>> = (0..rng.gen_range(1..=20)).map(|_| next()).collect();
            add(
                &log,
                batch,
                &mut model,
                &mut order,
                &format!("round {round} unique {i}"),
            )
            .await;
        }
        let stored = order[rng.gen_range(0..order.len())].clone();
        let new = next();
        let batch = vec![next(), stored, new.clone(), next(), new];
        add(
            &log,
            batch,
            &mut model,
            &mut order,
            &format!("round {round} duplicate"),
        )
        .await;
        for i in 0..70 {
            let batch: Vec<Vec<u8>> = (0..rng.gen_range(1..=10))
                .map(|_| {
                    if rng.gen_ratio(1, 3) {
                        order[rng.gen_range(0..order.len())].clone()
                    } else {
                        next()
                    }
                })
                .collect();
            add(
                &log,
                batch,
                &mut model,
                &mut order,
                &format!("round {round} mixed {i}"),
            )
            .await;
        }
    }
    // Only duplicates, in one batch and then across a new one.
    let again: Vec<Vec<u8>> = order[..5].to_vec();
    add(&log, again, &mut model, &mut order, "only duplicates").await;
    // What is stored: each distinct entry once, in order, and the index
    // answers each leaf with its first index.
    let r = log.store().reader().unwrap();
    let size = order.len() as u64;
    assert_eq!(r.head().unwrap().unwrap().size, size);
    assert_eq!(r.entries(0, size).unwrap(), order);
    let leaves: Vec<Hash> = order.iter().map(|e| leaf_hash(e)).collect();
    let found = r.find_leaves(&leaves).unwrap();
    for (i, f) in found.iter().enumerate() {
        assert_eq!(*f, Some(i as u64));
    }
}
