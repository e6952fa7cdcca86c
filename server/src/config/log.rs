//! One log's configuration: its limits and `[logs.storage]`, and the
//! checks of its values (`[logs.witnessing]` is in `witnessing.rs`).

use serde::{Deserialize, Serialize};

use super::witnessing::WitnessingConfig;
use super::{Config, ConfigError};
use crate::log::{DedupPolicy, LogLimits};
use crate::store::redb::RedbOptions;
use crate::witnessing::WitnessPolicy;

/// One log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Origin line of its checkpoints.
    pub origin: String,
    /// Dedup policy.
    #[serde(default = "default_dedup")]
    pub dedup: DedupPolicy,
    /// Largest entry.
    #[serde(default = "default_entry")]
    pub max_entry_bytes: usize,
    /// Most entries per request.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Most requests waiting.
    #[serde(default = "default_queue")]
    pub queue_depth: usize,
    /// Leaf hashes remembered under best-effort dedup.
    #[serde(default = "default_cache")]
    pub dedup_cache_entries: usize,
    /// Where and how the log is stored (`[logs.storage]`).
    #[serde(default)]
    pub storage: StorageConfig,
    /// Who witnesses the log (`[logs.witnessing]`).
    #[serde(default)]
    pub witnessing: WitnessingConfig,
    /// Event mode (`docs/EVENTS.md`): the log takes audit events, sealed
    /// into `quire-event/v1` envelopes, instead of opaque entries. Fixed
    /// when the log is created.
    #[serde(default)]
    pub events: bool,
    /// Event mode: the payloads of events logged more than this many days
    /// ago are erased (by an erasure event, as on request); the envelopes
    /// and every proof stay. None: kept for ever.
    #[serde(default)]
    pub retention_days: Option<u64>,
    /// Event mode: keep the key map (`docs/EVENTS.md` §11) that proves
    /// searches by actor, action, resource and type complete; the server
    /// appends a map head event at most once a second while events
    /// arrive. Default true; ignored for logs of opaque entries.
    #[serde(default = "default_true")]
    pub key_map: bool,
}

/// The storage engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// The embedded default: one redb file per log in the data directory.
    #[default]
    Redb,
    /// PostgreSQL, at `url`: the logs' database, which PostgreSQL
    /// replicates and which several servers may share.
    Postgres,
}

/// How one log is stored.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The engine.
    #[serde(default)]
    pub engine: Engine,
    /// Compress entry bundles (LZ4) where it saves space.
    #[serde(default = "default_true")]
    pub compress: bool,
    /// The engine's page cache for this log, MiB (redb).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: usize,
    /// The database (PostgreSQL): a libpq URL, several hosts allowed, e.g.
    /// `postgres://quire@db1:5432,db2:5432/quire?target_session_attrs=read-write`.
    #[serde(default)]
    pub url: Option<String>,
    /// Connections for reads (PostgreSQL); the writer has its own.
    #[serde(default = "default_connections")]
    pub connections: usize,
    /// Deadline of each database call, milliseconds (PostgreSQL).
    #[serde(default = "default_db_timeout")]
    pub timeout_ms: u64,
    /// Deadline of opening a connection, milliseconds (PostgreSQL).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Synchronous standbys that must confirm each commit before it is
    /// acknowledged (PostgreSQL; default: one when the primary has any).
    #[serde(default)]
    pub sync_standbys: Option<u32>,
    /// Acknowledge commits the database does not replicate (PostgreSQL).
    #[serde(default)]
    pub allow_unreplicated: bool,
    /// The CA (PEM) the database's TLS certificate must chain to
    /// (PostgreSQL; default: the system's store).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Group commit: microseconds the sequencer gathers more requests
    /// before a commit, after a commit of at least `commit_siblings`
    /// requests (0: never). Default 500 on PostgreSQL, whose every commit
    /// costs the database a transaction; 0 on redb, where measured it
    /// gained nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_delay_us: Option<u64>,
    /// Requests of a commit that make the next one gather (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_siblings: Option<usize>,
}

