//! Replays `fuzz/corpus/witness_request` through the fuzz target's body,
//! with every prefix and with single-byte corruptions, so a regression in
//! the add-checkpoint parser or checks is caught without a fuzzer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_witness::fuzz_target::witness_request;

#[test]
fn witness_request_corpus() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/witness_request");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "seeds missing: cargo run -p quire-witness --example witness_fuzz_seeds"
    );
    for f in files {
        let input = std::fs::read(&f).unwrap();
        witness_request(&input);
        for cut in 0..input.len() {
            witness_request(&input[..cut]);
        }
        for i in (0..input.len()).step_by(3) {
            let mut m = input.clone();
            m[i] ^= 0x55;
            witness_request(&m);
        }
    }
}

#[test]
fn seeds_reach_the_decision() {
    // The valid seeds parse and verify: the corpus exercises more than the
    // parser.
    use quire_witness::check::{decide, verify_note, Decision};
    use quire_witness::fuzz_target::stored;
    use quire_witness::http::parse_body;
    let (signer, latest) = stored().unwrap();
    let keys = vec![signer.verifier()];
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/witness_request");
    let body = std::fs::read(dir.join("seed-3-17")).unwrap();
    let (old, proof, note) = parse_body(&body).unwrap();
    let v = verify_note(note, |_| Some(&keys[..])).unwrap();
    assert!(matches!(
        decide(Some(&latest), old, &proof, &v, &keys).unwrap(),
        Decision::Advance(l) if l.size == 17
    ));
}

#[test]
fn witness_config_corpus_and_every_cut_of_it() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/witness_config");
    let mut valid = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let input = std::fs::read(&p).unwrap();
        let ok = quire_witness::fuzz_target::witness_config(&input);
        assert_eq!(ok, name.starts_with("valid"), "{name}");
        valid += usize::from(ok);
        for cut in 0..input.len() {
            quire_witness::fuzz_target::witness_config(&input[..cut]);
        }
    }
    assert_eq!(valid, 2, "each valid seed is taken");
}
