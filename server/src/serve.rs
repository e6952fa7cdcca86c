//! Running a server: its logs behind the log API, the gRPC face, health,
//! reflection and metrics, until a shutdown future completes.

use std::future::Future;

use quire_proto::v1::admin_server::AdminServer;
use quire_proto::v1::events_server::EventsServer;
use quire_proto::v1::log_server::LogServer;
use tokio::net::TcpListener;

use crate::admin::service::GrpcAdmin;
use crate::admin::{Admin, Opener};
use crate::api::LogApi;
use crate::config::Config;
use crate::events::service::GrpcEvents;
use crate::grpc::GrpcLog;
use crate::log::Log;
use crate::metrics;
use crate::store::Storage;

/// Serves `api` over gRPC on `listener` until `shutdown` completes; then
/// stops accepting, lets the sequencers integrate and answer what was
/// queued, and closes every log's storage. The stream bounds and witnessing
/// come from `config`.
///
/// # Errors
/// TLS files that cannot be read or used, an invalid witness
/// configuration, and transport errors.
pub async fn serve<S: Storage>(
    listener: TcpListener,
    api: LogApi<S>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    serve_admin(listener, api, config, None, None, shutdown).await
}

/// How long a stopping server waits for each of its background tasks.
const BACKGROUND_STOP: std::time::Duration = std::time::Duration::from_secs(30);