impl StorageConfig {
    /// Group commit as configured, or the engine's default.
    pub fn group_commit(&self) -> crate::pacing::GroupCommit {
        let delay = match (self.commit_delay_us, self.engine) {
            (Some(us), _) => std::time::Duration::from_micros(us),
            (None, Engine::Postgres) => crate::pacing::PG_COMMIT_DELAY,
            (None, Engine::Redb) => std::time::Duration::ZERO,
        };
        crate::pacing::GroupCommit {
            delay,
            siblings: self
                .commit_siblings
                .unwrap_or(crate::pacing::COMMIT_SIBLINGS),
        }
    }

    /// How the PostgreSQL database is reached, when this is one.
    pub fn pg_options(&self) -> Option<crate::store::postgres::PgOptions> {
        let st = self;
        match (st.engine, &st.url) {
            (Engine::Postgres, Some(url)) => Some(crate::store::postgres::PgOptions {
                url: url.clone(),
                readers: st.connections,
                connect_timeout: std::time::Duration::from_millis(st.connect_timeout_ms),
                timeout: std::time::Duration::from_millis(st.timeout_ms),
                compress: st.compress,
                idle_in_transaction: None,
                sync_standbys: st.sync_standbys,
                allow_unreplicated: st.allow_unreplicated,
                ca_file: st.ca_file.clone(),
                leaf_flush: crate::store::postgres::DEFAULT_LEAF_FLUSH,
                leaf_fanout: crate::store::postgres::DEFAULT_LEAF_FANOUT,
            }),
            _ => None,
        }
    }
}

/// The longest group commit wait, microseconds (100 ms).
const MAX_COMMIT_DELAY_US: u64 = 100_000;

fn default_connections() -> usize {
    4
}
fn default_db_timeout() -> u64 {
    10_000
}
fn default_connect_timeout() -> u64 {
    5_000
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            engine: Engine::Redb,
            compress: true,
            cache_mib: default_cache_mib(),
            url: None,
            connections: default_connections(),
            timeout_ms: default_db_timeout(),
            connect_timeout_ms: default_connect_timeout(),
            sync_standbys: None,
            allow_unreplicated: false,
            ca_file: None,
            commit_delay_us: None,
            commit_siblings: None,
        }
    }
}

/// Keys of a log's table that moved into its `storage` and `witnessing`
/// tables, and where they are now: named in the refusal of an old file.
pub const MOVED_KEYS: &[(&str, &str)] = &[
    ("compress", "to `compress` in [logs.storage]"),
    ("cache_mib", "to `cache_mib` in [logs.storage]"),
    ("witnesses", "to [[logs.witnessing.witnesses]]"),
    ("witness_quorum", "to `quorum` in [logs.witnessing]"),
    ("witness_timeout_ms", "to `timeout_ms` in [logs.witnessing]"),
    ("witness_wait_ms", "to `wait_ms` in [logs.witnessing]"),
    ("witness_fail", "to `fail` in [logs.witnessing]"),
];

fn default_dedup() -> DedupPolicy {
    DedupPolicy::Strict
}
fn default_true() -> bool {
    true
}
fn default_entry() -> usize {
    LogLimits::default().max_entry_bytes
}
fn default_batch() -> usize {
    LogLimits::default().max_batch
}
fn default_queue() -> usize {
    LogLimits::default().queue_depth
}
fn default_cache() -> usize {
    LogLimits::default().dedup_cache_entries
}
fn default_cache_mib() -> usize {
    RedbOptions::default().cache_bytes >> 20
}

impl LogConfig {
    /// A log with default settings.
    pub fn new(origin: &str) -> Self {
        LogConfig {
            origin: origin.to_owned(),
            dedup: default_dedup(),
            max_entry_bytes: default_entry(),
            max_batch: default_batch(),
            queue_depth: default_queue(),
            dedup_cache_entries: default_cache(),
            storage: StorageConfig::default(),
            witnessing: WitnessingConfig::default(),
            events: false,
            retention_days: None,
            key_map: true,
        }
    }

    /// The witness policy, `None` without witnesses.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a bad key, URL or quorum.
    pub fn witness_policy(&self) -> Result<Option<WitnessPolicy>, ConfigError> {
        self.witnessing.policy(&self.origin)
    }

    /// How this log's redb file is opened.
    pub fn store_options(&self) -> RedbOptions {
        RedbOptions {
            compress: self.storage.compress,
            cache_bytes: self.storage.cache_mib.saturating_mul(1 << 20),
            // Filters pay for themselves only when every write looks up.
            leaf_filters: self.dedup == DedupPolicy::Strict,
            ..RedbOptions::default()
        }
    }

