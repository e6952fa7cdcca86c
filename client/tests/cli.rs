//! The `quire` binary against a real server in-process: submit, wait, prove,
//! verify offline; and its answers to bad input, wrong keys, an unknown log
//! and an unreachable server, with the documented exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::Path;
use std::process::Output;

use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;

const ORIGIN: &str = "cli.example/log";

/// Runs `quire` with the words of `line` (paths and keys have no spaces).
async fn quire(line: String) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_quire"))
            .args(line.split_whitespace())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `line` and checks its exit code; returns the output.
async fn expect(code: i32, line: String) -> Output {
    let o = quire(line.clone()).await;
    assert_eq!(o.status.code(), Some(code), "quire {line}\n{}", text(&o));
    o
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_prove_and_verify_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(
        &dir.path().join("data"),
        vec![LogConfig::new(ORIGIN)],
        Config::default(),
    )
    .await
    .unwrap();
    let net = format!(
        "--addr {} --log-key {}",
        server.url(),
        server.keys[0].to_vkey()
    );
    let key = format!("--log-key {}", server.keys[0].to_vkey());
    let path = |name: &str| p(&dir.path().join(name));
    std::fs::write(path("event.json"), br#"{"user":"alice","action":"login"}"#).unwrap();
    let (entry, bundle) = (path("event.json"), path("event.tlog-proof"));

    let o = expect(0, format!("add {entry} --wait {bundle} {net}")).await;
    assert!(text(&o).contains("index 0"), "{}", text(&o));
    // Without --wait or a key, the answer is said to be unverified.
    let o = expect(0, format!("add {entry} --addr {}", server.url())).await;
    assert!(text(&o).contains("not verified"), "{}", text(&o));
    // An address without its scheme is bad input, said once and plainly.
    let bare = server.url().trim_start_matches("http://").to_owned();
    let o = expect(2, format!("checkpoint --addr {bare}")).await;
    assert!(
        text(&o).contains("has no scheme: write http://"),
        "{}",
        text(&o)
    );
    assert!(std::fs::read(&bundle)
        .unwrap()
        .starts_with(b"c2sp.org/tlog-proof@v1\n"));

    // The same entry again: strict dedup answers with its original index.
    let o = expect(0, format!("add {entry} --addr {} --json", server.url())).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["index"].as_str(), v["duplicate"].as_bool()),
        (Some("0"), Some(true))
    );

    // Offline: no address, nothing but the key.
    let o = expect(0, format!("verify {bundle} {key} --json")).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["index"], "0");
    assert_eq!(v["origin"], ORIGIN);
    assert_eq!(v["tree_size"], "1");

    // Save what a size-1 log looked like: its entries and checkpoint.
    let (dump1, cp1) = (path("dump1"), path("cp1.note"));
    expect(
        0,
        format!("entries --out {dump1} --checkpoint-out {cp1} {net}"),
    )
    .await;
    expect(0, format!("audit entries {dump1} --checkpoint {cp1} {key}")).await;

    // More entries, then a bundle for an older one from `prove`.
    for i in 0..5 {
        std::fs::write(path(&format!("e{i}")), format!("entry {i}")).unwrap();
        expect(
            0,
            format!("add {} --addr {}", path(&format!("e{i}")), server.url()),
        )
        .await;
    }
    let proved = path("proved.tlog-proof");
    expect(0, format!("prove --index 0 --out {proved} {net}")).await;
    let o = expect(0, format!("verify {proved} {key} --entry {entry}")).await;
    assert!(text(&o).contains("size 6"), "{}", text(&o));
    // By the entry itself, and by its leaf hash alone.
    let by_entry = path("by-entry.tlog-proof");
    let o = expect(0, format!("prove --entry {entry} --out {by_entry} {net}")).await;
    assert!(text(&o).contains("entry 0 proven"), "{}", text(&o));
    expect(0, format!("verify {by_entry} {key}")).await;
    let leaf = quire_core::leaf_hash(&std::fs::read(&entry).unwrap()).to_base64();
    let by_leaf = path("by-leaf.tlog-proof");
    expect(0, format!("prove --leaf-hash {leaf} --out {by_leaf} {net}")).await;
    expect(0, format!("verify {by_leaf} {key} --entry {entry}")).await;
    expect(2, format!("verify {by_leaf} {key}")).await;
    expect(0, format!("verify {by_leaf} {key} --leaf-hash {leaf}")).await;
    let unknown = quire_core::leaf_hash(b"never added").to_base64();
    expect(
        2,
        format!("prove --leaf-hash {unknown} --out {by_leaf} {net}"),
    )
    .await;
    let o = expect(0, format!("checkpoint {net}")).await;
    assert!(
        text(&o).starts_with(&format!("{ORIGIN}\n6\n")),
        "{}",
        text(&o)
    );

    // Consistency from the saved checkpoint, appended to a chain; the dump
    // of all six entries rebuilds the signed root.
    let (chain, cp6, dump6) = (path("chain.jsonl"), path("cp6.note"), path("dump6"));
    let o = expect(
        0,
        format!("consistency --from {cp1} --chain {chain} --save {cp6} {net}"),
    )
    .await;
    assert!(text(&o).contains("size 6 extends size 1"), "{}", text(&o));
    let o = expect(0, format!("audit chain {chain} {key}")).await;
    assert!(text(&o).contains("size 6"), "{}", text(&o));
    expect(
        0,
        format!(
            "entries --out {dump6} --checkpoint-out {} {net}",
            path("cp6b.note")
        ),
    )
    .await;
    expect(0, format!("audit entries {dump6} --checkpoint {cp6} {key}")).await;
    // The monitor downloads all six, rebuilds the root, and keeps state.
    let mon = path("monitor.json");
    let o = expect(0, format!("monitor --state {mon} --once {net}")).await;
    assert!(
        text(&o).contains("OK: size 6") && text(&o).contains("6 new entries downloaded"),
        "{}",
        text(&o)
    );
    std::fs::write(path("e6"), "entry 6").unwrap();
    expect(0, format!("add {} --addr {}", path("e6"), server.url())).await;
    let o = expect(0, format!("monitor --state {mon} --once {net} --json")).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tree_size"], "7");
    assert_eq!(v["new_entries"], "1");
    // Nothing new: --once still says what it checked.
    let o = expect(0, format!("monitor --state {mon} --once {net}")).await;
    assert!(
        text(&o).contains("OK: size 7") && text(&o).contains("no new entries"),
        "{}",
        text(&o)
    );

    // An altered, a dropped or a reordered entry fails the audit (exit 1).
    let lines: Vec<String> = std::fs::read_to_string(&dump6)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 6);
    let bad_dumps = [
        {
            let mut l = lines.clone();
            l[2] = "QUxURVJFRA==".into();
            l
        },
        lines[..5].to_vec(),
        {
            let mut l = lines.clone();
            l.swap(1, 2);
            l
        },
    ];
    for (k, bad) in bad_dumps.iter().enumerate() {
        let f = path(&format!("bad-dump{k}"));
        std::fs::write(&f, bad.join("\n") + "\n").unwrap();
        let o = expect(1, format!("audit entries {f} --checkpoint {cp6} {key}")).await;
        assert!(text(&o).contains("FAILED"), "{}", text(&o));
    }
    // A chain whose order was reversed is a rollback.
    let links: Vec<String> = std::fs::read_to_string(&chain)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    std::fs::write(path("reversed"), format!("{}\n{}\n", links[1], links[0])).unwrap();
    let o = expect(1, format!("audit chain {} {key}", path("reversed"))).await;
    assert!(text(&o).contains("rollback"), "{}", text(&o));
    expect(2, format!("audit chain {} {key}", path("missing"))).await;

    // Verification failures exit 1 and say why: another entry, another
    // key, another log, an edited proof.
    std::fs::write(path("other"), b"another event").unwrap();
    let o = expect(
        1,
        format!("verify {proved} {key} --entry {}", path("other")),
    )
    .await;
    assert!(text(&o).contains("not proven"), "{}", text(&o));
    let k = expect(
        0,
        format!(
            "keygen --kind log-ed25519 --name {ORIGIN} --out {}",
            path("stranger.key")
        ),
    )
    .await;
    let stranger = String::from_utf8(k.stdout).unwrap();
    expect(1, format!("verify {bundle} --log-key {}", stranger.trim())).await;
    expect(
        1,
        format!("verify {bundle} {key} --origin other.example/log"),
    )
    .await;
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.iter().position(|b| *b == b'\n').unwrap() + 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(path("edited"), &bytes).unwrap();
    expect(1, format!("verify {} {key}", path("edited"))).await;

    // Bad input exits 2: a missing file, a truncated bundle, a bad or no
    // key, an unknown log, an index past the tree, a key file that exists.
    expect(2, format!("verify {} {key}", path("missing"))).await;
    let all = std::fs::read(&bundle).unwrap();
    std::fs::write(path("truncated"), &all[..all.len() / 2]).unwrap();
    expect(2, format!("verify {} {key}", path("truncated"))).await;
    expect(2, format!("verify {bundle} --log-key not-a-key")).await;
    expect(2, format!("verify {bundle}")).await;
    let o = expect(
        2,
        format!("prove --index 0 --out {proved} {net} --origin unknown.example/log"),
    )
    .await;
    assert!(text(&o).contains("unknown.example/log"), "{}", text(&o));
    expect(2, format!("prove --index 99 --out {proved} {net}")).await;
    expect(
        2,
        format!(
            "keygen --kind witness --name w.example --out {}",
            path("stranger.key")
        ),
    )
    .await;

    server.stop().await;
    // Unreachable exits 3.
    expect(3, format!("checkpoint {net} --timeout 2")).await;
}

