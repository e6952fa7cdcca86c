//! Witness policies (k of n cosignatures) and bulk offline verification of
//! proof bundles, without a server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_client::bundle::{BundleError, BundleVerifier, Subject};
use quire_client::policy::{LogTrust, TrustError};
use quire_core::tlog_proof::TlogProof;
use quire_core::{
    leaf_hash, prove_inclusion, Checkpoint, CompactRange, Hash, LogKeyAlgorithm, LogSigner, NodeId,
    Note, WitnessSigner,
};
use rand::SeedableRng;
use std::collections::HashMap;

const ORIGIN: &str = "policy.example/log";

struct Log {
    signer: LogSigner,
    witnesses: Vec<WitnessSigner>,
    entries: Vec<Vec<u8>>,
    nodes: HashMap<NodeId, Hash>,
    root: Hash,
}

fn log(n: u64) -> Log {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let entries: Vec<Vec<u8>> = (0..n).map(|i| format!("event {i}").into_bytes()).collect();
    let mut nodes = HashMap::new();
    let mut range = CompactRange::new();
    for e in &entries {
        range
            .append(leaf_hash(e), |id, h| {
                nodes.insert(id, *h);
            })
            .unwrap();
    }
    Log {
        signer: LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap(),
        witnesses: (0..3)
            .map(|i| WitnessSigner::generate_with(&format!("w{i}.example"), &mut rng).unwrap())
            .collect(),
        entries,
        nodes,
        root: range.root(),
    }
}

/// A bundle for entry `index`, cosigned by the witnesses in `cosigners`.
fn bundle(l: &Log, index: u64, cosigners: &[usize]) -> TlogProof {
    let size = l.entries.len() as u64;
    let text = Checkpoint::new(ORIGIN, size, l.root).unwrap().to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(l.signer.sign(text.as_bytes())).unwrap();
    for &w in cosigners {
        note.add_signature(
            l.witnesses[w]
                .cosign(text.as_bytes(), 1_800_000_000)
                .unwrap(),
        )
        .unwrap();
    }
    TlogProof {
        extra: Some(l.entries[index as usize].clone()),
        index,
        proof: prove_inclusion(&l.nodes, index, size).unwrap(),
        checkpoint: note,
    }
}

fn trust(l: &Log, quorum: usize) -> LogTrust {
    LogTrust {
        origin: ORIGIN.into(),
        log_keys: vec![l.signer.verifier()],
        witnesses: l.witnesses.iter().map(WitnessSigner::verifier).collect(),
        quorum,
    }
}

#[test]
fn k_of_n_cosignatures() {
    let l = log(100);
    let b = bundle(&l, 7, &[0, 2]).to_bytes();
    for quorum in 0..=2 {
        let v = BundleVerifier::new(trust(&l, quorum))
            .verify(&b, Subject::Carried)
            .unwrap();
        assert_eq!(v.index, 7);
        assert_eq!(v.cosigned_by, vec!["w0.example", "w2.example"]);
    }
    match BundleVerifier::new(trust(&l, 3)).verify(&b, Subject::Carried) {
        Err(BundleError::Trust(TrustError::Quorum {
            have: 2, need: 3, ..
        })) => {}
        other => panic!("{other:?}"),
    }
    // The same witness twice counts once.
    let mut twice = bundle(&l, 7, &[1]);
    let text = twice.checkpoint.text().to_owned();
    twice
        .checkpoint
        .add_signature(
            l.witnesses[1]
                .cosign(text.as_bytes(), 1_800_000_001)
                .unwrap(),
        )
        .unwrap_or(());
    assert!(BundleVerifier::new(trust(&l, 2))
        .verify_parsed(&twice, Subject::Carried)
        .is_err());
}

#[test]
fn a_forged_cosignature_or_a_foreign_signer_cannot_help() {
    let l = log(50);
    let good = bundle(&l, 3, &[0, 1]);
    // A cosignature line from a configured witness with a forged signature
    // fails the bundle, whatever else it carries.
    let mut forged = bundle(&l, 3, &[0]);
    // A real cosignature by witness 1, but of another checkpoint.
    let other = Checkpoint::new(ORIGIN, 49, l.root).unwrap().to_text();
    forged
        .checkpoint
        .add_signature(
            l.witnesses[1]
                .cosign(other.as_bytes(), 1_800_000_000)
                .unwrap(),
        )
        .unwrap();
    assert!(BundleVerifier::new(trust(&l, 1))
        .verify_parsed(&forged, Subject::Carried)
        .is_err());
    // Signatures from unknown keys are ignored: they neither count nor fail.
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let stranger = WitnessSigner::generate_with("stranger.example", &mut rng).unwrap();
    let mut extra = good.clone();
    let text = extra.checkpoint.text().to_owned();
    extra
        .checkpoint
        .add_signature(stranger.cosign(text.as_bytes(), 1_800_000_000).unwrap())
        .unwrap();
    BundleVerifier::new(trust(&l, 2))
        .verify_parsed(&extra, Subject::Carried)
        .unwrap();
    assert!(BundleVerifier::new(trust(&l, 3))
        .verify_parsed(&extra, Subject::Carried)
        .is_err());
}

#[test]
fn bulk_verification_checks_every_bundle_and_each_checkpoint_once() {
    let l = log(300);
    let mut v = BundleVerifier::new(trust(&l, 2));
    for i in 0..300 {
        let b = bundle(&l, i, &[0, 1]);
        let got = v.verify_parsed(&b, Subject::Carried).unwrap();
        assert_eq!(got.leaf, leaf_hash(&l.entries[i as usize]));
        // A remembered checkpoint does not excuse a wrong entry.
        assert!(matches!(
            v.verify_parsed(&b, Subject::Entry(b"other")),
            Err(BundleError::Inclusion { .. })
        ));
    }
}
