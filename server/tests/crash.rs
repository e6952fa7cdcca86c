//! Crash safety of the real binary: SIGKILL under concurrent load, several
//! times, then check that every acknowledged entry is present with its index
//! and bytes, that the tree matches the latest signed checkpoint, and that
//! every checkpoint is consistent with those seen before.
//!
//! The kill moment is chosen by counting acknowledgements (a different count
//! each round), so what the test asserts never depends on timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use quire_core::{leaf_hash, verify_consistency, Checkpoint, CompactRange, VerifierKey};
use quire_proto::hashes_from_wire;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::*;

mod common;
use common::{all_entries, checkpoint as parse};

/// Acknowledged (index, entry) pairs.
type Acks = Vec<(u64, Vec<u8>)>;

struct Running {
    child: Child,
    addr: String,
}

fn start(data: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quire-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running { child, addr }
}

fn entry(round: u64, writer: u64, i: u64) -> Vec<u8> {
    format!("{{\"round\":{round},\"writer\":{writer},\"i\":{i}}}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Acks = Vec::new();
    let mut seen: Vec<Checkpoint> = Vec::new();
    let mut keys: Vec<VerifierKey> = Vec::new();
    for round in 0..4u64 {
        let mut server = start(dir.path());
        let mut client = LogClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        if keys.is_empty() {
            let logs = client
                .list_logs(ListLogsRequest {})
                .await
                .unwrap()
                .into_inner()
                .logs;
            keys = logs[0]
                .verifier_keys
                .iter()
                .map(|k| VerifierKey::parse(k).unwrap())
                .collect();
        }

        // Everything acknowledged before is still there, with its bytes.
        let latest = parse(
            &client
                .get_checkpoint(GetCheckpointRequest::default())
                .await
                .unwrap()
                .into_inner()
                .checkpoint,
            &keys,
        );
        let stored = if latest.size() > 0 {
            all_entries(&mut client, 0).await
        } else {
            Vec::new()
        };
        assert_eq!(stored.len() as u64, latest.size());
        for (i, e) in &acked {
            assert_eq!(
                stored.get(*i as usize),
                Some(e),
                "acknowledged entry {i} lost or changed"
            );
        }
        // The stored entries hash to the signed root.
        let mut cr = CompactRange::new();
        for e in &stored {
            cr.append(leaf_hash(e), |_, _| {}).unwrap();
        }
        assert_eq!(cr.root(), *latest.root());
        // Every checkpoint seen before is a prefix of this one.
        for old in &seen {
            if old.size() == 0 {
                continue;
            }
            let p = client
                .get_consistency_proof(GetConsistencyProofRequest {
                    log: String::new(),
                    old_size: old.size(),
                    new_size: latest.size(),
                    with_seed: false,
                })
                .await
                .unwrap()
                .into_inner();
            verify_consistency(
                old.size(),
                latest.size(),
                &hashes_from_wire(&p.proof).unwrap(),
                old.root(),
                latest.root(),
            )
            .unwrap();
        }
        seen.push(latest);
        if round == 3 {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
            break;
        }

        // Load: 16 writers, single entries and small batches.
        let round_acks: Arc<Mutex<Acks>> = Arc::default();
        let kill_after = 150 + 97 * round as usize;
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
