//! Witness configuration: a valid file loads; each bad value is refused with
//! a message that names it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::{LogKeyAlgorithm, LogSigner, WitnessSigner};
use quire_witness::config::WitnessConfig;

fn write(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("w.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_configurations_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogSigner::generate(LogKeyAlgorithm::EcdsaP256, "a.example/log")
        .unwrap()
        .verifier()
        .to_vkey();
    let peer = WitnessSigner::generate("peer.example")
        .unwrap()
        .verifier()
        .to_vkey();
    let good = format!(
        "name = \"w.example\"\n[[logs]]\norigin = \"a.example/log\"\nkeys = [\"{log}\"]\nurl = \"http://127.0.0.1:1\"\n[[peers]]\nurl = \"http://127.0.0.1:2\"\nkey = \"{peer}\"\n"
    );
    let cfg = WitnessConfig::load(&write(dir.path(), &good)).unwrap();
    let (logs, peers) = cfg.validate().unwrap();
    assert_eq!((logs.len(), peers.len()), (1, 1));

    let cases = [
        (
            good.replace("w.example", "w example"),
            "not a valid key name",
        ),
        (
            good.replace("http://127.0.0.1:1", "https://127.0.0.1:1"),
            "must start with http://",
        ),
        (
            good.replace("http://127.0.0.1:2", "grpc://127.0.0.1:2"),
            "must start with http://",
        ),
        (good.replace(&log, &peer), "is a witness key, not a log key"),
        (
            good.replace(&peer, &log),
            "not a cosignature/v1 witness key",
        ),
        (
            format!("poll_interval_ms = 0\n{good}"),
            "poll_interval_ms = 0",
        ),
        (
            format!("{good}[[logs]]\norigin = \"a.example/log\"\nkeys = [\"{log}\"]\n"),
            "configured twice",
        ),
        (
            good.replace(&format!("keys = [\"{log}\"]"), "keys = []"),
            "has no keys",
        ),
        (format!("{good}colour = \"blue\"\n"), "unknown field"),
    ];
    for (text, want) in cases {
        let err = WitnessConfig::load(&write(dir.path(), &text))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "want {want:?} in {err:?} for\n{text}");
    }
    // Over the size limit: refused before parsing.
    let big = "#".repeat(5 << 20);
    let err = WitnessConfig::load(&write(dir.path(), &big))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("more than 4194304 bytes") && err.contains("limit"),
        "{err}"
    );
    // Counted by bytes read: a device whose metadata says 0 bytes is not
    // read forever, and a FIFO is not waited on.
    let err = WitnessConfig::load(std::path::Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a regular file"), "{err}");
}
