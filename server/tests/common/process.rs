//! The real `quire-server` binary as a child process, optionally with a file
//! size limit, and the check that a restarted server still holds everything
//! it acknowledged.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use quire_core::{leaf_hash, verify_consistency, Checkpoint, CompactRange, VerifierKey};
use quire_proto::hashes_from_wire;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::{GetCheckpointRequest, GetConsistencyProofRequest, ListLogsRequest};
use tonic::transport::Channel;

use super::{all_entries, checkpoint};

/// Acknowledged (index, entry) pairs.
pub type Acks = Vec<(u64, Vec<u8>)>;

/// The command that starts the server on `data`. With `file_size_limit`,
/// it runs under `prlimit --fsize` with SIGXFSZ ignored: every write that
/// would grow a file past the limit fails with EFBIG, where a full disk
/// fails with ENOSPC, with no privileges needed.
fn command(data: &Path, file_size_limit: Option<u64>) -> Command {
    command_with(data, file_size_limit, &[])
}

fn command_with(data: &Path, file_size_limit: Option<u64>, extra: &[&str]) -> Command {
    let server = env!("CARGO_BIN_EXE_quire-server");
    let mut cmd = match file_size_limit {
        Some(bytes) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("trap '' XFSZ; exec prlimit --fsize=\"$0\" -- \"$@\"")
                .arg(bytes.to_string())
                .arg(server);
            c
        }
        None => Command::new(server),
    };
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    cmd
}

