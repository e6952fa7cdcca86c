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

/// Serves tiles from the log API (no face in between), as a tiles client
/// would fetch them.
struct ApiTiles<'a> {
    api: &'a quire_server::api::LogApi<quire_server::store::any::AnyStore>,
    origin: &'a str,
}

impl tlog_tiles::TileReader for ApiTiles<'_> {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        let who = quire_server::api::Caller::default();
        Ok(tiles
            .iter()
            .map(|t| {
                let width = (t.width() < 256).then(|| t.width() as u16);
                self.api
                    .tile(&who, self.origin, t.level(), t.level_index(), width)
                    .unwrap()
            })
            .collect())
    }

    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_and_entry_bundles_are_c2sp_as_tlog_tiles_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "tiles.example/log";
    let server = LocalServer::start(dir.path(), vec![LogConfig::new(origin)], Config::default())
        .await
        .unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    // Past one level-1 tile's worth of level-0 tiles: 70,000 entries have
    // full and partial tiles at levels 0 and 1, and level 2.
    let n: u64 = 70_000;
    let entries: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("tile entry {i}").into_bytes())
        .collect();
    for chunk in entries.chunks(1000) {
        c.add_entries(AddEntriesRequest {
            entries: chunk.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let logs = c.list_logs(ListLogsRequest {}).await.unwrap().into_inner();
    let vkey = logs.logs[0]
        .verifier_keys
        .iter()
        .find(|k| signed_note::StandardVerifier::new(k).is_ok())
        .unwrap()
        .clone();
    let note = c
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    let (_, size, root) = read_checkpoint(&note, &vkey);
    assert_eq!(size, n);

    let api = quire_server::api::LogApi::new(server.logs.clone());
    let tiles = ApiTiles { api: &api, origin };
    // TileHashReader authenticates every tile it loads against the signed
    // root before it answers; the record proofs it builds then check.
    let reader = tlog_tiles::TileHashReader::new(size, root, &tiles);
    assert_eq!(tlog_tiles::tree_hash(size, &reader).unwrap(), root);
    for i in [0, 255, 256, 65_535, 65_536, 69_999] {
        let proof = tlog_tiles::prove_record(size, i, &reader).unwrap();
        tlog_tiles::check_record(&proof, size, root, i, leaf(&entries[i as usize])).unwrap();
    }

    // Entry bundles: big-endian uint16 lengths, full and partial; each
    // entry is the one whose leaf hash the level-0 tile holds.
    let who = quire_server::api::Caller::default();
    for (index, width) in [(0u64, None), (273, Some(112u16)), (273, Some(5))] {
        let bytes = api.entry_bundle(&who, origin, index, width).await.unwrap();
        let tile = api.tile(&who, origin, 0, index, width).unwrap();
        let mut at = 0;
        let mut got = Vec::new();
        while at < bytes.len() {
            let len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
            got.push(bytes[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
        let first = (index * 256) as usize;
        assert_eq!(got, entries[first..first + got.len()]);
        assert_eq!(got.len(), width.map_or(256, usize::from));
        for (k, e) in got.iter().enumerate() {
            assert_eq!(tile[k * 32..k * 32 + 32], leaf(e).0);
        }
    }
    // What the signed tree does not hold is refused by name.
    let e = api.tile(&who, origin, 0, 273, Some(113)).unwrap_err();
    assert_eq!(e.kind(), quire_server::api::Kind::NotFound);
    assert_eq!(
        e.to_string(),
        "tile 0/273 holds 112 at the latest signed size 70000, not 113: ask for a partial one of width 112 or less"
    );
    let e = api.tile(&who, origin, 0, 273, None).unwrap_err();
    assert_eq!(e.kind(), quire_server::api::Kind::NotFound);
    let e = api
        .entry_bundle(&who, origin, 274, Some(1))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "entry bundle 274 does not exist at the latest signed size 70000"
    );
    for (level, width) in [(8u8, None), (0, Some(0u16)), (0, Some(256))] {
        let e = api.tile(&who, origin, level, 0, width).unwrap_err();
        assert_eq!(e.kind(), quire_server::api::Kind::InvalidArgument, "{e}");
    }
    server.stop().await;
}
