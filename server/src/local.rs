//! A server on `127.0.0.1:0` inside this process, over logs in a given
//! directory (redb, or PostgreSQL where a log's configuration says so):
//! what tests, benchmarks and embedding applications start.

use std::net::SocketAddr;
use std::path::Path;

use quire_core::VerifierKey;

use crate::config::{Config, LogConfig};
use crate::store::any::AnyStore;

/// A running in-process server. [`LocalServer::stop`] shuts it down
/// gracefully; dropping it stops it too, without waiting.
pub struct LocalServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The verifier keys of its logs, in the order of the configurations.
    pub keys: Vec<VerifierKey>,
    /// The logs, to reach storage directly.
    pub logs: Vec<crate::log::Log<AnyStore>>,
    /// Their replicas, for logs shared with other servers.
    pub replicas: Vec<std::sync::Arc<crate::replica::Replica>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LocalServer {
    /// Opens (creating) the logs under `data_dir` and serves them on an
    /// ephemeral port of 127.0.0.1. Unless `config.high_water_dir` is set,
    /// the logs' high-water records are kept inside `data_dir` (in
    /// `high-water/`), so that one directory holds everything of a test or
    /// an embedding application; the binary keeps them beside the data
    /// directory instead.
    ///
    /// # Errors
    /// Key, storage and start-up check failures; a port that cannot be bound.
    pub async fn start(
        data_dir: &Path,
        logs: Vec<LogConfig>,
        config: Config,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(listener, data_dir, logs, config)
    }

    /// As [`Self::start`], on a listener bound beforehand (so that others,
    /// witnesses say, can be told the address before the server starts).
    /// Call it inside a Tokio runtime.
    ///
    /// # Errors
    /// Key, storage and start-up check failures.
    pub fn start_on(
        listener: tokio::net::TcpListener,
        data_dir: &Path,
        logs: Vec<LogConfig>,
        mut config: Config,
    ) -> anyhow::Result<Self> {
        data_dir.clone_into(&mut config.data_dir);
        config.logs = logs;
        let high_water_dir = config
            .high_water_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("high-water"));
        let server = crate::Server::open(config, &high_water_dir)?;
        let opened: Vec<_> = server.logs().map(|(l, _)| l.clone()).collect();
        let replicas = server.replicas().to_vec();
        let keys = opened
            .iter()
            .flat_map(|l| l.verifiers().iter().cloned())
            .collect();
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let faces = crate::Faces {
            grpc: listener,
            metrics: None,
        };
        let task = tokio::spawn(async move {
            let result = server
                .run(faces, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                // On stderr too: a test's server that stopped says why.
                eprintln!("local server failed: {e:#}");
                tracing::error!(error = %e, "local server failed");
            }
        });
        Ok(LocalServer {
            addr,
            keys,
            logs: opened,
            replicas,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, drains the logs and waits until storage is closed.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.logs.clear();
    }
}
