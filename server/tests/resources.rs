//! Bounded resources under hostile clients, on the real binary:
//! - 600 entry streams that are never read, beside an honest reader: the
//!   honest reader gets every entry and proof, the server's memory stays
//!   within its stream budget, and no thread is held (proofs and reads on
//!   other connections go on);
//! - connections beyond the process's descriptor limit: the server says so
//!   in its log, backs off, and serves again once they are gone;
//! - stderr that cannot be written: logging fails, writes go on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::process::{Command, Stdio};

use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::*;
use tonic::transport::Channel;

mod common;
use common::all_entries;
use common::process::{add_batch, log_keys, ServerProcess};

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_streams_hold_no_thread_and_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let config = dir.path().join("quire.toml");
    std::fs::write(&config, "stream_budget_mib = 64\n").unwrap();
    let server = ServerProcess::start_with(data, &["--config", config.to_str().unwrap()]);
    let mut c = server.client().await;
    // 512 entries of 60 KB: 30 MB, two bundles of 15 MB.
    let mut acked = Vec::new();
    for b in 0..8u8 {
        let entries: Vec<Vec<u8>> = (0..64u8)
            .map(|i| {
                let mut e = vec![b; 60_000];
                e[..2].copy_from_slice(&[b, i]);
                e
            })
            .collect();
        acked.extend(add_batch(&mut c, entries).await);
    }
    let before = rss_mib(server.child.id());
    // 600 streams over 6 connections, none ever read.
    let mut held = Vec::new();
    for _ in 0..6 {
        let ch = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut lc = LogClient::new(ch).max_decoding_message_size(8 << 20);
        for _ in 0..100 {
            let s = lc
                .get_entries(GetEntriesRequest {
                    log: String::new(),
                    start: 0,
                    end: 0,
                })
                .await
                .unwrap()
                .into_inner();
            held.push(s);
        }
    }
    // An honest reader, meanwhile: every entry, and proofs.
    let keys = log_keys(&mut c).await;
    // A default client: pages fit its 4 MiB message limit.
    let got = all_entries(&mut c, 0).await;
    assert_eq!(got.len(), acked.len());
    for (i, e) in &acked {
        assert_eq!(&got[*i as usize], e);
    }
    for i in [0u64, 100, 511] {
        let r = c
            .get_entry_with_proof(GetEntryWithProofRequest {
                log: String::new(),
                index: i,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.entry, acked[i as usize].1);
    }
    assert!(!keys.is_empty());
    // 600 streams of 30 MB each would be 18 GB: an unread stream holds one
    // page of at most 1 MiB (and its encoding in the transport's buffers:
    // under 2 MiB in all), beside the 64 MiB budget.
    let during = rss_mib(server.child.id());
    eprintln!("server RSS {before} MiB before the streams, {during} MiB with 600 unread");
    assert!(
        during < before + 600 * 2 + 64 + 128,
        "RSS grew from {before} to {during} MiB"
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_is_logged_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let data = &dir.path().join("data");
    let server = common::process::ServerProcess::start_limited(data, "--nofile=64");
    let mut c = server.client().await;
    add_batch(&mut c, vec![b"before the flood".to_vec()]).await;
    // Far more connections than descriptors.
    let mut flood = Vec::new();
    for _ in 0..120 {
        if let Ok(s) = std::net::TcpStream::connect(&server.addr) {
            flood.push(s);
        }
    }
    // Bounded poll for the log line (the accept loop hits the limit).
    let mut logged = false;
    for _ in 0..200 {
        if server.logged("cannot accept a connection") {
            logged = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(logged, "no log line about the descriptor limit");
    drop(flood);
    // Served again on a new connection once the flood is gone.
    let mut served = false;
    for _ in 0..200 {
        if let Ok(ch) = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
        {
            let mut lc = LogClient::new(ch);
            if lc
                .add_entry(AddEntryRequest {
                    log: String::new(),
                    entry: b"after the flood".to_vec(),
                    with_proof: false,
                    witnessed: false,
                })
                .await
                .is_ok()
            {
                served = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(served, "the server did not serve again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwritable_stderr_never_stops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    /// Killed when dropped, so a failing assertion leaves no server behind.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_quire-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .spawn()
        .unwrap();
    use std::io::BufRead as _;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut child = Killed(child);
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
        .expect("the server listens");
    std::thread::spawn(move || for _ in lines {});
    let mut c = LogClient::connect(format!("http://{addr}")).await.unwrap();
    // Every write logs (debug) to a full stderr.
    for i in 0..50 {
        add_batch(&mut c, vec![format!("entry {i}").into_bytes()]).await;
    }
    assert!(child.0.try_wait().unwrap().is_none(), "the server died");
}
