//! `[replication]`: how a server takes part as a replica of the logs it
//! shares with others in PostgreSQL (its name and address, the lease's
//! timers, the formation's database and key seed), checked before use.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// How this server takes part as a replica of the logs it shares with
/// others in PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// This server's name among the replicas (a random suffix is added at
    /// every start, so two processes never hold one lease).
    #[serde(default = "default_replica_name")]
    pub name: String,
    /// Where the other replicas reach this one for writes:
    /// `http://HOST:PORT`, the address of its gRPC face.
    pub advertise: String,
    /// How long a log's lease lasts without renewal, milliseconds.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    /// How often the holder renews it (and the others look for a new
    /// holder), milliseconds; at most a third of `lease_ms`.
    #[serde(default = "default_renew")]
    pub renew_ms: u64,
    /// How often each log is followed from storage, milliseconds.
    #[serde(default = "default_follow")]
    pub follow_ms: u64,
    /// A file holding the bearer token this replica presents when it
    /// sends a write on to the lease holder: under an access policy, a
    /// token granted `writer` on the shared logs (the caller was checked
    /// by the replica it reached first).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The formation's own database (`[replication.storage]`, PostgreSQL):
    /// it holds the catalog of the logs created through the admin service
    /// or by a family's rollover, which every replica serves, and stores
    /// the logs created without `like`. Without it, logs are configured
    /// in each replica's `[[logs]]` only.
    #[serde(default)]
    pub storage: Option<crate::config::StorageConfig>,
    /// A file holding the formation's key seed (32 random bytes, in hex or
    /// base64), the same on every replica: the keys of the logs the
    /// formation creates are derived from it and the origin
    /// ([`crate::formation`]), so every replica signs with the same keys
    /// and no private key is stored in the database.
    #[serde(default)]
    pub keys_seed_file: Option<PathBuf>,
}

fn default_replica_name() -> String {
    "quire".into()
}
fn default_lease() -> u64 {
    3_000
}
fn default_renew() -> u64 {
    1_000
}
fn default_follow() -> u64 {
    100
}

impl ReplicationConfig {
    /// A replica reached at `advertise`, with the defaults.
    pub fn new(advertise: &str) -> Self {
        ReplicationConfig {
            name: default_replica_name(),
            advertise: advertise.to_owned(),
            lease_ms: default_lease(),
            renew_ms: default_renew(),
            follow_ms: default_follow(),
            token_file: None,
            storage: None,
            keys_seed_file: None,
        }
    }

    /// Checks the values against each other.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the value and its bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: String| Err(ConfigError::Invalid(format!("[replication] {why}")));
        if !self.advertise.starts_with("http://") {
            return bad(format!(
                "advertise = {:?} must be http://HOST:PORT (TLS between replicas is not supported yet)",
                self.advertise
            ));
        }
        if !(300..=60_000).contains(&self.lease_ms) {
            return bad(format!("lease_ms = {} must be 300 to 60000", self.lease_ms));
        }
        if self.renew_ms == 0 || self.renew_ms.saturating_mul(3) > self.lease_ms {
            return bad(format!(
                "renew_ms = {} must be 1 to a third of lease_ms ({})",
                self.renew_ms, self.lease_ms
            ));
        }
        if !(10..=10_000).contains(&self.follow_ms) {
            return bad(format!(
                "follow_ms = {} must be 10 to 10000",
                self.follow_ms
            ));
        }
        if self.name.is_empty() || self.name.len() > 200 {
            return bad("name must be 1 to 200 bytes".into());
        }
        if let Some(st) = &self.storage {
            if st.pg_options().is_none() {
                return bad(
                    "[replication.storage] must be a PostgreSQL database: engine = \"postgres\" and its url".into(),
                );
            }
        }
        Ok(())
    }

    /// Whether this formation can create logs (for `what`, in the
    /// refusal): it needs its own database and its key seed.
    ///
    /// # Errors
    /// What is missing, in words.
    pub fn may_create(&self, what: &str) -> Result<(), String> {
        match (&self.storage, &self.keys_seed_file) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(format!(
                "{what}: a replicated formation creates logs only with [replication.storage] (the formation's PostgreSQL database, where its catalog of created logs is kept) and [replication] keys_seed_file (the seed their keys are derived from, the same file on every replica)"
            )),
        }
    }

    /// The replica token of `token_file`, if one is configured.
    ///
    /// # Errors
    /// A token file that cannot be read.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        match &self.token_file {
            Some(p) => {
                let text = quire_host::read_bounded_text(p, 64 * 1024)
                    .map_err(quire_host::config::FileError::from)?;
                Ok(Some(text.trim().to_owned()))
            }
            None => Ok(None),
        }
    }

    /// The replica options of this process (`holder` made unique), taking
    /// answers from the lease holder up to `max_message_bytes` (the
    /// server's own limit).
    ///
    /// # Errors
    /// A token file that cannot be read.
    pub fn options(
        &self,
        max_message_bytes: usize,
    ) -> Result<crate::replica::ReplicaOptions, ConfigError> {
        let token = self.token()?;
        let nonce: u64 = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u32(std::process::id());
            h.finish()
        };
        Ok(crate::replica::ReplicaOptions {
            holder: format!("{}/{nonce:016x}", self.name),
            address: self.advertise.clone(),
            lease: std::time::Duration::from_millis(self.lease_ms),
            renew_every: std::time::Duration::from_millis(self.renew_ms),
            follow_every: std::time::Duration::from_millis(self.follow_ms),
            token,
            max_message_bytes,
        })
    }
}
