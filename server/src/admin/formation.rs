//! Creating logs on a replicated formation ([`crate::formation`]): a log
//! created on one replica (through `CreateLog`, or a family's rollover) is
//! recorded in the formation's catalog, then opened in the formation's
//! database with keys derived from the key seed and served; every other replica
//! finds it in the catalog within [`crate::formation::CATALOG_EVERY`],
//! derives the same keys, checks them against the recorded verifier keys,
//! and serves it too (as a replica: the lease decides who sequences).

use std::sync::Arc;

use super::{Admin, Opener};
use crate::api::ApiError;
use crate::config::{Config, LogConfig};
use crate::formation::{vkeys, KeySeed};
use crate::log::Log;
use crate::store::postgres::catalog::{CatalogRow, PgCatalog};
use crate::store::Storage;

/// What a formation's replicas share to create logs.
#[derive(Clone)]
pub struct Formation {
    catalog: PgCatalog,
    seed: Arc<KeySeed>,
    /// The storage of logs created without `like`.
    storage: crate::config::StorageConfig,
}

impl Formation {
    /// The formation `config` takes part in, when it creates logs
    /// (`[replication.storage]` and `keys_seed_file` set).
    ///
    /// # Errors
    /// A seed file that cannot be used; a database URL that does not
    /// parse.
    pub fn of(config: &Config) -> anyhow::Result<Option<Self>> {
        let Some(rep) = &config.replication else {
            return Ok(None);
        };
        let (Some(storage), Some(seed)) = (&rep.storage, &rep.keys_seed_file) else {
            return Ok(None);
        };
        let Some(opts) = storage.pg_options() else {
            anyhow::bail!("[replication.storage] must be a PostgreSQL database");
        };
        Ok(Some(Formation {
            catalog: PgCatalog::new(&opts)
                .map_err(|e| anyhow::anyhow!("[replication.storage]: {e}"))?,
            seed: Arc::new(KeySeed::load(seed).map_err(anyhow::Error::msg)?),
            storage: storage.clone(),
        }))
    }

    /// The settings of a log created without `like`.
    pub fn new_log(&self, origin: &str) -> LogConfig {
        let mut cfg = LogConfig::new(origin);
        cfg.storage = self.storage.clone();
        cfg
    }
}

/// The settings of the catalog row of `origin`: a `[[logs]]` table of at
/// most [`crate::store::postgres::catalog::MAX_ROW_BYTES`], naming that
/// origin (checked as configuration by the caller).
///
/// # Errors
/// In words: too long, not TOML of a log's settings, another origin.
pub fn parse_settings(origin: &str, text: &str) -> Result<LogConfig, String> {
    let max = crate::store::postgres::catalog::MAX_ROW_BYTES;
    if text.len() > max {
        return Err(format!(
            "its settings in the catalog are {} bytes; the limit is {max}",
            text.len()
        ));
    }
    let cfg: LogConfig = toml::from_str(text)
        .map_err(|e| format!("its settings in the catalog do not parse: {e}"))?;
    if cfg.origin != origin {
        return Err(format!(
            "its settings in the catalog name log {:?}",
            cfg.origin
        ));
    }
    Ok(cfg)
}

fn internal(what: &str) -> impl Fn(crate::store::StoreError) -> ApiError + '_ {
    move |e| ApiError::Internal(format!("{what}: {e}"))
}

impl<S: Storage> Admin<S> {
    /// Creates the log `cfg` on the formation `f` (the caller checked the
    /// access and holds `changes`), or, when `adopt`, serves one the
    /// catalog holds already. Returns the log served.
    pub(super) async fn create_in_formation(
        &self,
        f: &Formation,
        opener: Opener<S>,
        cfg: LogConfig,
        adopt: bool,
    ) -> Result<Log<S>, ApiError> {
        let origin = cfg.origin.clone();
        if cfg.pg_options().is_none() {
            return Err(ApiError::Invalid(format!(
                "log {origin:?}: a formation's logs are shared by its replicas, so they are stored in PostgreSQL; take the settings of such a log (like) or none ([replication.storage])"
            )));
        }
        let catalog = f.catalog.clone();
        let rows = tokio::task::spawn_blocking(move || catalog.rows())
            .await
            .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
            .map_err(internal("reading the formation's catalog"))?;
        let known = rows.into_iter().find(|r| r.origin == origin);
        if known.is_some() && !adopt {
            return Err(ApiError::Exists(format!(
                "log {origin:?} was created on this formation already; every replica serves it within {:?}",
                crate::formation::CATALOG_EVERY
            )));
        }
        // Files of this origin here are adopted: its keys are the seed's
        // (checked below), and a creation that failed before its row was
        // written is finished by asking again.
        self.check_new(&origin, true)?;
        let signers = f.seed.derive(&origin).map_err(ApiError::Invalid)?;
        let derived = vkeys(&signers);
        if let Some(row) = &known {
            if row.vkeys != derived {
                return Err(ApiError::Precondition(format!(
                    "log {origin:?}: the keys this replica derives are not the ones the formation's catalog records for it, so it does not serve the log: its keys_seed_file is not the formation's"
                )));
            }
        }
        if known.is_none() {
            // Recorded before it is opened: a creation that fails past
            // this point is finished by whichever replica reads the
            // catalog next (this one included), and nothing opened here is
            // left running for a log no row names.
            let settings = toml::to_string(&cfg)
                .map_err(|e| ApiError::Internal(format!("writing the settings: {e}")))?;
            let row = CatalogRow {
                origin: origin.clone(),
                settings,
                vkeys: derived.clone(),
                created_ms: i64::try_from(crate::batch::now_ms()).unwrap_or(i64::MAX),
            };
            let catalog = f.catalog.clone();
            let stored = tokio::task::spawn_blocking(move || catalog.add(&row))
                .await
                .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
                .map_err(internal("recording the log"))?;
            // Two replicas creating one origin at once: one row wins; the
            // keys are the seed's either way.
            if stored.vkeys != derived {
                return Err(ApiError::Precondition(format!(
                    "log {origin:?} was recorded by another replica with other keys: this replica's keys_seed_file is not the formation's"
                )));
            }
        }
        self.key_files(&origin, &signers)?;
        let log = self.open_log(opener, &cfg).await.map_err(|e| match e {
            ApiError::Internal(m) => ApiError::Internal(format!(
                "{m}; the log is in the formation's catalog, and every replica tries to serve it again within {:?}",
                crate::formation::CATALOG_EVERY
            )),
            other => other,
        })?;
        self.serve_new(&log, cfg)?;
        Ok(log)
    }