#[tokio::test]
async fn keygen_writes_private_keys_only_the_owner_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (kind, name) in [
        ("log-ed25519", "a.example/log"),
        ("log-p256", "b.example/log"),
        ("witness", "w.example"),
    ] {
        let out = dir.path().join(kind);
        let o = expect(
            0,
            format!("keygen --kind {kind} --name {name} --out {}", p(&out)),
        )
        .await;
        let vkey = String::from_utf8(o.stdout).unwrap();
        let parsed = quire_core::VerifierKey::parse(vkey.trim()).unwrap();
        assert_eq!(parsed.name(), name);
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let private = std::fs::read_to_string(&out).unwrap();
        assert!(private.starts_with("PRIVATE+KEY+"));
        assert!(
            !vkey.contains("PRIVATE"),
            "the private key is never printed"
        );
    }
}

#[tokio::test]
async fn audit_accepts_real_evidence_and_only_with_the_log_key() {
    use quire_core::{Checkpoint, LogKeyAlgorithm, LogSigner, Note, SplitViewEvidence};
    use rand::SeedableRng;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let log = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let other = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let note = |root: u8| {
        let text = Checkpoint::new(ORIGIN, 7, quire_core::Hash([root; 32]))
            .unwrap()
            .to_text();
        let mut n = Note::new(&text).unwrap();
        n.add_signature(log.sign(text.as_bytes())).unwrap();
        n.to_bytes()
    };
    let (ev, _) = SplitViewEvidence::new(&note(1), &note(2), &[], &[log.verifier()]).unwrap();
    let file = dir.path().join("evidence.json");
    std::fs::write(&file, ev.to_json()).unwrap();
    let o = expect(
        1,
        format!(
            "audit evidence {} --log-key {}",
            p(&file),
            log.verifier().to_vkey()
        ),
    )
    .await;
    // Proven misbehaviour exits 1 with a verdict a person reads.
    assert!(
        text(&o).contains("PROVEN: the log signed two checkpoints of size"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("SameSize"), "{}", text(&o));
    expect(
        1,
        format!(
            "audit evidence {} --log-key {}",
            p(&file),
            other.verifier().to_vkey()
        ),
    )
    .await;
    std::fs::write(&file, b"{not json").unwrap();
    expect(
        2,
        format!(
            "audit evidence {} --log-key {}",
            p(&file),
            log.verifier().to_vkey()
        ),
    )
    .await;
}

/// `quire admin` as an operator on the server's machine runs it (no
/// access policy: loopback callers administer): a log created with
/// imported keys, written, frozen; writes then refused by name (exit 2);
/// after a restart the log is served again, still frozen, and its
/// checkpoint verifies with the imported key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_with_imported_keys_freezes_and_a_restart_keeps_both() {
    const NEXT: &str = "acme.example/2026-12";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || LocalServer::start(&data, vec![LogConfig::new(ORIGIN)], Config::default());
    let server = start().await.unwrap();
    let addr = format!("--addr {}", server.url());
    let path = |name: &str| p(&dir.path().join(name));
    let mut vkeys = Vec::new();
    for kind in ["log-p256", "log-ed25519"] {
        let o = expect(
            0,
            format!("keygen --kind {kind} --name {NEXT} --out {}", path(kind)),
        )
        .await;
        vkeys.push(String::from_utf8(o.stdout).unwrap().trim().to_owned());
    }
    let o = expect(
        0,
        format!(
            "--json admin create {NEXT} --import-key {} --import-key {} {addr}",
            path("log-p256"),
            path("log-ed25519")
        ),
    )
    .await;
    let created: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(created["keys_generated"], false);
    assert_eq!(created["state"], "ACTIVE");
    assert_eq!(created["verifier_keys"], serde_json::json!(vkeys));
    // Created twice: refused by the server (exit 3), naming why.
    let o = expect(3, format!("admin create {NEXT} {addr}")).await;
    assert!(text(&o).contains("AlreadyExists"), "{}", text(&o));

    std::fs::write(path("e.json"), br#"{"actor":"carol"}"#).unwrap();
    expect(0, format!("add {} --origin {NEXT} {addr}", path("e.json"))).await;
    let o = expect(0, format!("--json admin freeze {NEXT} {addr}")).await;
    let frozen: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&frozen["state"], &frozen["size"], &frozen["changed"]),
        (&"FROZEN".into(), &"1".into(), &true.into())
    );
    let o = expect(2, format!("add {} --origin {NEXT} {addr}", path("e.json"))).await;
    assert!(
        text(&o).contains(&format!("log {NEXT} is FROZEN: it takes no more writes")),
        "{}",
        text(&o)
    );
    server.stop().await;

    let server = start().await.unwrap();
    let addr = format!("--addr {}", server.url());
    let o = expect(0, format!("--json logs {addr}")).await;
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let next = listed["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["origin"] == NEXT)
        .expect("the created log is served after a restart")
        .clone();
    assert_eq!(
        (&next["state"], &next["size"]),
        (&"FROZEN".into(), &"1".into())
    );
    assert_eq!(next["frozen_at_ms"], frozen["frozen_at_ms"]);
    let o = expect(
        0,
        format!("checkpoint --origin {NEXT} --log-key {} {addr}", vkeys[1]),
    )
    .await;
    assert!(
        text(&o).starts_with(&format!("{NEXT}\n1\n")),
        "{}",
        text(&o)
    );
    expect(2, format!("add {} --origin {NEXT} {addr}", path("e.json"))).await;
    server.stop().await;
}

