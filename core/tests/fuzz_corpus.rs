//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the same
//! bodies the fuzz targets run, so a regression is caught without a fuzzer.
//! Each input is also replayed with every prefix and with single-byte
//! corruptions, which reaches the error paths of each parser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::PathBuf;

use quire_core::fuzz_targets;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn replay(target: &str, body: fn(&[u8])) {
    for input in corpus(target) {
        body(&input);
        for cut in 0..input.len() {
            body(&input[..cut]);
        }
        for i in (0..input.len()).step_by(3) {
            let mut m = input.clone();
            m[i] ^= 0x55;
            body(&m);
        }
    }
}

#[test]
fn checkpoint_corpus() {
    replay("checkpoint", fuzz_targets::checkpoint);
}

#[test]
fn note_corpus() {
    replay("note", fuzz_targets::note);
}

#[test]
fn key_corpus() {
    replay("key", fuzz_targets::key);
}

#[test]
fn proof_corpus() {
    replay("proof", fuzz_targets::proof);
}

#[test]
fn tlog_proof_corpus() {
    replay("tlog_proof", fuzz_targets::tlog_proof);
}

#[test]
fn seed_tlog_proof_verifies() {
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tlog_proof/entry_5_of_13"),
    )
    .unwrap();
    let (logs, witness) = fuzz_targets::fixed_signers().unwrap();
    let proof = quire_core::tlog_proof::TlogProof::parse(&bytes).unwrap();
    let v = proof
        .verify(
            None,
            "fuzz.example/log",
            &[logs[0].verifier()],
            &[witness.verifier()],
        )
        .unwrap();
    assert_eq!(v.checkpoint.size(), 13);
    assert_eq!(v.signatures.len(), 2);
}

#[test]
fn seed_note_reaches_every_signature_check() {
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/note/three_signatures"),
    )
    .unwrap();
    let (logs, witness) = fuzz_targets::fixed_signers().unwrap();
    let mut keys: Vec<_> = logs.iter().map(quire_core::LogSigner::verifier).collect();
    keys.push(witness.verifier());
    let note = quire_core::Note::parse(&bytes).unwrap();
    assert_eq!(note.verify(&keys).unwrap().len(), 3);
}

#[test]
fn event_envelope_corpus() {
    replay("event_envelope", fuzz_targets::event_envelope);
}

#[test]
fn map_proof_corpus() {
    replay("map_proof", fuzz_targets::map_proof);
    // The seeds are real proofs: the one of a key present verifies to it.
    let seed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/map_proof/found_deep"),
    )
    .unwrap();
    let (key, root) = (hash32(&seed[..32]), hash32(&seed[32..64]));
    let mut i = [0u8; 8];
    i.copy_from_slice(&seed[97..105]);
    let proof = quire_core::map::MapProof {
        siblings: seed[105..].chunks_exact(32).map(hash32).collect(),
        leaf: Some((hash32(&seed[65..97]), u64::from_be_bytes(i))),
    };
    assert_eq!(proof.verify(&key, &root), Ok(Some(21)));
}

fn hash32(b: &[u8]) -> quire_core::Hash {
    quire_core::Hash::from_slice(b).unwrap()
}
