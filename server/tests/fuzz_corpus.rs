//! Replays `fuzz/corpus/bundle`, `high_water`, `admin_files` and
//! `stored_records` through the
//! fuzz targets' bodies, and checks that the seeds reach the decoders'
//! successful paths (the corpora exercise more than the first check).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::{Path, PathBuf};

fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

#[test]
fn bundle_corpus() {
    let mut decoded = 0;
    for (_, data) in corpus("bundle") {
        quire_server::fuzz_targets::bundle(&data);
        decoded += usize::from(quire_server::store::bundle::decode(&data).is_ok());
    }
    assert!(decoded >= 3, "the seeds decode: raw, LZ4 and framed");
}

#[test]
fn high_water_corpus() {
    let mut read = 0;
    for (p, data) in corpus("high_water") {
        quire_server::fuzz_targets::high_water(&data);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.highwater");
        std::fs::write(&f, &data).unwrap();
        let r = quire_server::highwater::HighWater::at(&f).read();
        if p.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("valid")
        {
            assert!(r.unwrap().is_some(), "{}", p.display());
            read += 1;
        } else {
            assert!(r.is_err(), "{}", p.display());
        }
    }
    assert!(read >= 1);
}

#[test]
fn admin_files_corpus() {
    let mut valid = 0;
    for (p, data) in corpus("admin_files") {
        quire_server::fuzz_targets::admin_files(&data);
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let (pick, rest) = data.split_first().unwrap();
        let text = std::str::from_utf8(rest).unwrap_or("");
        let ok = match pick % 5 {
            0 => quire_server::lifecycle::Frozen::decode(rest).is_ok(),
            1 => quire_server::admin::catalog::parse(rest, Path::new("seed")).is_ok(),
            3 => quire_server::formation::KeySeed::parse(text.trim()).is_ok(),
            4 => quire_server::admin::formation::parse_settings("fuzz.example/log", text).is_ok(),
            _ => {
                quire_server::access::Policy::validate(Path::new("/nonexistent/access.toml"), rest)
                    .is_ok()
            }
        };
        assert_eq!(ok, name.starts_with("valid"), "{name}");
        valid += usize::from(ok);
    }
    assert_eq!(valid, 5, "each kind's seed reaches its successful path");
}

/// A fuzz target's body that says whether its input decoded.
type Target = fn(&[u8]) -> bool;

/// Runs each seed of corpus `name` through `target`, which must say a
/// seed decoded exactly when its name starts with "valid", then every
/// prefix of it and (with `flip`) every byte after the first flipped:
/// decoded or refused, never a panic. Returns how many seeds decoded.
fn replay(name: &str, target: Target, flip: bool) -> usize {
    let mut valid = 0;
    for (p, data) in corpus(name) {
        let file = p.file_name().unwrap().to_str().unwrap().to_owned();
        let ok = target(&data);
        assert_eq!(ok, file.starts_with("valid"), "{file}");
        valid += usize::from(ok);
        for cut in 0..data.len() {
            target(&data[..cut]);
        }
        for at in (1..data.len()).filter(|_| flip) {
            let mut flipped = data.clone();
            flipped[at] ^= 0xff;
            target(&flipped);
        }
    }
    valid
}

/// Storage's records (every byte flipped too; whatever decodes
/// round-trips, which the body asserts) and the configuration file.
#[test]
fn stored_records_and_config_file_corpora_and_their_cuts() {
    let targets: [(&str, Target, bool, usize); 2] = [
        (
            "stored_records",
            quire_server::fuzz_targets::stored_records,
            true,
            7,
        ),
        (
            "config_file",
            quire_server::fuzz_targets::config_file,
            false,
            3,
        ),
    ];
    for (name, target, flip, want) in targets {
        assert_eq!(
            replay(name, target, flip),
            want,
            "{name}: each valid seed is taken"
        );
    }
}
