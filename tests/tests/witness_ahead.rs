//! A witness ahead of the log's storage stops signing (design invariant 7),
//! whatever the witness fail mode and whether it is reached over gRPC or
//! C2SP tlog-witness HTTP: a whole data directory (database and
//! high-water record together) put back from an older copy cannot be caught
//! by the log alone, but its witness still holds the newer checkpoint. The
//! log asks before its first signature, refuses every write by name, signs
//! nothing, and keeps serving reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::Path;

use quire_core::{Checkpoint, Note};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::*;
use quire_server::config::{Config, LogConfig, WitnessEntry};
use quire_server::local::LocalServer;
use quire_server::log::Signing;
use quire_server::witnessing::{FailMode, WitnessProtocol};
use quire_witness::config::{LogEntryConfig, WitnessConfig};
use quire_witness::local::LocalWitness;
use tonic::Code;

const ORIGIN: &str = "ahead.example/log";

fn size_of(note: &[u8]) -> u64 {
    Checkpoint::parse(Note::parse(note).unwrap().text().as_bytes())
        .unwrap()
        .size()
}

/// Writes `n` witnessed entries; returns the size the witnessed checkpoint
/// covers.
async fn write_witnessed(server: &LocalServer, tag: &str, n: usize) -> u64 {
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let r = c
        .add_entries(AddEntriesRequest {
            log: ORIGIN.into(),
            entries: (0..n).map(|i| format!("{tag} {i}").into_bytes()).collect(),
            with_proof: true,
            witnessed: true,
        })
        .await
        .unwrap()
        .into_inner();
    size_of(&r.checkpoint)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_ahead_of_a_restored_log_stops_signing_in_either_fail_mode() {
    for (fail, protocol) in [
        (FailMode::Open, WitnessProtocol::Grpc),
        (FailMode::Closed, WitnessProtocol::Grpc),
        (FailMode::Open, WitnessProtocol::Http),
        (FailMode::Closed, WitnessProtocol::Http),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server_dir = dir.path().join("server");
        let backup = dir.path().join("backup");
        let (signers, _) =
            quire_server::keyfile::load_or_create(&server_dir.join("keys"), ORIGIN, true).unwrap();
        let mut wcfg = WitnessConfig::new("w.ahead.example", &dir.path().join("w"));
        wcfg.logs.push(LogEntryConfig {
            origin: ORIGIN.into(),
            keys: signers.iter().map(|s| s.verifier().to_vkey()).collect(),
            url: None,
        });
        let witness = LocalWitness::start(wcfg).await.unwrap();
        let mut lc = LogConfig::new(ORIGIN);
        // Over gRPC, or C2SP tlog-witness HTTP (which says only sizes).
        let url = match protocol {
            WitnessProtocol::Grpc => witness.url(),
            WitnessProtocol::Http => format!("http://{}", witness.http_addr),
        };
        lc.witnessing.witnesses = vec![WitnessEntry {
            protocol,
            url: url.clone(),
            key: witness.key.to_vkey(),
        }];
        lc.witnessing.quorum = Some(1);
        lc.witnessing.fail = fail;
        let start = || LocalServer::start(&server_dir, vec![lc.clone()], Config::default());

        let server = start().await.unwrap();
        assert_eq!(write_witnessed(&server, "first", 10).await, 10);
        server.stop().await;
        copy_dir(&server_dir, &backup);
        let server = start().await.unwrap();
        assert_eq!(write_witnessed(&server, "second", 10).await, 20);
        server.stop().await;

        // The whole directory back, high-water record included: the log
        // alone sees nothing wrong, the witness does.
        copy_dir(&backup, &server_dir);
        let server = start().await.unwrap();
        let mut c = LogClient::connect(server.url()).await.unwrap();
        let e = c
            .add_entry(AddEntryRequest {
                log: ORIGIN.into(),
                entry: b"would fork".to_vec(),
                with_proof: false,
                witnessed: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{fail:?}: {e:?}");
        assert!(
            e.message().contains("stopped signing")
                && e.message().contains(&url)
                && e.message().contains("size 20")
                && e.message().contains("only size 10"),
            "{fail:?} {protocol:?}: {}",
            e.message()
        );
        assert!(matches!(server.logs[0].signing(), Signing::Stopped(_)));
        // Nothing was signed, and reads go on.
        let note = c
            .get_checkpoint(GetCheckpointRequest {
                log: ORIGIN.into(),
                witnessed: false,
            })
            .await
            .unwrap()
            .into_inner()
            .checkpoint;
        assert_eq!(size_of(&note), 10);
        let p = c
            .get_entry_with_proof(GetEntryWithProofRequest {
                log: ORIGIN.into(),
                index: 3,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(p.entry, b"first 3");
        // The witness still holds 20 and no evidence: no fork was signed.
        let w = witness.witness.latest_note(ORIGIN).unwrap();
        assert_eq!(size_of(&w), 20, "{fail:?}");
        server.stop().await;
        witness.stop().await;
    }
}
