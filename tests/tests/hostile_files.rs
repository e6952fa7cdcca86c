//! Files that are not what they claim, given to the real binaries: a
//! device that never ends (`/dev/zero`), a FIFO nobody writes to, and a
//! directory, as the server's configuration, TLS PEM and signing key, the
//! witness's configuration, and the client's CA. Each is refused by name,
//! promptly (none is read forever, none blocks start-up), and the process
//! stays small.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use quire_tests::binary;

/// Runs `name args…` and waits for it to exit (bounded polling: at most
/// 3,000 × 10 ms, then it is killed and the test fails), watching its peak
/// RSS. Returns its exit code, stderr and peak RSS in MiB.
fn run_bounded(name: &str, args: &[&str]) -> (i32, String, u64) {
    let mut child = Command::new(binary(name))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    for _ in 0..3000 {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err, peak);
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb / 1024);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("{name} {args:?} did not exit: it is reading or waiting forever");
}

fn fifo(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    let ok = Command::new("mkfifo").arg(&p).status().unwrap();
    assert!(ok.success(), "mkfifo");
    p.to_str().unwrap().to_owned()
}

fn refused(name: &str, args: &[&str], what: &str) {
    let (code, err, peak) = run_bounded(name, args);
    assert_ne!(code, 0, "{name} {args:?} started: {err}");
    assert!(
        err.contains(what) && err.contains("not a regular file"),
        "{name} {args:?}: {err}"
    );
    assert!(peak < 256, "{name} {args:?} grew to {peak} MiB");
}

#[test]
fn devices_fifos_and_directories_are_refused_by_every_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let data = data.to_str().unwrap();
    let dirpath = d.to_str().unwrap();
    for bad in [
        "/dev/zero".to_owned(),
        fifo(d, "config.fifo"),
        dirpath.to_owned(),
    ] {
        refused(
            "quire-server",
            &[
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data,
                "--config",
                &bad,
            ],
            &bad,
        );
        refused("quire-witness", &["run", "--config", &bad], &bad);
        refused(
            "quire",
            &["checkpoint", "--addr", "https://127.0.0.1:1", "--ca", &bad],
            &bad,
        );
    }
    for bad in ["/dev/zero".to_owned(), fifo(d, "pem.fifo")] {
        refused(
            "quire-server",
            &[
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data,
                "--tls-cert",
                &bad,
                "--tls-key",
                &bad,
            ],
            &bad,
        );
    }
    // A signing key that is a FIFO: start-up is refused, not blocked.
    let fresh = d.join("fresh");
    let keys = fresh.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key = fifo(&keys, "localhost_quire.p256.key");
    refused(
        "quire-server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            fresh.to_str().unwrap(),
        ],
        &key,
    );
}
