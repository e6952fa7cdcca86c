//! `quire event import` end to end: the shipped Kubernetes, CloudTrail and
//! OCSF samples imported into a log in event mode, then found by a search
//! by time and by each key, proven complete, each event with its record as
//! the payload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use quire_tests::run_bin;

fn fixture(name: &str) -> String {
    format!(
        "{}/../client/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = run_bin("quire", args);
    assert_eq!(code, 0, "quire {args:?}: {out}{err}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_three_formats_are_imported_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new("import.example/events");
    cfg.events = true;
    let server = LocalServer::start(&dir.path().join("data"), vec![cfg], Config::default())
        .await
        .unwrap();
    let url = server.url();
    let key = server.keys[0].to_vkey();
    for (format, file, n) in [
        ("k8s", "k8s-audit.jsonl", 3),
        ("cloudtrail", "cloudtrail.json", 3),
        ("ocsf", "ocsf-api-activity.jsonl", 2),
    ] {
        let out = ok(&[
            "--json",
            "event",
            "import",
            "--format",
            format,
            &fixture(file),
            "--addr",
            &url,
        ]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["added"], n.to_string(), "{format}: {out}");
    }
    // Everything, proven complete; the log's own map head events aside.
    let imported = |out: &str| -> Vec<serde_json::Value> {
        let mut lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summary = lines.pop().unwrap();
        assert_eq!(summary["verified"], true, "{out}");
        lines.retain(|e| e["type"] != "quire.map");
        lines
    };
    let out = ok(&["--json", "search", "--addr", &url, "--log-key", &key]);
    assert!(
        out.lines().last().unwrap().contains("\"complete\":true"),
        "{out}"
    );
    let lines = imported(&out);
    assert_eq!(lines.len(), 8, "{out}");
    let kinds: Vec<&str> = lines.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "k8s.audit",
            "k8s.audit",
            "k8s.audit",
            "aws.cloudtrail",
            "aws.cloudtrail",
            "aws.cloudtrail",
            "ocsf.api_activity",
            "ocsf.api_activity"
        ]
    );
    // By each key: exactly the events of the time search with that value,
    // newest first, proven complete by the log's key map. The map commits
    // within a second of the last import: polled, bounded.
    for (flag, field, value) in [
        ("--actor", "actor", lines[2]["actor"].as_str().unwrap()),
        ("--action", "action", lines[4]["action"].as_str().unwrap()),
        (
            "--resource",
            "resource",
            lines[0]["resource"].as_str().unwrap(),
        ),
        ("--type", "type", "aws.cloudtrail"),
    ] {
        let mut want: Vec<&str> = lines
            .iter()
            .filter(|e| e[field] == value)
            .map(|e| e["index"].as_str().unwrap())
            .collect();
        want.reverse();
        assert!(!want.is_empty());
        let out = quire_tests::eventlog::search_by_key(&url, &key, flag, value);
        let got = imported(&out);
        let got: Vec<&str> = got.iter().map(|e| e["index"].as_str().unwrap()).collect();
        assert_eq!(got, want, "{flag} {value}: {out}");
        let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(summary["field"], field);
        assert!(summary["more_from"].is_null(), "{out}");
    }
    assert_eq!(lines[2]["actor"], "system:admin");
    assert_eq!(lines[4]["action"], "iam.amazonaws.com:CreateUser");
    assert_eq!(lines[4]["outcome"], "failure");
    // The record is the payload, verified against its commitment.
    let got = ok(&[
        "--json",
        "event",
        "get",
        "1",
        "--addr",
        &url,
        "--log-key",
        &key,
    ]);
    let v: serde_json::Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(v["verified"], true);
    assert!(
        v["payload"].as_str().unwrap().contains("db-password"),
        "{got}"
    );
    // A record that cannot be mapped names its line, and nothing of the
    // file is sent.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"verb\":\"get\"}\n",
    )
    .unwrap();
    let (code, _, err) = run_bin(
        "quire",
        &[
            "event",
            "import",
            "--format",
            "k8s",
            bad.to_str().unwrap(),
            "--addr",
            &url,
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1: user.username is missing"), "{err}");
    let out = ok(&["--json", "search", "--addr", &url, "--log-key", &key]);
    assert_eq!(imported(&out).len(), 8, "{out}");
    // An auditor recomputes the indexes from a dump checked against a
    // signed checkpoint: links, log times and every map head's root.
    let (dump, cp) = (dir.path().join("dump"), dir.path().join("cp"));
    let (dump, cp) = (dump.to_str().unwrap(), cp.to_str().unwrap());
    ok(&[
        "entries",
        "--out",
        dump,
        "--checkpoint-out",
        cp,
        "--addr",
        &url,
        "--log-key",
        &key,
    ]);
    let audit = [
        "audit",
        "index",
        dump,
        "--checkpoint",
        cp,
        "--log-key",
        &key,
    ];
    let out = ok(&[&["--json"], &audit[..]].concat());
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["verified"], true, "{out}");
    assert!(
        v["map_heads"].as_str().unwrap().parse::<u64>().unwrap() >= 1,
        "{out}"
    );
    // A dump whose envelope was altered does not rebuild the signed root.
    let text = std::fs::read_to_string(dump).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.swap(0, 1);
    std::fs::write(dump, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = run_bin("quire", &audit);
    assert_eq!(code, 1, "{out}{err}");
    server.stop().await;
    // Offline, the index written at ingestion equals the rebuilt one.
    let data = dir.path().join("data");
    let (code, out, err) = run_bin(
        "quire-server",
        &[
            "reindex",
            "--check",
            "--data-dir",
            data.to_str().unwrap(),
            "--origin",
            "import.example/events",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("equals the one rebuilt from the envelopes"),
        "{out}"
    );
}
