//! Storage failures of the real binary: a data directory that cannot be
//! created, a disk that is full at start, and a disk that fills under
//! concurrent load. Each must give a clear error naming the file and the
//! cause, leave nothing half-written, and acknowledge nothing that was not
//! stored.
//!
//! A full disk is made with a file size limit (`prlimit --fsize`, SIGXFSZ
//! ignored): every write that would grow a file past it fails with EFBIG at
//! the same system call where a full disk fails with ENOSPC, and the test
//! needs no privileges. When the load stops is decided by that limit, not by
//! a clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::{Arc, Mutex};

use quire_core::{leaf_hash, verify_inclusion};
use quire_proto::hashes_from_wire;
use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::*;
use tonic::Code;

mod common;
use common::process::{check_holds, latest, log_keys, run_failing, Acks, ServerProcess};

#[test]
fn a_data_directory_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (code, err) = run_failing(&file.join("data"), None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&file.join("data").join("keys").display().to_string())
            && err.contains("Not a directory"),
        "{err}"
    );

    // The key directory is fine but `logs` is taken by a file.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("logs"), b"x").unwrap();
    let (code, err) = run_failing(&data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("creating the data directory")
            && err.contains(&data.join("logs").display().to_string()),
        "{err}"
    );
}

#[test]
fn a_full_disk_at_start_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");

    // Not even a key fits: no key file (not even an empty one) is left.
    let (code, err) = run_failing(data, Some(0));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("writing the new key") && err.contains("File too large"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // The keys fit, the database does not: the file is named.
    let (code, err) = run_failing(data, Some(8 * 1024));
    assert_eq!(code, Some(1), "{err}");
    let db = data.join("logs").join("localhost_quire.redb");
    assert!(
        err.contains(&format!("opening {}", db.display())) && err.contains("storage is full"),
        "{err}"
    );

    // With room, the same directory starts: the keys written before are
    // whole, and the log is empty and writable.
    let server = ServerProcess::start(data, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = server.client().await;
        let keys = log_keys(&mut client).await;
        assert_eq!(keys.len(), 2);
        let latest = check_holds(&mut client, &keys, &[], &[]).await;
        assert_eq!(latest.size(), 0);
        let r = client
            .add_entry(AddEntryRequest {
                log: String::new(),
                entry: b"first".to_vec(),
                with_proof: false,
                witnessed: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.index, 0);
    });
}

fn entry(writer: u64, i: u64) -> Vec<u8> {
    format!(
        "{{\"writer\":{writer},\"i\":{i},\"pad\":\"{}\"}}",
        "x".repeat(160)
    )
    .into_bytes()
}

/// How each writer's run ended.
#[derive(Debug)]
struct Ended {
    code: Code,
    message: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_under_load_acknowledges_only_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("data"), Some(4 << 20));
    let client = server.client().await;
    let keys = log_keys(&mut client.clone()).await;

    // Four writers, batches of 25, each until its first error.
    let acked: Arc<Mutex<Acks>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let mut c = client.clone();
        let acked = Arc::clone(&acked);
        tasks.push(tokio::spawn(async move {
            // 4 MiB holds far fewer than 4 × 40,000 entries of 200 bytes.
            for i in 0..1600u64 {
                let batch: Vec<Vec<u8>> = (0..25).map(|k| entry(w, i * 25 + k)).collect();
                match c
                    .add_entries(AddEntriesRequest {
                        log: String::new(),
                        entries: batch.clone(),
                        with_proof: false,
                        witnessed: false,
                    })
                    .await
                {
                    Ok(r) => {
                        let mut a = acked.lock().unwrap();
                        for (added, e) in r.into_inner().entries.iter().zip(batch) {
                            a.push((added.index, e));
                        }
                    }
                    Err(s) => {
                        return Some(Ended {
                            code: s.code(),
                            message: s.message().to_owned(),
                        })
                    }
                }
            }
            None
        }));
    }
    let mut ended = Vec::new();
    for t in tasks {
        ended.push(t.await.unwrap().expect("the disk never filled"));
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "nothing was written before the disk filled"
    );

    // The batch that hit the full disk is refused as RESOURCE_EXHAUSTED,
    // naming the cause; the batches after it as UNAVAILABLE, saying that
    // writes stopped and what to do.
    let full = ended.iter().filter(|e| e.code == Code::ResourceExhausted);
    assert!(full.clone().count() >= 1, "{ended:?}");
    for e in full {
        assert!(
            e.message.contains("storage is full")
                && e.message.contains("File too large")
                && e.message.contains("free space and restart the server"),
            "{e:?}"
        );
    }
    for e in ended.iter().filter(|e| e.code != Code::ResourceExhausted) {
        assert_eq!(e.code, Code::Unavailable, "{e:?}");
        assert!(
            e.message
                .contains("stopped writing after a storage failure")
                && e.message.contains("restart the server"),
            "{e:?}"
        );
    }
    let later = client
        .clone()
        .add_entry(AddEntryRequest {
            log: String::new(),
            entry: b"after the disk filled".to_vec(),
            with_proof: false,
            witnessed: false,
        })
        .await
        .unwrap_err();
    assert_eq!(later.code(), Code::Unavailable, "{later:?}");
    assert!(server.wait_logged("this log stops writing until restart"));

    // Reads go on: the signed checkpoint covers every acknowledged entry,
    // and each of them is proven in it.
    let during = check_holds(&mut client.clone(), &keys, &acked, &[]).await;
    let last = acked.iter().map(|(i, _)| *i).max().unwrap();
    assert!(during.size() > last);
    for (i, e) in acked.iter().step_by(97) {
        let p = client
            .clone()
            .get_inclusion_proof(GetInclusionProofRequest {
                log: String::new(),
                leaf: Some(Leaf::Index(*i)),
                tree_size: during.size(),
            })
            .await
            .unwrap()
            .into_inner();
        verify_inclusion(
            &leaf_hash(e),
            *i,
            during.size(),
            &hashes_from_wire(&p.proof).unwrap(),
            during.root(),
        )
        .unwrap();
    }

    // A graceful stop works with the broken disk.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // With room again: everything acknowledged is there, the checkpoint
    // extends the one signed while full, and writes go on after it.
    let server = ServerProcess::start(&dir.path().join("data"), None);
    let mut client = server.client().await;
    let after = check_holds(&mut client, &keys, &acked, &[during]).await;
    let r = client
        .add_entry(AddEntryRequest {
            log: String::new(),
            entry: b"after restart".to_vec(),
            with_proof: false,
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.index, after.size());
    assert_eq!(latest(&mut client, &keys).await.size(), after.size() + 1);
}
