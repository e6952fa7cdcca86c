//! Server configuration: a TOML file, overridden by command-line flags.
//!
//! ```toml
//! listen = "127.0.0.1:7400"
//! data_dir = "quire-data"
//! metrics_listen = "127.0.0.1:7401"   # optional Prometheus endpoint
//! access = "access.toml"  # optional: who may do what (`access` module)
//! audit_log = "example.com/quire-access"  # optional: one of [[logs]], where
//!                         # refusals and policy changes are recorded
//!
//! [[logs]]
//! origin = "audit.example.com/prod/2026"
//! dedup = "strict"        # or "best-effort" (bounded cache) or "off"
//! dedup_cache_entries = 100000
//! max_entry_bytes = 65535
//! max_batch = 1000
//! queue_depth = 4096
//!
//! [logs.storage]          # optional: how this log is stored
//! engine = "redb"         # the embedded default
//! compress = true         # LZ4 entry bundles where it saves space
//! cache_mib = 32
//!
//! [logs.witnessing]       # optional: who witnesses this log
//! quorum = 2              # cosignatures that make a checkpoint witnessed
//! fail = "open"           # or "closed": see the README
//! timeout_ms = 2000       # each call to a witness
//! wait_ms = 5000          # a witnessed answer waits this long for the quorum
//! [[logs.witnessing.witnesses]]  # repeated: where new checkpoints go
//! url = "http://127.0.0.1:7410"
//! protocol = "grpc"       # or "http" (C2SP tlog-witness)
//! key = "witness.example/w1+01234567+BA…"
//!
//! [tls]                   # optional: serve gRPC over TLS (rustls)
//! cert = "server.pem"     # certificate chain, PEM
//! key = "server.key"      # private key, PEM
//! client_ca = "ca.pem"    # optional: verify client certificates from this CA
//! client_cert = "required" # or "optional": clients may come without one
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod family;
mod log;
mod replication;
mod tls;
mod witnessing;

pub use family::FamilyConfig;

pub use log::{Engine, LogConfig, StorageConfig, MOVED_KEYS};
pub use replication::ReplicationConfig;
pub use tls::{ClientCert, TlsConfig};
pub use witnessing::{WitnessEntry, WitnessingConfig};