/// A log family as a user configures it: the server starts with the shard
/// of now and one ahead, `quire logs` shows each shard's family and period,
/// a write naming the family lands in the shard whose period holds the
/// time of the write and says so, and a restart serves the same shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_family_is_written_by_its_name_and_listed_by_shard() {
    const FAMILY: &str = "acme.example/daily";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = || Config {
        families: vec![toml::from_str(&format!(
            "origin = \"{FAMILY}\"\nperiod = \"day\"\n[shard]\nmax_batch = 10\n"
        ))
        .unwrap()],
        ..Config::default()
    };
    let start = || LocalServer::start(&data, vec![LogConfig::new(ORIGIN)], config());
    let server = start().await.unwrap();
    let addr = format!("--addr {}", server.url());
    let shards = |o: &Output| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["logs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["family"] == FAMILY)
            .cloned()
            .collect()
    };
    let listed = shards(&expect(0, format!("--json logs {addr}")).await);
    assert_eq!(
        listed.len(),
        2,
        "the shard of now and one ahead: {listed:?}"
    );
    let ms = |v: &serde_json::Value| v.as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(
        ms(&listed[0]["period_end_ms"]),
        ms(&listed[1]["period_start_ms"])
    );
    assert_eq!(
        ms(&listed[1]["period_end_ms"]) - ms(&listed[1]["period_start_ms"]),
        86_400_000
    );

    std::fs::write(dir.path().join("e.json"), br#"{"actor":"dave"}"#).unwrap();
    let before = quire_server::log::system_clock()();
    let o = expect(
        0,
        format!(
            "--json add {} --origin {FAMILY} {addr}",
            p(&dir.path().join("e.json"))
        ),
    )
    .await;
    let after = quire_server::log::system_clock()();
    let added: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let took = added["log"].as_str().unwrap().to_owned();
    let shard = listed
        .iter()
        .find(|l| l["origin"] == took.as_str())
        .expect("a shard took it");
    assert!(
        ms(&shard["period_start_ms"]) <= after && before < ms(&shard["period_end_ms"]),
        "{shard} holds the time of the write"
    );
    let o = expect(
        0,
        format!(
            "add {} --origin {FAMILY} {addr}",
            p(&dir.path().join("e.json"))
        ),
    )
    .await;
    assert!(text(&o).contains(&format!("in log {took}")), "{}", text(&o));
    server.stop().await;

    let server = start().await.unwrap();
    let addr = format!("--addr {}", server.url());
    let again = shards(&expect(0, format!("--json logs {addr}")).await);
    let origins =
        |l: &[serde_json::Value]| l.iter().map(|s| s["origin"].clone()).collect::<Vec<_>>();
    assert!(
        origins(&again).starts_with(&origins(&listed)[..1]),
        "{again:?}"
    );
    let kept = again.iter().find(|l| l["origin"] == took.as_str()).unwrap();
    assert_eq!(kept["size"], "1", "the duplicate was found in the shard");
    server.stop().await;
}
