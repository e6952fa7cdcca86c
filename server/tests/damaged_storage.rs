//! Damaged storage gives a clear error, never a panic and never a bad
//! proof, on the real binary:
//! - every non-empty 4 KiB page of a log's database zeroed in turn: the
//!   server either refuses to start with an error (exit 1, not a panic's
//!   101), or starts and answers every read with a verified result or
//!   `DATA_LOSS`/`INTERNAL`, and stays up;
//! - stored leaf hashes damaged: every inclusion and consistency proof the
//!   server serves verifies against its signed root, and the proofs that
//!   would need the damaged hashes are refused with `DATA_LOSS` naming the
//!   proof.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::{Path, PathBuf};

use quire_core::{leaf_hash, verify_consistency, verify_inclusion, Checkpoint, Note, VerifierKey};
use quire_proto::hashes_from_wire;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::*;
use tonic::transport::Channel;
use tonic::Code;

mod common;
use common::process::{try_start, Acks, ServerProcess};

const PAGE: usize = 4096;

async fn fill(data: &Path, n: usize) -> (Acks, Vec<Checkpoint>) {
    let mut server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let mut acked = Vec::new();
    let mut seen = Vec::new();
    for b in 0..n / 100 {
        let entries: Vec<Vec<u8>> = (0..100)
            .map(|i| {
                let mut e = format!("damage test {b}/{i} ").into_bytes();
                let mut noise = [0u8; 48];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut noise);
                e.extend_from_slice(&noise);
                e
            })
            .collect();
        let r = c
            .add_entries(AddEntriesRequest {
                log: String::new(),
                entries: entries.clone(),
                with_proof: true,
                witnessed: false,
            })
            .await
            .unwrap()
            .into_inner();
        for (a, e) in r.entries.iter().zip(entries) {
            acked.push((a.index, e));
        }
        seen.push(parse(&r.checkpoint));
    }
    let s = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(s.success());
    assert!(server.child.wait().unwrap().success());
    (acked, seen)
}

fn parse(note: &[u8]) -> Checkpoint {
    Checkpoint::parse(Note::parse(note).unwrap().text().as_bytes()).unwrap()
}

fn db(data: &Path) -> PathBuf {
    data.join("logs").join("localhost_quire.redb")
}

/// The latest checkpoint, verified with `keys`.
async fn latest(c: &mut LogClient<Channel>, keys: &[VerifierKey]) -> Result<Checkpoint, Code> {
    let note = c
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .map_err(|s| s.code())?
        .into_inner()
        .checkpoint;
    let n = Note::parse(&note).unwrap();
    n.verify(keys).unwrap();
    Ok(Checkpoint::parse(n.text().as_bytes()).unwrap())
}

