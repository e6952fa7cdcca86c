//! The sequencer's pipeline: requests that arrive while a commit is under
//! way are assigned onto the tree that commit makes, and signed and
//! committed only once it succeeded. When it fails, they are integrated
//! again on what storage holds: never a gap, a duplicate index, or an
//! answer for a tree storage does not have. Commits wait at a gate the
//! test opens, so every interleaving here is placed by counting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_server::log::{DedupPolicy, Log, LogOptions, WriteError};
use quire_server::store::memory::MemoryStore;
use quire_server::store::{Storage, StorageReader, StoreError};

type Gated = common::gated::Gated<MemoryStore>;

const ORIGIN: &str = "pipe.example/log";

fn open(store: Gated, dedup: DedupPolicy, dir: &std::path::Path) -> Log<Gated> {
    Log::open(
        store,
        LogOptions {
            dedup,
            ..LogOptions::new(
                ORIGIN,
                vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap()],
                quire_server::highwater::HighWater::at(dir.join("log.highwater")),
            )
        },
    )
    .unwrap()
}

/// Polls `done` every millisecond, for at most ten seconds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("still waiting for {what} after 10 s");
}

type Answer = tokio::task::JoinHandle<
    Result<
        (
            Vec<quire_server::log::Added>,
            Arc<quire_server::log::Latest>,
        ),
        WriteError,
    >,
>;

/// Queues `entries` (the write's first poll puts them on the sequencer's
/// queue) and drives the write to its answer.
async fn add(log: &Log<Gated>, entries: &[&str]) -> Answer {
    let log = log.clone();
    let entries: Vec<Vec<u8>> = entries.iter().map(|e| e.as_bytes().to_vec()).collect();
    let mut write = Box::pin(async move { log.add(entries).await });
    tokio::select! {
        biased;
        r = &mut write => panic!("answered before it was queued: {r:?}"),
        () = std::future::ready(()) => {}
    }
    tokio::spawn(write)
}

/// The first write's commit held at the gate, and `later` queued behind
/// it and taken by the sequencer (the queue is empty again): assigned
/// ahead onto the held commit's tree.
async fn held_with_ahead(
    log: &Log<Gated>,
    store: &Gated,
    later: &[&[&str]],
) -> (Answer, Vec<Answer>) {
    let first = add(log, &["first"]).await;
    until("the first commit at the gate", || {
        store.entered().len() == 1
    })
    .await;
    let mut answers = Vec::new();
    for entries in later {
        answers.push(add(log, entries).await);
        assert!(log.queued() <= 1);
        until("the request taken from the queue", || log.queued() == 0).await;
    }
    // Nothing else reached storage while the first commit is held.
    assert_eq!(store.entered(), vec![1]);
    (first, answers)
}

/// The entries storage holds, in index order.
fn stored(store: &Gated) -> Vec<Vec<u8>> {
    let r = store.reader().unwrap();
    let size = r.head().unwrap().map_or(0, |h| h.size);
    r.entries(0, size).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_taken_during_a_commit_are_committed_together_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Gated::new(MemoryStore::new());
    let log = open(store.clone(), DedupPolicy::Strict, dir.path());
    let (first, later) = held_with_ahead(&log, &store, &[&["b", "c"], &["d"]]).await;
    store.open();
    let (a, cp_a) = first.await.unwrap().unwrap();
    assert_eq!(a[0].index, 0);
    let mut indexes = Vec::new();
    let mut size = 0;
    for l in later {
        let (added, cp) = l.await.unwrap().unwrap();
        indexes.extend(added.iter().map(|a| (a.index, a.duplicate)));
        size = cp.stored.size;
    }
    assert_eq!(indexes, vec![(1, false), (2, false), (3, false)]);
    assert_eq!(
        cp_a.stored.size, 1,
        "the first answer's checkpoint is its own commit's"
    );
    assert_eq!(size, 4);
    // One commit after the first carried both requests.
    assert_eq!(store.entered(), vec![1, 3]);
    assert_eq!(
        stored(&store),
        [
            b"first".to_vec(),
            b"b".to_vec(),
            b"c".to_vec(),
            b"d".to_vec()
        ]
    );
    assert_eq!(log.latest().stored.size, 4);
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_without_stopping_gives_the_requests_ahead_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Gated::new(MemoryStore::new());
    *store.fail_next.lock().unwrap() = Some(StoreError::NotReplicated("no standby".into()));
    let log = open(store.clone(), DedupPolicy::Off, dir.path());
    let (first, later) = held_with_ahead(&log, &store, &[&["b", "c"]]).await;
    store.open();
    let err = first.await.unwrap().unwrap_err();
    assert!(matches!(err, WriteError::Unreplicated { .. }), "{err}");
    // Integrated again on what storage holds: from index 0.
    let (added, cp) = later.into_iter().next().unwrap().await.unwrap().unwrap();
    assert_eq!(
        added.iter().map(|a| a.index).collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(cp.stored.size, 2);
    assert_eq!(stored(&store), [b"b".to_vec(), b"c".to_vec()]);
    let reader = store.reader().unwrap();
    assert_eq!(reader.head().unwrap().unwrap().root, cp.root);
    // The log goes on.
    let (more, _) = add(&log, &["e"]).await.await.unwrap().unwrap();
    assert_eq!(more[0].index, 2);
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_of_the_commit_under_way_gets_its_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Gated::new(MemoryStore::new());
    let log = open(store.clone(), DedupPolicy::Strict, dir.path());
    // Assigned ahead without a lookup, "first" looks new; the engine
    // refuses that commit, and the batch is integrated again after one.
    let (first, later) = held_with_ahead(&log, &store, &[&["first", "y", "y"]]).await;
    store.open();
    assert_eq!(first.await.unwrap().unwrap().0[0].index, 0);
    let (added, cp) = later.into_iter().next().unwrap().await.unwrap().unwrap();
    let got: Vec<_> = added.iter().map(|a| (a.index, a.duplicate)).collect();
    assert_eq!(got, vec![(0, true), (1, false), (1, true)]);
    assert_eq!(cp.stored.size, 2);
    assert_eq!(stored(&store), [b"first".to_vec(), b"y".to_vec()]);
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_refuses_the_requests_ahead_and_stores_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Gated::new(MemoryStore::new());
    *store.fail_next.lock().unwrap() = Some(StoreError::engine("connection lost with COMMIT sent"));
    let log = open(store.clone(), DedupPolicy::Off, dir.path());
    let (first, later) = held_with_ahead(&log, &store, &[&["b"]]).await;
    store.open();
    let err = first.await.unwrap().unwrap_err();
    assert!(matches!(err, WriteError::Store(_)), "{err}");
    let err = later
        .into_iter()
        .next()
        .unwrap()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, WriteError::Stopped { .. }) && err.to_string().contains("connection lost"),
        "{err}"
    );
    assert!(stored(&store).is_empty());
    assert_eq!(
        store.entered(),
        vec![1],
        "nothing committed after the failure"
    );
    log.close();
}
