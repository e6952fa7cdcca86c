//! Every RPC of `quire.v1.Log` in-process on 127.0.0.1:0, with the error
//! status of each bad request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::{leaf_hash, verify_consistency, verify_inclusion, Hash, VerifierKey};
use quire_proto::hashes_from_wire;
use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::*;
use tonic::Code;

mod common;
use common::{all_entries, checkpoint, entry, Server};

#[tokio::test]
async fn write_prove_and_read_round_trip() {
    let s = Server::start(&["a.example/log"]).await;
    let mut c = s.client.clone();

    // Single entry with proof: index, checkpoint and proof bound together.
    let r = c
        .add_entry(AddEntryRequest {
            log: String::new(),
            entry: entry(0),
            with_proof: true,
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.index, r.duplicate), (0, false));
    let cp = checkpoint(&r.checkpoint, &s.keys);
    assert_eq!(cp.size(), 1);
    verify_inclusion(
        &leaf_hash(&entry(0)),
        0,
        1,
        &hashes_from_wire(&r.inclusion_proof).unwrap(),
        cp.root(),
    )
    .unwrap();

    // A batch with proofs.
    let batch: Vec<Vec<u8>> = (1..600).map(entry).collect();
    let r = c
        .add_entries(AddEntriesRequest {
            log: "a.example/log".into(),
            entries: batch.clone(),
            with_proof: true,
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    let cp = checkpoint(&r.checkpoint, &s.keys);
    assert_eq!(cp.size(), 600);
    for (k, e) in r.entries.iter().enumerate() {
        assert_eq!(e.index, k as u64 + 1);
        let p = hashes_from_wire(&e.inclusion_proof).unwrap();
        verify_inclusion(&leaf_hash(&batch[k]), e.index, 600, &p, cp.root()).unwrap();
    }
    // Duplicate: original index.
    let r = c
        .add_entry(AddEntryRequest {
            log: String::new(),
            entry: entry(7),
            with_proof: false,
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.index, r.duplicate), (7, true));

    // Latest checkpoint.
    let latest = c
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    let latest = checkpoint(&latest.checkpoint, &s.keys);
    assert_eq!(latest.size(), 600);

    // Inclusion by index and by hash, at the latest and at an older size.
    let r = c
        .get_inclusion_proof(GetInclusionProofRequest {
            log: String::new(),
            leaf: Some(Leaf::LeafHash(leaf_hash(&entry(42)).0.to_vec())),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.index, r.tree_size), (42, 600));
    let bound = checkpoint(&r.checkpoint, &s.keys);
    verify_inclusion(
        &leaf_hash(&entry(42)),
        42,
        600,
        &hashes_from_wire(&r.proof).unwrap(),
        bound.root(),
    )
    .unwrap();
    let r = c
        .get_inclusion_proof(GetInclusionProofRequest {
            log: String::new(),
            leaf: Some(Leaf::Index(0)),
            tree_size: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.proof.is_empty() && r.checkpoint.is_empty());

    // Consistency 1 → 600.
    let r = c
        .get_consistency_proof(GetConsistencyProofRequest {
            log: String::new(),
            old_size: 1,
            new_size: 0,
            with_seed: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.new_size, 600);
    verify_consistency(
        1,
        600,
        &hashes_from_wire(&r.proof).unwrap(),
        &leaf_hash(&entry(0)),
        latest.root(),
    )
    .unwrap();

    // Entries stream, paged, clamped at the size.
    let mut stream = c
        .get_entries(GetEntriesRequest {
            log: String::new(),
            start: 250,
            end: 10_000,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    let mut starts = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        assert!(page.entries.len() <= 256);
        starts.push(page.start);
        got.extend(page.entries);
    }
    assert_eq!(starts, vec![250, 256, 512]);
    assert_eq!(got, (250..600).map(entry).collect::<Vec<_>>());

    // Entry with proof.
    let r = c
        .get_entry_with_proof(GetEntryWithProofRequest {
            log: String::new(),
            index: 599,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entry, entry(599));
    let bound = checkpoint(&r.checkpoint, &s.keys);
    verify_inclusion(
        &leaf_hash(&r.entry),
        599,
        bound.size(),
        &hashes_from_wire(&r.inclusion_proof).unwrap(),
        bound.root(),
    )
    .unwrap();

    // List logs.
    let logs = c
        .list_logs(ListLogsRequest {})
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (
            logs[0].origin.as_str(),
            logs[0].size,
            logs[0].state.as_str()
        ),
        ("a.example/log", 600, "ACTIVE")
    );
    let vkeys: Vec<String> = s.keys.iter().map(VerifierKey::to_vkey).collect();
    assert_eq!(logs[0].verifier_keys, vkeys);
    s.stop().await;
}

async fn code_of<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
) -> (Code, String) {
    let e = r.unwrap_err();
    (e.code(), e.message().to_owned())
}

#[tokio::test]
async fn bad_requests_get_the_right_status() {
    let s = Server::start(&["a.example/log", "b.example/log"]).await;
    let mut c = s.client.clone();
    let a = "a.example/log".to_string();
    c.add_entries(AddEntriesRequest {
        log: a.clone(),
        entries: (0..10).map(entry).collect(),
        with_proof: false,
        witnessed: false,
    })
    .await
    .unwrap();

    let cases: Vec<(Code, &str, (Code, String))> = vec![
        (
            Code::InvalidArgument,
            "name one",
            code_of(
                c.get_checkpoint(GetCheckpointRequest {
                    log: String::new(),
                    witnessed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::NotFound,
            "no log with origin",
            code_of(
                c.get_checkpoint(GetCheckpointRequest {
                    log: "nope".into(),
                    witnessed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::InvalidArgument,
            "65535",
            code_of(
                c.add_entry(AddEntryRequest {
                    log: a.clone(),
                    entry: vec![1; 65536],
                    with_proof: false,
                    witnessed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::InvalidArgument,
            "empty",
            code_of(
                c.add_entry(AddEntryRequest {
                    log: a.clone(),
                    entry: Vec::new(),
                    with_proof: false,
                    witnessed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::InvalidArgument,
            "batch limit is 1000",
            code_of(
                c.add_entries(AddEntriesRequest {
                    log: a.clone(),
                    entries: vec![vec![1]; 1001],
                    with_proof: false,
                    witnessed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "index 10",
            code_of(
                c.get_inclusion_proof(GetInclusionProofRequest {
                    log: a.clone(),
                    leaf: Some(Leaf::Index(10)),
                    tree_size: 0,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "index 18446744073709551615",
            code_of(
                c.get_inclusion_proof(GetInclusionProofRequest {
                    log: a.clone(),
                    leaf: Some(Leaf::Index(u64::MAX)),
                    tree_size: 0,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "beyond the latest checkpoint size 10",
            code_of(
                c.get_inclusion_proof(GetInclusionProofRequest {
                    log: a.clone(),
                    leaf: Some(Leaf::Index(0)),
                    tree_size: 11,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "beyond the latest",
            code_of(
                c.get_inclusion_proof(GetInclusionProofRequest {
                    log: a.clone(),
                    leaf: Some(Leaf::Index(0)),
                    tree_size: u64::MAX,
                })
                .await,
            )
            .await,
        ),
        (
            Code::InvalidArgument,
            "32 bytes",
            code_of(
                c.get_inclusion_proof(GetInclusionProofRequest {
                    log: a.clone(),
                    leaf: Some(Leaf::LeafHash(vec![0; 31])),
                    tree_size: 0,
                })
                .await,
            )
            .await,
        ),
        (
            Code::NotFound,
            "no entry with leaf hash",
            code_of(
                c.get_inclusion_proof(GetInclusionProofRequest {
                    log: a.clone(),
                    leaf: Some(Leaf::LeafHash(Hash::default().0.to_vec())),
                    tree_size: 0,
                })
                .await,
            )
            .await,
        ),
        (
            Code::InvalidArgument,
            "by index or by leaf_hash",
            code_of(
                c.get_inclusion_proof(GetInclusionProofRequest {
                    log: a.clone(),
                    leaf: None,
                    tree_size: 0,
                })
                .await,
            )
            .await,
        ),
        (
            Code::InvalidArgument,
            "size 0",
            code_of(
                c.get_consistency_proof(GetConsistencyProofRequest {
                    log: a.clone(),
                    old_size: 0,
                    new_size: 5,
                    with_seed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::InvalidArgument,
            "from size 6 to the smaller size 5",
            code_of(
                c.get_consistency_proof(GetConsistencyProofRequest {
                    log: a.clone(),
                    old_size: 6,
                    new_size: 5,
                    with_seed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "beyond the latest checkpoint size 10",
            code_of(
                c.get_consistency_proof(GetConsistencyProofRequest {
                    log: a.clone(),
                    old_size: 1,
                    new_size: 11,
                    with_seed: false,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "start 10",
            code_of(
                c.get_entries(GetEntriesRequest {
                    log: a.clone(),
                    start: 10,
                    end: 0,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "start 18446744073709551615",
            code_of(
                c.get_entries(GetEntriesRequest {
                    log: a.clone(),
                    start: u64::MAX,
                    end: 0,
                })
                .await,
            )
            .await,
        ),
        (
            Code::OutOfRange,
            "index 10",
            code_of(
                c.get_entry_with_proof(GetEntryWithProofRequest {
                    log: a.clone(),
                    index: 10,
                })
                .await,
            )
            .await,
        ),
    ];
    for (want, text, (code, msg)) in cases {
        assert_eq!(code, want, "{msg}");
        assert!(msg.contains(text), "{msg:?} should mention {text:?}");
    }
    // Equal sizes: an empty proof. The other log is untouched.
    let r = c
        .get_consistency_proof(GetConsistencyProofRequest {
            log: a.clone(),
            old_size: 10,
            new_size: 10,
            with_seed: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.proof.is_empty());
    let b = c
        .get_checkpoint(GetCheckpointRequest {
            log: "b.example/log".into(),
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checkpoint(&b.checkpoint, &s.keys).size(), 0);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_writers_all_land_in_order_of_acknowledgement() {
    let s = Server::start(&["a.example/log"]).await;
    let mut tasks = Vec::new();
    for w in 0..32u64 {
        let mut c = s.client.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..20u64 {
                let e = entry(w * 1000 + i);
                let r = c
                    .add_entry(AddEntryRequest {
                        log: String::new(),
                        entry: e.clone(),
                        with_proof: false,
                        witnessed: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                got.push((r.index, e));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let indexes: Vec<u64> = all.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, (0..640).collect::<Vec<_>>());
    let stored = all_entries(&mut s.client.clone(), 0).await;
    assert_eq!(stored, all.into_iter().map(|(_, e)| e).collect::<Vec<_>>());
    s.stop().await;
}
