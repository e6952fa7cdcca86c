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

pub mod config;
pub mod keyfile;
pub mod local;
pub mod log;
pub mod metrics;
mod sequencer;
pub mod service;
pub mod store;
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
    let service = service.start_witnessing(&config.logs)?;
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
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(quire_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.load()?)?;
    }
    let mut builder = builder
        .concurrency_limit_per_connection(config.max_concurrent_requests)
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()))
        .layer(metrics::RpcMetricsLayer);
    let reflection = reflection
        .map_err(|e| tracing::warn!(error = %e, "server reflection unavailable"))
        .ok();
    let result = builder
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(api)
        .serve_with_incoming_shutdown(
            // No Nagle delay: small answers (proofs, acks) go out at once.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    for log in logs {
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
    Ok(result?)
}

/// Opens (creating on first start) one log on the embedded default, with its
/// keys under `data_dir/keys` and its data in `data_dir/logs`.
///
/// # Errors
/// Key, storage and start-up check failures, each naming what is wrong.
pub fn open_redb_log(data_dir: &Path, cfg: &LogConfig) -> anyhow::Result<(Log<RedbStore>, bool)> {
    let (signers, created) = keyfile::load_or_create(&data_dir.join("keys"), &cfg.origin)?;
    let logs_dir = data_dir.join("logs");
    std::fs::create_dir_all(&logs_dir)
        .map_err(|e| anyhow::anyhow!("creating the data directory {}: {e}", logs_dir.display()))?;
    let path = logs_dir.join(format!("{}.redb", keyfile::slug(&cfg.origin)));
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
        },
    )?;
    Ok((log, created))
}