/// A running server.
pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
    /// Its metrics endpoint (`http://ADDR/metrics`), when it serves one.
    pub metrics: Option<String>,
    /// Every line the server wrote to stderr so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the server and waits until it listens.
    pub fn start(data: &Path, file_size_limit: Option<u64>) -> Self {
        Self::start_cmd(command(data, file_size_limit))
    }

    /// [`ServerProcess::start`] under `prlimit LIMIT` (for example
    /// `--nofile=64`).
    pub fn start_limited(data: &Path, limit: &str) -> Self {
        let mut c = Command::new("prlimit");
        c.arg(limit)
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_quire-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        Self::start_cmd(c)
    }

    /// [`ServerProcess::start`] with more arguments.
    pub fn start_with(data: &Path, extra: &[&str]) -> Self {
        Self::start_cmd(command_with(data, None, extra))
    }

    fn start_cmd(cmd: Command) -> Self {
        try_start_cmd(cmd).unwrap_or_else(|(code, err)| {
            panic!("server exited ({code:?}) before listening: {err}")
        })
    }

    /// Stops it with SIGTERM and checks that it exits cleanly.
    pub fn stop(&mut self) {
        let s = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(s.success());
        assert!(self.child.wait().unwrap().success());
    }

    /// A client of it.
    pub async fn client(&self) -> LogClient<Channel> {
        LogClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// Whether any stderr line so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Whether a stderr line contains `text`, waiting for the reader thread
    /// to catch up (bounded: 1,000 polls of 10 ms). The server writes the
    /// line before it answers, but the test reads stderr on its own thread.
    pub fn wait_logged(&self, text: &str) -> bool {
        for _ in 0..1000 {
            if self.logged(text) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server if it will start: the running server, or its exit code
/// and stderr when it exits before listening.
pub fn try_start(data: &Path, extra: &[&str]) -> Result<ServerProcess, (Option<i32>, String)> {
    try_start_cmd(command_with(data, None, extra))
}

fn try_start_cmd(mut cmd: Command) -> Result<ServerProcess, (Option<i32>, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
    let err_lines = Arc::clone(&stderr);
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            err_lines.lock().unwrap().push(line);
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut metrics = None;
    let addr = lines.by_ref().map_while(Result::ok).find_map(|l| {
        if let Some(m) = l.strip_prefix("metrics on ") {
            metrics = Some(m.to_owned());
        }
        l.strip_prefix("listening on ").map(str::to_owned)
    });
    let Some(addr) = addr else {
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let text = stderr.lock().unwrap().join("\n");
        return Err((status.code(), text));
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(ServerProcess {
        child,
        addr,
        metrics,
        stderr,
    })
}

/// Runs a server that must fail to start; returns its exit code and stderr.
pub fn run_failing(data: &Path, file_size_limit: Option<u64>) -> (Option<i32>, String) {
    run_failing_cmd(command(data, file_size_limit))
}

/// [`run_failing`] with more arguments.
pub fn run_failing_with(data: &Path, extra: &[&str]) -> (Option<i32>, String) {
    run_failing_cmd(command_with(data, None, extra))
}

/// Runs a server that must not start. If it does start (prints "listening
/// on"), it is killed at once and the answer says so, instead of waiting
/// for a server that will not stop.
fn run_failing_cmd(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let started = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening on "));
    if started {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let err = err.join().unwrap();
    if started {
        return (
            None,
            format!("the server started and listened; stderr: {err}"),
        );
    }
    (status.code(), err)
}

/// Adds `entries` to the default log in one call; returns them with their
/// acknowledged indexes.
pub async fn add_batch(client: &mut LogClient<Channel>, entries: Vec<Vec<u8>>) -> Acks {
    let r = client
        .add_entries(quire_proto::v1::AddEntriesRequest {
            log: String::new(),
            entries: entries.clone(),
            with_proof: false,
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    r.entries.iter().map(|a| a.index).zip(entries).collect()
}

/// The log's verifier keys, as the server lists them.
pub async fn log_keys(client: &mut LogClient<Channel>) -> Vec<VerifierKey> {
    let logs = client
        .list_logs(ListLogsRequest {})
        .await
        .unwrap()
        .into_inner()
        .logs;
    logs[0]
        .verifier_keys
        .iter()
        .map(|k| VerifierKey::parse(k).unwrap())
        .collect()
}

/// The latest checkpoint of the default log, its signature verified.
pub async fn latest(client: &mut LogClient<Channel>, keys: &[VerifierKey]) -> Checkpoint {
    let r = client
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    checkpoint(&r.checkpoint, keys)
}

/// Asks for the consistency proof from `old` to `new` and verifies it.
pub async fn assert_extends(client: &mut LogClient<Channel>, old: &Checkpoint, new: &Checkpoint) {
    let p = client
        .get_consistency_proof(GetConsistencyProofRequest {
            log: String::new(),
            old_size: old.size(),
            new_size: new.size(),
            with_seed: false,
        })
        .await
        .unwrap()
        .into_inner();
    verify_consistency(
        old.size(),
        new.size(),
        &hashes_from_wire(&p.proof).unwrap(),
        old.root(),
        new.root(),
    )
    .unwrap();
}

/// The RFC 9162 root of `entries`.
pub fn root_of<'a>(entries: impl IntoIterator<Item = &'a Vec<u8>>) -> quire_core::Hash {
    let mut cr = CompactRange::new();
    for e in entries {
        cr.append(leaf_hash(e), |_, _| {}).unwrap();
    }
    cr.root()
}

/// Checks a (restarted) server against what it acknowledged and signed
/// before: every acknowledged entry is present with its index and bytes, the
/// stored entries hash to the latest signed root, and every checkpoint seen
/// before is proven a prefix of it. Returns the latest checkpoint.
pub async fn check_holds(
    client: &mut LogClient<Channel>,
    keys: &[VerifierKey],
    acked: &[(u64, Vec<u8>)],
    seen: &[Checkpoint],
) -> Checkpoint {
    let latest = latest(client, keys).await;
    let stored = if latest.size() > 0 {
        all_entries(client, 0).await
    } else {
        Vec::new()
    };
    assert_eq!(stored.len() as u64, latest.size());
    for (i, e) in acked {
        assert_eq!(
            stored.get(*i as usize),
            Some(e),
            "acknowledged entry {i} lost or changed"
        );
    }
    assert_eq!(
        root_of(&stored),
        *latest.root(),
        "entries do not hash to the root"
    );
    for old in seen.iter().filter(|c| c.size() > 0) {
        assert_extends(client, old, &latest).await;
    }
    latest
}
