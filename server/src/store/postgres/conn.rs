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

use super::session::Session;
use crate::store::{Cause, StoreError};

/// The SQLSTATE `quire_expect` raises (schema migration 7): a statement
/// of a commit wrote other rows than the commit planned.
const UNEXPECTED_ROWS: &str = "QU001";

/// A PostgreSQL error as a [`StoreError`]: a full disk is
/// [`StoreError::Full`], a commit's statement that wrote other rows than
/// planned (`quire_expect`) is [`StoreError::Corrupt`] with its message,
/// everything else [`StoreError::Engine`] with the driver's error kept as
/// its cause.
pub(crate) fn engine(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code().code() == UNEXPECTED_ROWS {
            return StoreError::Corrupt(db.message().to_owned());
        }
    }
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

/// Typed reads of a row's columns that fail instead of panicking: a value
/// of another type, or a NULL where the schema allows none (a database
/// altered or damaged beside the server), is [`StoreError::Corrupt`]
/// naming the column and what was expected.
pub(crate) trait Column {
    /// Column `i` as a `T`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is not one.
    fn col<'a, T: tokio_postgres::types::FromSql<'a>>(&'a self, i: usize) -> Result<T, StoreError>;
}

impl Column for tokio_postgres::Row {
    fn col<'a, T: tokio_postgres::types::FromSql<'a>>(&'a self, i: usize) -> Result<T, StoreError> {
        self.try_get(i).map_err(|e| {
            StoreError::Corrupt(format!(
                "a stored row's column {i} is not a {}: {}",
                std::any::type_name::<T>(),
                quire_host::error::Report(&e)
            ))
        })
    }
}

/// The engine's runtime, its connection settings and its deadline.
pub(crate) struct Driver {
    rt: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    /// TLS (rustls), unless the URL says `sslmode=disable`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
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
        let mut config: tokio_postgres::Config = opts.url.parse().map_err(|e| {
            StoreError::engine(format!(
                "the PostgreSQL URL does not parse: {}",
                quire_host::error::Report(&e)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        // A path to the server that drops packets (a partition, a lost
        // route) closes the connection instead of leaving it waiting on
        // retransmissions for many minutes: data unacknowledged for the
        // call's deadline ends it (TCP_USER_TIMEOUT), and an idle one is
        // probed from then on, so the next call opens a new connection.
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(timeout);
        }
        if config.get_keepalives_interval().is_none() {
            config
                .keepalives(true)
                .keepalives_idle(timeout.max(Duration::from_secs(1)))
                .keepalives_interval(Duration::from_secs(1))
                .keepalives_retries(3);
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
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => None,
            _ => Some(tls(opts.ca_file.as_deref())?),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quire-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Engine(Cause::new(e)))?;
        Ok(Driver {
            rt: Some(rt),
            config,
            tls,
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
        self.start(what, fut)?.wait()
    }

    /// Starts `fut` on the engine's runtime, at most [`Driver::timeout`],
    /// and returns at once: the caller works meanwhile, then waits.
    ///
    /// # Errors
    /// [`StoreError::Engine`] once the engine is closed.
    pub(crate) fn start<T: Send + 'static>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<Started<T>, StoreError> {
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
        Ok(Started { rx, what })
    }

    /// A new connection (its driving task on the engine's runtime).
    async fn connect(
        config: tokio_postgres::Config,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<(Client, Arc<Warnings>), StoreError> {
        let failed = |e| {
            StoreError::Engine(Cause::new(Connect {
                hosts: hosts(&config),
                source: e,
            }))
        };
        let warnings = Arc::new(Warnings::default());
        let client = match tls {
            None => {
                let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
                tokio::spawn(watch(connection, Arc::clone(&warnings)));
                client
            }
            Some(tls) => {
                let (client, connection) = config.connect(tls).await.map_err(failed)?;
                tokio::spawn(watch(connection, Arc::clone(&warnings)));
                client
            }
        };
        Ok((client, warnings))
    }
}

/// Work started on the engine's runtime ([`Driver::start`]).
pub(crate) struct Started<T> {
    rx: std::sync::mpsc::Receiver<Result<T, StoreError>>,
    what: &'static str,
}

impl<T> Started<T> {
    /// Waits for the work's outcome.
    ///
    /// # Errors
    /// What the work failed with, or [`StoreError::Engine`] if the engine
    /// stopped first.
    pub(crate) fn wait(self) -> Result<T, StoreError> {
        let what = self.what;
        self.rx
            .recv()
            .map_err(|_| StoreError::engine(format!("PostgreSQL: {what}: the engine stopped")))?
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

/// The warnings PostgreSQL sent on one connection (notices of severity
/// `WARNING`, told by the field that is never translated): how many, and
/// the newest. A connection's messages are taken in the order sent, so a
/// warning sent before a statement's answer is counted before the caller
/// has that answer: a commit compares the count across its `COMMIT`.
#[derive(Default)]
pub(crate) struct Warnings {
    count: std::sync::atomic::AtomicU64,
    newest: std::sync::Mutex<Option<String>>,
}

/// Longest warning kept, in bytes (a message and its detail).
const MAX_WARNING_BYTES: usize = 1024;

impl Warnings {
    /// How many warnings the connection had so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The newest warning, message and detail.
    pub(crate) fn newest(&self) -> Option<String> {
        self.newest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn add(&self, notice: &tokio_postgres::error::DbError) {
        let mut text = notice.message().to_owned();
        if let Some(detail) = notice.detail() {
            text.push_str(" (");
            text.push_str(detail);
            text.push(')');
        }
        if text.len() > MAX_WARNING_BYTES {
            let mut end = MAX_WARNING_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        *self
            .newest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Drives a connection until it closes, counting the warnings it brings.
async fn watch<S, T>(mut connection: tokio_postgres::Connection<S, T>, warnings: Arc<Warnings>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notice(notice))) => {
                if notice.parsed_severity() == Some(tokio_postgres::error::Severity::Warning) {
                    tracing::warn!(warning = %notice.message(), detail = ?notice.detail(), "PostgreSQL warned");
                    warnings.add(&notice);
                } else {
                    tracing::debug!(notice = %notice.message(), "PostgreSQL notice");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
                return;
            }
            None => return,
        }
    }
}

/// Largest CA file read.
const MAX_CA_BYTES: u64 = 1 << 20;

/// The TLS connector: the server's certificate must chain to a CA of
/// `ca_file` (PEM), or of the system's store when none is given, and name
/// the host connected to. (Stricter than libpq's `sslmode=require`, which
/// does not verify.)
fn tls(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let roots = if let Some(path) = ca_file {
        ca_roots(path)?
    } else {
        // The system's store, as rustls-native-certs finds it (SSL_CERT_FILE
        // and SSL_CERT_DIR included).
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's CA certificates");
        }
        roots.add_parsable_certificates(found.certs);
        roots
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::engine(format!("TLS for PostgreSQL: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The CA certificates of a PEM file, at least one.
fn ca_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, StoreError> {
    use rustls_pki_types::pem::PemObject as _;
    let bad = |why: String| {
        StoreError::engine(format!("the PostgreSQL CA file {}: {why}", path.display()))
    };
    let pem = quire_host::read_bounded(path, MAX_CA_BYTES).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    Ok(roots)
}

/// A connection that cannot be opened, naming where it was tried.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to PostgreSQL at {hosts}")]
pub(crate) struct Connect {
    hosts: String,
    #[source]
    source: tokio_postgres::Error,
}

/// The hosts of a connection's settings, `HOST:PORT,…` (never the user or
/// the password).
pub(crate) fn hosts(config: &tokio_postgres::Config) -> String {
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
    slot: Mutex<Option<Arc<Session>>>,
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
        tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<Arc<Session>, StoreError> {
        let slot = self.hold(config, tls).await?;
        slot.as_ref()
            .map(Arc::clone)
            .ok_or_else(|| StoreError::engine("no PostgreSQL connection"))
    }

    /// The connection, held for the caller alone (a transaction) while the
    /// guard lives.
    pub(crate) async fn hold(
        &self,
        config: &tokio_postgres::Config,
        tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Arc<Session>>>, StoreError> {
        let mut slot = self.slot.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, warnings) = Driver::connect(config.clone(), tls.cloned()).await?;
            *slot = Some(Arc::new(Session::new(client, warnings)));
        }
        Ok(slot)
    }

    /// Closes the connection, if open (once its caller has nothing more
    /// for it a while); the next use opens one.
    pub(crate) async fn close(&self) {
        *self.slot.lock().await = None;
    }
}

impl Driver {
    /// The connection settings.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS connector, unless TLS is off.
    pub(crate) fn tls(&self) -> Option<&tokio_postgres_rustls::MakeRustlsConnect> {
        self.tls.as_ref()
    }
}
