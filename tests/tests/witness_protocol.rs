//! The witness's add-checkpoint over gRPC and over C2SP HTTP, against an
//! in-memory log: the normal path, every rejection with its status, hostile
//! input that must not poison the state, and concurrent calls that must
//! never roll it back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::{Checkpoint, Note, VerifierKey};
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::*;
use quire_tests::http_post;
use quire_tests::memlog::MemLog;
use quire_witness::config::{LogEntryConfig, WitnessConfig};
use quire_witness::local::LocalWitness;
use tonic::transport::Channel;
use tonic::Code;

const ORIGIN: &str = "wp.example/log";

async fn witness(dir: &std::path::Path, log: &MemLog) -> (LocalWitness, WitnessClient<Channel>) {
    let mut cfg = WitnessConfig::new("wp.example/witness", &dir.join("w"));
    cfg.logs.push(LogEntryConfig {
        origin: ORIGIN.into(),
        keys: vec![log.vkey()],
        url: None,
    });
    let w = LocalWitness::start(cfg).await.unwrap();
    let c = WitnessClient::connect(w.url()).await.unwrap();
    (w, c)
}

fn req(old: u64, proof: Vec<quire_core::Hash>, note: Vec<u8>) -> AddCheckpointRequest {
    AddCheckpointRequest {
        old_size: old,
        proof: quire_proto::hashes_to_wire(&proof),
        checkpoint: note,
    }
}