/// Asks for the inclusion proof of every entry at the latest size: each is
/// verified against the signed root, or refused with one of `allowed`.
/// Returns how many were refused.
async fn check_inclusions(
    c: &mut LogClient<Channel>,
    cp: &Checkpoint,
    acked: &Acks,
    allowed: &[Code],
) -> usize {
    let mut refused = 0;
    for (i, e) in acked.iter().filter(|(i, _)| *i < cp.size()) {
        let r = c
            .get_inclusion_proof(GetInclusionProofRequest {
                log: String::new(),
                tree_size: cp.size(),
                leaf: Some(get_inclusion_proof_request::Leaf::Index(*i)),
            })
            .await;
        match r {
            Ok(r) => {
                let proof = hashes_from_wire(&r.into_inner().proof).unwrap();
                verify_inclusion(&leaf_hash(e), *i, cp.size(), &proof, cp.root()).unwrap_or_else(
                    |err| panic!("entry {i}: a proof that does not verify was served: {err}"),
                );
            }
            Err(s) => {
                assert!(allowed.contains(&s.code()), "entry {i}: {s:?}");
                refused += 1;
            }
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_leaf_hashes_are_never_served_as_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let (acked, seen) = fill(data, 1000).await;
    // Damage the stored leaf hashes of entries 300 and 700 (every copy redb
    // left in the file).
    let mut bytes = std::fs::read(db(data)).unwrap();
    let mut flipped = 0;
    for k in [300usize, 700] {
        let h = leaf_hash(&acked[k].1);
        let mut at = 0;
        while let Some(p) = bytes[at..].windows(32).position(|w| w == h.as_bytes()) {
            bytes[at + p + 7] ^= 0x10;
            flipped += 1;
            at += p + 32;
        }
    }
    assert!(flipped >= 2, "the leaf hashes were found in the file");
    std::fs::write(db(data), &bytes).unwrap();

    let server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let keys = common::process::log_keys(&mut c).await;
    let cp = latest(&mut c, &keys).await.unwrap();
    let refused = check_inclusions(&mut c, &cp, &acked, &[Code::DataLoss]).await;
    assert!(
        refused >= 2,
        "the damaged entries' proofs are refused ({refused})"
    );
    assert!(refused < 1000, "undamaged proofs are served");
    // Consistency from every signed size to the latest: verified or refused.
    let mut refused = 0;
    for old in &seen {
        match c
            .get_consistency_proof(GetConsistencyProofRequest {
                log: String::new(),
                old_size: old.size(),
                new_size: cp.size(),
                with_seed: false,
            })
            .await
        {
            Ok(r) => {
                let p = hashes_from_wire(&r.into_inner().proof).unwrap();
                verify_consistency(old.size(), cp.size(), &p, old.root(), cp.root()).unwrap();
            }
            Err(s) => {
                assert_eq!(s.code(), Code::DataLoss, "{s:?}");
                assert!(s.message().contains("consistency proof from size"), "{s:?}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 1, "proofs over the damaged hashes are refused");
    assert!(server.wait_logged("stored hashes are damaged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeroed_page_is_a_clear_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let (acked, _) = fill(data, 1000).await;
    let pristine = std::fs::read(db(data)).unwrap();
    let pages: Vec<usize> = (0..pristine.len() / PAGE)
        .filter(|p| pristine[p * PAGE..(p + 1) * PAGE].iter().any(|b| *b != 0))
        .collect();
    assert!(pages.len() >= 10, "{} non-empty pages", pages.len());
    let (mut refused_start, mut served) = (0, 0);
    for &p in &pages {
        let mut bytes = pristine.clone();
        bytes[p * PAGE..(p + 1) * PAGE].fill(0);
        std::fs::write(db(data), &bytes).unwrap();
        match try_start(data, &[]) {
            Err((code, err)) => {
                assert_eq!(code, Some(1), "page {p}: {err}");
                refused_start += 1;
            }
            Ok(server) => {
                let mut c = server.client().await;
                let keys = common::process::log_keys(&mut c).await;
                if let Ok(cp) = latest(&mut c, &keys).await {
                    check_inclusions(
                        &mut c,
                        &cp,
                        &acked[..100].to_vec(),
                        &[Code::DataLoss, Code::Internal],
                    )
                    .await;
                    let mut s = c
                        .get_entries(GetEntriesRequest {
                            log: String::new(),
                            start: 0,
                            end: 0,
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    loop {
                        match s.message().await {
                            Ok(Some(page)) => {
                                for (i, e) in (page.start..).zip(&page.entries) {
                                    assert_eq!(e, &acked[i as usize].1, "page {p}: entry {i}");
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                assert!(
                                    matches!(e.code(), Code::DataLoss | Code::Internal),
                                    "page {p}: {e:?}"
                                );
                                break;
                            }
                        }
                    }
                }
                // Still up after all of it.
                latest(&mut c, &keys).await.ok();
                let mut server = server;
                assert!(
                    server.child.try_wait().unwrap().is_none(),
                    "page {p}: the server died"
                );
                served += 1;
            }
        }
    }
    assert_eq!(refused_start + served, pages.len());
    std::fs::write(db(data), &pristine).unwrap();
}
