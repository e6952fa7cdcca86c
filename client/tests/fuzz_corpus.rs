//! Replays `fuzz/corpus/cli_inputs` through the fuzz target's body, with
//! every prefix and every byte flipped of each seed, and checks that the
//! seeds reach the parsers' successful paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::Path;

#[test]
fn cli_inputs_corpus_and_every_cut_and_flip_of_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/cli_inputs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut valid = 0;
    for p in files {
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let data = std::fs::read(&p).unwrap();
        let n = quire_client::fuzz_targets::cli_inputs(&data);
        assert_eq!(n > 0, name.starts_with("valid"), "{name}: {n}");
        valid += usize::from(n > 0);
        if name == "valid-cloudtrail-file" {
            assert!(n >= 2, "a log file's records, one event each: {n}");
        }
        for cut in 0..data.len() {
            quire_client::fuzz_targets::cli_inputs(&data[..cut]);
        }
        for at in 1..data.len() {
            let mut flipped = data.clone();
            flipped[at] ^= 0x20;
            quire_client::fuzz_targets::cli_inputs(&flipped);
        }
    }
    assert_eq!(valid, 6, "each kind's seed reaches its successful path");
}
