//! Opening the logs of a configuration, each on its engine (the embedded
//! default, redb, or PostgreSQL): keys, storage and high-water records, and
//! the refusal to create a new log where one more likely meant an existing
//! one.

use std::path::Path;

use std::sync::Arc;

use crate::config::{Config, LogConfig, ReplicationConfig};
use crate::follow::FollowOptions;
use crate::log::{self, Log, LogOptions};
use crate::replica::Replica;
use crate::store::any::AnyStore;
use crate::store::postgres::{Create, PgOptions, PgStore};
use crate::store::redb::RedbStore;
use crate::store::{Storage as _, StorageReader as _};
use crate::{highwater, keyfile};

/// Why a log's files refuse to open.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory (or the database) holds other logs and this one
    /// is new: likely a typo in the origin.
    #[error("{place} holds the logs {existing} but no log {origin:?}; refusing to create a new log with new keys there (a typo in --origin or the configuration?). To create it, start once with --new-log")]
    NewLog {
        /// The data directory or database.
        place: String,
        /// The origin asked for.
        origin: String,
        /// The logs there (file names).
        existing: String,
    },
}

/// Where the embedded engine keeps log `origin`'s database under
/// `data_dir`.
pub fn redb_path(data_dir: &Path, origin: &str) -> std::path::PathBuf {
    data_dir
        .join("logs")
        .join(format!("{}.redb", keyfile::slug(origin)))
}

/// Where log `origin`'s high-water record lives in `high_water_dir`.
pub fn high_water_path(high_water_dir: &Path, origin: &str) -> std::path::PathBuf {
    high_water_dir.join(format!("{}.highwater", keyfile::slug(origin)))
}