    /// Writes the derived keys of `origin` as its key files, or checks the
    /// files there are those keys.
    fn key_files(&self, origin: &str, signers: &[quire_core::LogSigner]) -> Result<(), ApiError> {
        let dir = self.config.data_dir.join("keys");
        let paths = crate::keyfile::paths(&dir, origin);
        let there = paths.iter().filter(|p| p.exists()).count();
        if there == 0 {
            let texts: Vec<String> = signers
                .iter()
                .map(|s| s.to_private_text().to_string())
                .collect();
            return crate::keyfile::import(&dir, origin, &texts).map_err(ApiError::Internal);
        }
        let (held, _) = crate::keyfile::load_or_create(&dir, origin, false)
            .map_err(|e| ApiError::Precondition(format!("{e:#}")))?;
        if vkeys(&held) != vkeys(signers) {
            return Err(ApiError::Precondition(format!(
                "log {origin:?}: the key files in {} are not the keys the formation's seed gives: this replica's keys_seed_file is not the formation's, or the files are another log's",
                dir.display()
            )));
        }
        Ok(())
    }

    /// Opens `cfg` with `opener` off the runtime's workers.
    async fn open_log(&self, opener: Opener<S>, cfg: &LogConfig) -> Result<Log<S>, ApiError> {
        let origin = cfg.origin.clone();
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || opener(&cfg))
            .await
            .map_err(|e| ApiError::Internal(format!("opening the new log: {e}")))?
            .map_err(|e| ApiError::Internal(format!("opening log {origin:?}: {e:#}")))
    }

    /// Serves the logs of the formation's catalog that this replica does
    /// not serve yet; returns their origins, and each log it could not
    /// serve with why.
    ///
    /// # Errors
    /// The catalog cannot be read.
    pub async fn adopt_formation_logs(&self) -> Result<Adopted, ApiError> {
        let (Some(f), Some(opener)) = (self.formation.clone(), self.opener.clone()) else {
            return Ok(Adopted::default());
        };
        let catalog = f.catalog.clone();
        let rows = tokio::task::spawn_blocking(move || catalog.rows())
            .await
            .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
            .map_err(internal("reading the formation's catalog"))?;
        let mut done = Adopted::default();
        for row in rows {
            if self.api.get(&row.origin).is_some() {
                continue;
            }
            let outcome = async {
                let cfg = parse_settings(&row.origin, &row.settings).map_err(ApiError::Invalid)?;
                cfg.validate(&self.config)
                    .map_err(|e| ApiError::Invalid(e.to_string()))?;
                let _one = self.changes.lock().await;
                if self.api.get(&row.origin).is_some() {
                    return Ok(());
                }
                self.create_in_formation(&f, opener.clone(), cfg, true)
                    .await
                    .map(|_| ())
            }
            .await;
            match outcome {
                Ok(()) => {
                    self.note(
                        None,
                        Some(&row.origin),
                        format!(
                            "serving log {:?}, created on the formation (its catalog in {})",
                            row.origin,
                            f.catalog.place()
                        ),
                    );
                    done.served.push(row.origin);
                }
                Err(e) => done.refused.push((row.origin, e.to_string())),
            }
        }
        Ok(done)
    }

    /// Serves the logs other replicas create, every `every` until `stop`
    /// turns true, after the reading `first` (made before the server
    /// served); a log that cannot be served is logged once per reason.
    pub async fn follow_formation(
        self,
        first: Adopted,
        every: std::time::Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut said: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        let mut outcome: Result<Adopted, ApiError> = Ok(first);
        loop {
            match outcome {
                Ok(done) => {
                    for (origin, why) in done.refused {
                        if said.get(&origin) != Some(&why) {
                            tracing::error!(origin = %origin, error = %why, "a log of the formation's catalog is not served here");
                            said.insert(origin, why);
                        }
                    }
                    for origin in done.served {
                        said.remove(&origin);
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    if said.get("") != Some(&why) {
                        tracing::warn!(error = %why, "cannot read the formation's catalog");
                        said.insert(String::new(), why);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            outcome = self.adopt_formation_logs().await;
        }
    }
}

/// What one reading of the catalog served.
#[derive(Debug, Default)]
pub struct Adopted {
    /// The logs now served.
    pub served: Vec<String>,
    /// The logs that could not be, with why.
    pub refused: Vec<(String, String)>,
}
