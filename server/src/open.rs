//! Opening the logs of a configuration on the embedded default, redb:
//! data directory, keys and high-water records, and the refusal to create a
//! new log where one more likely meant an existing one.

use std::path::Path;

use crate::config::{Config, LogConfig};
use crate::log::{self, Log, LogOptions};
use crate::store::redb::RedbStore;
use crate::{highwater, keyfile};

/// Why a log's files refuse to open.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory holds other logs and this one is new: likely a
    /// typo in the origin.
    #[error("the data directory {data_dir} holds the logs {existing} but no log {origin:?}; refusing to create a new log with new keys there (a typo in --origin or the configuration?). To create it, start once with --new-log")]
    NewLog {
        /// The data directory.
        data_dir: String,
        /// The origin asked for.
        origin: String,
        /// The logs there (file names).
        existing: String,
    },
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
/// A log is created only when `allow_new` (see [`open_redb_logs`]); the
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
    let data_dir = &config.data_dir;
    let slug = keyfile::slug(&cfg.origin);
    let logs_dir = data_dir.join("logs");
    let path = logs_dir.join(format!("{slug}.redb"));
    let high_water = highwater::HighWater::at(high_water_dir.join(format!("{slug}.highwater")));
    let signed_before = path.exists() || high_water.path().exists();
    if !signed_before && !allow_new {
        return Err(StartError::NewLog {
            data_dir: data_dir.display().to_string(),
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
    let log = Log::open(
        store,
        LogOptions {
            origin: cfg.origin.clone(),
            signers,
            dedup: cfg.dedup,
            limits: cfg.limits(),
            clock: log::system_clock(),
            high_water,
            adopt_database: config.adopt_database,
        },
    )?;
    Ok((log, created))
}

/// Opens every log of `config` ([`open_redb_log`]). New logs are created on
/// a data directory that holds no log yet, or with `config.new_logs`: in a
/// directory that holds logs, an unknown origin is more likely a typo than a
/// wish for a new log with new keys.
///
/// # Errors
/// As [`open_redb_log`], for the first log that fails.
pub fn open_redb_logs(
    config: &Config,
    high_water_dir: &Path,
) -> anyhow::Result<Vec<(Log<RedbStore>, bool)>> {
    let allow_new = config.new_logs || existing_logs(&config.data_dir.join("logs")).is_empty();
    config
        .logs
        .iter()
        .map(|cfg| open_redb_log(config, high_water_dir, cfg, allow_new))
        .collect()
}