    /// How this log's PostgreSQL database is reached, when it is stored
    /// there.
    pub fn pg_options(&self) -> Option<crate::store::postgres::PgOptions> {
        self.storage.pg_options()
    }

    /// The limits this configuration sets.
    pub fn limits(&self) -> LogLimits {
        LogLimits {
            max_entry_bytes: self.max_entry_bytes,
            max_batch: self.max_batch,
            queue_depth: self.queue_depth,
            dedup_cache_entries: self.dedup_cache_entries,
            group_commit: self.storage.group_commit(),
            ..LogLimits::default()
        }
    }
}

impl LogConfig {
    /// Checks this log's values, and those that must fit the server's.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value and its bound.
    pub fn validate(&self, server: &Config) -> Result<(), ConfigError> {
        quire_core::Checkpoint::new(&self.origin, 0, quire_core::empty_root())
            .map_err(|e| ConfigError::Invalid(format!("log origin {:?}: {e}", self.origin)))?;
        if !quire_core::keys::is_valid_key_name(&self.origin) {
            return Err(ConfigError::Invalid(format!(
                "log origin {:?} must also be a valid key name: no spaces or '+'",
                self.origin
            )));
        }
        if let Some(days) = self.retention_days {
            if !self.events {
                return Err(ConfigError::Invalid(format!(
                    "log {:?}: retention_days applies to payloads of events: set events = true",
                    self.origin
                )));
            }
            if !(1..=36_500).contains(&days) {
                return Err(ConfigError::Invalid(format!(
                    "log {:?}: retention_days {days} must be 1 to 36500",
                    self.origin
                )));
            }
        }
        if self.events
            && server
                .replication
                .as_ref()
                .is_some_and(|r| r.token_file.is_none())
        {
            return Err(ConfigError::Invalid(format!(
                "log {:?}: event mode on a replicated formation needs [replication] token_file: the replicas present that token when they send events to the lease holder on behalf of their callers, and the holder records those callers as submitters only for it",
                self.origin
            )));
        }
        let max = crate::store::bundle::MAX_ENTRY_BYTES;
        if !(1..=max).contains(&self.max_entry_bytes) {
            return Err(ConfigError::Invalid(format!(
                "log {:?}: max_entry_bytes {} must be 1 to {max} (C2SP tlog-tiles entry bundles give each entry a 16-bit length)",
                self.origin, self.max_entry_bytes
            )));
        }
        if !(1..=100_000).contains(&self.max_batch) || !(1..=1_000_000).contains(&self.queue_depth)
        {
            return Err(ConfigError::Invalid(format!(
                "log {:?}: max_batch must be 1 to 100000 and queue_depth 1 to 1000000",
                self.origin
            )));
        }
        // The largest valid request must fit one message: a full batch
        // of the largest entries, with protobuf's few bytes per entry.
        let largest = self.max_batch.saturating_mul(self.max_entry_bytes + 8) + 1024;
        if server.max_message_bytes < largest {
            return Err(ConfigError::Invalid(format!(
                "max_message_bytes = {} is smaller than the largest valid request of log {:?} ({largest} bytes: max_batch {} of max_entry_bytes {}); raise it or lower those",
                server.max_message_bytes, self.origin, self.max_batch, self.max_entry_bytes
            )));
        }
        if self.witnessing.wait_ms + 1_000 > server.request_timeout_ms {
            return Err(ConfigError::Invalid(format!(
                "log {:?}: witnessing wait_ms = {} must be at least 1000 below request_timeout_ms = {}",
                self.origin, self.witnessing.wait_ms, server.request_timeout_ms
            )));
        }
        self.witness_policy()?;
        self.validate_storage()?;
        if self.dedup_cache_entries > 100_000_000 {
            return Err(ConfigError::Invalid(format!(
                "log {:?}: dedup_cache_entries {} exceeds 100000000",
                self.origin, self.dedup_cache_entries
            )));
        }
        Ok(())
    }
}