/// [`serve`], with the admin service able to create logs with `opener`
/// and to replace the policy file of `access`.
async fn serve_admin<S: Storage>(
    listener: TcpListener,
    api: LogApi<S>,
    config: &Config,
    opener: Option<Opener<S>>,
    access: Option<crate::access::AccessControl>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // One budget of bytes in flight: request bodies and entry pages.
    let budget =
        quire_host::budget::ByteBudget::new(config.memory_budget_mib.saturating_mul(1 << 20));
    metrics::report_budget(&budget);
    let service = api
        .with_budget(budget.clone())
        .with_entry_streams(config.max_entry_streams)
        .start_witnessing(witness_policies(config)?)
        .map_err(anyhow::Error::msg)?;
    let streams = service.clone();
    let stopped = service.clone();
    let shutdown = async move {
        shutdown.await;
        // Follow streams never end by themselves: end them so that the
        // graceful shutdown can finish.
        streams.stop_streams();
    };
    let service =
        service.with_families(config.families.iter().map(|f| (f.origin.clone(), f.period)));
    let mut admin = Admin::new(service.clone(), config.clone(), opener, access);
    if let Some(f) = crate::admin::formation::Formation::of(config)? {
        admin = admin.with_formation(f);
    }
    let (families_stop, families_stopped) = tokio::sync::watch::channel(false);
    let work = background(&service, &admin, config, &families_stopped).await?;
    let admin = AdminServer::new(GrpcAdmin::new(admin));
    let events = EventsServer::new(GrpcEvents::new(service.clone()))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let api = LogServer::new(GrpcLog::new(service))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<LogServer<GrpcLog<S>>>().await;
    let reflection = quire_host::grpc::reflection(
        &[
            quire_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ],
        &[
            "quire.v1.Log",
            "quire.v1.Events",
            "quire.v1.Admin",
            "grpc.health.v1.Health",
        ],
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
        .layer(quire_host::grpc::InvalidRequestLayer)
        .layer(quire_host::budget::RequestBudgetLayer::new(
            budget,
            std::time::Duration::from_millis(config.request_body_timeout_ms),
        ));
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
        .add_service(events)
        .add_service(admin)
        .serve_with_incoming_shutdown(
            // Bounded connections (no Nagle delay: small answers, proofs
            // and acks, go out at once).
            quire_host::net::BoundedListener::new(listener, config.net_limits(), "gRPC")
                .into_stream(),
            shutdown,
        )
        .await;
    let _ = families_stop.send(true);
    // The server's own work ends before the logs close: none of it holds
    // a log (or its storage) after the server stopped.
    for w in work {
        if tokio::time::timeout(BACKGROUND_STOP, w).await.is_err() {
            tracing::warn!("a background task did not stop within {BACKGROUND_STOP:?}");
        }
    }
    // Witness collection ends within its calls' deadlines; then nothing
    // else holds the logs.
    stopped.stopped().await;
    // Every log served when it stopped, those created since start included.
    for log in stopped.logs() {
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
    Ok(result?)
}

/// Each configured log's witness policy, for the logs that have witnesses.
fn witness_policies(
    config: &Config,
) -> anyhow::Result<Vec<(String, crate::witnessing::WitnessPolicy)>> {
    let mut out = Vec::new();
    for cfg in &config.logs {
        if let Some(p) = cfg.witness_policy()? {
            out.push((cfg.origin.clone(), p));
        }
    }
    Ok(out)
}

/// The listeners a [`Server`] serves on.
pub struct Faces {
    /// The gRPC face (`quire.v1.Log`, health, reflection).
    pub grpc: TcpListener,
    /// Prometheus metrics at `/metrics`, when wanted. Installs the
    /// process's metrics recorder, so at most one server of a process
    /// serves metrics.
    pub metrics: Option<TcpListener>,
}

/// A server: the opened logs of a configuration, ready to serve.
pub struct Server<S: Storage> {
    config: Config,
    logs: Vec<(Log<S>, bool)>,
    /// The replicas of the logs shared with other servers.
    replicas: Vec<std::sync::Arc<crate::replica::Replica>>,
    /// The access policy, when one is configured.
    access: Option<crate::access::AccessControl>,
    /// Opens the logs the admin service creates.
    opener: Option<Opener<S>>,
    /// Stops the replicas (those opened at start, and those of logs
    /// created while the server runs).
    replicas_stop: tokio::sync::watch::Sender<bool>,
    /// The supervisors of the replicas of logs created while it runs.
    spawned: Spawned,
}

/// Supervisor tasks started while the server runs, awaited at its stop.
type Spawned = std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

impl Server<crate::store::any::AnyStore> {
    /// Opens (creating where allowed) every log of `config`, each on the
    /// engine its `[logs.storage]` names, with their high-water records in
    /// `high_water_dir`, running every check a log passes before it may
    /// sign ([`crate::open_logs`]).
    ///
    /// # Errors
    /// As [`crate::open_logs`].
    pub fn open(mut config: Config, high_water_dir: &std::path::Path) -> anyhow::Result<Self> {
        // The configuration says where the records are from here on, so
        // that what derives paths from it (the admin service) agrees.
        config.high_water_dir = Some(high_water_dir.to_owned());
        // Before any log opens: a policy that cannot be used stops the start.
        let access = config
            .access
            .as_deref()
            .map(crate::access::AccessControl::load)
            .transpose()
            .map_err(|e| anyhow::anyhow!("access policy: {e}"))?;
        // The logs created through the admin service, after the configured.
        let catalog = crate::admin::catalog::Catalog::of(&config.data_dir);
        for log in catalog.read().map_err(anyhow::Error::msg)? {
            if config.logs.iter().any(|l| l.origin == log.origin) {
                tracing::info!(origin = %log.origin, catalog = %catalog.path().display(), "log in both the configuration and the catalog of created logs: the configuration's settings are used");
                continue;
            }
            log.validate(&config)
                .map_err(|e| anyhow::anyhow!("{}: {e}", catalog.path().display()))?;
            config.logs.push(log);
        }
        config
            .check_unique_logs()
            .map_err(|e| anyhow::anyhow!("with the logs of {}: {e}", catalog.path().display()))?;
        let opened = crate::open_logs(&config, high_water_dir)?;
        let replicas = opened.iter().filter_map(|o| o.replica.clone()).collect();
        let logs = opened.into_iter().map(|o| (o.log, o.created)).collect();
        let (replicas_stop, replicas_stopped) = tokio::sync::watch::channel(false);
        let spawned = Spawned::default();
        let creates: Opener<crate::store::any::AnyStore> = {
            let config = config.clone();
            let high_water_dir = high_water_dir.to_owned();
            let spawned = spawned.clone();
            std::sync::Arc::new(move |cfg| {
                let opened = crate::open_log(&config, &high_water_dir, cfg, true)?;
                // A log of a formation: its replica runs from now on (the
                // opener runs on a blocking thread of the runtime).
                if let Some(replica) = opened.replica {
                    let task = replica.spawn(replicas_stopped.clone());
                    spawned
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(task);
                }
                Ok(opened.log)
            })
        };
        Ok(Server {
            config,
            logs,
            replicas,
            access,
            opener: Some(creates),
            replicas_stop,
            spawned,
        })
    }
}

impl<S: Storage> Server<S> {
    /// The logs, each with whether its keys were created by this start.
    pub fn logs(&self) -> impl Iterator<Item = (&Log<S>, bool)> {
        self.logs.iter().map(|(l, c)| (l, *c))
    }

    /// The replicas of the logs it shares with other servers.
    pub fn replicas(&self) -> &[std::sync::Arc<crate::replica::Replica>] {
        &self.replicas
    }

    /// The configuration it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Serves every face until `shutdown` completes, then drains the logs
    /// and closes their storage.
    ///
    /// # Errors
    /// A metrics recorder already installed in this process, TLS files that
    /// cannot be used, an invalid witness configuration, transport errors.
    pub async fn run(
        self,
        faces: Faces,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = faces.metrics {
            let handle = metrics::install().ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot install the metrics recorder (another is installed in this process)"
                )
            })?;
            tokio::spawn(metrics::serve(listener, handle, async {
                let _ = metrics_stopped.await;
            }));
        }
        // Replicas follow storage, hold or seek their leases and route
        // writes until the server stops; then a held lease is given up.
        let replicas_stopped = self.replicas_stop.subscribe();
        let replicas_stop = self.replicas_stop;
        let running: Vec<_> = self
            .replicas
            .iter()
            .map(|r| r.spawn(replicas_stopped.clone()))
            .collect();
        let audit_log = self.config.audit_log.as_ref().and_then(|o| {
            self.logs
                .iter()
                .find(|(l, _)| l.origin() == o)
                .map(|(l, _)| l.clone())
        });
        let mut api = LogApi::new(self.logs.into_iter().map(|(l, _)| l).collect());
        if let Some(token) = self
            .config
            .replication
            .as_ref()
            .map(crate::config::ReplicationConfig::token)
            .transpose()?
            .flatten()
        {
            api = api.with_replica_token(&token);
        }
        if let Some(access) = self.access.clone() {
            if let Some(log) = audit_log {
                let (sink, appender) = crate::access::audit::AuditSink::new(log);
                tokio::spawn(appender);
                access.set_audit(sink);
            }
            tokio::spawn(access.clone().watch(replicas_stopped.clone()));
            api = api.with_access(access);
        }
        let result = serve_admin(
            faces.grpc,
            api,
            &self.config,
            self.opener,
            self.access,
            shutdown,
        )
        .await;
        let _ = replicas_stop.send(true);
        let later = std::mem::take(
            &mut *self
                .spawned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for r in running.into_iter().chain(later) {
            let _ = r.await;
        }
        let _ = metrics_stop.send(());
        result
    }
}

