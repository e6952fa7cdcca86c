//! Connections to PostgreSQL, driven by a runtime of the engine's own, and
//! the bridge from the storage trait's synchronous calls to them.
//!
//! Every call runs as a task on that runtime and the caller waits on a
//! channel, so a call is safe from any thread, inside another runtime or
//! not: the log API calls storage from blocking-pool threads, never from an
//! async worker, and the sequencer from a thread of its own. Every call has
//! a deadline; a connection found closed is opened again on its next use
//! (a failover: the multi-host URL with `target_session_attrs=read-write`
//! finds the new primary).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::store::{Cause, StoreError};

/// A PostgreSQL error as a [`StoreError`]: a full disk is
/// [`StoreError::Full`], everything else [`StoreError::Engine`] with the
/// driver's error kept as its cause.
pub(crate) fn engine(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::DISK_FULL) || e.code() == Some(&SqlState::PROGRAM_LIMIT_EXCEEDED)
    {
        return StoreError::Full(Cause::new(e));
    }
    StoreError::Engine(Cause::new(e))
}

/// A `u64` stored as PostgreSQL's `BIGINT`.
pub(crate) fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::engine(format!("{v} is over PostgreSQL's BIGINT")))
}

/// A `BIGINT` read back as the `u64` it stores.
pub(crate) fn uint(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("a negative stored size {v}")))
}

/// The engine's runtime, its connection settings and its deadline.
pub(crate) struct Driver {
    rt: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    /// The deadline of every call.
    pub(crate) timeout: Duration,
}

impl Driver {
    /// A driver for `opts.url` (a libpq URL or key/value string; several
    /// hosts and `target_session_attrs` included).
    ///
    /// # Errors
    /// [`StoreError::Engine`] for a URL that does not parse or a runtime
    /// that cannot start.
    pub(crate) fn new(opts: &super::PgOptions) -> Result<Self, StoreError> {
        let (connect_timeout, timeout) = (opts.connect_timeout, opts.timeout);
        let idle = opts.idle_in_transaction.unwrap_or(timeout).as_millis();
        let mut config: tokio_postgres::Config = opts
            .url
            .parse()
            .map_err(|e| StoreError::engine(format!("the PostgreSQL URL does not parse: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        config.application_name("quire-server");
        // A statement that outlives the call's deadline is cancelled by the
        // server too, not left running.
        let ms = timeout.as_millis();
        // A session left inside a transaction (its writer paused or gone)
        // is ended, and the locks it held with it.
        config.options(format!(
            "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={idle}"
        ));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quire-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Engine(Cause::new(e)))?;
        Ok(Driver {
            rt: Some(rt),
            config,
            timeout,
        })
    }

    /// Runs `fut` on the engine's runtime and waits for it, at most
    /// [`Driver::timeout`].
    ///
    /// # Errors
    /// What `fut` fails with; [`StoreError::Engine`] naming `what` when the
    /// deadline passes.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Some(rt) = &self.rt else {
            return Err(StoreError::engine("the PostgreSQL engine is closed"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.timeout;
        rt.spawn(async move {
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::engine(format!(
                    "PostgreSQL: {what} did not finish within {} ms",
                    timeout.as_millis()
                ))),
            };
            let _ = tx.send(r);
        });
        rx.recv()
            .map_err(|_| StoreError::engine(format!("PostgreSQL: {what}: the engine stopped")))?
    }

    /// A new connection (its driving task on the engine's runtime).
    async fn connect(config: tokio_postgres::Config) -> Result<Client, StoreError> {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| {
            StoreError::Engine(Cause::new(Connect {
                hosts: hosts(&config),
                source: e,
            }))
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Never blocks: the store may be dropped inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A connection that cannot be opened, naming where it was tried.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {hosts}")]
pub(crate) struct Connect {
    hosts: String,
    #[source]
    source: tokio_postgres::Error,
}

fn hosts(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One connection slot: opened on first use, and again after it closed.
pub(crate) struct Conn {
    slot: Mutex<Option<Arc<Client>>>,
}

impl Conn {
    pub(crate) fn new() -> Self {
        Conn {
            slot: Mutex::new(None),
        }
    }

    /// The open connection, opening one when there is none or it closed.
    pub(crate) async fn get(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(Driver::connect(config.clone()).await?);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    /// The connection, held for the caller alone (a transaction) while the
    /// guard lives.
    pub(crate) async fn hold(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Arc<Client>>>, StoreError> {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(Arc::new(Driver::connect(config.clone()).await?));
        }
        Ok(slot)
    }
}

impl Driver {
    /// The connection settings.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}