async fn latest(c: &mut WitnessClient<Channel>) -> Vec<u8> {
    c.get_latest(GetLatestRequest {
        origin: ORIGIN.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .checkpoint
}

fn size_of(note: &[u8]) -> u64 {
    let n = Note::parse(note).unwrap();
    Checkpoint::parse(n.text().as_bytes()).unwrap().size()
}

/// The cosignature lines verify over `text` with the witness's key.
fn check_cosignature(text: &str, lines: &str, key: &VerifierKey) {
    let lines: Vec<String> = lines.split_inclusive('\n').map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "one cosignature line");
    let (sig, ts) = quire_core::cosignature::verify_answer(text, &lines, key).unwrap();
    assert_eq!((sig.name(), sig.key_id()), (key.name(), key.key_id()));
    assert!(ts > 0, "a cosignature/v1 carries a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_add_checkpoint_follows_the_c2sp_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MemLog::new(ORIGIN);
    log.append(10, "a");
    let (w, mut c) = witness(dir.path(), &log).await;

    // First contact: old size 0, no proof.
    let r = c
        .add_checkpoint(req(0, vec![], log.checkpoint(5)))
        .await
        .unwrap();
    let lines = r.into_inner().cosignatures;
    assert_eq!(lines.len(), 1);
    check_cosignature(&log.text(5), &lines[0], &w.key);
    assert_eq!(size_of(&latest(&mut c).await), 5);

    // The same checkpoint again is cosigned again.
    c.add_checkpoint(req(5, vec![], log.checkpoint(5)))
        .await
        .unwrap();

    // Stale old size: 409 with the witness's size in the trailer.
    let e = c
        .add_checkpoint(req(0, vec![], log.checkpoint(7)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.metadata().get("quire-witness-size").unwrap(), "5");

    // Old size above the new size: 400.
    let e = c
        .add_checkpoint(req(9, vec![], log.checkpoint(7)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // A proof that does not verify: 422, state unchanged.
    let mut bad = log.proof(5, 9);
    bad[0].0[0] ^= 1;
    let e = c
        .add_checkpoint(req(5, bad, log.checkpoint(9)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    assert_eq!(size_of(&latest(&mut c).await), 5);

    // A good proof moves it forward.
    c.add_checkpoint(req(5, log.proof(5, 9), log.checkpoint(9)))
        .await
        .unwrap();
    assert_eq!(size_of(&latest(&mut c).await), 9);

    // A smaller checkpoint is never cosigned after a larger one.
    let e = c
        .add_checkpoint(req(9, vec![], log.checkpoint(6)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_grpc_input_is_refused_and_never_poisons_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MemLog::new(ORIGIN);
    log.append(20, "a");
    let (w, mut c) = witness(dir.path(), &log).await;
    c.add_checkpoint(req(0, vec![], log.checkpoint(8)))
        .await
        .unwrap();
    let before = latest(&mut c).await;

    let code = |r: Result<tonic::Response<AddCheckpointResponse>, tonic::Status>| {
        r.map(|_| ()).unwrap_err().code()
    };
    // Not a note at all, and a note whose body is not a checkpoint.
    assert_eq!(
        code(c.add_checkpoint(req(8, vec![], b"garbage".to_vec())).await),
        Code::InvalidArgument
    );
    let signer = log.signer();
    let mut n = Note::new("not a checkpoint\n").unwrap();
    n.add_signature(signer.sign(b"not a checkpoint\n")).unwrap();
    assert_eq!(
        code(c.add_checkpoint(req(8, vec![], n.to_bytes())).await),
        Code::InvalidArgument
    );
    // Unknown origin.
    let other = {
        let mut o = MemLog::new("other.example/log");
        o.append(3, "o");
        o
    };
    assert_eq!(
        code(c.add_checkpoint(req(0, vec![], other.checkpoint(3))).await),
        Code::NotFound
    );
    // Same origin, another key (a forger): 403.
    let forger = {
        let mut f = MemLog::new(ORIGIN);
        f.append(20, "forged");
        f
    };
    assert_eq!(
        code(
            c.add_checkpoint(req(8, forger.proof(8, 12), forger.checkpoint(12)))
                .await
        ),
        Code::PermissionDenied
    );
    // The log's key name and ID over a corrupted signature: 403.
    let mut corrupt = log.checkpoint(12);
    let l = corrupt.len();
    corrupt[l - 6] = if corrupt[l - 6] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        code(c.add_checkpoint(req(8, log.proof(8, 12), corrupt)).await),
        Code::PermissionDenied
    );
    // 64 proof hashes, and a hash of 31 bytes: refused before any check.
    let mut long = quire_proto::hashes_to_wire(&log.proof(8, 12));
    long.resize(64, vec![0; 32]);
    let e = c
        .add_checkpoint(AddCheckpointRequest {
            old_size: 8,
            proof: long,
            checkpoint: log.checkpoint(12),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("63"), "{}", e.message());
    let e = c
        .add_checkpoint(AddCheckpointRequest {
            old_size: 8,
            proof: vec![vec![0; 31]],
            checkpoint: log.checkpoint(12),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // A note over the 64 KiB limit.
    let mut huge = log.checkpoint(12);
    huge.extend(std::iter::repeat_n(b'x', 70 * 1024));
    assert_eq!(
        code(c.add_checkpoint(req(8, log.proof(8, 12), huge)).await),
        Code::InvalidArgument
    );
    // 65 signature lines (the log's own and 64 copies): over the limit of
    // 64, refused by name before any signature is checked.
    let text = String::from_utf8(log.checkpoint(12)).unwrap();
    let last = text
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .unwrap()
        .to_owned();
    let mut crowded = text;
    for _ in 0..64 {
        crowded.push_str(&last);
        crowded.push('\n');
    }
    let crowded = crowded.into_bytes();
    let e = c
        .add_checkpoint(req(8, log.proof(8, 12), crowded))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("limit is 64"), "{}", e.message());
    // Nothing above moved or changed the state.
    assert_eq!(
        Note::parse(&latest(&mut c).await).unwrap().text(),
        Note::parse(&before).unwrap().text()
    );
    assert_eq!(size_of(&latest(&mut c).await), 8);

    // Extra signature lines (unknown keys, and a line under the log's name
    // with another key ID) are ignored: cosigned, and never stored.
    let mut extra = Note::parse(&log.checkpoint(12)).unwrap();
    let stranger =
        quire_core::LogSigner::generate(quire_core::LogKeyAlgorithm::Ed25519, "stranger.example")
            .unwrap();
    extra
        .add_signature(stranger.sign(log.text(12).as_bytes()))
        .unwrap();
    let imposter =
        quire_core::LogSigner::generate(quire_core::LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    extra
        .add_signature(imposter.sign(b"something else\n"))
        .unwrap();
    c.add_checkpoint(req(8, log.proof(8, 12), extra.to_bytes()))
        .await
        .unwrap();
    let stored = Note::parse(&latest(&mut c).await).unwrap();
    let names: Vec<String> = stored
        .signatures()
        .iter()
        .map(|s| format!("{}+{:08x}", s.name(), s.key_id()))
        .collect();
    assert_eq!(
        names,
        vec![
            format!("{ORIGIN}+{:08x}", log.signer().key_id()),
            format!("{}+{:08x}", w.key.name(), w.key.key_id())
        ],
        "only the log's signature and the witness's cosignature"
    );

    // Reads of unknown logs, and a message over the 8 MiB request limit.
    let e = c
        .get_latest(GetLatestRequest {
            origin: "nope.example/log".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .gossip(GossipRequest {
            checkpoints: vec![vec![b'x'; 9 << 20]],
            source: "t".into(),
            evidence: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");
    // The witness still serves.
    assert_eq!(size_of(&latest(&mut c).await), 12);

    // Gossip limits and garbage.
    let e = c
        .gossip(GossipRequest {
            checkpoints: vec![log.checkpoint(12); 1025],
            source: "t".into(),
            evidence: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("1024"));
    let r = c
        .gossip(GossipRequest {
            checkpoints: vec![b"junk".to_vec(), forger.checkpoint(12), log.checkpoint(12)],
            source: "t".into(),
            evidence: vec!["{\"format\":\"nope\"}".into(), "not json".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let verdicts: Vec<i32> = r.results.iter().map(|r| r.verdict).collect();
    assert_eq!(
        verdicts,
        vec![
            GossipVerdict::Rejected as i32,
            GossipVerdict::Rejected as i32,
            GossipVerdict::Consistent as i32
        ]
    );
    assert!(r
        .evidence_results
        .iter()
        .all(|r| r.verdict == GossipVerdict::Rejected as i32));
    let ev = c
        .list_evidence(ListEvidenceRequest::default())
        .await
        .unwrap()
        .into_inner()
        .evidence;
    assert!(ev.is_empty(), "nothing here proves a split view: {ev:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoint_speaks_c2sp_tlog_witness() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MemLog::new(ORIGIN);
    log.append(40, "a");
    let (w, _c) = witness(dir.path(), &log).await;
    let http = w.http_addr;
    let body = |old: u64, proof: &[quire_core::Hash], note: &[u8]| {
        let mut b = format!("old {old}\n").into_bytes();
        for h in proof {
            b.extend_from_slice(format!("{}\n", h.to_base64()).as_bytes());
        }
        b.push(b'\n');
        b.extend_from_slice(note);
        b
    };
    let post = |b: Vec<u8>| {
        tokio::task::spawn_blocking(move || http_post(http, "/add-checkpoint", &b).unwrap())
    };

    let a = post(body(0, &[], &log.checkpoint(13))).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));
    let lines = String::from_utf8(a.body).unwrap();
    assert!(lines.starts_with('—') && lines.ends_with('\n'));
    check_cosignature(&log.text(13), &lines, &w.key);

    let a = post(body(13, &log.proof(13, 30), &log.checkpoint(30)))
        .await
        .unwrap();
    assert_eq!(a.status, 200);

    // 409: wrong old size; the body is the witness's size.
    let a = post(body(13, &log.proof(13, 35), &log.checkpoint(35)))
        .await
        .unwrap();
    assert_eq!(a.status, 409);
    assert_eq!(a.content_type, "text/x.tlog.size");
    assert_eq!(a.body, b"30\n");
    // 409: same size, another root (a forked checkpoint signed by the log).
    let mut fork = MemLog::with_signer(ORIGIN, log.signer().clone());
    fork.append(30, "fork");
    let a = post(body(30, &[], &fork.checkpoint(30))).await.unwrap();
    assert_eq!(a.status, 409);
    assert_eq!(a.body, b"30\n");
    // ...and that is evidence.
    let held = w.witness.state().evidence(Some(ORIGIN));
    assert_eq!(held.len(), 1, "same size, two roots: evidence kept");
    let ev = quire_core::SplitViewEvidence::from_json(held[0].json.as_bytes()).unwrap();
    ev.check(&[log.signer().verifier()]).unwrap();

    // 422: bad proof.
    let mut bad = log.proof(30, 35);
    bad[1].0[5] ^= 0x40;
    let a = post(body(30, &bad, &log.checkpoint(35))).await.unwrap();
    assert_eq!(a.status, 422);
    // 400: old above new; malformed old lines; no blank line; 64 proof lines.
    assert_eq!(
        post(body(36, &[], &log.checkpoint(35)))
            .await
            .unwrap()
            .status,
        400
    );
    let mut b = b"old 030\n\n".to_vec();
    b.extend_from_slice(&log.checkpoint(35));
    assert_eq!(post(b).await.unwrap().status, 400);
    assert_eq!(post(b"new 30\n\n".to_vec()).await.unwrap().status, 400);
    assert_eq!(post(b"old 30\nAAAA".to_vec()).await.unwrap().status, 400);
    let many = vec![log.proof(30, 35)[0]; 64];
    assert_eq!(
        post(body(30, &many, &log.checkpoint(35)))
            .await
            .unwrap()
            .status,
        400
    );
    // 403 and 404.
    let mut forger = MemLog::new(ORIGIN);
    forger.append(35, "x");
    assert_eq!(
        post(body(30, &forger.proof(30, 35), &forger.checkpoint(35)))
            .await
            .unwrap()
            .status,
        403
    );
    let mut other = MemLog::new("other.example/log");
    other.append(2, "x");
    assert_eq!(
        post(body(0, &[], &other.checkpoint(2)))
            .await
            .unwrap()
            .status,
        404
    );
    // 413: a body over the limit is not read.
    let big = vec![b'a'; quire_witness::http::MAX_BODY_BYTES + 1];
    assert_eq!(post(big).await.unwrap().status, 413);

    // After all of that the state is the last good checkpoint.
    let l = w.witness.state().latest(ORIGIN).unwrap();
    assert_eq!((l.size, l.root), (30, log.root(30)));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_add_checkpoints_never_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = MemLog::new(ORIGIN);
    log.append(2000, "a");
    let (w, c) = witness(dir.path(), &log).await;
    let log = std::sync::Arc::new(log);
    let mut size = 0u64;
    for round in 0..60u64 {
        // Two calls from the same old size to different new sizes, racing.
        let (a, b) = (size + 1 + round % 7, size + 9 + round % 5);
        let call = |new: u64| {
            let mut c = c.clone();
            let log = log.clone();
            tokio::spawn(async move {
                c.add_checkpoint(req(size, log.proof(size, new), log.checkpoint(new)))
                    .await
                    .map(|_| new)
                    .map_err(|e| e.code())
            })
        };
        let (ra, rb) = (call(a), call(b));
        let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
        let won: Vec<u64> = [ra, rb]
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(won.len(), 1, "exactly one wins: {ra:?} {rb:?}");
        for r in [ra, rb] {
            if let Err(code) = r {
                assert_eq!(code, Code::FailedPrecondition, "the loser gets a conflict");
            }
        }
        let l = w.witness.state().latest(ORIGIN).unwrap();
        assert_eq!(l.size, won[0], "the state is the winner's checkpoint");
        assert!(l.size > size, "never backwards");
        assert_eq!(l.root, log.root(l.size));
        size = l.size;
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_checkpoints_beyond_the_size_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemLog::new(ORIGIN);
    let (w, mut c) = witness(dir.path(), &log).await;
    let root = quire_core::empty_root().to_base64();
    for size in [1u64 << 63, u64::MAX] {
        // Signed by the log's own key: only the size is wrong.
        let text = format!("{ORIGIN}\n{size}\n{root}\n");
        let mut n = Note::new(&text).unwrap();
        n.add_signature(log.signer().sign(text.as_bytes())).unwrap();
        let e = c
            .add_checkpoint(req(0, vec![], n.to_bytes()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{size}: {e:?}");
        assert!(e.message().contains("2^63 - 1"), "{size}: {e:?}");
        // Over HTTP too: 400.
        let body = format!("old 0\n\n{}", String::from_utf8(n.to_bytes()).unwrap());
        let a = quire_tests::http_post(w.http_addr, "/add-checkpoint", body.as_bytes()).unwrap();
        assert_eq!(
            a.status,
            400,
            "{size}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    assert!(latest(&mut c).await.is_empty(), "nothing was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_serves_health_and_both_reflection_versions() {
    let dir = tempfile::tempdir().unwrap();
    let log = MemLog::new(ORIGIN);
    let (w, _) = witness(dir.path(), &log).await;
    let channel = Channel::from_shared(w.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "quire.v1.Witness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let (v1, v1alpha) = quire_host::grpc::advertised_services(channel)
        .await
        .unwrap();
    for names in [v1, v1alpha] {
        assert!(names.contains(&"quire.v1.Witness".to_string()), "{names:?}");
        assert!(!names.contains(&"quire.v1.Log".to_string()), "{names:?}");
    }
}
