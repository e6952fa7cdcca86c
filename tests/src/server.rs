//! `quire-server` processes for tests that kill, pause and restart them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `quire-server run --config FILE`.
pub struct ServerProcess {
    /// The process.
    pub child: Child,
    /// Where its gRPC face listens.
    pub addr: SocketAddr,
    said: std::sync::Arc<std::sync::Mutex<Said>>,
}

/// The last lines a server said on stderr, a line repeated (the same but
/// for its timestamp) kept once with its count, so that a failure's report
/// shows what changed rather than the same refusal two hundred times.
#[derive(Default)]
struct Said(std::collections::VecDeque<(String, u64)>);

/// Lines kept.
const KEPT_LINES: usize = 200;

impl Said {
    fn push(&mut self, line: String) {
        let body = |l: &str| l.split_once(' ').map_or(l, |(_, b)| b).to_owned();
        if let Some((last, n)) = self.0.back_mut() {
            if body(last) == body(&line) {
                *last = line;
                *n += 1;
                return;
            }
        }
        if self.0.len() >= KEPT_LINES {
            self.0.pop_front();
        }
        self.0.push_back((line, 1));
    }
}

/// A loopback port free when asked (the server binding it later may still
/// find it taken; callers retry on another).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The lines kept, one string (a repeated line: its last time, and how
/// many times).
fn joined(lines: &std::sync::Mutex<Said>) -> String {
    lines
        .lock()
        .map(|v| {
            v.0.iter()
                .map(|(l, n)| match n {
                    1 => l.clone(),
                    n => format!("{l} [{n} times]"),
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

impl ServerProcess {
    /// Starts the server on `listen` with `config` and waits until it
    /// listens (it prints "listening on ADDR").
    ///
    /// # Errors
    /// Its own words when it exits before listening.
    pub fn start(config: &Path, listen: SocketAddr) -> Result<Self, String> {
        let mut child = Command::new(crate::binary("quire-server"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--listen")
            .arg(listen.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning quire-server: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let err_lines = std::sync::Arc::new(std::sync::Mutex::new(Said::default()));
        let sink = std::sync::Arc::clone(&err_lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut v) = sink.lock() {
                    v.push(line);
                }
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("listening on ") => break,
                Some(Ok(_)) => {}
                _ => {
                    let _ = child.wait();
                    // Everything it said: its stderr closes when it exits.
                    let _ = reader.join();
                    let said = joined(&err_lines);
                    return Err(format!("quire-server exited before listening: {said}"));
                }
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(ServerProcess {
            child,
            addr: listen,
            said: err_lines,
        })
    }

    /// The last 200 lines it wrote to stderr (warnings and errors).
    pub fn said(&self) -> String {
        joined(&self.said)
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
