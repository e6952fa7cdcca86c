//! The admin domain: creating logs, freezing them, and the access policy
//! file, each allowed by the admin role ([`crate::access`]) and recorded
//! in the server's audit log when it has one. Its faces are thin: the
//! `quire.v1.Admin` gRPC service ([`service`]) and `quire admin …`.
//!
//! - Create: a log of a new origin, with the settings of the defaults or
//!   of a log `like` it, keys generated or imported; served at once and,
//!   through the [`catalog`], after every restart.
//! - Freeze: ACTIVE → DRAINING → FROZEN ([`crate::lifecycle`]).
//! - Access: the policy file read and replaced whole, compare-and-swap by
//!   its SHA-256, checked whole before it is written, in force before the
//!   answer.
//!
//! On a replicated formation ([`formation`]), a log is created in the
//! formation's database and catalog with keys derived from its seed, and
//! every replica serves it; a freeze taken by any replica is made by the
//! lease holder.
//!
//! Out of scope so far: deleting logs.

pub mod catalog;
pub mod formation;
pub mod service;

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::access::{AccessControl, Policy, MAX_POLICY_BYTES};
use crate::api::{ApiError, Caller, LogApi, LogState, LogSummary};
use crate::config::{Config, LogConfig};
use crate::log::Log;
use crate::store::Storage;
use catalog::Catalog;

/// Opens (creating) a log of the given settings, as the server's start
/// does.
pub type Opener<S> = Arc<dyn Fn(&LogConfig) -> anyhow::Result<Log<S>> + Send + Sync>;

/// The pseudo-origin of "every log": the admin role on it (a grant of
/// `logs = ["*"]`) is what changing the access policy needs.
pub const EVERY_LOG: &str = "*";

/// The admin domain of one server. Cheap to clone.
pub struct Admin<S: Storage> {
    api: LogApi<S>,
    config: Arc<Config>,
    catalog: Catalog,
    opener: Option<Opener<S>>,
    access: Option<AccessControl>,
    /// One change (a creation, a policy write) at a time.
    changes: Arc<tokio::sync::Mutex<()>>,
    /// The settings of every log served, for `like`.
    settings: Arc<Mutex<Vec<LogConfig>>>,
    /// The formation this server is a replica of, when it creates logs.
    formation: Option<formation::Formation>,
}

impl<S: Storage> Clone for Admin<S> {
    fn clone(&self) -> Self {
        Admin {
            api: self.api.clone(),
            config: Arc::clone(&self.config),
            catalog: self.catalog.clone(),
            opener: self.opener.clone(),
            access: self.access.clone(),
            changes: Arc::clone(&self.changes),
            settings: Arc::clone(&self.settings),
            formation: self.formation.clone(),
        }
    }
}

/// A log created.
#[derive(Clone, Debug)]
pub struct Created {
    /// The log as listed.
    pub log: LogSummary,
    /// Whether its keys were generated (else imported).
    pub keys_generated: bool,
}

/// The access policy file.
#[derive(Clone, Debug)]
pub struct PolicyText {
    /// Its bytes.
    pub text: Vec<u8>,
    /// Their SHA-256.
    pub sha256: [u8; 32],
}

impl<S: Storage> Admin<S> {
    /// The admin domain over `api`, the logs of `config` (the catalog's
    /// included), creating logs with `opener` when given.
    pub fn new(
        api: LogApi<S>,
        config: Config,
        opener: Option<Opener<S>>,
        access: Option<AccessControl>,
    ) -> Self {
        let settings = config.logs.clone();
        Admin {
            api,
            catalog: Catalog::of(&config.data_dir),
            config: Arc::new(config),
            opener,
            access,
            changes: Arc::default(),
            settings: Arc::new(Mutex::new(settings)),
            formation: None,
        }
    }

    /// Whether it creates logs on a formation ([`Self::with_formation`]).
    pub fn creates_in_formation(&self) -> bool {
        self.formation.is_some()
    }

    /// Creates logs on the formation `f`: recorded in its catalog, keys
    /// derived from its seed ([`formation`]).
    #[must_use]
    pub fn with_formation(mut self, f: formation::Formation) -> Self {
        self.formation = Some(f);
        self
    }

