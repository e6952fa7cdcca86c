//! The verifying client against a test double of the log that serves forged
//! data: a checkpoint signed by another key, a rollback, a fork at the same
//! size, a fork at a larger size, a consistency proof that does not connect,
//! a proof with trailing garbage. Each is refused, the trusted state stays as
//! it was, and forks come back as evidence that checks with the log's key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use quire_client::policy::{LogTrust, TrustError};
use quire_client::rpc::{Endpoint, LogRpc};
use quire_client::state::TrustedState;
use quire_client::verifier::{UpdateError, VerifyingClient};
use quire_core::{
    leaf_hash, prove_consistency, Checkpoint, CompactRange, Conflict, Hash, LogKeyAlgorithm,
    LogSigner, NodeId, Note,
};
use quire_proto::v1::log_server::{Log, LogServer};
use quire_proto::v1::*;
use rand::SeedableRng;
use tonic::{Request, Response, Status};

const ORIGIN: &str = "evil.example/log";

/// A tree of `entries` with every node, to prove from.
struct Tree {
    nodes: HashMap<NodeId, Hash>,
    roots: Vec<Hash>,
}

fn tree(entries: &[Vec<u8>]) -> Tree {
    let mut nodes = HashMap::new();
    let mut range = CompactRange::new();
    let mut roots = vec![range.root()];
    for e in entries {
        range
            .append(leaf_hash(e), |id, h| {
                nodes.insert(id, *h);
            })
            .unwrap();
        roots.push(range.root());
    }
    Tree { nodes, roots }
}

fn signed(key: &LogSigner, size: u64, root: Hash) -> Vec<u8> {
    let text = Checkpoint::new(ORIGIN, size, root).unwrap().to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(key.sign(text.as_bytes())).unwrap();
    note.to_bytes()
}

/// What the double answers now.
#[derive(Default, Clone)]
struct Script {
    checkpoint: Vec<u8>,
    proof: Vec<Vec<u8>>,
    /// The entries the double serves.
    entries: Vec<Vec<u8>>,
    /// Serve the page of entries one index late (a skipped entry).
    skip: bool,
    /// The inclusion proof answered: index, tree size, hashes.
    inclusion: (u64, u64, Vec<Vec<u8>>),
    /// The seed sent with a consistency proof when asked for one.
    seed: Vec<u8>,
}

#[derive(Clone)]
struct Double(Arc<Mutex<Script>>);

type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Log for Double {
    async fn add_entry(
        &self,
        _: Request<AddEntryRequest>,
    ) -> Result<Response<AddEntryResponse>, Status> {
        Err(Status::unimplemented("double"))
    }
    async fn add_entries(
        &self,
        _: Request<AddEntriesRequest>,
    ) -> Result<Response<AddEntriesResponse>, Status> {
        Err(Status::unimplemented("double"))
    }
    async fn get_checkpoint(
        &self,
        _: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: self.0.lock().unwrap().checkpoint.clone(),
        }))
    }
    async fn get_inclusion_proof(
        &self,
        _: Request<GetInclusionProofRequest>,
    ) -> Result<Response<GetInclusionProofResponse>, Status> {
        let (index, tree_size, proof) = self.0.lock().unwrap().inclusion.clone();
        Ok(Response::new(GetInclusionProofResponse {
            index,
            tree_size,
            proof,
            checkpoint: Vec::new(),
        }))
    }
    async fn get_consistency_proof(
        &self,
        r: Request<GetConsistencyProofRequest>,
    ) -> Result<Response<GetConsistencyProofResponse>, Status> {
        let r = r.into_inner();
        let s = self.0.lock().unwrap();
        Ok(Response::new(GetConsistencyProofResponse {
            old_size: r.old_size,
            new_size: r.new_size,
            proof: s.proof.clone(),
            seed: if r.with_seed {
                s.seed.clone()
            } else {
                Vec::new()
            },
        }))
    }
    type GetEntriesStream = Stream<EntriesPage>;
    async fn get_entries(
        &self,
        r: Request<GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let r = r.into_inner();
        let s = self.0.lock().unwrap().clone();
        let from = r.start + u64::from(s.skip);
        let end = r.end.min(s.entries.len() as u64);
        let page = EntriesPage {
            start: from,
            entries: s.entries[from as usize..end as usize].to_vec(),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(page)]))))
    }
    async fn get_entry_with_proof(
        &self,
        _: Request<GetEntryWithProofRequest>,
    ) -> Result<Response<GetEntryWithProofResponse>, Status> {
        Err(Status::unimplemented("double"))
    }
    type WatchCheckpointsStream = Stream<GetCheckpointResponse>;
    async fn watch_checkpoints(
        &self,
        _: Request<GetCheckpointRequest>,
    ) -> Result<Response<Self::WatchCheckpointsStream>, Status> {
        Err(Status::unimplemented("double"))
    }
    type TailEntriesStream = Stream<TailPage>;
    async fn tail_entries(
        &self,
        _: Request<TailEntriesRequest>,
    ) -> Result<Response<Self::TailEntriesStream>, Status> {
        Err(Status::unimplemented("double"))
    }
    async fn list_logs(
        &self,
        _: Request<ListLogsRequest>,
    ) -> Result<Response<ListLogsResponse>, Status> {
        Ok(Response::new(ListLogsResponse {
            logs: vec![LogInfo {
                origin: ORIGIN.into(),
                ..LogInfo::default()
            }],
        }))
    }
}

