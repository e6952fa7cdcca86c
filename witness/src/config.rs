//! Witness configuration: a TOML file.
//!
//! ```toml
//! name = "witness.example/w1"        # the witness's key name
//! listen = "127.0.0.1:7410"          # gRPC (quire.v1.Witness)
//! http_listen = "127.0.0.1:7411"     # optional: C2SP add-checkpoint + /metrics
//! data_dir = "quire-witness-data"    # state and key (created on first start)
//! poll_interval_ms = 1000            # pull mode: how often to ask each log
//! gossip_interval_ms = 1000          # how often to tell every peer everything
//! request_timeout_ms = 2000          # each call to a log or a peer
//!
//! [[logs]]
//! origin = "audit.example.com/prod/2026"
//! keys = ["audit.example.com/prod/2026+1234abcd+Ab…"]   # C2SP vkeys
//! url = "http://127.0.0.1:7400"      # optional: poll it, ask it for proofs
//!
//! [[peers]]
//! url = "http://127.0.0.1:7420"
//! key = "witness.example/w2+89abcdef+BC…"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quire_core::{KeyType, VerifierKey};
use serde::Deserialize;

/// Largest configuration file read, checked before parsing.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// Most logs one witness is configured for.
pub const MAX_LOGS: usize = 100_000;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// The witness's key name (C2SP key name rules).
    pub name: String,
    /// gRPC address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// C2SP HTTP address (also serves `GET /metrics`), when set.
    #[serde(default)]
    pub http_listen: Option<SocketAddr>,
    /// Where the state and the key live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Pull mode: milliseconds between polls of each log with a `url`.
    #[serde(default = "default_interval")]
    pub poll_interval_ms: u64,
    /// Milliseconds between full gossip rounds to every peer.
    #[serde(default = "default_interval")]
    pub gossip_interval_ms: u64,
    /// Deadline of each call to a log or a peer, milliseconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// The logs witnessed.
    #[serde(default)]
    pub logs: Vec<LogEntryConfig>,
    /// Other witnesses to gossip with.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
}

/// One witnessed log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntryConfig {
    /// Origin line of its checkpoints.
    pub origin: String,
    /// Its verifier keys (vkeys).
    pub keys: Vec<String>,
    /// Its gRPC address, for pull mode and consistency proofs.
    #[serde(default)]
    pub url: Option<String>,
}

/// One gossip peer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its gRPC address.
    pub url: String,
    /// Its cosignature/v1 verifier key.
    pub key: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7410))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("quire-witness-data")
}
fn default_interval() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    2000
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (missing, not a regular file, or over
    /// [`MAX_CONFIG_BYTES`] counted as read), or is not valid TOML for this
    /// schema.
    #[error(transparent)]
    File(#[from] quire_host::config::FileError),
    /// A value out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A witnessed log, ready to use.
#[derive(Debug, Clone)]
pub struct WitnessedLog {
    /// Origin.
    pub origin: String,
    /// Keys that sign its checkpoints.
    pub keys: Vec<VerifierKey>,
    /// Where to reach it.
    pub url: Option<String>,
}

/// A peer, ready to use.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Where to reach it.
    pub url: String,
    /// Its cosignature key.
    pub key: VerifierKey,
}

impl WitnessConfig {
    /// A configuration with defaults, no logs and no peers.
    pub fn new(name: &str, data_dir: &Path) -> Self {
        WitnessConfig {
            name: name.to_owned(),
            listen: default_listen(),
            http_listen: None,
            data_dir: data_dir.to_owned(),
            poll_interval_ms: default_interval(),
            gossip_interval_ms: default_interval(),
            request_timeout_ms: default_timeout(),
            logs: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Reads and validates a file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: WitnessConfig = quire_host::config::load_toml(path, MAX_CONFIG_BYTES, &[])?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values and parses the keys.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value.
    pub fn validate(&self) -> Result<(Vec<WitnessedLog>, Vec<Peer>), ConfigError> {
        if !quire_core::keys::is_valid_key_name(&self.name) {
            return Err(ConfigError::Invalid(format!(
                "name {:?} is not a valid key name (no spaces, '+' or newlines)",
                self.name
            )));
        }
        for (what, v) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("gossip_interval_ms", self.gossip_interval_ms),
            ("request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(10..=3_600_000).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "{what} = {v}: must be 10 to 3600000"
                )));
            }
        }
        if self.logs.len() > MAX_LOGS {
            return Err(ConfigError::Invalid(format!(
                "{} logs configured; the limit is {MAX_LOGS}",
                self.logs.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        let mut logs = Vec::with_capacity(self.logs.len());
        for l in &self.logs {
            if !seen.insert(l.origin.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "log {:?} is configured twice",
                    l.origin
                )));
            }
            if l.keys.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "log {:?} has no keys",
                    l.origin
                )));
            }
            let keys = l
                .keys
                .iter()
                .map(|k| {
                    let key = VerifierKey::parse(k).map_err(|e| {
                        ConfigError::Invalid(format!("log {:?}: key {k:?}: {e}", l.origin))
                    })?;
                    if key.key_type() == KeyType::CosignatureV1 {
                        return Err(ConfigError::Invalid(format!(
                            "log {:?}: key {k:?} is a witness key, not a log key",
                            l.origin
                        )));
                    }
                    Ok(key)
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(u) = l.url.as_deref().filter(|u| !u.starts_with("http://")) {
                return Err(ConfigError::Invalid(format!(
                    "log {:?}: address {u:?} must start with http:// \
                     (TLS to logs is not supported yet)",
                    l.origin
                )));
            }
            logs.push(WitnessedLog {
                origin: l.origin.clone(),
                keys,
                url: l.url.clone(),
            });
        }
        let peers = self
            .peers
            .iter()
            .map(|p| {
                let key = VerifierKey::parse(&p.key)
                    .map_err(|e| ConfigError::Invalid(format!("peer {}: key: {e}", p.url)))?;
                if key.key_type() != KeyType::CosignatureV1 {
                    return Err(ConfigError::Invalid(format!(
                        "peer {}: key is not a cosignature/v1 witness key",
                        p.url
                    )));
                }
                if !p.url.starts_with("http://") {
                    return Err(ConfigError::Invalid(format!(
                        "peer address {:?} must start with http:// \
                         (TLS to peers is not supported yet)",
                        p.url
                    )));
                }
                Ok(Peer {
                    url: p.url.clone(),
                    key,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((logs, peers))
    }

    /// Deadline of one outgoing call.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
