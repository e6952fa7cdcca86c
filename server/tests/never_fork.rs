//! The log never forks itself (design invariant 7), on the real binary with
//! its default high-water location (beside the data directory):
//! - a data directory put back from an older copy is refused at start,
//!   naming both sizes and roots, and `quire-server import` brings it back
//!   to its high-water mark from an entries dump without signing anything;
//!   a dump that is not the log's history is refused and changes nothing;
//! - a deleted or truncated database is refused, never an empty tree under
//!   the old keys;
//! - a deleted key is never created again; a key readable by others is
//!   refused;
//! - an origin that names no log of a data directory that holds logs is
//!   refused unless `--new-log` asks for it;
//! - `quire-server fsck` passes a whole log and names damage in a damaged one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use quire_core::Checkpoint;
use quire_proto::v1::*;

mod common;
use common::process::{
    add_batch, check_holds, latest, log_keys, run_failing, run_failing_with, Acks, ServerProcess,
};

/// Writes `n` entries in batches of 50 and stops the server gracefully.
/// Returns the acknowledgements and the latest signed note.
async fn write(data: &Path, tag: &str, n: usize) -> (Acks, Vec<u8>) {
    let mut server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let mut acked = Vec::new();
    for b in 0..n / 50 {
        // Random bytes: bundles stay uncompressed, so a test can find an
        // entry in the file.
        let entries: Vec<Vec<u8>> = (0..50)
            .map(|i| {
                let mut e = format!("{tag} entry {b}/{i} ").into_bytes();
                let mut noise = [0u8; 64];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut noise);
                e.extend_from_slice(&noise);
                e
            })
            .collect();
        acked.extend(add_batch(&mut c, entries).await);
    }
    let note = c
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    server.stop();
    (acked, note)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let s = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(s.success());
}

fn db(data: &Path) -> PathBuf {
    data.join("logs").join("localhost_quire.redb")
}

