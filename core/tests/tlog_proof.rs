//! C2SP tlog-proof: round trips, offline verification with log and witness
//! keys, and every way a proof file can be damaged or forged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::Tree;
use quire_core::tlog_proof::{
    TlogProof, TlogProofError, TlogProofVerifyError, MAX_TLOG_PROOF_BYTES,
};
use quire_core::{
    prove_inclusion, Checkpoint, LogKeyAlgorithm, LogSigner, Note, VerifierKey, WitnessSigner,
};
use rand::SeedableRng;

const ORIGIN: &str = "proof.example/log";

struct Fixture {
    tree: Tree,
    log: LogSigner,
    witness: WitnessSigner,
}

fn fixture() -> Fixture {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    Fixture {
        tree: Tree::new(1000),
        log: LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap(),
        witness: WitnessSigner::generate_with("witness.example", &mut rng).unwrap(),
    }
}

/// A proof of entry `index` at `size`, cosigned when `cosign`.
fn proof(f: &Fixture, index: u64, size: u64, cosign: bool) -> TlogProof {
    let text = Checkpoint::new(ORIGIN, size, f.tree.roots[size as usize])
        .unwrap()
        .to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(f.log.sign(text.as_bytes())).unwrap();
    if cosign {
        note.add_signature(f.witness.cosign(text.as_bytes(), 1_700_000_000).unwrap())
            .unwrap();
    }
    let tree = Tree::from_entries(f.tree.entries[..size as usize].to_vec());
    TlogProof {
        extra: Some(f.tree.entries[index as usize].clone()),
        index,
        proof: prove_inclusion(&tree.nodes, index, size).unwrap(),
        checkpoint: note,
    }
}

fn keys(f: &Fixture) -> (Vec<VerifierKey>, Vec<VerifierKey>) {
    (vec![f.log.verifier()], vec![f.witness.verifier()])
}

#[test]
fn proofs_round_trip_and_verify_offline() {
    let f = fixture();
    let (log, witnesses) = keys(&f);
    for (index, size) in [(0, 1), (0, 2), (1, 2), (6, 7), (500, 1000), (999, 1000)] {
        let p = proof(&f, index, size, true);
        let bytes = p.to_bytes();
        assert!(bytes.starts_with(b"c2sp.org/tlog-proof@v1\nextra "));
        let parsed = TlogProof::parse(&bytes).unwrap();
        assert_eq!(parsed, p);
        assert_eq!(parsed.to_bytes(), bytes);
        let v = parsed.verify(None, ORIGIN, &log, &witnesses).unwrap();
        assert_eq!(v.checkpoint.size(), size);
        assert_eq!(v.signatures.len(), 2, "log signature and cosignature");
        // The entry can be given instead of carried.
        let mut bare = parsed.clone();
        bare.extra = None;
        let bare = TlogProof::parse(&bare.to_bytes()).unwrap();
        assert!(bare.extra.is_none());
        bare.verify(Some(&f.tree.entries[index as usize]), ORIGIN, &log, &[])
            .unwrap();
        assert_eq!(
            bare.verify(None, ORIGIN, &log, &[]).unwrap_err(),
            TlogProofVerifyError::NoEntry
        );
    }
}

#[test]
fn forged_or_mismatched_proofs_fail() {
    let f = fixture();
    let (log, witnesses) = keys(&f);
    let p = proof(&f, 42, 1000, true);
    // Another entry.
    assert!(matches!(
        p.verify(Some(b"not the entry"), ORIGIN, &log, &witnesses),
        Err(TlogProofVerifyError::Inclusion(_))
    ));
    let mut edited = p.clone();
    edited.extra.as_mut().unwrap()[0] ^= 1;
    assert!(matches!(
        edited.verify(None, ORIGIN, &log, &witnesses),
        Err(TlogProofVerifyError::Inclusion(_))
    ));
    // Another index, a flipped proof bit, a dropped or an extra hash.
    let mut other = p.clone();
    other.index = 43;
    assert!(other.verify(None, ORIGIN, &log, &witnesses).is_err());
    for k in 0..p.proof.len() {
        let mut flipped = p.clone();
        flipped.proof[k].0[k % 32] ^= 0x80;
        assert!(flipped.verify(None, ORIGIN, &log, &witnesses).is_err());
    }
    let mut short = p.clone();
    short.proof.pop();
    assert!(short.verify(None, ORIGIN, &log, &witnesses).is_err());
    let mut long = p.clone();
    long.proof.push(long.proof[0]);
    assert!(long.verify(None, ORIGIN, &log, &witnesses).is_err());
    // Another log, another key, a witness-only signature.
    assert!(matches!(
        p.verify(None, "other.example/log", &log, &witnesses),
        Err(TlogProofVerifyError::Origin { .. })
    ));
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let stranger = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    assert!(matches!(
        p.verify(None, ORIGIN, &[stranger.verifier()], &[]),
        Err(TlogProofVerifyError::Signature(_))
    ));
    assert_eq!(
        p.verify(None, ORIGIN, &[], &witnesses).unwrap_err(),
        TlogProofVerifyError::NoLogSignature
    );
    // A checkpoint whose text was edited after signing.
    let bytes = String::from_utf8(p.to_bytes()).unwrap();
    let forged = bytes.replace("\n1000\n", "\n1001\n");
    assert_ne!(forged, bytes);
    let forged = TlogProof::parse(forged.as_bytes()).unwrap();
    assert!(matches!(
        forged.verify(None, ORIGIN, &log, &witnesses),
        Err(TlogProofVerifyError::Signature(_))
    ));
}

#[test]
fn malformed_proofs_are_refused_with_the_reason() {
    let f = fixture();
    let good = String::from_utf8(proof(&f, 3, 10, false).to_bytes()).unwrap();
    let err = |s: &str| TlogProof::parse(s.as_bytes()).unwrap_err();
    assert_eq!(err(&good.replacen("@v1", "@v2", 1)), TlogProofError::Header);
    for (from, to) in [
        ("index 3", "index 03"),
        ("index 3", "index -3"),
        ("index 3", "index 99999999999999999999"),
        ("extra ", "extra !"),
    ] {
        assert!(
            matches!(err(&good.replace(from, to)), TlogProofError::Line { .. }),
            "{to}"
        );
    }
    assert_eq!(
        err(&good.replace("\n\n", "\n")),
        TlogProofError::NoCheckpoint
    );
    // More hashes than any tree has levels.
    let line = format!("{}\n", quire_core::Hash::default().to_base64());
    let many = good.replacen("index 3\n", &format!("index 3\n{}", line.repeat(64)), 1);
    assert_eq!(err(&many), TlogProofError::ProofTooLong);
    // The size limit comes before any parsing.
    let big = vec![b'x'; MAX_TLOG_PROOF_BYTES + 1];
    assert!(matches!(
        TlogProof::parse(&big),
        Err(TlogProofError::TooLarge { .. })
    ));
    // Every truncation fails to parse or to verify, and never panics.
    let (log, _) = keys(&f);
    for cut in 0..good.len() {
        if let Ok(p) = TlogProof::parse(&good.as_bytes()[..cut]) {
            assert!(
                p.verify(None, ORIGIN, &log, &[]).is_err(),
                "prefix {cut} verified"
            );
        }
    }
}
