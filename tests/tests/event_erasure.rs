//! Erasing an event's payload, end to end with the `quire` CLI: the log
//! appends a signed erasure event, the payload leaves the redb file (after
//! compaction), and every proof made before still verifies; `quire event
//! get` reports "erased by event N", checked, never tampering.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::{leaf_hash, verify_consistency, verify_inclusion, Checkpoint, Note};
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use quire_tests::run_bin;

const ORIGIN: &str = "erase.example/events";
/// Bytes that occur only in the payload.
const MARKER: &str = "personal-data-7f3a9c1e-alice-home-address";

fn quire(args: &[&str]) -> (i32, String, String) {
    run_bin("quire", args)
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = quire(args);
    assert_eq!(code, 0, "quire {args:?}: {out}{err}");
    out
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap()
}

/// `quire event get 0`, verified against `key`, as JSON.
fn get0(url: &str, key: &str) -> serde_json::Value {
    json(&ok(&[
        "--json",
        "event",
        "get",
        "0",
        "--addr",
        url,
        "--log-key",
        key,
    ]))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn root_of(note: &[u8]) -> Checkpoint {
    Checkpoint::parse(Note::parse(note).unwrap().text().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_payload_leaves_the_disk_and_every_proof_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = LogConfig::new(ORIGIN);
    cfg.events = true;
    // Exact indexes: no map head events between the test's.
    cfg.key_map = false;
    let server = LocalServer::start(&data, vec![cfg.clone()], Config::default())
        .await
        .unwrap();
    let url = server.url();
    let key = server.keys[0].to_vkey();
    let payload = format!("payload={{\"address\":\"{MARKER}\"}}");
    ok(&[
        "event",
        "add",
        "type=crm.update",
        "actor=alice",
        "action=update",
        &payload,
        "--addr",
        &url,
    ]);
    ok(&[
        "event",
        "add",
        "type=crm.read",
        "actor=bob",
        "action=read",
        "--addr",
        &url,
    ]);
    // Before: the payload is shown and verified; its proof is kept.
    let before = get0(&url, &key);
    assert_eq!(before["verified"], true);
    assert!(before["payload"].as_str().unwrap().contains(MARKER));
    let log = &server.logs[0];
    let old = log.latest();
    let (proof_before, envelope) = {
        let r = quire_server::api::LogApi::new(vec![log.clone()])
            .event(&quire_server::api::Caller::default(), ORIGIN, 0)
            .await
            .unwrap();
        (r.proof, r.envelope)
    };

    // The payload is in the file now (stored as given, beside the tree).
    let file = data
        .join("logs")
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "redb"))
        .unwrap();
    assert!(contains(&std::fs::read(&file).unwrap(), MARKER.as_bytes()));

    // Refusals, each by name.
    let (code, _, err) = quire(&["event", "erase", "1", "--reason", "x", "--addr", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("event 1 has no payload to erase"), "{err}");
    let (code, _, err) = quire(&["event", "erase", "9", "--reason", "x", "--addr", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("past the tree size 2"), "{err}");

    // The erasure.
    let erased = json(&ok(&[
        "--json",
        "event",
        "erase",
        "0",
        "--reason",
        "GDPR art. 17 request 2026-114",
        "--addr",
        &url,
    ]));
    assert_eq!(erased["erased_by"], "2");
    assert_eq!(erased["by"], "anonymous");
    let (code, _, err) = quire(&["event", "erase", "0", "--reason", "again", "--addr", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("erased already, by event 2"), "{err}");

    // After: the envelope is the same leaf, the payload is reported erased
    // by a verified erasure event, never as tampering.
    let after = get0(&url, &key);
    assert_eq!(after["verified"], true, "{after}");
    assert_eq!(after["erased_by"], "2");
    assert_eq!(after["erasure_reason"], "GDPR art. 17 request 2026-114");
    assert!(after["payload"].is_null());
    assert_eq!(
        after["envelope"].as_str().unwrap().as_bytes(),
        envelope.as_slice()
    );
    // The proof made before verifies against the checkpoint it was made
    // for, which the new one extends.
    let new = log.latest();
    let (old_cp, new_cp) = (root_of(&old.stored.note), root_of(&new.stored.note));
    verify_inclusion(
        &leaf_hash(&envelope),
        0,
        old_cp.size(),
        &proof_before,
        old_cp.root(),
    )
    .unwrap();
    let cons = quire_core::prove_consistency(
        &quire_server::store::Storage::reader(log.store()).unwrap(),
        old_cp.size(),
        new_cp.size(),
    )
    .unwrap();
    verify_consistency(
        old_cp.size(),
        new_cp.size(),
        &cons,
        old_cp.root(),
        new_cp.root(),
    )
    .unwrap();
    server.stop().await;

    // Off the disk: the payload's bytes are nowhere in the compacted file.
    let data_arg = data.to_str().unwrap();
    let (code, out, err) = run_bin(
        "quire-server",
        &["compact", "--data-dir", data_arg, "--origin", ORIGIN],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("compacted from"), "{out}");
    let bytes = std::fs::read(&file).unwrap();
    assert!(
        !contains(&bytes, MARKER.as_bytes()),
        "the payload is still in {}",
        file.display()
    );
    // And the server serves the log as before after a restart.
    let server = LocalServer::start(&data, vec![cfg], Config::default())
        .await
        .unwrap();
    let url = server.url();
    let again = get0(&url, &key);
    assert_eq!(again["erased_by"], "2");
    server.stop().await;
}
