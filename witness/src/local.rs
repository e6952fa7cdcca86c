//! A witness on `127.0.0.1:0` inside this process: what tests and benchmarks
//! start.

use std::net::SocketAddr;

use quire_core::VerifierKey;

use crate::config::WitnessConfig;
use crate::Witness;

/// A running in-process witness; [`LocalWitness::stop`] shuts it down.
pub struct LocalWitness {
    /// gRPC address.
    pub addr: SocketAddr,
    /// C2SP HTTP address.
    pub http_addr: SocketAddr,
    /// Its cosignature key.
    pub key: VerifierKey,
    /// The witness itself.
    pub witness: Witness,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LocalWitness {
    /// Starts a witness with `cfg` (its listen addresses are ignored: both
    /// faces bind ephemeral ports of 127.0.0.1).
    ///
    /// # Errors
    /// Configuration, key and state failures; ports that cannot be bound.
    pub async fn start(cfg: WitnessConfig) -> anyhow::Result<Self> {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(grpc, http, cfg)
    }

    /// As [`Self::start`], on listeners bound beforehand (so that peers and
    /// logs can be told the addresses first).
    /// Call it inside a Tokio runtime.
    ///
    /// # Errors
    /// Configuration, key and state failures.
    pub fn start_on(
        grpc: tokio::net::TcpListener,
        http: tokio::net::TcpListener,
        cfg: WitnessConfig,
    ) -> anyhow::Result<Self> {
        let (signer, _) = crate::keyfile::load_or_create(&cfg.data_dir, &cfg.name)?;
        let key = signer.verifier();
        let witness = crate::open(&cfg, signer)?;
        let (addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let w = witness.clone();
        let task = tokio::spawn(async move {
            let r = crate::run(&cfg, w, grpc, Some(http), None, async {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "local witness failed");
            }
        });
        Ok(LocalWitness {
            addr,
            http_addr,
            key,
            witness,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://ADDR` of the gRPC face.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it and waits until it has.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}
