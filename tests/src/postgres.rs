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
#[derive(Clone)]
pub struct Postgres {
    /// Its URL (`postgres://quire@127.0.0.1:PORT/postgres`).
    pub url: String,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its port.
    pub port: u16,
    /// The addresses it listens on, when `scripts/postgres` started it
    /// (it can then be stopped and started again: [`Postgres::stop_server`]).
    listen: Option<String>,
}

/// Log `origin` on the database of the [`shared`] server, opened (or
/// created, as `create` says) the way a server opens it.
///
/// # Errors
/// What opening the store fails with.
pub fn store(
    origin: &str,
    create: quire_server::store::postgres::Create,
) -> Result<quire_server::store::postgres::PgStore, quire_server::store::StoreError> {
    quire_server::store::postgres::PgStore::open(
        &quire_server::store::postgres::PgOptions::new(shared().url.clone()),
        origin,
        create,
    )
}

/// The configuration of log `origin` stored in PostgreSQL at `url`, the
/// rest as a server's defaults.
#[must_use]
pub fn log_config(origin: &str, url: &str) -> quire_server::config::LogConfig {
    let mut cfg = quire_server::config::LogConfig::new(origin);
    cfg.storage.engine = quire_server::config::Engine::Postgres;
    cfg.storage.url = Some(url.to_owned());
    cfg
}

