//! # quire-witness
//!
//! A witness for Quire logs and any C2SP log: it cosigns checkpoints that
//! extend the last one it cosigned, keeps that state durably, gossips with
//! other witnesses, and keeps split-view evidence.
//!
//! - [`check`]: the pure C2SP `tlog-witness` add-checkpoint decision.
//! - [`state`]: redb state; one writer thread commits batches of checks and
//!   updates atomically and durably before anything is answered
//!   (DESIGN.md invariant 3).
//! - [`witness`]: add-checkpoint, cosigning (C2SP `tlog-cosignature`
//!   cosignature/v1), and the check of checkpoints others were shown.
//! - [`service`]: the `quire.v1.Witness` gRPC service.
//! - [`http`]: C2SP `tlog-witness` HTTP (`POST /add-checkpoint`) and
//!   `GET /metrics`.
//! - [`peers`]: pull mode and gossip.
//!
//! Out of scope: the C2SP monitoring prefix (still TBD in the
//! specification) and ML-DSA cosignatures.

pub mod check;
pub mod config;
pub mod fuzz_target;
pub mod http;
pub mod keyfile;
pub mod local;
pub mod peers;
pub mod service;
pub mod state;
pub mod witness;

use std::future::Future;

use metrics_exporter_prometheus::PrometheusHandle;
use quire_core::WitnessSigner;
use quire_proto::v1::witness_server::WitnessServer;
use tokio::net::TcpListener;

pub use crate::config::WitnessConfig;
pub use crate::witness::{Verdict, Witness};

/// Opens the state under the configuration's data directory and builds the
/// witness.
///
/// # Errors
/// An invalid configuration or state that cannot be opened.
pub fn open(cfg: &WitnessConfig, signer: WitnessSigner) -> anyhow::Result<Witness> {
    let (logs, _) = cfg.validate()?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let state = state::State::open(&cfg.data_dir.join("witness.redb"))?;
    Witness::new(signer, logs, state, cfg.timeout()).map_err(anyhow::Error::msg)
}

/// Most requests at once on one gRPC connection.
const GRPC_CONCURRENCY: usize = 256;
/// Most HTTP/2 streams open on one gRPC connection.
const GRPC_STREAMS: u32 = 128;
/// Longest a gRPC request may take before its answer starts.
const GRPC_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Bytes of gRPC request bodies in flight, witness-wide: requests are at
/// most [`service::MAX_REQUEST_BYTES`] (8 MiB): eight of the largest at
/// once, thousands of ordinary ones.
const GRPC_BUDGET_BYTES: usize = 64 << 20;
/// A gRPC request body that sends nothing this long is ended.
const GRPC_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the witness: gRPC on `grpc`, C2SP HTTP on `http` when given, pull
/// mode and gossip, until `shutdown` completes.
///
/// # Errors
/// An invalid configuration and transport errors.
pub async fn run(
    cfg: &WitnessConfig,
    witness: Witness,
    grpc: TcpListener,
    http: Option<TcpListener>,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (_, peers) = cfg.validate()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(peers::pull_loop(
        witness.clone(),
        std::time::Duration::from_millis(cfg.poll_interval_ms),
        stop_rx.clone(),
    ));
    for peer in peers {
        tasks.spawn(peers::gossip_loop(
            witness.clone(),
            peer,
            std::time::Duration::from_millis(cfg.gossip_interval_ms),
            cfg.timeout(),
            stop_rx.clone(),
        ));
    }
    if let Some(l) = http {
        let mut stop = stop_rx.clone();
        let w = witness.clone();
        tasks.spawn(async move {
            let r = http::serve(l, w, metrics, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "witness HTTP server failed");
            }
        });
    }
    let api = WitnessServer::new(service::WitnessService::new(witness))
        .max_decoding_message_size(service::MAX_REQUEST_BYTES);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WitnessServer<service::WitnessService>>()
        .await;
    let (reflection_v1, reflection_v1alpha) = match quire_host::grpc::reflection(
        &[
            quire_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ],
        &["quire.v1.Witness", "grpc.health.v1.Health"],
    ) {
        Ok((a, b)) => (Some(a), Some(b)),
        Err(e) => {
            tracing::warn!(error = %e, "server reflection unavailable");
            (None, None)
        }
    };
    let result = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(GRPC_CONCURRENCY)
        .max_concurrent_streams(GRPC_STREAMS)
        .timeout(GRPC_REQUEST_TIMEOUT)
        .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()))
        .layer(quire_host::grpc::InvalidRequestLayer)
        .layer(quire_host::budget::RequestBudgetLayer::new(
            quire_host::budget::ByteBudget::new(GRPC_BUDGET_BYTES),
            GRPC_BODY_TIMEOUT,
        ))
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(
            quire_host::net::BoundedListener::new(
                grpc,
                quire_host::net::NetLimits::default(),
                "witness gRPC",
            )
            .into_stream(),
            shutdown,
        )
        .await;
    stop_tx.send_replace(true);
    while tasks.join_next().await.is_some() {}
    Ok(result?)
}