async fn serve(script: Arc<Mutex<Script>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(LogServer::new(Double(script)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    format!("http://{addr}")
}

async fn connect(addr: String) -> LogRpc {
    LogRpc::connect(&Endpoint {
        addr,
        ca: None,
        client_cert: None,
        timeout: std::time::Duration::from_secs(10),
        token: None,
    })
    .await
    .unwrap()
}

fn wire(hashes: &[Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.0.to_vec()).collect()
}

#[tokio::test]
async fn forged_views_are_refused_and_forks_become_evidence() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let key = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let other = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let honest: Vec<Vec<u8>> = (0..40).map(|i| format!("event {i}").into_bytes()).collect();
    let mut forked = honest.clone();
    forked[3] = b"rewritten history".to_vec();
    let (h, f) = (tree(&honest), tree(&forked));

    let script = Arc::new(Mutex::new(Script::default()));
    let url = serve(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.json");
    let trust = LogTrust {
        origin: ORIGIN.into(),
        log_keys: vec![key.verifier()],
        witnesses: vec![],
        quorum: 0,
    };
    let client = |trust: LogTrust| {
        let url = url.clone();
        let state_path = state_path.clone();
        async move {
            let rpc = connect(url).await;
            VerifyingClient::new(rpc, trust, TrustedState::load(&state_path).unwrap())
        }
    };
    let set = |cp: Vec<u8>, proof: Vec<Vec<u8>>| {
        let mut s = script.lock().unwrap();
        s.checkpoint = cp;
        s.proof = proof;
    };

    // First contact: size 10, honest. Trusted and persisted.
    set(signed(&key, 10, h.roots[10]), vec![]);
    let mut c = client(trust.clone()).await;
    assert_eq!(c.update().await.unwrap().size(), 10);
    let state = std::fs::read(&state_path).unwrap();

    // Signed by another key: refused.
    set(signed(&other, 20, h.roots[20]), vec![]);
    assert!(matches!(
        c.update().await,
        Err(UpdateError::Untrusted(TrustError::Checkpoint(_)))
    ));
    // A rollback to 5.
    set(signed(&key, 5, h.roots[5]), vec![]);
    assert!(matches!(
        c.update().await,
        Err(UpdateError::Rollback {
            trusted: 10,
            offered: 5
        })
    ));
    // A consistency proof that does not connect (the proof for another size).
    let wrong = prove_consistency(&h.nodes, 9, 20).unwrap();
    set(signed(&key, 20, h.roots[20]), wire(&wrong));
    assert!(c.update().await.is_err());
    // The right proof with trailing garbage.
    let mut long = prove_consistency(&h.nodes, 10, 20).unwrap();
    long.push(Hash([7; 32]));
    set(signed(&key, 20, h.roots[20]), wire(&long));
    assert!(c.update().await.is_err());
    // Nothing above moved the trusted state.
    assert_eq!(std::fs::read(&state_path).unwrap(), state);
    assert_eq!(c.trusted().unwrap().size(), 10);

    // A fork at the same size: evidence.
    set(signed(&key, 10, f.roots[10]), vec![]);
    let Err(UpdateError::Fork(ev)) = c.update().await else {
        panic!("same-size fork not caught")
    };
    assert!(matches!(
        ev.check(&[key.verifier()]).unwrap(),
        Conflict::SameSize { size: 10, .. }
    ));
    assert_eq!(std::fs::read(&state_path).unwrap(), state);

    // Honest growth is accepted and persisted, across a restart.
    let good = prove_consistency(&h.nodes, 10, 20).unwrap();
    set(signed(&key, 20, h.roots[20]), wire(&good));
    assert_eq!(c.update().await.unwrap().size(), 20);
    drop(c);
    let mut c = client(trust.clone()).await;
    assert_eq!(c.trusted().unwrap().size(), 20);

    // Inclusion proofs are checked against the trusted checkpoint (size 20).
    let leaf5 = leaf_hash(&honest[5]);
    let incl = |index: u64, size: u64, proof: Vec<Hash>| {
        script.lock().unwrap().inclusion = (index, size, wire(&proof));
    };
    incl(5, 20, quire_core::prove_inclusion(&h.nodes, 5, 20).unwrap());
    assert_eq!(c.prove(leaf5).await.unwrap().0, 5);
    // A proof made for another tree size, labelled as size 20.
    incl(5, 20, quire_core::prove_inclusion(&h.nodes, 5, 19).unwrap());
    assert!(matches!(
        c.prove(leaf5).await,
        Err(UpdateError::NotIncluded { .. })
    ));
    // An answer about another tree size.
    incl(5, 19, quire_core::prove_inclusion(&h.nodes, 5, 19).unwrap());
    assert!(matches!(c.prove(leaf5).await, Err(UpdateError::Rpc(_))));
    // Trailing garbage, and another index for the same leaf.
    let mut padded = quire_core::prove_inclusion(&h.nodes, 5, 20).unwrap();
    padded.push(Hash([1; 32]));
    incl(5, 20, padded);
    assert!(matches!(
        c.prove(leaf5).await,
        Err(UpdateError::NotIncluded { .. })
    ));
    incl(6, 20, quire_core::prove_inclusion(&h.nodes, 6, 20).unwrap());
    assert!(matches!(
        c.prove(leaf5).await,
        Err(UpdateError::NotIncluded { .. })
    ));

    // A fork at a larger size (size 20 is not a power of two, so the proof
    // carries its seed): the forked tree's proof rebuilds its own signed
    // root and implies another root for 20, which is evidence.
    let forked_proof = prove_consistency(&f.nodes, 20, 40).unwrap();
    set(signed(&key, 40, f.roots[40]), wire(&forked_proof));
    let Err(UpdateError::Fork(ev)) = c.update().await else {
        panic!("fork across sizes not caught")
    };
    assert!(matches!(
        ev.check(&[key.verifier()]).unwrap(),
        Conflict::Inconsistent {
            old: 20,
            new: 40,
            ..
        }
    ));
    // The evidence survives its JSON form, and `quire audit` accepts it
    // with nothing but the log's public key.
    let again = quire_core::SplitViewEvidence::from_json(ev.to_json().as_bytes()).unwrap();
    assert!(again.check(&[key.verifier()]).is_ok());
    let file = dir.path().join("evidence.json");
    std::fs::write(&file, ev.to_json()).unwrap();
    let vkey = key.verifier().to_vkey();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_quire"))
            .args([
                "audit",
                "evidence",
                file.to_str().unwrap(),
                "--log-key",
                &vkey,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    // Proven misbehaviour exits 1.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("PROVEN: the log signed size 20"));
    assert_eq!(c.trusted().unwrap().size(), 20);

    // An edited state file is not trusted.
    let text = std::fs::read_to_string(&state_path).unwrap();
    std::fs::write(&state_path, text.replace("\\n20\\n", "\\n21\\n")).unwrap();
    let mut c = client(trust).await;
    set(
        signed(&key, 40, h.roots[40]),
        wire(&prove_consistency(&h.nodes, 21, 40).unwrap()),
    );
    assert!(matches!(c.update().await, Err(UpdateError::Malformed(_))));
}

#[tokio::test]
async fn the_monitor_rebuilds_the_tree_and_refuses_altered_skipped_or_forked_histories() {
    use quire_client::monitor::{step, MonitorError, MonitorState};
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let key = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let honest: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("event {i}").into_bytes())
        .collect();
    let h = tree(&honest);
    let script = Arc::new(Mutex::new(Script::default()));
    let url = serve(Arc::clone(&script)).await;
    let mut rpc = connect(url).await;
    let trust = LogTrust {
        origin: ORIGIN.into(),
        log_keys: vec![key.verifier()],
        witnesses: vec![],
        quorum: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.json");
    let set = |size: usize, root: Hash, proof: &[Hash], entries: &[Vec<u8>], skip: bool| {
        *script.lock().unwrap() = Script {
            checkpoint: signed(&key, size as u64, root),
            proof: wire(proof),
            entries: entries.to_vec(),
            skip,
            ..Script::default()
        };
    };

    // First run: every entry up to 100 downloaded and the root rebuilt.
    set(100, h.roots[100], &[], &honest, false);
    let mut seen = 0;
    let (state, cp) = step(
        &mut rpc,
        &trust,
        &MonitorState::load(&path).unwrap(),
        |done, _| seen = done,
    )
    .await
    .unwrap();
    assert_eq!((cp.size(), state.range.size(), seen), (100, 100, 100));
    state.save(&path).unwrap();
    let state = MonitorState::load(&path).unwrap();
    assert_eq!(state.range.root(), h.roots[100]);

    // An altered entry between 100 and 200 under an honest checkpoint and
    // proof: the rebuilt root differs.
    let mut altered = honest.clone();
    altered[150] = b"altered".to_vec();
    let proof = prove_consistency(&h.nodes, 100, 200).unwrap();
    set(200, h.roots[200], &proof, &altered, false);
    assert!(matches!(
        step(&mut rpc, &trust, &state, |_, _| {}).await,
        Err(MonitorError::EntriesMismatch { size: 200, .. })
    ));
    // A stream that skips an entry.
    set(200, h.roots[200], &proof, &honest, true);
    assert!(matches!(
        step(&mut rpc, &trust, &state, |_, _| {}).await,
        Err(MonitorError::Rpc(_))
    ));
    // A rollback.
    set(50, h.roots[50], &[], &honest, false);
    assert!(matches!(
        step(&mut rpc, &trust, &state, |_, _| {}).await,
        Err(MonitorError::Rollback {
            accepted: 100,
            offered: 50
        })
    ));
    // A fork: another history of 300 whose proof rebuilds its own root.
    let mut forked = honest.clone();
    forked[42] = b"rewritten".to_vec();
    let f = tree(&forked);
    let fproof = prove_consistency(&f.nodes, 100, 300).unwrap();
    set(300, f.roots[300], &fproof, &forked, false);
    match step(&mut rpc, &trust, &state, |_, _| {}).await {
        Err(MonitorError::Fork(ev)) => assert!(ev.check(&[key.verifier()]).is_ok()),
        other => panic!("fork not caught: {other:?}"),
    }
    // The honest continuation is still accepted from the saved state.
    let hproof = prove_consistency(&h.nodes, 100, 300).unwrap();
    set(300, h.roots[300], &hproof, &honest, false);
    let (state, cp) = step(&mut rpc, &trust, &state, |_, _| {}).await.unwrap();
    assert_eq!((cp.size(), state.range.root()), (300, h.roots[300]));
}

/// A fork from a power-of-two size: RFC 9162 leaves the old root out of the
/// proof, so only the seed the log sends with it (`with_seed`) turns the
/// fork into evidence; without the seed it is still refused, as
/// inconsistent.
#[tokio::test]
async fn a_fork_from_a_power_of_two_size_becomes_evidence_with_the_seed() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let key = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let honest: Vec<Vec<u8>> = (0..32).map(|i| format!("event {i}").into_bytes()).collect();
    let mut forked = honest.clone();
    forked[9] = b"rewritten".to_vec();
    let (h, f) = (tree(&honest), tree(&forked));
    let script = Arc::new(Mutex::new(Script::default()));
    let url = serve(Arc::clone(&script)).await;
    let dir = tempfile::tempdir().unwrap();
    let trust = LogTrust {
        origin: ORIGIN.into(),
        log_keys: vec![key.verifier()],
        witnesses: vec![],
        quorum: 0,
    };
    for with_seed in [false, true] {
        let state_path = dir.path().join(format!("state-{with_seed}.json"));
        {
            let mut s = script.lock().unwrap();
            s.checkpoint = signed(&key, 16, h.roots[16]);
            s.proof = vec![];
        }
        let rpc = connect(url.clone()).await;
        let mut c =
            VerifyingClient::new(rpc, trust.clone(), TrustedState::load(&state_path).unwrap());
        assert_eq!(c.update().await.unwrap().size(), 16);
        {
            let mut s = script.lock().unwrap();
            s.checkpoint = signed(&key, 32, f.roots[32]);
            s.proof = wire(&prove_consistency(&f.nodes, 16, 32).unwrap());
            s.seed = if with_seed {
                quire_core::root_at(&f.nodes, 16).unwrap().0.to_vec()
            } else {
                Vec::new()
            };
        }
        match c.update().await {
            Err(UpdateError::Fork(ev)) => {
                assert!(with_seed, "no evidence can be made without the seed");
                assert!(matches!(
                    ev.check(&[key.verifier()]).unwrap(),
                    Conflict::Inconsistent {
                        old: 16,
                        new: 32,
                        ..
                    }
                ));
            }
            Err(e) => assert!(!with_seed, "with the seed this is evidence, got {e:?}"),
            Ok(cp) => panic!("a fork was accepted at size {}", cp.size()),
        }
    }
}
