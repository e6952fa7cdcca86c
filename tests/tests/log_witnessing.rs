//! The log's side of witnessing: a dead witness costs its own timeout and
//! nothing more, fail closed refuses a checkpoint short of the quorum while
//! the entry stays stored, fail open answers with what it has, and
//! consistency proofs come with their seed for evidence.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::verify::consistency_roots;
use quire_core::{Checkpoint, Note};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::*;
use quire_server::config::{Config, LogConfig, WitnessEntry};
use quire_server::local::LocalServer;
use quire_server::witnessing::FailMode;
use quire_witness::config::{LogEntryConfig, WitnessConfig};
use quire_witness::local::LocalWitness;
use tonic::Code;

fn cosignatures(note: &[u8], origin: &str) -> usize {
    let n = Note::parse(note).unwrap();
    n.signatures().iter().filter(|s| s.name() != origin).count()
}

fn parse(note: &[u8]) -> Checkpoint {
    Checkpoint::parse(Note::parse(note).unwrap().text().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_witnesses_cost_their_timeout_and_fail_modes_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (closed, open, one_live) = ("closed.example/log", "open.example/log", "live.example/log");
    // A witness that accepts connections and never answers.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    let dead_key = quire_core::WitnessSigner::generate("dead.example")
        .unwrap()
        .verifier()
        .to_vkey();
    // A live witness for the third log.
    let server_dir = dir.path().join("server");
    let (signers, _) =
        quire_server::keyfile::load_or_create(&server_dir.join("keys"), one_live, true).unwrap();
    let mut wcfg = WitnessConfig::new("live.witness.example", &dir.path().join("w"));
    wcfg.logs.push(LogEntryConfig {
        origin: one_live.into(),
        keys: signers.iter().map(|s| s.verifier().to_vkey()).collect(),
        url: None,
    });
    let live = LocalWitness::start(wcfg).await.unwrap();

    let config = |origin: &str, fail: FailMode, live_too: bool| {
        let mut lc = LogConfig::new(origin);
        lc.witnessing.witnesses = vec![WitnessEntry {
            protocol: Default::default(),
            url: dead_url.clone(),
            key: dead_key.clone(),
        }];
        if live_too {
            lc.witnessing.witnesses.push(WitnessEntry {
                protocol: Default::default(),
                url: live.url(),
                key: live.key.to_vkey(),
            });
        }
        lc.witnessing.quorum = Some(1);
        lc.witnessing.timeout_ms = 200;
        lc.witnessing.wait_ms = 400;
        lc.witnessing.fail = fail;
        lc
    };
    let server = LocalServer::start(
        &server_dir,
        vec![
            config(closed, FailMode::Closed, false),
            config(open, FailMode::Open, false),
            config(one_live, FailMode::Closed, true),
        ],
        Config::default(),
    )
    .await
    .unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let add = |log: &str, entry: &str, witnessed: bool| AddEntryRequest {
        log: log.into(),
        entry: entry.as_bytes().to_vec(),
        with_proof: true,
        witnessed,
    };

    // Integration never waits for witnesses: plain writes go through.
    for i in 0..20 {
        c.add_entry(add(closed, &format!("plain {i}"), false))
            .await
            .unwrap();
    }
    // Fail closed: UNAVAILABLE naming the index, and the entry is stored.
    let e = c
        .add_entry(add(closed, "needs witnesses", true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("entry 20 is stored"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("fail closed"), "{}", e.message());
    let got = c
        .get_entry_with_proof(GetEntryWithProofRequest {
            log: closed.into(),
            index: 20,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.entry, b"needs witnesses");
    let e = c
        .get_checkpoint(GetCheckpointRequest {
            log: closed.into(),
            witnessed: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);

    // Fail open: the signed checkpoint with no cosignature, and a proof
    // that verifies against it.
    let r = c
        .add_entry(add(open, "open entry", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cosignatures(&r.checkpoint, open), 0);
    let cp = parse(&r.checkpoint);
    quire_core::verify_inclusion(
        &quire_core::leaf_hash(b"open entry"),
        r.index,
        cp.size(),
        &quire_proto::hashes_from_wire(&r.inclusion_proof).unwrap(),
        cp.root(),
    )
    .unwrap();

    // One dead and one live witness, quorum 1: the live one carries it.
    for i in 0..5 {
        let r = c
            .add_entry(add(one_live, &format!("live {i}"), true))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cosignatures(&r.checkpoint, one_live), 1);
        let n = Note::parse(&r.checkpoint).unwrap();
        n.verify(std::slice::from_ref(&live.key)).unwrap();
        assert!(parse(&r.checkpoint).size() > r.index);
    }
    let w = c
        .get_checkpoint(GetCheckpointRequest {
            log: one_live.into(),
            witnessed: true,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    assert_eq!(cosignatures(&w, one_live), 1);
    // A log without witnesses says so when asked for witnessed answers,
    // before it stores anything.
    let plain = LocalServer::start(
        &dir.path().join("plain"),
        vec![LogConfig::new("plain.example/log")],
        Config::default(),
    )
    .await
    .unwrap();
    let mut pc = LogClient::connect(plain.url()).await.unwrap();
    let e = pc
        .get_checkpoint(GetCheckpointRequest {
            log: String::new(),
            witnessed: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("no witnesses"), "{}", e.message());
    let e = pc
        .add_entry(add("plain.example/log", "x", true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(plain.logs[0].latest().stored.size, 0, "nothing was stored");
    plain.stop().await;

    // Consistency proofs with their seed rebuild both roots, for power of
    // two old sizes too.
    let mut roots = vec![quire_core::empty_root()];
    let mut p = LogClient::connect(server.url()).await.unwrap();
    for i in 0..20u64 {
        let r = p
            .add_entry(AddEntryRequest {
                log: open.into(),
                entry: format!("seeded {i}").into_bytes(),
                with_proof: true,
                witnessed: false,
            })
            .await
            .unwrap()
            .into_inner();
        let cp = parse(&r.checkpoint);
        roots.resize(cp.size() as usize + 1, quire_core::empty_root());
        roots[cp.size() as usize] = *cp.root();
    }
    let new = (roots.len() - 1) as u64;
    for old in [1u64, 2, 4, 8, 16, 3, 5, 13] {
        if old >= new || roots[old as usize] == quire_core::empty_root() {
            continue;
        }
        let r = p
            .get_consistency_proof(GetConsistencyProofRequest {
                log: open.into(),
                old_size: old,
                new_size: new,
                with_seed: true,
            })
            .await
            .unwrap()
            .into_inner();
        let seed = quire_core::Hash::from_slice(&r.seed).unwrap();
        let proof = quire_proto::hashes_from_wire(&r.proof).unwrap();
        let rest = if old.is_power_of_two() {
            &proof[..]
        } else {
            &proof[1..]
        };
        let (o, n) = consistency_roots(old, new, &seed, rest).unwrap();
        assert_eq!(n, roots[new as usize]);
        assert_eq!(o, roots[old as usize], "seeded path from {old}");
    }
    live.stop().await;
    server.stop().await;
    drop(dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_watches_a_log_that_never_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "silent.example/log";
    let server = LocalServer::start(
        &dir.path().join("server"),
        vec![LogConfig::new(origin)],
        Config::default(),
    )
    .await
    .unwrap();
    let mut cfg = WitnessConfig::new("puller.example", &dir.path().join("w"));
    cfg.poll_interval_ms = 50;
    cfg.logs.push(LogEntryConfig {
        origin: origin.into(),
        keys: server.keys.iter().map(|k| k.to_vkey()).collect(),
        url: Some(server.url()),
    });
    let w = LocalWitness::start(cfg).await.unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let start = std::time::Instant::now();
    for round in 0..3u64 {
        for i in 0..7 {
            c.add_entry(AddEntryRequest {
                log: origin.into(),
                entry: format!("{round} {i}").into_bytes(),
                with_proof: false,
                witnessed: false,
            })
            .await
            .unwrap();
        }
        let size = server.logs[0].latest().stored.size;
        // The witness polls, asks for the consistency proof and cosigns.
        loop {
            if let Some(l) = w.witness.state().latest(origin) {
                if l.size == size {
                    assert_eq!(l.root, server.logs[0].latest().root);
                    break;
                }
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(90),
                "the witness never pulled size {size}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert!(w.witness.state().evidence(None).is_empty());
    w.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosignatures_are_kept_beside_their_checkpoint_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "kept.example/log";
    let server_dir = dir.path().join("server");
    let (signers, _) =
        quire_server::keyfile::load_or_create(&server_dir.join("keys"), origin, true).unwrap();
    let mut wcfg = WitnessConfig::new("kept.witness.example", &dir.path().join("w"));
    wcfg.logs.push(LogEntryConfig {
        origin: origin.into(),
        keys: signers.iter().map(|s| s.verifier().to_vkey()).collect(),
        url: None,
    });
    let live = LocalWitness::start(wcfg).await.unwrap();
    let witness_key = live.key.clone();
    // After the restart the witness is gone: its address accepts and never
    // answers.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    let config = |url: String, key: String| {
        let mut lc = LogConfig::new(origin);
        lc.witnessing.witnesses = vec![WitnessEntry {
            protocol: Default::default(),
            url,
            key,
        }];
        lc.witnessing.quorum = Some(1);
        lc.witnessing.timeout_ms = 200;
        lc.witnessing.wait_ms = 400;
        lc.witnessing.fail = FailMode::Closed;
        lc
    };
    let server = LocalServer::start(
        &server_dir,
        vec![config(live.url(), witness_key.to_vkey())],
        Config::default(),
    )
    .await
    .unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let r = c
        .add_entry(AddEntryRequest {
            log: origin.into(),
            entry: b"witnessed before the restart".to_vec(),
            with_proof: true,
            witnessed: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cosignatures(&r.checkpoint, origin), 1);
    let witnessed_size = parse(&r.checkpoint).size();
    // The witnessed checkpoint is kept (bounded wait for the keeper task),
    // then the server and the witness stop.
    let mut tries = 0;
    loop {
        use quire_server::store::{Storage as _, StorageReader as _};
        let kept = server.logs[0]
            .store()
            .reader()
            .unwrap()
            .latest_cosignatures()
            .unwrap();
        if kept.is_some_and(|(size, _)| size == witnessed_size) {
            break;
        }
        tries += 1;
        assert!(tries < 1000, "the cosignatures were never kept");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.stop().await;
    live.stop().await;

    // Restarted with the witness dead: the witnessed checkpoint is served
    // at once, with its cosignature verifying under the witness's key.
    let server = LocalServer::start(
        &server_dir,
        vec![config(dead_url.clone(), witness_key.to_vkey())],
        Config::default(),
    )
    .await
    .unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let w = c
        .get_checkpoint(GetCheckpointRequest {
            log: origin.into(),
            witnessed: true,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    assert_eq!(parse(&w).size(), witnessed_size);
    assert_eq!(cosignatures(&w, origin), 1);
    Note::parse(&w)
        .unwrap()
        .verify(std::slice::from_ref(&witness_key))
        .unwrap();
    server.stop().await;

    // What was kept is verified again, never trusted: under another
    // witness key it counts for nothing, and fail closed says so.
    let other = quire_core::WitnessSigner::generate("other.witness.example")
        .unwrap()
        .verifier()
        .to_vkey();
    let server = LocalServer::start(
        &server_dir,
        vec![config(dead_url, other)],
        Config::default(),
    )
    .await
    .unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let e = c
        .get_checkpoint(GetCheckpointRequest {
            log: origin.into(),
            witnessed: true,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_call_to_a_dead_witness() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "stopping.example/log";
    // Accepts connections and never answers; calls to it time out only
    // after a minute.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut lc = LogConfig::new(origin);
    lc.witnessing.witnesses = vec![WitnessEntry {
        protocol: Default::default(),
        url: format!("http://{}", dead.local_addr().unwrap()),
        key: quire_core::WitnessSigner::generate("dead.example")
            .unwrap()
            .verifier()
            .to_vkey(),
    }];
    lc.witnessing.timeout_ms = 60_000;
    let server = LocalServer::start(dir.path(), vec![lc], Config::default())
        .await
        .unwrap();
    // Reads are served while the start-up check waits on the dead witness.
    let mut c = LogClient::connect(server.url()).await.unwrap();
    c.get_checkpoint(GetCheckpointRequest {
        log: origin.into(),
        witnessed: false,
    })
    .await
    .unwrap();
    // The start-up check and a round are both waiting on the dead witness:
    // shutdown aborts them (a bound far below their minute, not a race).
    tokio::time::timeout(std::time::Duration::from_secs(30), server.stop())
        .await
        .expect("shutdown waited for the dead witness");
    // And storage was closed: the log opens again at once.
    let again = LocalServer::start(dir.path(), vec![LogConfig::new(origin)], Config::default())
        .await
        .unwrap();
    again.stop().await;
}
