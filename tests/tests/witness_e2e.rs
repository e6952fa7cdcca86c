//! One log and three witnesses, end to end: real `quire-witness` processes
//! (SIGKILLed too), the log server, and clients (the `quire` CLI and the
//! library) holding a 2-of-3 witness policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_client::policy::LogTrust;
use quire_client::rpc::{Endpoint, LogRpc};
use quire_core::{Checkpoint, Note, VerifierKey};
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::*;
use quire_server::config::{Config, LogConfig, WitnessEntry};
use quire_server::local::LocalServer;
use quire_tests::memlog::MemLog;
use quire_tests::{run_bin, witness_config, LogSpec, WitnessProcess};

const ORIGIN: &str = "e2e.example/witnessed";

/// A bound deadline for what happens in the background (pushes, polls,
/// gossip). Far above what it takes; only a broken witness reaches it.
const PATIENCE: Duration = Duration::from_secs(90);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn witness_size(url: &str, origin: &str) -> u64 {
    let Ok(mut c) = WitnessClient::connect(url.to_owned()).await else {
        return 0;
    };
    let note = c
        .get_latest(GetLatestRequest {
            origin: origin.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    if note.is_empty() {
        return 0;
    }
    let n = Note::parse(&note).unwrap();
    Checkpoint::parse(n.text().as_bytes()).unwrap().size()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_witnesses_cosign_and_2_of_3_clients_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server_dir = dir.path().join("server");
    let (signers, _) =
        quire_server::keyfile::load_or_create(&server_dir.join("keys"), ORIGIN, true).unwrap();
    let log_keys: Vec<String> = signers.iter().map(|s| s.verifier().to_vkey()).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let log_url = format!("http://{}", listener.local_addr().unwrap());

    let witnesses: Vec<WitnessProcess> = (0..3)
        .map(|i| {
            let cfg = witness_config(
                &dir.path().join(format!("w{i}")),
                &format!("w{i}.e2e.example"),
                &[LogSpec {
                    origin: ORIGIN,
                    keys: log_keys.clone(),
                    url: Some(log_url.clone()),
                }],
                &[],
                200,
            );
            WitnessProcess::start(&cfg, any_port())
        })
        .collect();
    let mut lc = LogConfig::new(ORIGIN);
    lc.witnessing.witnesses = witnesses
        .iter()
        .map(|w| WitnessEntry {
            protocol: Default::default(),
            url: w.url(),
            key: w.vkey.clone(),
        })
        .collect();
    lc.witnessing.quorum = Some(2);
    lc.witnessing.wait_ms = 60_000;
    let server = LocalServer::start_on(listener, &server_dir, vec![lc], Config::default()).unwrap();

    // The library: a witnessed batch answers with a checkpoint a 2-of-3
    // policy accepts, and the proofs are against it.
    let trust = LogTrust {
        origin: ORIGIN.into(),
        log_keys: signers.iter().map(|s| s.verifier()).collect(),
        witnesses: witnesses
            .iter()
            .map(|w| VerifierKey::parse(&w.vkey).unwrap())
            .collect(),
        quorum: 2,
    };
    let mut rpc = LogRpc::connect(&Endpoint::new(&server.url()))
        .await
        .unwrap();
    rpc.set_witnessed(true);
    let entries: Vec<Vec<u8>> = (0..50).map(|i| format!("event {i}").into_bytes()).collect();
    let resp = rpc.add_batch(ORIGIN, entries.clone(), true).await.unwrap();
    let note = Note::parse(&resp.checkpoint).unwrap();
    let (cp, cosigs) = trust.verify_note(&note).unwrap();
    assert!(cosigs.len() >= 2, "a quorum of cosignatures: {cosigs:?}");
    for (i, e) in resp.entries.iter().enumerate() {
        let proof = quire_proto::hashes_from_wire(&e.inclusion_proof).unwrap();
        quire_core::verify_inclusion(
            &quire_core::leaf_hash(&entries[i]),
            e.index,
            cp.size(),
            &proof,
            cp.root(),
        )
        .unwrap();
    }
    // A policy naming witnesses the log does not use refuses the same note.
    let strangers = LogTrust {
        witnesses: (0..3)
            .map(|i| {
                quire_core::WitnessSigner::generate(&format!("s{i}.example"))
                    .unwrap()
                    .verifier()
            })
            .collect(),
        ..trust.clone()
    };
    assert!(strangers.verify_note(&note).is_err());

    // The CLI, as a user runs it.
    let entry = dir.path().join("entry.json");
    std::fs::write(&entry, br#"{"actor":"alice","action":"login"}"#).unwrap();
    let bundle = dir.path().join("bundle.proof");
    let mut policy: Vec<String> = vec!["--log-key".into(), log_keys[0].clone()];
    for w in &witnesses {
        policy.extend(["--witness-key".into(), w.vkey.clone()]);
    }
    policy.extend(["--quorum".into(), "2".into()]);
    let args = |head: &[&str]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(policy.iter().cloned())
            .collect()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_bin("quire", &a)
    };
    let url = server.url();
    let (code, out, err) = run(args(&[
        "add",
        entry.to_str().unwrap(),
        "--addr",
        &url,
        "--wait",
        bundle.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "quire add: {out}{err}");
    let (code, out, err) = run(args(&["verify", bundle.to_str().unwrap()]));
    assert_eq!(code, 0, "quire verify: {out}{err}");
    let (code, out, err) = run(args(&["checkpoint", "--addr", &url]));
    assert_eq!(code, 0, "quire checkpoint: {out}{err}");
    // The same bundle under a policy it cannot meet fails verification.
    let (code, _, _) = run_bin(
        "quire",
        &[
            "verify",
            bundle.to_str().unwrap(),
            "--log-key",
            &log_keys[0],
            "--witness-key",
            &strangers.witnesses[0].to_vkey(),
            "--quorum",
            "1",
        ],
    );
    assert_eq!(code, 1);

    // Every witness comes to hold the final checkpoint (pushed, or pulled).
    let final_size = server.logs[0].latest().stored.size;
    let start = Instant::now();
    for w in &witnesses {
        while witness_size(&w.url(), ORIGIN).await < final_size {
            assert!(
                start.elapsed() < PATIENCE,
                "witness {} never caught up",
                w.url()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_killed_right_after_answering_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MemLog::new(ORIGIN);
    log.append(4000, "k");
    let log = Arc::new(log);
    let cfg = witness_config(
        &dir.path().join("w"),
        "killed.e2e.example",
        &[LogSpec {
            origin: ORIGIN,
            keys: vec![log.vkey()],
            url: None,
        }],
        &[],
        1000,
    );
    let mut acked_max = 0u64;
    for round in 0..4u64 {
        let mut w = WitnessProcess::start(&cfg, any_port());
        let c = WitnessClient::connect(w.url()).await.unwrap();
        // What the restarted witness holds: never less than anything it
        // acknowledged, and a checkpoint of this log.
        let held = witness_size(&w.url(), ORIGIN).await;
        assert!(
            held >= acked_max,
            "round {round}: holds {held}, acknowledged {acked_max}"
        );
        if held > 0 {
            let note = c
                .clone()
                .get_latest(GetLatestRequest {
                    origin: ORIGIN.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .checkpoint;
            let n = Note::parse(&note).unwrap();
            assert_eq!(n.text(), log.text(held));
        }
        // Old size 0 is a conflict that names the held size.
        let e = c
            .clone()
            .add_checkpoint(AddCheckpointRequest {
                old_size: 0,
                proof: vec![],
                checkpoint: log.checkpoint(if held > 0 { log.size() } else { 1 }),
            })
            .await;
        if held > 0 {
            let e = e.unwrap_err();
            assert_eq!(
                e.metadata()
                    .get("quire-witness-size")
                    .unwrap()
                    .to_str()
                    .unwrap(),
                held.to_string()
            );
        } else {
            // First round: that call was the first contact (size 1); the
            // witness is killed as this iteration drops it.
            e.unwrap();
            acked_max = 1;
            continue;
        }
        // Concurrent writers push forward; the test kills the witness as
        // soon as the 30th answer of this round arrives.
        let acks = Arc::new(AtomicU64::new(0));
        let max = Arc::new(AtomicU64::new(acked_max));
        let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut tasks = Vec::new();
        for t in 0..4u64 {
            let (mut c, log, acks, max, kill_tx) = (
                c.clone(),
                log.clone(),
                acks.clone(),
                max.clone(),
                kill_tx.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut old = held;
                for step in 0.. {
                    let new = (old + 1 + (t + step) % 3).min(log.size());
                    if new <= old {
                        return;
                    }
                    let r = c
                        .add_checkpoint(AddCheckpointRequest {
                            old_size: old,
                            proof: quire_proto::hashes_to_wire(&log.proof(old, new)),
                            checkpoint: log.checkpoint(new),
                        })
                        .await;
                    match r {
                        Ok(_) => {
                            max.fetch_max(new, Ordering::SeqCst);
                            if acks.fetch_add(1, Ordering::SeqCst) + 1 == 30 {
                                let _ = kill_tx.try_send(());
                            }
                            old = new;
                        }
                        Err(e) => match e
                            .metadata()
                            .get("quire-witness-size")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                        {
                            Some(s) => old = s,
                            None => return, // killed
                        },
                    }
                }
            }));
        }
        drop(kill_tx);
        let _ = kill_rx.recv().await;
        w.kill();
        for t in tasks {
            let _ = t.await;
        }
        acked_max = max.load(Ordering::SeqCst);
        assert!(acks.load(Ordering::SeqCst) >= 30);
    }
}
