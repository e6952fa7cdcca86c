//! A log that signs two histories with one key and shows one to two
//! witnesses (and their clients), the other to the third: the witnesses
//! find it through gossip, each holds evidence `quire audit evidence`
//! accepts with nothing but the log's key, and a client that requires 2 of
//! 3 cosignatures refuses the view that lacks them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::time::{Duration, Instant};

use quire_client::policy::LogTrust;
use quire_client::rpc::{Endpoint, LogRpc};
use quire_core::{Note, VerifierKey};
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::*;
use quire_server::config::{Config, LogConfig, WitnessEntry};
use quire_server::local::LocalServer;
use quire_tests::run_bin;
use quire_witness::config::{LogEntryConfig, PeerConfig, WitnessConfig};
use quire_witness::local::LocalWitness;
use tokio::net::TcpListener;

const ORIGIN: &str = "split.example/log";
/// Gossip and polling run every 100 ms; detection takes a few rounds. This
/// bound only fails a witness that never finds the split.
const PATIENCE: Duration = Duration::from_secs(90);

async fn bind() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_view_is_caught_by_gossip_with_evidence_anyone_can_check() {
    let dir = tempfile::tempdir().unwrap();
    // One key, two histories: X and Y share keys and origin.
    let (x_dir, y_dir) = (dir.path().join("x"), dir.path().join("y"));
    let (signers, _) =
        quire_server::keyfile::load_or_create(&x_dir.join("keys"), ORIGIN, true).unwrap();
    std::fs::create_dir_all(y_dir.join("keys")).unwrap();
    for f in std::fs::read_dir(x_dir.join("keys")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), y_dir.join("keys").join(f.file_name())).unwrap();
    }
    let log_keys: Vec<VerifierKey> = signers.iter().map(|s| s.verifier()).collect();
    let log_vkeys: Vec<String> = log_keys.iter().map(VerifierKey::to_vkey).collect();

    let (x_listener, x_url) = bind().await;
    let (y_listener, y_url) = bind().await;
    let mut grpc = Vec::new();
    let mut wkeys = Vec::new();
    for i in 0..3 {
        let (g, u) = bind().await;
        let h = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let data = dir.path().join(format!("w{i}"));
        let (signer, _) =
            quire_witness::keyfile::load_or_create(&data, &format!("w{i}.split.example")).unwrap();
        wkeys.push(signer.verifier());
        grpc.push((g, h, u, data));
    }
    // W0 and W1 watch X; W2 watches Y. All gossip with each other.
    let urls: Vec<String> = grpc.iter().map(|g| g.2.clone()).collect();
    let mut witnesses = Vec::new();
    for (i, (g, h, _, data)) in grpc.into_iter().enumerate() {
        let mut cfg = WitnessConfig::new(&format!("w{i}.split.example"), &data);
        cfg.poll_interval_ms = 100;
        cfg.gossip_interval_ms = 100;
        cfg.logs.push(LogEntryConfig {
            origin: ORIGIN.into(),
            keys: log_vkeys.clone(),
            url: Some(if i < 2 { x_url.clone() } else { y_url.clone() }),
        });
        for j in (0..3).filter(|&j| j != i) {
            cfg.peers.push(PeerConfig {
                url: urls[j].clone(),
                key: wkeys[j].to_vkey(),
            });
        }
        witnesses.push(LocalWitness::start_on(g, h, cfg).unwrap());
    }
    let log_config = |ws: &[usize]| {
        let mut lc = LogConfig::new(ORIGIN);
        lc.witnessing.witnesses = ws
            .iter()
            .map(|&i| WitnessEntry {
                protocol: Default::default(),
                url: urls[i].clone(),
                key: wkeys[i].to_vkey(),
            })
            .collect();
        lc.witnessing.quorum = Some(ws.len());
        lc.witnessing.wait_ms = 60_000;
        lc
    };
    let x = LocalServer::start_on(
        x_listener,
        &x_dir,
        vec![log_config(&[0, 1])],
        Config::default(),
    )
    .unwrap();
    let y = LocalServer::start_on(
        y_listener,
        &y_dir,
        vec![log_config(&[2])],
        Config::default(),
    )
    .unwrap();

    // Different histories, each witnessed by its side.
    let mut xr = LogRpc::connect(&Endpoint::new(&x_url)).await.unwrap();
    let mut yr = LogRpc::connect(&Endpoint::new(&y_url)).await.unwrap();
    xr.set_witnessed(true);
    yr.set_witnessed(true);
    for i in 0..8 {
        let batch: Vec<Vec<u8>> = (0..5).map(|j| format!("x {i} {j}").into_bytes()).collect();
        xr.add_batch(ORIGIN, batch, true).await.unwrap();
    }
    for i in 0..5 {
        let batch: Vec<Vec<u8>> = (0..5).map(|j| format!("y {i} {j}").into_bytes()).collect();
        yr.add_batch(ORIGIN, batch, true).await.unwrap();
    }

    // A client of Y requiring 2 of 3 refuses what Y shows it (one
    // cosignature); a client of X accepts what X shows (two).
    let trust = LogTrust {
        origin: ORIGIN.into(),
        log_keys: log_keys.clone(),
        witnesses: wkeys.clone(),
        quorum: 2,
    };
    let y_note = yr.checkpoint(ORIGIN).await.unwrap();
    let err = trust
        .verify_note(&Note::parse(&y_note).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("1 of the required 2"), "{err}");
    let x_note = xr.checkpoint(ORIGIN).await.unwrap();
    trust.verify_note(&Note::parse(&x_note).unwrap()).unwrap();
    let mut policy = vec![
        "--log-key".to_owned(),
        log_vkeys[0].clone(),
        "--quorum".into(),
        "2".into(),
    ];
    for k in &wkeys {
        policy.extend(["--witness-key".into(), k.to_vkey()]);
    }
    let checkpoint_cmd = |url: &str| {
        let mut a = vec!["checkpoint".to_owned(), "--addr".into(), url.to_owned()];
        a.extend(policy.iter().cloned());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_bin("quire", &a).0
    };
    assert_eq!(checkpoint_cmd(&y_url), 1, "the CLI refuses Y's view");
    assert_eq!(checkpoint_cmd(&x_url), 0, "and accepts X's");

    // A client shown Y's view hands it to W0: a conflict, at once.
    let mut w0 = WitnessClient::connect(urls[0].clone()).await.unwrap();
    let r = w0
        .gossip(GossipRequest {
            checkpoints: vec![y_note.clone()],
            source: "a client of Y".into(),
            evidence: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.results[0].verdict,
        GossipVerdict::Conflict as i32,
        "{:?}",
        r.results
    );

    // The same with the CLI: Y's view conflicts (exit 1), X's fits (0).
    let y_file = dir.path().join("y.note");
    let x_file = dir.path().join("x.note");
    std::fs::write(&y_file, &y_note).unwrap();
    std::fs::write(&x_file, &x_note).unwrap();
    let (code, out, err) = run_bin(
        "quire",
        &["gossip", y_file.to_str().unwrap(), "--witness", &urls[1]],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("conflict"), "{out}");
    let (code, out, err) = run_bin(
        "quire",
        &[
            "gossip",
            x_file.to_str().unwrap(),
            "--witness",
            &urls[0],
            "--witness",
            &urls[1],
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches("consistent").count(), 2, "{out}");

    // Every witness comes to hold evidence, through gossip.
    let start = Instant::now();
    let mut held = Vec::new();
    for u in &urls {
        let mut c = WitnessClient::connect(u.clone()).await.unwrap();
        loop {
            let ev = c
                .list_evidence(ListEvidenceRequest {
                    origin: ORIGIN.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .evidence;
            if !ev.is_empty() {
                held.push(ev);
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "witness {u} never found the split view"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Each piece of evidence stands on the log's key alone.
    for (i, evs) in held.iter().enumerate() {
        for (j, e) in evs.iter().enumerate() {
            let path = dir.path().join(format!("evidence-{i}-{j}.json"));
            std::fs::write(&path, &e.json).unwrap();
            let (code, out, err) = run_bin(
                "quire",
                &[
                    "audit",
                    "evidence",
                    path.to_str().unwrap(),
                    "--log-key",
                    &log_vkeys[0],
                ],
            );
            // Proven misbehaviour exits 1, with a verdict a person reads.
            assert_eq!(code, 1, "witness {i} evidence {j}: {out}{err}");
            assert!(out.contains("PROVEN: the log signed"), "{out}");
            assert!(!out.contains("Conflict"), "a debug dump: {out}");
        }
    }
    // And `quire-witness evidence` exports the same files.
    let out_dir = dir.path().join("exported");
    let (code, _, err) = run_bin(
        "quire-witness",
        &[
            "evidence",
            "--witness",
            &urls[2],
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read_dir(&out_dir).unwrap().count() >= held[2].len(),
        "one file per piece of evidence held"
    );
    for w in witnesses {
        w.stop().await;
    }
    x.stop().await;
    y.stop().await;
}
