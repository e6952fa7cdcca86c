//! Crash safety of the real binary: SIGKILL under concurrent load, eight
//! times, each after thousands of acknowledgements, then check that every acknowledged entry is present with its index
//! and bytes, that the tree matches the latest signed checkpoint, and that
//! every checkpoint is consistent with those seen before.
//!
//! The kill moment is chosen by counting acknowledgements (a different count
//! each round), so what the test asserts never depends on timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::{Arc, Mutex};

use quire_core::{Checkpoint, VerifierKey};
use quire_proto::v1::*;

mod common;
use common::process::{check_holds, log_keys, Acks, ServerProcess};

fn entry(round: u64, writer: u64, i: u64) -> Vec<u8> {
    format!("{{\"round\":{round},\"writer\":{writer},\"i\":{i}}}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Acks = Vec::new();
    let mut seen: Vec<Checkpoint> = Vec::new();
    let mut keys: Vec<VerifierKey> = Vec::new();
    // Eight kills, each after thousands of acknowledgements.
    for round in 0..9u64 {
        let mut server = ServerProcess::start(&dir.path().join("data"), None);
        let client = server.client().await;
        if keys.is_empty() {
            keys = log_keys(&mut client.clone()).await;
        }
        // Everything acknowledged before is still there, with its bytes, and
        // every checkpoint seen before is a prefix of the latest.
        let latest = check_holds(&mut client.clone(), &keys, &acked, &seen).await;
        seen.push(latest);
        if round == 8 {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            break;
        }

        // Load: 16 writers, single entries and small batches.
        let round_acks: Arc<Mutex<Acks>> = Arc::default();
        let kill_after = 2000 + 397 * round as usize;
        let (enough_tx, mut enough_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let mut c = client.clone();
            let acks = Arc::clone(&round_acks);
            let enough = enough_tx.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let batch: Vec<Vec<u8>> = if w % 4 == 0 {
                        (0..5).map(|k| entry(round, w, i * 5 + k)).collect()
                    } else {
                        vec![entry(round, w, i)]
                    };
                    let r = c
                        .add_entries(AddEntriesRequest {
                            log: String::new(),
                            entries: batch.clone(),
                            with_proof: false,
                            witnessed: false,
                        })
                        .await;
                    let Ok(r) = r else { return };
                    let mut a = acks.lock().unwrap();
                    for (added, e) in r.into_inner().entries.iter().zip(batch) {
                        a.push((added.index, e));
                    }
                    if a.len() >= kill_after {
                        let _ = enough.send(true);
                    }
                }
            }));
        }
        enough_rx.wait_for(|e| *e).await.unwrap();
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let mut got = round_acks.lock().unwrap().clone();
        assert!(got.len() >= kill_after);
        acked.append(&mut got);
    }
    assert!(acked.len() >= 150 + 247 + 344);
}