impl LogConfig {
    fn validate_storage(&self) -> Result<(), ConfigError> {
        let st = &self.storage;
        let bad = |why: String| {
            Err(ConfigError::Invalid(format!(
                "log {:?}: [logs.storage] {why}",
                self.origin
            )))
        };
        match (st.engine, &st.url) {
            (Engine::Postgres, None) => {
                return bad("engine = \"postgres\" needs url = \"postgres://…\"".into())
            }
            (Engine::Redb, Some(_)) => {
                return bad(
                    "url is for engine = \"postgres\"; redb keeps the log in the data directory"
                        .into(),
                )
            }
            (Engine::Postgres, Some(url)) => {
                if let Err(e) = url.parse::<tokio_postgres::Config>() {
                    return bad(format!(
                        "url does not parse as a PostgreSQL URL: {}",
                        quire_host::error::Report(&e)
                    ));
                }
            }
            (Engine::Redb, None) => {}
        }
        if !(1..=64).contains(&st.connections) {
            return bad(format!("connections = {} must be 1 to 64", st.connections));
        }
        for (what, v) in [
            ("timeout_ms", st.timeout_ms),
            ("connect_timeout_ms", st.connect_timeout_ms),
        ] {
            if !(100..=600_000).contains(&v) {
                return bad(format!("{what} = {v} must be 100 to 600000"));
            }
        }
        if let Some(us) = st.commit_delay_us.filter(|us| *us > MAX_COMMIT_DELAY_US) {
            return bad(format!(
                "commit_delay_us = {us} must be 0 to {MAX_COMMIT_DELAY_US} (every writer's answer waits that long)"
            ));
        }
        if let Some(n) = st.commit_siblings.filter(|n| !(1..=100_000).contains(n)) {
            return bad(format!("commit_siblings = {n} must be 1 to 100000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::config::tests::load;

    #[test]
    fn event_mode_and_retention_are_configured_per_log_and_checked() {
        let c = load("[[logs]]\norigin = \"ev.example/log\"\nevents = true\nretention_days = 90\n")
            .unwrap();
        assert!(c.logs[0].events);
        assert_eq!(c.logs[0].retention_days, Some(90));
        for (text, want) in [
            (
                "[[logs]]\norigin = \"a.example/log\"\nretention_days = 90\n",
                "set events = true",
            ),
            (
                "[[logs]]\norigin = \"a.example/log\"\nevents = true\nretention_days = 0\n",
                "must be 1 to 36500",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn group_commit_defaults_by_engine_and_is_bounded() {
        use crate::pacing::{GroupCommit, COMMIT_SIBLINGS, PG_COMMIT_DELAY};
        use std::time::Duration;
        let pg = "[[logs]]\norigin = \"a.example/log\"\n[logs.storage]\nengine = \"postgres\"\nurl = \"postgres://q@127.0.0.1/q\"\n";
        let c = load(pg).unwrap();
        assert_eq!(
            c.logs[0].limits().group_commit,
            GroupCommit {
                delay: PG_COMMIT_DELAY,
                siblings: COMMIT_SIBLINGS
            }
        );
        let c = load("[[logs]]\norigin = \"a.example/log\"\n").unwrap();
        assert_eq!(
            c.logs[0].limits().group_commit.wait(1_000),
            None,
            "redb never waits unless told"
        );
        let c = load(&format!("{pg}commit_delay_us = 0\n")).unwrap();
        assert_eq!(c.logs[0].limits().group_commit.wait(1_000), None);
        let c = load("[[logs]]\norigin = \"a.example/log\"\n[logs.storage]\ncommit_delay_us = 250\ncommit_siblings = 4\n").unwrap();
        assert_eq!(
            c.logs[0].limits().group_commit,
            GroupCommit {
                delay: Duration::from_micros(250),
                siblings: 4
            }
        );
        for (extra, want) in [
            (
                "commit_delay_us = 100001\n",
                "commit_delay_us = 100001 must be 0 to 100000",
            ),
            (
                "commit_siblings = 0\n",
                "commit_siblings = 0 must be 1 to 100000",
            ),
        ] {
            let e = load(&format!("{pg}{extra}")).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// A URL PostgreSQL's client refuses is named with the client's
    /// reason, not only "invalid connection string".
    #[test]
    fn a_bad_postgres_url_names_what_is_wrong() {
        let e = load("[[logs]]\norigin = \"a.example/log\"\n[logs.storage]\nengine = \"postgres\"\nurl = \"postgres://q@127.0.0.1/q?frobnicate=1\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not parse as a PostgreSQL URL"), "{e}");
        assert!(e.contains("frobnicate"), "{e}");
    }
}
