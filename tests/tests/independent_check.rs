//! What a running server says, checked by implementations that are not
//! quire-core: `signed_note` verifies the checkpoint notes (Ed25519 key,
//! from the vkey the server lists), the checkpoint body is read by hand,
//! leaf hashes come from `sha2` directly, and `tlog_tiles` (Go's sumdb/tlog
//! in Rust) checks every inclusion and consistency proof.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use base64::Engine as _;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::*;
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use sha2::Digest as _;

fn leaf(entry: &[u8]) -> tlog_tiles::Hash {
    let mut h = sha2::Sha256::new();
    h.update([0u8]);
    h.update(entry);
    tlog_tiles::Hash(h.finalize().into())
}

fn hashes(wire: &[Vec<u8>]) -> Vec<tlog_tiles::Hash> {
    wire.iter()
        .map(|b| tlog_tiles::Hash(b.as_slice().try_into().unwrap()))
        .collect()
}

/// Verifies `note` with signed_note and reads (origin, size, root) from the
/// body by hand, per C2SP tlog-checkpoint.
fn read_checkpoint(note: &[u8], vkey: &str) -> (String, u64, tlog_tiles::Hash) {
    let n = signed_note::Note::from_bytes(note).unwrap();
    let v = signed_note::StandardVerifier::new(vkey).unwrap();
    let (ok, _) = n
        .verify(&signed_note::VerifierList::new(vec![Box::new(v)]))
        .unwrap();
    assert_eq!(ok.len(), 1, "the log's Ed25519 signature verifies");
    let text = std::str::from_utf8(n.text()).unwrap();
    let mut lines = text.lines();
    let origin = lines.next().unwrap().to_owned();
    let size: u64 = lines.next().unwrap().parse().unwrap();
    let root = base64::engine::general_purpose::STANDARD
        .decode(lines.next().unwrap())
        .unwrap();
    (origin, size, tlog_tiles::Hash(root.try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_is_checked_by_independent_implementations() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "independent.example/log";
    let server = LocalServer::start(dir.path(), vec![LogConfig::new(origin)], Config::default())
        .await
        .unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let logs = c
        .list_logs(ListLogsRequest {})
        .await
        .unwrap()
        .into_inner()
        .logs;
    // The Ed25519 key (type 0x01): signed_note's standard verifier.
    let vkey = logs[0]
        .verifier_keys
        .iter()
        .find(|k| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(k.splitn(3, '+').nth(2).unwrap())
                .unwrap();
            b[0] == 0x01
        })
        .unwrap()
        .clone();

    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut checkpoints = Vec::new();
    for batch in 0..12u64 {
        let new: Vec<Vec<u8>> = (0..(1 + batch * 37 % 90))
            .map(|i| format!("{{\"batch\":{batch},\"i\":{i}}}").into_bytes())
            .collect();
        let r = c
            .add_entries(AddEntriesRequest {
                log: origin.into(),
                entries: new.clone(),
                with_proof: true,
                witnessed: false,
            })
            .await
            .unwrap()
            .into_inner();
        let (o, size, root) = read_checkpoint(&r.checkpoint, &vkey);
        assert_eq!(o, origin);
        // Each returned inclusion proof, against the returned checkpoint.
        for (e, added) in new.iter().zip(&r.entries) {
            tlog_tiles::check_record(
                &hashes(&added.inclusion_proof),
                size,
                root,
                added.index,
                leaf(e),
            )
            .unwrap();
        }
        entries.extend(new);
        assert_eq!(size, entries.len() as u64);
        checkpoints.push((size, root));
    }
    let (n, root) = *checkpoints.last().unwrap();
    // Every entry, by index, against the latest checkpoint.
    for (i, e) in entries.iter().enumerate() {
        let r = c
            .get_inclusion_proof(GetInclusionProofRequest {
                log: origin.into(),
                leaf: Some(get_inclusion_proof_request::Leaf::Index(i as u64)),
                tree_size: n,
            })
            .await
            .unwrap()
            .into_inner();
        tlog_tiles::check_record(&hashes(&r.proof), n, root, i as u64, leaf(e)).unwrap();
    }
    // Consistency between every pair of checkpoints the server signed.
    for &(m, m_root) in &checkpoints {
        for &(k, k_root) in &checkpoints {
            if m >= k {
                continue;
            }
            let r = c
                .get_consistency_proof(GetConsistencyProofRequest {
                    log: origin.into(),
                    old_size: m,
                    new_size: k,
                    with_seed: false,
                })
                .await
                .unwrap()
                .into_inner();
            tlog_tiles::check_tree(&hashes(&r.proof), k, k_root, m, m_root).unwrap();
        }
    }
    // And the independent root of all entries is the signed root.
    let mut store: Vec<tlog_tiles::Hash> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let hs = tlog_tiles::stored_hashes(i as u64, e, &HashesOf(&store)).unwrap();
        store.extend(hs);
    }
    assert_eq!(tlog_tiles::tree_hash(n, &HashesOf(&store)).unwrap(), root);
    server.stop().await;
}

struct HashesOf<'a>(&'a [tlog_tiles::Hash]);

impl tlog_tiles::HashReader for HashesOf<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::InvalidProof)
            })
            .collect()
    }
}