/// The server of this test binary, started on first use.
///
/// # Panics
/// When it cannot be started: the tests that need it fail, with the
/// reason.
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();
    match SERVER.get_or_init(start_new) {
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

/// Runs `scripts/NAME ARGS` with `env`; its stdout.
///
/// # Errors
/// Its stderr when it fails.
pub(crate) fn script(
    name: &str,
    env: &[(&str, &std::ffi::OsStr)],
    args: &[&str],
) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(workspace().join("scripts").join(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("running scripts/{name}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "scripts/{name} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A loopback port free when asked, with the `n - 1` after it free too.
pub(crate) fn free_ports(n: u16) -> Result<u16, String> {
    for _ in 0..20 {
        let port = free_port()?;
        if port.checked_add(n).is_some()
            && (1..n).all(|k| std::net::TcpListener::bind(("127.0.0.1", port + k)).is_ok())
        {
            return Ok(port);
        }
    }
    Err(format!("no {n} free loopback ports in a row"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// A server of its own, not shared (for a test that changes the server's
/// settings); stopped like the shared one.
///
/// # Errors
/// The script's words when it cannot start one.
pub fn start_new() -> Result<Postgres, String> {
    start_listening(&[])
}

/// Servers started by this process.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// A server of its own listening on the loopback addresses `also` as well
/// as 127.0.0.1 (which its URL names), stopped like the shared one.
///
/// # Errors
/// The script's words when it cannot start one.
pub fn start_listening(also: &[&str]) -> Result<Postgres, String> {
    let listen = std::iter::once("127.0.0.1")
        .chain(also.iter().copied())
        .collect::<Vec<_>>()
        .join(",");
    let mut why = Vec::new();
    // A port found free can be taken before the server binds it: a few
    // tries, each on another port.
    for attempt in 0..5 {
        let port = free_port()?;
        let nth = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("quire-pg-{}-{nth}-{attempt}", std::process::id()));
        let out = Command::new("bash")
            .arg(workspace().join("scripts/postgres"))
            .env("PG_DIR", &dir)
            .env("PG_PORT", port.to_string())
            .env("PG_LISTEN", &listen)
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
                    port,
                    listen: Some(listen),
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
    /// Stops this server (`scripts/postgres stop`: a fast shutdown, every
    /// connection closed), keeping its data for [`Postgres::start_server`].
    ///
    /// # Errors
    /// The script's words, or a server the script did not start (a
    /// formation's node).
    pub fn stop_server(&self) -> Result<(), String> {
        self.server_script("stop")
    }

    /// Starts this server again after [`Postgres::stop_server`], on its
    /// port, addresses and data; stopped like it was once the test process
    /// ends.
    ///
    /// # Errors
    /// As [`Postgres::stop_server`].
    pub fn start_server(&self) -> Result<(), String> {
        self.server_script("start")
    }

    fn server_script(&self, action: &str) -> Result<(), String> {
        let listen = self.listen.as_deref().ok_or_else(|| {
            format!(
                "the server at {} was not started by scripts/postgres",
                self.url
            )
        })?;
        let (port, owner) = (self.port.to_string(), std::process::id().to_string());
        script(
            "postgres",
            &[
                ("PG_DIR", self.dir.as_os_str()),
                ("PG_PORT", port.as_ref()),
                ("PG_LISTEN", listen.as_ref()),
                ("PG_OWNER", owner.as_ref()),
            ],
            &[action],
        )
        .map(drop)
    }

    /// Runs `sql` in database `db` with `psql` (the server's own client),
    /// stopping at the first error; returns what it printed (unaligned,
    /// tuples only).
    ///
    /// # Errors
    /// `psql`'s own words when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        psql(&self.url_of(db), sql)
    }

    /// Cancels the commit in database `db` that waits for its synchronous
    /// standby (`pg_cancel_backend`), once one does: polled, at most a
    /// minute. PostgreSQL answers it with success and a warning, the
    /// commit made here alone.
    ///
    /// # Errors
    /// `psql`'s words, or none waiting within the minute.
    pub fn cancel_waiting_commit(&self, db: &str) -> Result<(), String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let cancelled = self.psql(
                db,
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity
                 WHERE wait_event = 'SyncRep' AND datname = current_database()",
            )?;
            if cancelled.trim() != "0" {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "no commit in {db} waited for its standby within a minute"
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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
        with_database(&self.url, db)
    }

    /// The URL of database `db` reached through loopback address `addr`,
    /// one of those it listens on ([`start_listening`]).
    ///
    /// # Panics
    /// When its URL does not name 127.0.0.1 (a formation's multi-host URL).
    pub fn url_at(&self, db: &str, addr: &str) -> String {
        let url = self.url_of(db);
        assert!(url.contains("@127.0.0.1:"), "{url} names 127.0.0.1");
        url.replacen("@127.0.0.1:", &format!("@{addr}:"), 1)
    }
}

/// `url` (a libpq URL, one host or several, with or without a query)
/// naming database `db` instead of its own.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let hosts = base.rsplit_once('/').map_or(base, |(h, _)| h);
    match query {
        Some(q) => format!("{hosts}/{db}?{q}"),
        None => format!("{hosts}/{db}"),
    }
}

/// Runs `sql` on the database at `url` with `psql` (the server's own
/// client), stopping at the first error; returns what it printed
/// (unaligned, tuples only).
///
/// # Errors
/// `psql`'s own words when it fails.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
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
            url,
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

/// A primary with one synchronous standby, started through the project's
/// `scripts/pg-formation` on two free loopback ports, and removed by that
/// script once the test process has ended.
pub struct Formation {
    /// The primary alone.
    pub primary: Postgres,
    /// Every node, with `target_session_attrs=read-write`.
    pub url: String,
    /// The formation's directory.
    pub dir: PathBuf,
    /// The primary's port (the standby's is the next).
    pub port: u16,
}

impl Formation {
    /// Its standby `n` (1 is the first), as a server to run `psql` on.
    pub fn standby(&self, n: u16) -> Postgres {
        Postgres {
            url: format!("postgres://quire@127.0.0.1:{}/postgres", self.port + n),
            dir: self.dir.join(format!("standby{n}")),
            port: self.port + n,
            listen: None,
        }
    }

    /// Starts one; each call a new formation.
    ///
    /// # Errors
    /// The script's own words when it cannot start one.
    pub fn start() -> Result<Formation, String> {
        let mut why = Vec::new();
        for attempt in 0..5 {
            let port = free_ports(2)?;
            let dir = std::env::temp_dir().join(format!(
                "quire-pgf-{}-{}-{attempt}",
                std::process::id(),
                port
            ));
            let (owner, port_text) = (std::process::id().to_string(), port.to_string());
            let started = script(
                "pg-formation",
                &[
                    ("PGF_DIR", dir.as_os_str()),
                    ("PGF_PORT", port_text.as_ref()),
                    ("PG_OWNER", owner.as_ref()),
                ],
                &[],
            );
            let line = |out: &str, key: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(key).map(str::to_owned))
            };
            match started {
                Ok(out) => {
                    if let (Some(primary), Some(url)) = (line(&out, "primary "), line(&out, "url "))
                    {
                        return Ok(Formation {
                            primary: Postgres {
                                url: primary,
                                dir: dir.join("primary"),
                                port,
                                listen: None,
                            },
                            url,
                            dir,
                            port,
                        });
                    }
                    why.push(format!("port {port}: no URLs in {out:?}"));
                }
                Err(e) => why.push(format!("port {port}: {e}")),
            }
        }
        Err(why.join("; "))
    }

    /// `scripts/pg-formation ACTION N` (`stop-node`, `start-node`; 0 is the primary).
    ///
    /// # Errors
    /// The script's words when it fails.
    pub fn node(&self, action: &str, n: u32) -> Result<(), String> {
        script(
            "pg-formation",
            &[
                ("PGF_DIR", self.dir.as_os_str()),
                ("PGF_PORT", self.port.to_string().as_ref()),
            ],
            &[action, &n.to_string()],
        )
        .map(drop)
    }

    /// The URL of database `db` on every node (read-write).
    pub fn url_of(&self, db: &str) -> String {
        with_database(&self.url, db)
    }
}