    fn settings_of(&self, origin: &str) -> Option<LogConfig> {
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|l| l.origin == origin)
            .cloned()
    }

    fn note(&self, caller: Option<&Caller>, log: Option<&str>, what: String) {
        if let Some(c) = caller {
            tracing::info!(caller = %c, log = log.unwrap_or(EVERY_LOG), "admin: {what}");
        } else {
            tracing::info!(log = log.unwrap_or(EVERY_LOG), "{what}");
        }
        if let Some(a) = &self.access {
            a.note_admin(caller, log, what);
        }
    }

    /// Creates the log `origin` with the settings of the log `like` (empty:
    /// the defaults) and the keys `keys` (empty: generated) and serves it.
    ///
    /// # Errors
    /// A refusal of the access policy (the admin role on `origin`, and on
    /// `like`); [`ApiError::Invalid`] for an origin or keys that cannot be
    /// used; [`ApiError::Exists`] for a log served already or one whose
    /// files are there; [`ApiError::Precondition`] on a server that cannot
    /// create logs (a replicated formation); [`ApiError::Internal`] when
    /// opening or recording it failed (then it is not served).
    pub async fn create(
        &self,
        caller: &Caller,
        origin: &str,
        like: &str,
        keys: Vec<String>,
    ) -> Result<Created, ApiError> {
        self.api.may_administer(caller, origin)?;
        let cfg = if like.is_empty() {
            match &self.formation {
                Some(f) => f.new_log(origin),
                None => LogConfig::new(origin),
            }
        } else {
            self.api.administered(caller, like)?;
            let mut cfg = self.settings_of(like).ok_or_else(|| {
                ApiError::NotFound(format!("no settings of log {like:?} to take"))
            })?;
            origin.clone_into(&mut cfg.origin);
            cfg
        };
        cfg.validate(&self.config)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        let Some(opener) = self.opener.clone() else {
            return Err(ApiError::Precondition(
                "this server cannot create logs".into(),
            ));
        };
        let generated = keys.is_empty();
        let log = if let Some(rep) = &self.config.replication {
            let Some(f) = self.formation.clone() else {
                return Err(ApiError::Precondition(
                    rep.may_create("this server is one replica of a formation ([replication])")
                        .err()
                        .unwrap_or_else(|| "this formation's catalog is not open".into()),
                ));
            };
            if !generated {
                return Err(ApiError::Invalid(
                    "a formation derives the keys of the logs it creates from its keys_seed_file; to serve a log with imported keys, configure it in every replica's [[logs]] with its key files".into(),
                ));
            }
            let _one = self.changes.lock().await;
            self.create_in_formation(&f, opener, cfg, false).await?
        } else {
            let _one = self.changes.lock().await;
            self.check_new(origin, false)?;
            self.open_new(opener, cfg, keys).await?
        };
        let summary = self.api.summary(&log);
        self.note(
            Some(caller),
            Some(origin),
            format!(
                "created log {origin:?} ({}, keys {})",
                if like.is_empty() {
                    "default settings".to_owned()
                } else {
                    format!("settings of {like:?}")
                },
                if generated { "generated" } else { "imported" }
            ),
        );
        Ok(Created {
            log: summary,
            keys_generated: generated,
        })
    }

    /// Opens the new log `cfg` (importing `keys`, or generating them),
    /// records it in the catalog and serves it. The caller holds
    /// `changes` and checked the origin.
    async fn open_new(
        &self,
        opener: Opener<S>,
        cfg: LogConfig,
        keys: Vec<String>,
    ) -> Result<Log<S>, ApiError> {
        let origin = cfg.origin.clone();
        let keys_dir = self.config.data_dir.join("keys");
        let generated = keys.is_empty();
        if !generated {
            crate::keyfile::import(&keys_dir, &origin, &keys).map_err(ApiError::Invalid)?;
        }
        let outcome = {
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || opener(&cfg))
                .await
                .map_err(|e| ApiError::Internal(format!("opening the new log: {e}")))?
        };
        let log = match outcome {
            Ok(log) => log,
            Err(e) => {
                if !generated {
                    // Written by this call: a retry may import them again.
                    for p in crate::keyfile::paths(&keys_dir, &origin) {
                        let _ = std::fs::remove_file(p);
                    }
                }
                return Err(ApiError::Internal(format!(
                    "creating log {origin:?}: {e:#}"
                )));
            }
        };
        if let Err(e) = self.catalog.add(&cfg) {
            let closing = log.clone();
            let _ = tokio::task::spawn_blocking(move || closing.close()).await;
            return Err(ApiError::Internal(format!(
                "log {origin:?} was created but could not be recorded, so it is not served: {e}"
            )));
        }
        self.serve_new(&log, cfg)?;
        Ok(log)
    }

    /// Serves the new log `log` of settings `cfg`.
    fn serve_new(&self, log: &Log<S>, cfg: LogConfig) -> Result<(), ApiError> {
        let witnesses = cfg
            .witness_policy()
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        self.api.add_log(log.clone(), witnesses)?;
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(cfg);
        Ok(())
    }

    /// The log API it administers.
    pub fn api(&self) -> &LogApi<S> {
        &self.api
    }

    /// Creates the shard `cfg` of the family `family` (the server's own
    /// rollover: no caller, recorded as the server's action). A shard whose
    /// files are there already (a creation interrupted before it was
    /// recorded) is opened and recorded; one served already is no change.
    ///
    /// # Errors
    /// As [`Self::create`] past the access check.
    pub async fn create_shard(&self, cfg: LogConfig, family: &str) -> Result<(), ApiError> {
        let Some(opener) = self.opener.clone() else {
            return Err(ApiError::Precondition(
                "this server cannot create logs".into(),
            ));
        };
        let _one = self.changes.lock().await;
        if self.api.get(&cfg.origin).is_some() {
            return Ok(());
        }
        let origin = cfg.origin.clone();
        if let Some(f) = self.formation.clone() {
            // Another replica may have created it: then it is served here.
            match self
                .create_in_formation(&f, opener.clone(), cfg.clone(), false)
                .await
            {
                Err(ApiError::Exists(_)) => {
                    self.create_in_formation(&f, opener, cfg, true).await?;
                    return Ok(());
                }
                other => other?,
            };
        } else {
            self.check_new(&cfg.origin, true)?;
            self.open_new(opener, cfg, Vec::new()).await?;
        }
        self.note(
            None,
            Some(&origin),
            format!("rollover: created shard {origin:?} of family {family:?}"),
        );
        Ok(())
    }

    /// Freezes the shard `log`, whose period is over (the server's own
    /// rollover).
    ///
    /// # Errors
    /// The freeze's [`crate::log::WriteError`].
    pub async fn freeze_shard(&self, log: &Log<S>) -> Result<(), ApiError> {
        let frozen = match log.freeze().await {
            Ok(f) => f,
            // A replica that knows no lease holder yet (a formation
            // starting): the holder freezes it, or this replica once it
            // knows one; a later tick asks again.
            Err(crate::log::WriteError::NotSequencing { .. }) if log.is_follower() => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.note(
            None,
            Some(log.origin()),
            format!(
                "rollover: froze shard {:?} at size {} (its period is over; frozen at {} ms)",
                log.origin(),
                log.latest().stored.size,
                frozen.at_ms
            ),
        );
        Ok(())
    }

    /// Drops the entries of the frozen shard `log`, whose period ended
    /// longer ago than its family keeps entries (the server's own
    /// retention; [`LogApi::drop_entries`]), noting it in the audit trail.
    ///
    /// # Errors
    /// [`crate::api::DropError`] naming what keeps them.
    pub async fn drop_shard_entries(
        &self,
        log: &Log<S>,
        now_ms: u64,
        days: u32,
    ) -> Result<(), crate::api::DropError> {
        let d = self.api.drop_entries(log, now_ms).await?;
        self.note(
            None,
            Some(log.origin()),
            format!(
                "retention: dropped the entries of frozen shard {:?} (size {}; its period ended over {days} days ago); tiles, checkpoints and cosignatures kept",
                log.origin(),
                d.size
            ),
        );
        Ok(())
    }

    /// Refuses an origin that is served, or whose files (keys, high-water
    /// record, database) are there unless `adopt`, or that would share its
    /// files' names with a log served.
    fn check_new(&self, origin: &str, adopt: bool) -> Result<(), ApiError> {
        if self.api.get(origin).is_some() {
            return Err(ApiError::Exists(format!(
                "log {origin:?} exists already on this server"
            )));
        }
        let slug = crate::keyfile::slug(origin);
        if let Some(other) = self
            .api
            .logs()
            .into_iter()
            .find(|l| crate::keyfile::slug(l.origin()) == slug)
        {
            return Err(ApiError::Exists(format!(
                "log {origin:?} would be stored under the same file names ({slug}) as log {:?}; choose another origin",
                other.origin()
            )));
        }
        let hw_dir = self
            .config
            .high_water_dir()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut files = crate::keyfile::paths(&self.config.data_dir.join("keys"), origin).to_vec();
        files.push(crate::open::high_water_path(&hw_dir, origin));
        files.push(crate::open::redb_path(&self.config.data_dir, origin));
        if let Some(f) = files.iter().find(|f| !adopt && f.exists()) {
            return Err(ApiError::Exists(format!(
                "log {origin:?} is not served but its files are here ({}): it existed before; add it back to the configuration's [[logs]] to serve it",
                f.display()
            )));
        }
        Ok(())
    }

    /// Freezes the log `origin` ([`Log::freeze`]); returns it as listed
    /// and whether it changed.
    ///
    /// # Errors
    /// A refusal of the access policy (the admin role on the log); the
    /// server's audit log ([`ApiError::Precondition`]: it must take the
    /// records); the freeze's [`crate::log::WriteError`].
    pub async fn freeze(
        &self,
        caller: &Caller,
        origin: &str,
    ) -> Result<(LogSummary, bool), ApiError> {
        let log = self.api.administered(caller, origin)?;
        if self.config.audit_log.as_deref() == Some(log.origin()) {
            return Err(ApiError::Precondition(format!(
                "log {:?} is this server's audit log and must take its records: set another audit_log first",
                log.origin()
            )));
        }
        let was = log.state().0;
        let frozen = log.freeze().await?;
        let changed = was != LogState::Frozen;
        if changed {
            self.note(
                Some(caller),
                Some(log.origin()),
                format!(
                    "froze log {:?} at size {} (frozen at {} ms)",
                    log.origin(),
                    log.latest().stored.size,
                    frozen.at_ms
                ),
            );
        }
        Ok((self.api.summary(&log), changed))
    }

    fn policy_file(&self, caller: &Caller) -> Result<&AccessControl, ApiError> {
        self.api.may_administer(caller, EVERY_LOG)?;
        self.access.as_ref().ok_or_else(|| {
            ApiError::Precondition(
                "this server has no access policy: set `access` in its configuration first".into(),
            )
        })
    }

    /// The access policy file as it is now.
    ///
    /// # Errors
    /// A refusal of the access policy (the admin role on every log); no
    /// policy configured ([`ApiError::Precondition`]); a file that cannot
    /// be read.
    pub fn access(&self, caller: &Caller) -> Result<PolicyText, ApiError> {
        let access = self.policy_file(caller)?;
        read_policy(access)
    }

    /// Replaces the access policy file with `text` when its SHA-256 is
    /// `replaces` (or whatever it is, when `None`), and puts it in force.
    ///
    /// # Errors
    /// As [`Self::access`]; [`ApiError::Invalid`] for a policy that is not
    /// valid whole (nothing is written); [`ApiError::Precondition`] when
    /// the file changed since `replaces`; [`ApiError::Internal`] for I/O.
    pub async fn set_access(
        &self,
        caller: &Caller,
        text: Vec<u8>,
        replaces: Option<[u8; 32]>,
    ) -> Result<[u8; 32], ApiError> {
        let access = self.policy_file(caller)?.clone();
        if text.len() as u64 > MAX_POLICY_BYTES {
            return Err(ApiError::Invalid(format!(
                "the policy is {} bytes; the limit is {MAX_POLICY_BYTES}",
                text.len()
            )));
        }
        let _one = self.changes.lock().await;
        let result = tokio::task::spawn_blocking(move || -> Result<[u8; 32], ApiError> {
            let now = read_policy(&access)?;
            if let Some(expected) = replaces {
                if expected != now.sha256 {
                    return Err(ApiError::Precondition(format!(
                        "the policy changed since it was read (its SHA-256 is now {}): read it again and redo the change",
                        quire_core::Hash(now.sha256)
                    )));
                }
            }
            Policy::validate(access.path(), &text).map_err(ApiError::Invalid)?;
            quire_host::write_replacing(access.path(), &text).map_err(|e| {
                ApiError::Internal(format!("writing {}: {e}", access.path().display()))
            })?;
            access.reload().map_err(|e| {
                ApiError::Precondition(format!(
                    "the policy was written but not taken (the previous one stays in force): {e}"
                ))
            })?;
            Ok(Sha256::digest(&text).into())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?;
        let sha = result?;
        self.note(
            Some(caller),
            None,
            format!(
                "replaced the access policy {} (sha256 {})",
                self.access
                    .as_ref()
                    .map_or_else(String::new, |a| a.path().display().to_string()),
                quire_core::Hash(sha)
            ),
        );
        Ok(sha)
    }
}

fn read_policy(access: &AccessControl) -> Result<PolicyText, ApiError> {
    let text = quire_host::read_bounded(access.path(), MAX_POLICY_BYTES)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let sha256 = Sha256::digest(&text).into();
    Ok(PolicyText { text, sha256 })
}
