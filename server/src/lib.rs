//! # quire-server
//!
//! The log server: durable storage (redb by default, behind
//! [`store::Storage`]), the batching sequencer and signer ([`log`]), the
//! `quire.v1.Log` gRPC service ([`service`]), configuration ([`config`]) and
//! key files ([`keyfile`]) and Prometheus metrics ([`metrics`]). [`serve`] runs the service on a bound listener
//! until a shutdown future completes, then drains every log.
//!
//! In scope: RFC 9162 trees and proofs (via `quire-core`), C2SP checkpoints
//! signed with ECDSA P-256 and Ed25519, TLS and mTLS, health and reflection
//! services, and witness cosignature collection ([`witnessing`]).

pub mod budget;
pub mod config;
pub mod fsck;
pub mod fuzz_targets;
pub mod highwater;
pub mod import;
pub mod keyfile;
pub mod local;
pub mod log;
pub mod metrics;
pub mod proofs;
pub mod sequencer;
pub mod service;
pub mod signing;
pub mod startup;
pub mod store;
pub mod witness_check;
pub mod witness_transport;
pub mod witnessing;

use std::future::Future;
use std::path::Path;

use quire_proto::v1::log_server::LogServer;
use tokio::net::TcpListener;

use crate::config::{Config, LogConfig};
use crate::log::{Log, LogOptions};
use crate::service::LogService;
use crate::store::redb::RedbStore;
use crate::store::Storage;

/// Serves `service` on `listener` until `shutdown` completes; then stops
/// accepting, lets the sequencers integrate and answer what was queued, and
/// closes every log's storage.
///
/// # Errors
/// TLS files that cannot be read or used, and transport errors.
pub async fn serve<S: Storage>(
    listener: TcpListener,
    service: LogService<S>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let service = service
        .with_stream_budget(config.stream_budget_mib.saturating_mul(1 << 20))
        .with_entry_streams(config.max_entry_streams)
        .start_witnessing(&config.logs)?;
    let logs: Vec<Log<S>> = service.logs().cloned().collect();
    let streams = service.clone();
    let shutdown = async move {
        shutdown.await;
        // Follow streams never end by themselves: end them so that the
        // graceful shutdown can finish.
        streams.stop_streams();
    };
    let api = LogServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LogServer<LogService<S>>>().await;
    let reflection = quire_host::grpc::reflection(
        &[
            quire_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ],
        &["quire.v1.Log", "grpc.health.v1.Health"],
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.load()?)?;
    }
    let mut builder = builder
        .concurrency_limit_per_connection(config.max_concurrent_requests)
        .max_concurrent_streams(config.max_streams_per_connection)
        .timeout(std::time::Duration::from_millis(config.request_timeout_ms))
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()))
        // The first layer is the outermost: metrics count the status the
        // client gets.
        .layer(metrics::RpcMetricsLayer)
        .layer(quire_host::grpc::InvalidRequestLayer);
    let (reflection_v1, reflection_v1alpha) = match reflection {
        Ok((a, b)) => (Some(a), Some(b)),
        Err(e) => {
            tracing::warn!(error = %e, "server reflection unavailable");
            (None, None)
        }
    };
    let result = builder
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(
            // Bounded connections (no Nagle delay: small answers, proofs
            // and acks, go out at once).
            quire_host::net::BoundedListener::new(listener, config.net_limits(), "gRPC")
                .into_stream(),
            shutdown,
        )
        .await;
    for log in logs {
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
    Ok(result?)
}

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
