//! # quire-tests
//!
//! End-to-end tests across real servers, witnesses and clients (in
//! `tests/tests/`), and the helpers they share: the workspace's binaries
//! (built on first use, so `cargo test -p quire-tests` works alone), witness
//! processes, an in-memory log ([`memlog`]) and a minimal HTTP/1.1 client
//! for the C2SP witness endpoint.

pub mod commits;
pub mod eventlog;
pub mod failover;
pub mod memlog;
pub mod netns;
pub mod postgres;
pub mod replicas;
pub mod server;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Bounded polling from a thread: `f` every 20 ms until it gives a value,
/// at most a minute.
///
/// # Panics
/// When a minute passes first, naming `what`.
pub fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The path of a workspace binary. `cargo test --workspace` (the README's
/// test command) builds every binary before any test runs; when one is
/// missing (`cargo test -p quire-tests` on a fresh tree) it is built here,
/// once per test process. A binary left from an older build is used as it
/// is: run the workspace's tests after changing a binary's crate.
///
/// # Panics
/// When the build fails: the test cannot run without the binary.
#[allow(clippy::expect_used)]
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // target/<profile>/deps/<this test> → target/<profile>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps")
            .to_owned();
        let all_there = ["quire-witness", "quire", "quire-server"]
            .iter()
            .all(|b| profile_dir.join(b).exists());
        if all_there {
            return profile_dir;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "quire-witness",
            "-p",
            "quire-client",
            "-p",
            "quire-server",
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.env("CARGO_TARGET_DIR", target);
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building the workspace binaries failed");
        profile_dir
    });
    dir.join(name)
}

/// A `quire-witness` process.
pub struct WitnessProcess {
    /// The process.
    pub child: Child,
    /// gRPC address.
    pub addr: SocketAddr,
    /// C2SP HTTP address.
    pub http: SocketAddr,
    /// Its verifier key text.
    pub vkey: String,
}

impl WitnessProcess {
    /// Starts `quire-witness run --config CONFIG` on the given gRPC address
    /// (port 0 for any) and reads the bound addresses from its stdout.
    ///
    /// # Panics
    /// When it does not start.
    #[allow(clippy::expect_used)]
    pub fn start(config: &Path, listen: SocketAddr) -> Self {
        let mut child = Command::new(binary("quire-witness"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--http-listen")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning quire-witness");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut addr, mut http, mut vkey) = (None, None, None);
        while addr.is_none() || http.is_none() || vkey.is_none() {
            let line = lines
                .next()
                .expect("quire-witness exited before listening")
                .expect("reading its stdout");
            if let Some(a) = line.strip_prefix("listening on ") {
                addr = a.parse().ok();
            } else if let Some(a) = line.strip_prefix("http on ") {
                http = a.parse().ok();
            } else if let Some(k) = line.strip_prefix("witness key ") {
                vkey = Some(k.to_owned());
            }
        }
        std::thread::spawn(move || for _ in lines {});
        WitnessProcess {
            child,
            addr: addr.expect("address"),
            http: http.expect("http address"),
            vkey: vkey.expect("key"),
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One log in a witness configuration.
pub struct LogSpec<'a> {
    /// Origin.
    pub origin: &'a str,
    /// Its verifier keys.
    pub keys: Vec<String>,
    /// Where to poll it.
    pub url: Option<String>,
}

/// Writes a witness configuration file and returns its path.
///
/// # Panics
/// On I/O failure.
#[allow(clippy::expect_used)]
pub fn witness_config(
    dir: &Path,
    name: &str,
    logs: &[LogSpec<'_>],
    peers: &[(String, String)],
    interval_ms: u64,
) -> PathBuf {
    let mut s = format!(
        "name = \"{name}\"\ndata_dir = \"{}\"\npoll_interval_ms = {interval_ms}\ngossip_interval_ms = {interval_ms}\nrequest_timeout_ms = 2000\n",
        dir.join("data").display()
    );
    for l in logs {
        let _ = write!(
            s,
            "\n[[logs]]\norigin = \"{}\"\nkeys = [{}]\n",
            l.origin,
            l.keys
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(u) = &l.url {
            let _ = writeln!(s, "url = \"{u}\"");
        }
    }
    for (url, key) in peers {
        let _ = write!(s, "\n[[peers]]\nurl = \"{url}\"\nkey = \"{key}\"\n");
    }
    std::fs::create_dir_all(dir).expect("config dir");
    let path = dir.join("witness.toml");
    std::fs::write(&path, s).expect("writing the config");
    path
}

/// An HTTP answer: status, content type and body.
#[derive(Debug)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, lower-cased.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

/// `POST path` with `body` over HTTP/1.1 (`Connection: close`), blocking.
///
/// # Errors
/// I/O errors and an unparseable answer.
pub fn http_post(addr: SocketAddr, path: &str, body: &[u8]) -> std::io::Result<HttpAnswer> {
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    // A server may answer (413) before reading a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    let mut body = raw[head_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(HttpAnswer {
        status,
        content_type,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if len == 0 || b.len() < nl + 2 + len {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + len]);
        b = &b[(nl + 4 + len).min(b.len())..];
    }
}

/// Runs a workspace binary to completion; returns its exit code and stdout.
///
/// # Panics
/// When it cannot be started.
#[allow(clippy::expect_used)]
pub fn run_bin(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary(name))
        .args(args)
        .output()
        .expect("running a workspace binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies the files of directory `from` into `to` (created), not
/// recursing: a data directory's `keys/`, say.
///
/// # Panics
/// On I/O failure.
#[allow(clippy::expect_used)]
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for e in std::fs::read_dir(from).expect("reading the directory") {
        let e = e.expect("a directory entry");
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copying a file");
        }
    }
}

/// The checkpoint the log server at `url` serves for `origin` (the
/// witnessed one when `witnessed`), over gRPC.
///
/// # Errors
/// The gRPC status, or a connection that fails.
pub async fn checkpoint(url: &str, origin: &str, witnessed: bool) -> Result<Vec<u8>, String> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let r = quire_proto::v1::log_client::LogClient::new(channel)
        .get_checkpoint(quire_proto::v1::GetCheckpointRequest {
            log: origin.into(),
            witnessed,
        })
        .await
        .map_err(|s| s.to_string())?;
    Ok(r.into_inner().checkpoint)
}