/// The logs (file stems of `*.redb`) in a data directory's `logs/`.
fn existing_logs(logs_dir: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(logs_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".redb"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Opens (creating on first start) one log on the embedded default, with its
/// keys under `data_dir/keys`, its data in `data_dir/logs` and its
/// high-water record in `high_water_dir` ([`Config::high_water_dir`]).
///
/// A log is created only when `allow_new`; the
/// keys of a log that has signed (its database or high-water record exists)
/// are never created again.
///
/// # Errors
/// Key, storage and start-up check failures, each naming what is wrong
/// ([`log::OpenError`], [`StartError`]).
pub fn open_redb_log(
    config: &Config,
    high_water_dir: &Path,
    cfg: &LogConfig,
    allow_new: bool,
) -> anyhow::Result<(Log<RedbStore>, bool)> {
    open_redb_as(config, high_water_dir, cfg, allow_new)
}

fn open_redb_as<S: crate::store::Storage + From<RedbStore>>(
    config: &Config,
    high_water_dir: &Path,
    cfg: &LogConfig,
    allow_new: bool,
) -> anyhow::Result<(Log<S>, bool)> {
    let data_dir = &config.data_dir;
    let logs_dir = data_dir.join("logs");
    let path = redb_path(data_dir, &cfg.origin);
    let high_water = highwater::HighWater::at(high_water_path(high_water_dir, &cfg.origin));
    let signed_before = path.exists() || high_water.path().exists();
    if !signed_before && !allow_new {
        return Err(StartError::NewLog {
            place: format!("the data directory {}", data_dir.display()),
            origin: cfg.origin.clone(),
            existing: existing_logs(&logs_dir).join(", "),
        }
        .into());
    }
    let (signers, created) =
        keyfile::load_or_create(&data_dir.join("keys"), &cfg.origin, !signed_before).map_err(
            |e| {
                // Say what shows that the log has signed: a user who removed
                // the data directory to start over left the record behind.
                if !path.exists() && high_water.path().exists() {
                    e.context(format!(
                        "log {:?} has published checkpoints (its high-water record {} exists, its database does not): restore the data directory; only to start over with a new log nobody relies on, remove that record too",
                        cfg.origin,
                        high_water.path().display()
                    ))
                } else {
                    e
                }
            },
        )?;
    std::fs::create_dir_all(&logs_dir)
        .map_err(|e| anyhow::anyhow!("creating the data directory {}: {e}", logs_dir.display()))?;
    let store = RedbStore::open(&path, cfg.store_options())
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    // This process's record alone, from here on.
    high_water.lock()?;
    let log = Log::open(
        S::from(store),
        log_options(config, cfg, signers, high_water),
    )?;
    Ok((log, created))
}

/// Opens one log of `config` on the engine its `[logs.storage]` names
/// ([`open_redb_log`], [`open_postgres_log`]).
///
/// # Errors
/// As those.
pub fn open_log(
    config: &Config,
    high_water_dir: &Path,
    cfg: &LogConfig,
    allow_new: bool,
) -> anyhow::Result<Opened> {
    if let Some(opts) = cfg.pg_options() {
        return open_postgres_log(config, high_water_dir, cfg, &opts, allow_new);
    }
    let (log, created) = open_redb_as(config, high_water_dir, cfg, allow_new)?;
    Ok(Opened {
        log,
        created,
        replica: None,
    })
}

/// A log a server opened.
pub struct Opened {
    /// The log as the server serves it.
    pub log: Log<AnyStore>,
    /// Whether its keys were created by this start.
    pub created: bool,
    /// Its replica, when the server shares it with others
    /// (`[replication]`): to be run beside the server.
    pub replica: Option<Arc<Replica>>,
}

/// Opens (creating when `allow_new`) one log in a PostgreSQL database, with
/// its keys under `data_dir/keys` and its high-water record in
/// `high_water_dir`. The keys of a log that has signed (it is in the
/// database, or its high-water record exists) are never created again.
///
/// # Errors
/// A database that cannot be reached; otherwise as [`open_redb_log`].
pub fn open_postgres_log(
    config: &Config,
    high_water_dir: &Path,
    cfg: &LogConfig,
    opts: &PgOptions,
    allow_new: bool,
) -> anyhow::Result<Opened> {
    let high_water = highwater::HighWater::at(high_water_path(high_water_dir, &cfg.origin));
    let place = format!("the database at {}", PgStore::describe_url(&opts.url));
    let mut opts = opts.clone();
    if let Some(rep) = &config.replication {
        // A replica paused inside a commit must not hold the lease row
        // longer than a lease.
        opts.idle_in_transaction = Some(std::time::Duration::from_millis(rep.lease_ms));
    }
    let opts = &opts;
    let origins = PgStore::origins(opts)
        .map_err(|e| anyhow::Error::new(e).context(format!("reading {place}")))?;
    let in_db = origins.contains(&cfg.origin);
    if !in_db && high_water.path().exists() {
        anyhow::bail!(
            "log {:?} has published checkpoints (its high-water record {} exists) but {place} does not hold it: point [logs.storage] url at the log's database or restore it (quire-server migrate moves a log between engines); only to start over with a new log nobody relies on, remove that record",
            cfg.origin,
            high_water.path().display()
        );
    }
    if !in_db && !allow_new {
        return Err(StartError::NewLog {
            place,
            origin: cfg.origin.clone(),
            existing: origins.join(", "),
        }
        .into());
    }
    let (signers, created) =
        keyfile::load_or_create(&config.data_dir.join("keys"), &cfg.origin, !in_db)?;
    let create = if in_db { Create::No } else { Create::Yes };
    let store = PgStore::open(opts, &cfg.origin, create).map_err(|e| {
        anyhow::Error::new(e).context(format!("opening log {:?} in {place}", cfg.origin))
    })?;
    // This process's record alone, from here on.
    high_water.lock()?;
    if let Some(rep) = &config.replication {
        let replica = open_replica(config, cfg, store, &signers, high_water, rep)?;
        return Ok(Opened {
            log: replica.log().clone(),
            created,
            replica: Some(replica),
        });
    }
    let log = Log::open(
        AnyStore::from(store),
        log_options(config, cfg, signers, high_water),
    )?;
    Ok(Opened {
        log,
        created,
        replica: None,
    })
}

/// The first signature of a new log that replicas share: takes the log's
/// lease as `holder` (advertising `address`, for `ttl`) and, when storage
/// holds no signed checkpoint yet, has `sign` sign the empty tree, then
/// gives the lease up. Storage is looked at again under the lease, where
/// the look is conclusive: a log that another replica signed (and gave
/// up) since the caller last looked is left to be followed, never signed
/// over.
///
/// Returns `None` while another replica holds the lease (look again
/// later), `Some(true)` when `sign` signed, `Some(false)` when the log was
/// signed already.
///
/// # Errors
/// The database's, or `sign`'s; the lease is given up either way.
pub fn sign_new_log(
    store: &PgStore,
    holder: &str,
    address: &str,
    ttl: std::time::Duration,
    sign: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Option<bool>> {
    let Some(lease) = store.acquire(holder, address, ttl)? else {
        return Ok(None);
    };
    let signed = match store.reader().and_then(|r| r.latest_checkpoint()) {
        Ok(Some(_)) => Ok(false),
        Ok(None) => sign().map(|()| true),
        Err(e) => Err(e.into()),
    };
    let released = store.release(&lease);
    let signed = signed?;
    released?;
    Ok(Some(signed))
}

/// A replica of a log shared with other servers: its follower, opened once
/// storage holds a signed checkpoint (on a new log, the first replica to
/// take the lease signs the empty tree), and the sequencer it opens while
/// it holds the lease.
fn open_replica(
    config: &Config,
    cfg: &LogConfig,
    store: PgStore,
    signers: &[quire_core::LogSigner],
    high_water: highwater::HighWater,
    rep: &ReplicationConfig,
) -> anyhow::Result<Arc<Replica>> {
    let opts = rep.options(config.max_message_bytes)?;
    let verifiers: Vec<_> = signers
        .iter()
        .map(quire_core::LogSigner::verifier)
        .collect();
    let mut polls = 0;
    while store.reader()?.latest_checkpoint()?.is_none() {
        // A new log: whoever takes the lease first signs its empty tree.
        let sign = || -> anyhow::Result<()> {
            Log::open(
                AnyStore::Postgres(store.clone()),
                log_options(config, cfg, signers.to_vec(), high_water.clone()),
            )?
            .close();
            Ok(())
        };
        if sign_new_log(&store, &opts.holder, &opts.address, opts.lease, sign)?.is_some() {
            break;
        }
        polls += 1;
        if polls > 100 {
            anyhow::bail!(
                "log {:?}: another replica holds the lease of this new log but has signed no checkpoint yet after {polls} polls; start again",
                cfg.origin
            );
        }
        std::thread::sleep(opts.renew_every);
    }
    let follower = Log::open_follower(
        AnyStore::Postgres(store.clone()),
        FollowOptions {
            origin: cfg.origin.clone(),
            verifiers,
            limits: cfg.limits(),
            high_water: Some(high_water.clone()),
            key_map: cfg.key_map,
        },
    )?;
    let (config, cfg) = (config.clone(), cfg.clone());
    let sequencer = Box::new(move || -> anyhow::Result<LogOptions> {
        let (signers, _) =
            keyfile::load_or_create(&config.data_dir.join("keys"), &cfg.origin, false)?;
        Ok(log_options(&config, &cfg, signers, high_water.clone()))
    });
    Ok(Replica::new(follower, store, opts, sequencer))
}

fn log_options(
    config: &Config,
    cfg: &LogConfig,
    signers: Vec<quire_core::LogSigner>,
    high_water: highwater::HighWater,
) -> LogOptions {
    LogOptions {
        origin: cfg.origin.clone(),
        signers,
        // Every event is new (its salt is fresh): nothing to look up.
        dedup: if cfg.events {
            log::DedupPolicy::Off
        } else {
            cfg.dedup
        },
        limits: cfg.limits(),
        clock: log::system_clock(),
        high_water,
        adopt_database: config.adopt_database,
        events: cfg.events,
        key_map: cfg.key_map,
    }
}

/// Whether any log of `config` exists already: a redb file in the data
/// directory or a log in one of the configured databases.
///
/// # Errors
/// A configured database that cannot be reached.
fn any_existing(config: &Config) -> anyhow::Result<bool> {
    if !existing_logs(&config.data_dir.join("logs")).is_empty() {
        return Ok(true);
    }
    for cfg in &config.logs {
        if let Some(opts) = cfg.pg_options() {
            let origins = PgStore::origins(&opts).map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "reading the database at {}",
                    PgStore::describe_url(&opts.url)
                ))
            })?;
            if !origins.is_empty() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Opens every log of `config` ([`open_log`]). New logs are created on a
/// data directory (and databases) that hold no log yet, or with
/// `config.new_logs`: where logs exist, an unknown origin is more likely a
/// typo than a wish for a new log with new keys.
///
/// # Errors
/// As [`open_log`], for the first log that fails.
pub fn open_logs(config: &Config, high_water_dir: &Path) -> anyhow::Result<Vec<Opened>> {
    let allow_new = config.new_logs || !any_existing(config)?;
    config
        .logs
        .iter()
        .map(|cfg| open_log(config, high_water_dir, cfg, allow_new))
        .collect()
}
