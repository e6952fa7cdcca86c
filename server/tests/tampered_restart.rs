//! Restarts of the real binary after its data directory was tampered with:
//! another origin over the same file, a replaced signing key, a byte
//! flipped in a stored entry. The server must refuse to start, naming the
//! problem, or refuse to serve the damaged entry (DATA_LOSS); it never
//! signs over damage, and everything acknowledged before is still there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::Path;

use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_proto::v1::*;
use rand::RngCore as _;
use tonic::Code;

mod common;
use common::process::{
    add_batch, assert_extends, check_holds, latest, log_keys, root_of, run_failing, Acks,
    ServerProcess,
};

/// Writes 700 incompressible 300-byte entries (three bundles, stored raw)
/// and stops the server gracefully. Returns what was acknowledged.
async fn fill(data: &Path) -> Acks {
    let mut server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let mut rng = rand::thread_rng();
    let mut acked = Vec::new();
    for _ in 0..7 {
        let entries: Vec<Vec<u8>> = (0..100)
            .map(|_| {
                let mut e = vec![0u8; 300];
                rng.fill_bytes(&mut e);
                e
            })
            .collect();
        acked.extend(add_batch(&mut c, entries).await);
    }
    server.stop();
    acked
}

fn db(data: &Path) -> std::path::PathBuf {
    data.join("logs").join("localhost_quire.redb")
}

/// Flips one bit in every copy of `entry` in the database file (redb
/// writes pages copy-on-write, so older copies may remain). Returns how
/// many copies were found.
fn flip(data: &Path, entry: &[u8]) -> usize {
    let mut bytes = std::fs::read(db(data)).unwrap();
    let mut found = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(entry.len()).position(|w| w == entry) {
        bytes[at + pos + 100] ^= 0x04;
        found += 1;
        at += pos + entry.len();
    }
    std::fs::write(db(data), bytes).unwrap();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_origin_or_key_over_the_same_data_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let acked = fill(data).await;

    // "localhost_quire" maps to the same file as "localhost/quire".
    let (code, err) = common::process::run_failing_with(data, &["--origin", "localhost_quire"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("localhost/quire") && err.contains("localhost_quire"),
        "{err}"
    );

    // A new key where the log's key was.
    let key = data.join("keys").join("localhost_quire.p256.key");
    let original = std::fs::read(&key).unwrap();
    let other = LogSigner::generate(LogKeyAlgorithm::EcdsaP256, "localhost/quire").unwrap();
    std::fs::write(&key, format!("{}\n", other.to_private_text().as_str())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("key") && err.contains("700"), "{err}");

    // With its own key back, the log is whole.
    std::fs::write(&key, original).unwrap();
    let server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let keys = log_keys(&mut c).await;
    let latest = check_holds(&mut c, &keys, &acked, &[]).await;
    assert_eq!(latest.size(), 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_refused_at_start_or_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let acked = fill(data).await;
    let pristine = std::fs::read(db(data)).unwrap();

    // In the newest bundle: checked at start, which refuses.
    assert!(flip(data, &acked[650].1) >= 1);
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("entry 650"), "{err}");

    // In an older bundle: the server starts (its signed tree is intact) but
    // never serves the damaged entry as the logged one.
    std::fs::write(db(data), &pristine).unwrap();
    assert!(flip(data, &acked[10].1) >= 1);
    let server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let keys = log_keys(&mut c).await;
    let e = c
        .get_entry_with_proof(GetEntryWithProofRequest {
            log: String::new(),
            index: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains("entry 10"), "{e:?}");
    let mut s = c
        .get_entries(GetEntriesRequest {
            log: String::new(),
            start: 0,
            end: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let e = loop {
        match s.message().await {
            Ok(Some(page)) => assert!(page.start + (page.entries.len() as u64) <= 10),
            Ok(None) => panic!("the damaged entry was served"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(server.wait_logged("stored data is corrupt"));
    // Entries around it are served, and new writes extend the same tree.
    let r = c
        .get_entry_with_proof(GetEntryWithProofRequest {
            log: String::new(),
            index: 11,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entry, acked[11].1);
    let before = latest(&mut c, &keys).await;
    c.add_entry(AddEntryRequest {
        log: String::new(),
        entry: b"after the flip".to_vec(),
        with_proof: false,
        witnessed: false,
    })
    .await
    .unwrap();
    let after = latest(&mut c, &keys).await;
    assert_eq!(after.size(), before.size() + 1);
    assert_extends(&mut c, &before, &after).await;
    // The signed root is the one of the entries as acknowledged.
    assert_eq!(root_of(acked.iter().map(|(_, e)| e)), *before.root());
}
