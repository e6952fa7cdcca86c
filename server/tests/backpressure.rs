//! A full queue answers RESOURCE_EXHAUSTED with the limit, and nothing in it
//! is lost: what was queued is integrated once the sequencer moves again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::{Arc, Condvar, Mutex};

use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_server::log::{Log, LogLimits, LogOptions, WriteError};
use quire_server::store::redb::{RedbOptions, RedbStore};
use quire_server::store::{Commit, Storage, StoreError};

/// Storage whose commits wait at a gate the test opens.
struct Gated {
    inner: RedbStore,
    gate: Arc<(Mutex<bool>, Condvar)>,
    entered: Arc<(Mutex<u32>, Condvar)>,
}

impl Storage for Gated {
    type Reader = <RedbStore as Storage>::Reader;
    fn reader(&self) -> Result<Self::Reader, StoreError> {
        self.inner.reader()
    }
    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        if !c.entries.is_empty() {
            let (m, cv) = &*self.entered;
            *m.lock().unwrap() += 1;
            cv.notify_all();
            let (open, cv) = &*self.gate;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
        }
        self.inner.commit(c)
    }
    fn keep_cosignatures(&self, size: u64, lines: &[u8]) -> Result<(), StoreError> {
        self.inner.keep_cosignatures(size, lines)
    }

    fn replace_event_index(
        &self,
        keys: &[(quire_core::Hash, u64)],
        times: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        self.inner.replace_event_index(keys, times)
    }

    fn drop_entries(&self, dropped: quire_server::lifecycle::Dropped) -> Result<(), StoreError> {
        self.inner.drop_entries(dropped)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_resource_exhausted_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let entered = Arc::new((Mutex::new(0u32), Condvar::new()));
    let store = Gated {
        inner: RedbStore::open(
            &dir.path().join("log.redb"),
            RedbOptions {
                compress: false,
                ..RedbOptions::default()
            },
        )
        .unwrap(),
        gate: Arc::clone(&gate),
        entered: Arc::clone(&entered),
    };
    let log = Log::open(
        store,
        LogOptions {
            limits: LogLimits {
                queue_depth: 2,
                ..LogLimits::default()
            },
            ..LogOptions::new(
                "q.example/log",
                vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, "q.example/log").unwrap()],
                quire_server::highwater::HighWater::at(dir.path().join("log.highwater")),
            )
        },
    )
    .unwrap();

    // First write: the sequencer takes it and waits at the gate.
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.add(vec![b"first".to_vec()]).await }
    });
    {
        let (m, cv) = &*entered;
        let mut n = m.lock().unwrap();
        while *n == 0 {
            n = cv.wait(n).unwrap();
        }
    }
    // Two more fill the queue (depth 2); the next is refused with the limit.
    let queued: Vec<_> = (0..2)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.add(vec![format!("queued {i}").into_bytes()]).await })
        })
        .collect();
    // Wait (on the condition, not on time) until both are in the queue.
    while log.queued() < 2 {
        tokio::task::yield_now().await;
    }
    let err = match log.add(vec![b"one too many".to_vec()]).await {
        Err(e) => e,
        Ok(_) => panic!("accepted past the queue limit"),
    };
    assert!(
        err.to_string()
            .contains("queue is full (2 requests waiting"),
        "{err}"
    );
    let status_err = err.clone();
    assert!(matches!(status_err, WriteError::QueueFull { depth: 2, .. }));

    // Open the gate: everything queued is integrated.
    {
        let (open, cv) = &*gate;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
    let (a, _) = first.await.unwrap().unwrap();
    assert_eq!(a[0].index, 0);
    let mut indexes = Vec::new();
    for q in queued {
        indexes.push(q.await.unwrap().unwrap().0[0].index);
    }
    indexes.sort();
    assert_eq!(indexes, vec![1, 2]);
    assert_eq!(log.latest().stored.size, 3);
    log.close();
}
