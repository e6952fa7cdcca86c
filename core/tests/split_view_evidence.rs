//! Split-view evidence: built from real forks, checked with the log's key
//! alone, and refused when it proves nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::{entry, Tree};
use quire_core::{
    evidence::EVIDENCE_FORMAT, Checkpoint, Conflict, EvidenceError, Hash, LogKeyAlgorithm,
    LogSigner, NodeId, Note, SplitViewEvidence,
};
use rand::SeedableRng;

const ORIGIN: &str = "audit.example.com/prod/2026";

fn log_key(seed: u64) -> LogSigner {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    LogSigner::generate_with(LogKeyAlgorithm::EcdsaP256, ORIGIN, &mut rng).unwrap()
}

fn signed(key: &LogSigner, size: u64, root: Hash) -> Vec<u8> {
    let text = Checkpoint::new(ORIGIN, size, root).unwrap().to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(key.sign(text.as_bytes())).unwrap();
    note.to_bytes()
}

/// An honest tree and a fork that rewrote entry `at`.
fn fork(size: u64, at: u64) -> (Tree, Tree) {
    let honest = Tree::new(size);
    let mut entries: Vec<Vec<u8>> = (0..size).map(entry).collect();
    entries[at as usize] = b"rewritten".to_vec();
    (honest, Tree::from_entries(entries))
}

/// The consistency path old → new of `tree`, seed first.
fn seeded_path(tree: &Tree, old: u64, new: u64) -> Vec<Hash> {
    let proof = quire_core::prove_consistency(&tree.nodes, old, new).unwrap();
    if old.is_power_of_two() {
        let seed = tree.nodes[&NodeId::new(old.trailing_zeros() as u8, 0)];
        std::iter::once(seed).chain(proof).collect()
    } else {
        proof
    }
}

#[test]
fn same_size_fork_is_evidence() {
    let key = log_key(1);
    let (a, b) = fork(10, 3);
    let (ev, conflict) = SplitViewEvidence::new(
        &signed(&key, 10, a.roots[10]),
        &signed(&key, 10, b.roots[10]),
        &[],
        &[key.verifier()],
    )
    .unwrap();
    assert!(matches!(conflict, Conflict::SameSize { size: 10, .. }));
    // A third party with only the public key and the JSON agrees.
    let again = SplitViewEvidence::from_json(ev.to_json().as_bytes()).unwrap();
    assert_eq!(again.check(&[key.verifier()]).unwrap(), conflict);
    assert_eq!(again.format, EVIDENCE_FORMAT);
}

#[test]
fn inconsistent_sizes_are_evidence_for_every_old_size() {
    let key = log_key(2);
    let (honest, forked) = fork(40, 2);
    for old in 3..40u64 {
        // The log signed the honest tree at `old`, then the fork at 40.
        let first = signed(&key, old, honest.roots[old as usize]);
        let second = signed(&key, 40, forked.roots[40]);
        let path = seeded_path(&forked, old, 40);
        let (ev, conflict) = SplitViewEvidence::new(&second, &first, &path, &[key.verifier()])
            .unwrap_or_else(|e| panic!("old {old}: {e}"));
        match conflict {
            Conflict::Inconsistent {
                old: o,
                new,
                signed_old_root,
                implied_old_root,
            } => {
                assert_eq!((o, new), (old, 40));
                assert_eq!(signed_old_root, honest.roots[old as usize]);
                assert_eq!(implied_old_root, forked.roots[old as usize]);
            }
            other => panic!("{other:?}"),
        }
        let json = ev.to_json();
        assert!(SplitViewEvidence::from_json(json.as_bytes())
            .unwrap()
            .check(&[key.verifier()])
            .is_ok());
    }
}

#[test]
fn honest_history_is_not_evidence() {
    let key = log_key(3);
    let t = Tree::new(20);
    let a = signed(&key, 7, t.roots[7]);
    let b = signed(&key, 20, t.roots[20]);
    let err =
        SplitViewEvidence::new(&a, &b, &seeded_path(&t, 7, 20), &[key.verifier()]).unwrap_err();
    assert!(matches!(err, EvidenceError::NoConflict(_)), "{err}");
    let err = SplitViewEvidence::new(&b, &b, &[], &[key.verifier()]).unwrap_err();
    assert!(matches!(err, EvidenceError::NoConflict(_)), "{err}");
}

#[test]
fn a_wrong_path_proves_nothing() {
    // Framing an honest log with a made-up path must fail: the path has to
    // reproduce the signed root of the larger tree.
    let key = log_key(4);
    let t = Tree::new(20);
    let a = signed(&key, 7, t.roots[7]);
    let b = signed(&key, 20, t.roots[20]);
    let mut path = seeded_path(&t, 7, 20);
    path[1].0[0] ^= 1;
    let err = SplitViewEvidence::new(&a, &b, &path, &[key.verifier()]).unwrap_err();
    assert!(matches!(err, EvidenceError::Path(_)), "{err}");
    let err = SplitViewEvidence::new(&a, &b, &[], &[key.verifier()]).unwrap_err();
    assert!(matches!(err, EvidenceError::Path(_)), "{err}");
}

#[test]
fn evidence_needs_the_logs_own_signatures_and_one_origin() {
    let key = log_key(5);
    let other = log_key(6);
    let (a, b) = fork(10, 1);
    let genuine = signed(&key, 10, a.roots[10]);
    let forged = signed(&other, 10, b.roots[10]);
    let err = SplitViewEvidence::new(&genuine, &forged, &[], &[key.verifier()]).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::Signature {
                which: "second",
                ..
            }
        ),
        "{err}"
    );

    // Edited evidence fails the check.
    let (ev, _) = SplitViewEvidence::new(
        &genuine,
        &signed(&key, 10, b.roots[10]),
        &[],
        &[key.verifier()],
    )
    .unwrap();
    let mut edited = ev.clone();
    edited.second = edited.second.replacen("\n10\n", "\n11\n", 1);
    assert!(edited.check(&[key.verifier()]).is_err());
    let mut edited = ev.clone();
    edited.format = "something/else".into();
    assert!(matches!(
        edited.check(&[key.verifier()]),
        Err(EvidenceError::Format(_))
    ));

    // Two logs' checkpoints are no split view.
    let text = Checkpoint::new("another.example/log", 10, b.roots[10])
        .unwrap()
        .to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(key.sign(text.as_bytes())).unwrap();
    let err =
        SplitViewEvidence::new(&genuine, &note.to_bytes(), &[], &[key.verifier()]).unwrap_err();
    assert!(matches!(err, EvidenceError::DifferentOrigins(..)), "{err}");
}

#[test]
fn oversized_or_malformed_json_is_refused() {
    let big = vec![b' '; quire_core::evidence::MAX_EVIDENCE_BYTES + 1];
    assert!(matches!(
        SplitViewEvidence::from_json(&big),
        Err(EvidenceError::TooLarge { .. })
    ));
    assert!(matches!(
        SplitViewEvidence::from_json(b"{\"format\":1}"),
        Err(EvidenceError::Malformed(_))
    ));
    assert!(matches!(
        SplitViewEvidence::from_json(
            b"{\"format\":\"x\",\"first\":\"\",\"second\":\"\",\"extra\":1}"
        ),
        Err(EvidenceError::Malformed(_))
    ));
}
