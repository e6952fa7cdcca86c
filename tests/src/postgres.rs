//! A real PostgreSQL server for the tests of a binary, started once through
//! the project's own `scripts/postgres` (which installs PostgreSQL from
//! Debian's packages when it is absent) on a free loopback port, and stopped
//! by that script once the test process has ended.
//!
//! Never a skip: a server that cannot be started fails the test that asked
//! for it, with the script's own words.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A started server.
pub struct Postgres {
    /// Its URL (`postgres://quire@127.0.0.1:PORT/postgres`).
    pub url: String,
    /// Its data directory.
    pub dir: PathBuf,
}

/// The server of this test binary, started on first use.
///
/// # Panics
/// When it cannot be started: the tests that need it fail, with the
/// reason.
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(p) => p,
        Err(e) => panic!("PostgreSQL could not be started for this test: {e}"),
    }
}

/// A name no other test of this process uses (a log origin, a database).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn start() -> Result<Postgres, String> {
    let mut why = Vec::new();
    // A port found free can be taken before the server binds it: a few
    // tries, each on another port.
    for attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let dir = std::env::temp_dir().join(format!("quire-pg-{}-{attempt}", std::process::id()));
        let out = Command::new("bash")
            .arg(workspace().join("scripts/postgres"))
            .env("PG_DIR", &dir)
            .env("PG_PORT", port.to_string())
            .env("PG_OWNER", std::process::id().to_string())
            .output()
            .map_err(|e| format!("running scripts/postgres: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            if let Some(url) = stdout
                .lines()
                .last()
                .filter(|l| l.starts_with("postgres://"))
            {
                return Ok(Postgres {
                    url: url.to_owned(),
                    dir,
                });
            }
        }
        why.push(format!(
            "port {port}: {} {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Err(why.join("; "))
}

impl Postgres {
    /// Runs `sql` in database `db` with `psql` (the server's own client),
    /// stopping at the first error; returns what it printed (unaligned,
    /// tuples only).
    ///
    /// # Errors
    /// `psql`'s own words when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let url = self.url_of(db);
        let psql = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                let mut bins: Vec<PathBuf> = d
                    .filter_map(Result::ok)
                    .map(|e| e.path().join("bin/psql"))
                    .filter(|p| p.exists())
                    .collect();
                bins.sort();
                bins.pop()
            })
            .unwrap_or_else(|| PathBuf::from("psql"));
        let out = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &url,
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A new, empty database of this server (its name made unique from
    /// `prefix`); returns its name.
    ///
    /// # Errors
    /// `psql`'s words when it cannot be created.
    pub fn create_database(&self, prefix: &str) -> Result<String, String> {
        let name = unique(prefix).replace(['-', '.', '/'], "_");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }

    /// The URL of database `db` of this server.
    pub fn url_of(&self, db: &str) -> String {
        match self.url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db}"),
            None => self.url.clone(),
        }
    }
}