/// Runs `quire-server SUBCOMMAND --data-dir DATA ARGS…`: (exit code, stdout
/// and stderr).
fn offline(sub: &str, data: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quire-server"))
        .arg(sub)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn dump(path: &Path, entries: &[(u64, Vec<u8>)]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text: String = entries
        .iter()
        .map(|(_, e)| format!("{}\n", b64.encode(e)))
        .collect();
    std::fs::write(path, text).unwrap();
}

fn cp_of(note: &[u8]) -> Checkpoint {
    let n = quire_core::Note::parse(note).unwrap();
    Checkpoint::parse(n.text().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_older_copy_is_refused_and_import_recovers_it_without_signing() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let backup = &dir.path().join("backup");
    let (mut acked, _) = write(data, "first", 300).await;
    copy_dir(data, backup);
    let (more, note_500) = write(data, "second", 200).await;
    acked.extend(more);
    let cp500 = cp_of(&note_500);
    assert_eq!(cp500.size(), 500);
    // The record lives beside the data directory, out of its copy.
    assert!(dir.path().join("data.highwater").is_dir());

    // Put the older copy back: the server refuses, naming both sizes and
    // roots and the way out.
    copy_dir(backup, data);
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("holds size 300")
            && err.contains("published size 500")
            && err.contains(&cp500.root().to_string())
            && err.contains("quire-server import"),
        "{err}"
    );

    // A dump that is not the log's history: refused, nothing changes.
    let files = dir.path();
    let mut forged = acked.clone();
    forged[400].1 = b"an entry that was never logged".to_vec();
    dump(&files.join("forged.dump"), &forged);
    std::fs::write(files.join("cp.note"), &note_500).unwrap();
    let args = |d: &str| {
        vec![
            "--entries".to_owned(),
            files.join(d).display().to_string(),
            "--checkpoint".to_owned(),
            files.join("cp.note").display().to_string(),
        ]
    };
    let a = args("forged.dump");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out) = offline("import", data, &a);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("another history"), "{out}");
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("holds size 300"), "{err}");

    // The true dump: imported, nothing signed, the log starts whole.
    dump(&files.join("true.dump"), &acked);
    let a = args("true.dump");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, out) = offline("import", data, &a);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("imported entries 300..500"), "{out}");
    let (code, out) = offline("fsck", data, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: size 500"), "{out}");
    let server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let keys = log_keys(&mut c).await;
    let now = latest(&mut c, &keys).await;
    // The very checkpoint the log published, not a new signature.
    assert_eq!(
        c.get_checkpoint(GetCheckpointRequest::default())
            .await
            .unwrap()
            .into_inner()
            .checkpoint,
        note_500
    );
    check_holds(&mut c, &keys, &acked, std::slice::from_ref(&cp500)).await;
    // Writes go on and extend it.
    c.add_entry(AddEntryRequest {
        log: String::new(),
        entry: b"after the restore".to_vec(),
        with_proof: false,
        witnessed: false,
    })
    .await
    .unwrap();
    let after = latest(&mut c, &keys).await;
    assert_eq!(after.size(), now.size() + 1);
    check_holds(&mut c, &keys, &acked, &[cp500, now]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_truncated_database_or_key_is_refused_never_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let (acked, _) = write(data, "x", 200).await;
    let pristine = std::fs::read(db(data)).unwrap();

    std::fs::remove_file(db(data)).unwrap();
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("holds no checkpoint") && err.contains("published size 200"),
        "{err}"
    );
    for len in [0, pristine.len() / 2] {
        std::fs::write(db(data), &pristine[..len]).unwrap();
        let (code, err) = run_failing(data, None);
        assert_eq!(code, Some(1), "truncated to {len}: {err}");
        assert!(!err.contains("panicked"), "truncated to {len}: {err}");
    }
    std::fs::write(db(data), &pristine).unwrap();

    // A deleted key is never created again.
    let ed = data.join("keys").join("localhost_quire.ed25519.key");
    let ed_text = std::fs::read(&ed).unwrap();
    std::fs::remove_file(&ed).unwrap();
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is missing") && err.contains("Ed25519"),
        "{err}"
    );
    assert!(!ed.exists());
    // A key others may read is refused.
    std::fs::write(&ed, &ed_text).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&ed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&ed, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A typo in the origin is not a new log.
    let (code, err) = run_failing_with(data, &["--origin", "localhost/quirk"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no log \"localhost/quirk\"") && err.contains("--new-log"),
        "{err}"
    );
    assert!(!data.join("keys").join("localhost_quirk.p256.key").exists());
    // Asked for, it is created beside the first.
    let mut other =
        ServerProcess::start_with(data, &["--origin", "other.example/log", "--new-log"]);
    other.stop();

    // The log itself is whole.
    let server = ServerProcess::start(data, None);
    let mut c = server.client().await;
    let keys = log_keys(&mut c).await;
    assert_eq!(check_holds(&mut c, &keys, &acked, &[]).await.size(), 200);
    drop(server);

    // The whole data directory gone, the record left: not a new log under
    // the old name, and the error says what remains.
    std::fs::rename(data, dir.path().join("gone")).unwrap();
    let (code, err) = run_failing(data, None);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("has published checkpoints") && err.contains("data.highwater"),
        "{err}"
    );
}

#[test]
fn fsck_names_damage() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let (acked, _) = rt.block_on(write(data, "fsck", 600));
    let (code, out) = offline("fsck", data, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK: size 600, 600 entries hashed"), "{out}");
    // One entry changed where it is stored.
    let mut bytes = std::fs::read(db(data)).unwrap();
    // The middle of its 64 random bytes: LZ4 keeps them as literals. Not
    // their edges: a match found in the next entry's (or this one's) text
    // extends over any bytes that happen to equal those around its source,
    // a byte in 256 at each step.
    let e = &acked[123].1;
    let needle = &e[e.len() - 56..e.len() - 24];
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the entry's random tail is stored as is");
    bytes[pos] ^= 0x20;
    std::fs::write(db(data), &bytes).unwrap();
    let (code, out) = offline("fsck", data, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DAMAGED") && out.contains("entry 123"),
        "{out}"
    );
    // Bad arguments are input errors.
    let (code, out) = offline("fsck", &dir.path().join("absent"), &[]);
    assert_eq!(code, 2, "{out}");
}