/// The server's own work beside requests, stopped by `stopped`: log
/// families (the shards of now and ahead exist before the first request,
/// then roll over while the server runs) and retention (old payloads of
/// the logs that ask are erased).
///
/// Returns the tasks, which end once `stopped` turns true.
///
/// # Errors
/// The families' first step failed.
async fn background<S: Storage>(
    service: &LogApi<S>,
    admin: &Admin<S>,
    config: &Config,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut work = Vec::new();
    if admin.creates_in_formation() {
        // The logs other replicas of the formation created, served before
        // the first request, then followed.
        let first = admin
            .adopt_formation_logs()
            .await
            .map_err(|e| anyhow::anyhow!("the formation's catalog: {e}"))?;
        work.push(tokio::spawn(admin.clone().follow_formation(
            first,
            crate::formation::CATALOG_EVERY,
            stopped.clone(),
        )));
    }
    if !config.families.is_empty() {
        let families = std::sync::Arc::new(crate::family::Families::new(
            admin.clone(),
            config.families.clone(),
            crate::log::system_clock(),
        ));
        let t = families
            .tick()
            .await
            .map_err(|e| anyhow::anyhow!("log families: {e}"))?;
        if !t.created.is_empty() {
            tracing::info!(created = ?t.created, "log families: shards created");
        }
        work.push(tokio::spawn(
            families.run(crate::family::TICK, stopped.clone()),
        ));
    }
    for l in config.logs.iter().filter(|l| l.events) {
        if let Some(days) = l.retention_days {
            let origin = l.origin.clone();
            work.push(tokio::spawn(crate::events::retention::run(
                service.clone(),
                move |_: &LogApi<S>| vec![origin.clone()],
                days,
                crate::events::retention::TICK,
                stopped.clone(),
            )));
        }
    }
    for f in &config.families {
        let shard = f
            .shard_config(&f.period.label(0))
            .map_err(|e| anyhow::anyhow!("log family {:?}: {e}", f.origin))?;
        let (Some(days), true) = (shard.retention_days, shard.events) else {
            continue;
        };
        let (family, period) = (f.origin.clone(), f.period);
        work.push(tokio::spawn(crate::events::retention::run(
            service.clone(),
            move |api: &LogApi<S>| {
                api.logs()
                    .into_iter()
                    .filter(|l| {
                        crate::family::shard_span(&family, period, l.origin()).is_some()
                            && l.state().0 == crate::lifecycle::LogState::Active
                    })
                    .map(|l| l.origin().to_owned())
                    .collect()
            },
            days,
            crate::events::retention::TICK,
            stopped.clone(),
        )));
    }
    Ok(work)
}