/// Largest configuration file read, checked before parsing.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The origin of the log a server starts with when none is configured.
pub const DEFAULT_ORIGIN: &str = "localhost/quire";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where logs and keys live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest gRPC message accepted, bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Most concurrent requests per connection.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: usize,
    /// Most HTTP/2 streams open on one connection.
    #[serde(default = "default_streams")]
    pub max_streams_per_connection: u32,
    /// Most client connections open at once (gRPC and metrics each).
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (clients
    /// that follow streams send HTTP/2 pings), milliseconds.
    #[serde(default = "default_idle")]
    pub idle_timeout_ms: u64,
    /// Longest a request may take before its answer starts (a stalled
    /// request body included), milliseconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Server-wide budget of bytes in flight, MiB: request bodies being
    /// received (until answered) and entry pages read and queued for
    /// readers. Beyond it requests get `RESOURCE_EXHAUSTED` naming it.
    #[serde(default = "default_memory_budget", alias = "stream_budget_mib")]
    pub memory_budget_mib: usize,
    /// A request body that sends no bytes for this long is ended with
    /// `DEADLINE_EXCEEDED`, milliseconds.
    #[serde(default = "default_body_timeout")]
    pub request_body_timeout_ms: u64,
    /// Most entry streams (`GetEntries`, `TailEntries`) open at once.
    #[serde(default = "default_entry_streams")]
    pub max_entry_streams: usize,
    /// The logs to host.
    #[serde(default)]
    pub logs: Vec<LogConfig>,
    /// Families of logs that roll over to a new shard by period
    /// (`[[families]]`, see [`crate::family`]).
    #[serde(default)]
    pub families: Vec<FamilyConfig>,
    /// TLS, when set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The access policy file (see [`crate::access`]): who may do what.
    /// Reloaded while the server runs. Unset: everyone may do everything.
    #[serde(default)]
    pub access: Option<PathBuf>,
    /// The origin of one of `logs` where the server records every refused
    /// request and every change of the access policy (see
    /// [`crate::access::audit`]). Needs `access`.
    #[serde(default)]
    pub audit_log: Option<String>,
    /// Where to serve Prometheus metrics (`GET /metrics`), when set.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Several servers sharing the logs stored in PostgreSQL
    /// (`[replication]`): when set, this server is one replica of each.
    #[serde(default)]
    pub replication: Option<ReplicationConfig>,
    /// Where each log's high-water record lives (the newest checkpoint it
    /// published). Keep it out of the data directory's backups, best on
    /// another volume: a restored data directory must not roll it back.
    /// Default: beside the data directory, `<data_dir>.highwater`.
    #[serde(default)]
    pub high_water_dir: Option<PathBuf>,
    /// Create configured logs that do not exist yet in a data directory
    /// that already holds other logs (command line: `--new-log`).
    #[serde(skip)]
    pub new_logs: bool,
    /// Take a database's latest checkpoint as the high-water mark of a log
    /// that has no record (command line: `--adopt-database`).
    #[serde(skip)]
    pub adopt_database: bool,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7400))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("quire-data")
}
fn default_max_message() -> usize {
    64 * 1024 * 1024
}
fn default_concurrency() -> usize {
    1024
}
fn default_streams() -> u32 {
    128
}
fn default_connections() -> usize {
    4096
}
fn default_idle() -> u64 {
    300_000
}
fn default_request_timeout() -> u64 {
    60_000
}
fn default_memory_budget() -> usize {
    crate::api::DEFAULT_MEMORY_BUDGET >> 20
}
fn default_body_timeout() -> u64 {
    10_000
}
fn default_entry_streams() -> usize {
    crate::api::DEFAULT_ENTRY_STREAMS
}
impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            data_dir: default_data_dir(),
            max_message_bytes: default_max_message(),
            max_concurrent_requests: default_concurrency(),
            max_streams_per_connection: default_streams(),
            max_connections: default_connections(),
            idle_timeout_ms: default_idle(),
            request_timeout_ms: default_request_timeout(),
            memory_budget_mib: default_memory_budget(),
            request_body_timeout_ms: default_body_timeout(),
            max_entry_streams: default_entry_streams(),
            logs: Vec::new(),
            families: Vec::new(),
            tls: None,
            access: None,
            audit_log: None,
            metrics_listen: None,
            replication: None,
            high_water_dir: None,
            new_logs: false,
            adopt_database: false,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (missing, not a regular file, or over its
    /// size limit), or is not valid TOML for this configuration.
    #[error(transparent)]
    File(#[from] quire_host::config::FileError),
    /// A PEM file cannot be read.
    #[error("reading {0}")]
    Read(#[from] quire_host::ReadError),
    /// A value is out of its allowed range.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// The connection bounds of the server's faces.
    pub fn net_limits(&self) -> quire_host::net::NetLimits {
        quire_host::net::NetLimits {
            max_connections: self.max_connections,
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
            ..quire_host::net::NetLimits::default()
        }
    }

    /// The directory of the logs' high-water records: as configured, or
    /// beside the data directory (`<data_dir>.highwater`), so that a data
    /// directory put back from a copy cannot roll the records back with it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the data directory has no name to put
    /// a sibling beside (`/`): configure `high_water_dir` then.
    pub fn high_water_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &self.high_water_dir {
            return Ok(d.clone());
        }
        let data = std::path::absolute(&self.data_dir).map_err(|e| {
            ConfigError::Invalid(format!("data directory {}: {e}", self.data_dir.display()))
        })?;
        let mut clean = PathBuf::new();
        for c in data.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::CurDir => {}
                c => clean.push(c),
            }
        }
        match (clean.parent(), clean.file_name()) {
            (Some(parent), Some(name)) => {
                let mut name = name.to_owned();
                name.push(".highwater");
                Ok(parent.join(name))
            }
            _ => Err(ConfigError::Invalid(format!(
                "data directory {} has no parent to keep the high-water records beside: set high_water_dir",
                self.data_dir.display()
            ))),
        }
    }

    /// Reads a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Config = quire_host::config::load_toml(path, MAX_CONFIG_BYTES, MOVED_KEYS)?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses a log configured twice, or two whose origins differ only in
    /// characters a file name cannot hold (they would share keys and
    /// records).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming both.
    pub fn check_unique_logs(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashMap::new();
        for l in &self.logs {
            if let Some(other) = seen.insert(crate::keyfile::slug(&l.origin), &l.origin) {
                return Err(ConfigError::Invalid(if *other == l.origin {
                    format!("log {:?} is configured twice", l.origin)
                } else {
                    format!(
                        "logs {other:?} and {:?} would be stored under the same file names ({}): rename one",
                        l.origin,
                        crate::keyfile::slug(&l.origin)
                    )
                }));
            }
        }
        Ok(())
    }

    /// Checks values that TOML types alone do not bound.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value and its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(r) = &self.replication {
            r.validate()?;
        }
        let ranges: [(&str, u64, u64, u64); 8] = [
            (
                "max_entry_streams",
                self.max_entry_streams as u64,
                1,
                1_000_000,
            ),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as u64,
                1,
                1_000_000,
            ),
            (
                "max_streams_per_connection",
                u64::from(self.max_streams_per_connection),
                1,
                100_000,
            ),
            ("max_connections", self.max_connections as u64, 1, 1_000_000),
            ("idle_timeout_ms", self.idle_timeout_ms, 1_000, 86_400_000),
            (
                "request_timeout_ms",
                self.request_timeout_ms,
                1_000,
                3_600_000,
            ),
            (
                "memory_budget_mib",
                self.memory_budget_mib as u64,
                1,
                1 << 20,
            ),
            (
                "request_body_timeout_ms",
                self.request_body_timeout_ms,
                100,
                self.request_timeout_ms,
            ),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "{name} = {v} must be {lo} to {hi}"
                )));
            }
        }
        if self.max_message_bytes > self.memory_budget_mib.saturating_mul(1 << 20) {
            return Err(ConfigError::Invalid(format!(
                "max_message_bytes = {} does not fit memory_budget_mib = {} (the bytes in flight of all requests): a request that large could never be received; raise the budget or lower the message limit",
                self.max_message_bytes, self.memory_budget_mib
            )));
        }
        if let Some(a) = &self.audit_log {
            if self.access.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "audit_log = {a:?} records the access policy's refusals and changes: set access too"
                )));
            }
            if !self.logs.iter().any(|l| &l.origin == a) {
                return Err(ConfigError::Invalid(format!(
                    "audit_log = {a:?} is not one of the configured [[logs]]: configure it there (its keys, storage and witnesses are a log's like any other)"
                )));
            }
        }
        self.check_unique_logs()?;
        for l in &self.logs {
            l.validate(self)?;
        }
        let mut families = std::collections::HashSet::new();
        for f in &self.families {
            if !families.insert(&f.origin) {
                return Err(ConfigError::Invalid(format!(
                    "family {:?} is configured twice",
                    f.origin
                )));
            }
            f.validate(self)?;
            if let Some(rep) = &self.replication {
                rep.may_create(&format!("family {:?}", f.origin))
                    .map_err(ConfigError::Invalid)?;
                let shard = f.shard_config(&f.period.label(0))?;
                if shard.pg_options().is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "family {:?}: the shards of a formation's family are shared by its replicas, so they must be stored in PostgreSQL: set storage.engine = \"postgres\" and storage.url in its shard table",
                        f.origin
                    )));
                }
                if f.drop_entries_after_days.is_some() {
                    return Err(ConfigError::Invalid(format!(
                        "family {:?}: drop_entries_after_days is not yet served by a replicated formation ([replication])",
                        f.origin
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::witnessing::FailMode;

    pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quire.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    #[test]
    fn storage_and_witnessing_have_tables_of_their_own() {
        let key = quire_core::WitnessSigner::generate("w.example")
            .unwrap()
            .verifier()
            .to_vkey();
        let c = load(&format!(
            r#"
[[logs]]
origin = "grouped.example/log"
[logs.storage]
engine = "redb"
compress = false
cache_mib = 8
[logs.witnessing]
quorum = 1
fail = "closed"
wait_ms = 2500
[[logs.witnessing.witnesses]]
url = "http://127.0.0.1:1"
protocol = "http"
key = "{key}"
"#
        ))
        .unwrap();
        let l = &c.logs[0];
        assert_eq!(l.storage.engine, Engine::Redb);
        assert!(!l.store_options().compress);
        assert_eq!(l.store_options().cache_bytes, 8 << 20);
        let p = l.witness_policy().unwrap().unwrap();
        assert_eq!(p.quorum, 1);
        assert_eq!(p.fail, FailMode::Closed);
        assert_eq!(p.wait, std::time::Duration::from_millis(2500));
        assert_eq!(
            p.witnesses[0].protocol,
            crate::witnessing::WitnessProtocol::Http
        );
        // Defaults where the tables are left out.
        let c = load("[[logs]]\norigin = \"plain.example/log\"\n").unwrap();
        assert!(c.logs[0].store_options().compress);
        assert!(c.logs[0].witness_policy().unwrap().is_none());
    }

    #[test]
    fn a_key_of_the_old_flat_layout_is_refused_saying_where_it_went() {
        for (old, hint) in [
            ("witness_quorum = 1", "to `quorum` in [logs.witnessing]"),
            ("compress = false", "to `compress` in [logs.storage]"),
        ] {
            let e = load(&format!("[[logs]]\norigin = \"old.example/log\"\n{old}\n")).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(hint), "{text}");
        }
    }

    #[test]
    fn a_formation_creates_logs_only_with_its_database_and_seed() {
        let base = "[replication]\nadvertise = \"http://127.0.0.1:7400\"\n";
        let family = "[[families]]\norigin = \"f.example/log\"\nperiod = \"month\"\n";
        let pg_shard =
            "[families.shard]\nstorage = { engine = \"postgres\", url = \"postgres://h/db\" }\n";
        let e = load(&format!("{base}{family}")).unwrap_err().to_string();
        assert!(
            e.contains("keys_seed_file") && e.contains("[replication.storage]"),
            "{e}"
        );
        let with = format!(
            "{base}keys_seed_file = \"/seed\"\n[replication.storage]\nengine = \"postgres\"\nurl = \"postgres://h/db\"\n"
        );
        let e = load(&format!("{with}{family}")).unwrap_err().to_string();
        assert!(e.contains("must be stored in PostgreSQL"), "{e}");
        load(&format!("{with}{family}{pg_shard}")).unwrap();
        let e = load(&format!(
            "{with}{family}drop_entries_after_days = 30\n{pg_shard}"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("drop_entries_after_days"), "{e}");
        let redb = format!("{base}[replication.storage]\nengine = \"redb\"\n");
        let e = load(&redb).unwrap_err().to_string();
        assert!(e.contains("must be a PostgreSQL database"), "{e}");
    }
}
