//! PostgreSQL storage: logs in a database that PostgreSQL replicates, so
//! that several servers can share them and a lost machine loses nothing
//! that was acknowledged.
//!
//! In scope: the storage trait over PostgreSQL (entries, tile rows, the leaf
//! index, checkpoints, cosignatures and metadata; `schema` owns the
//! tables), with every commit one transaction whose update of the log's
//! head is conditional on the head it extends ([`write`]). Reads bound
//! themselves by the head read when the view opened (`read`). The
//! driver, its runtime and its deadlines are in `conn`; the replication
//! check of every commit in `replication`; leases in `lease`.
//!
//! Out of scope here: which replica sequences (leases), and replication
//! checks; those sit above the storage trait.

mod bounded;
pub mod catalog;
mod conn;
mod events;
pub(crate) mod filling;
mod leaf_blocks;
mod leaf_plan;
mod leaf_tail;
mod lease;
mod leaves;
mod merges_beside;
mod read;
mod replication;
mod run_writer;
mod runs_beside;
mod schema;
mod session;
mod settle;
mod statement;
mod write;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use lease::{Holder, Lease};
pub use leaves::{DEFAULT_FANOUT as DEFAULT_LEAF_FANOUT, DEFAULT_FLUSH as DEFAULT_LEAF_FLUSH};
pub use read::PgReader;
pub use settle::SettlesPaused;

use self::conn::{engine, Column as _, Conn, Driver};
use crate::store::{Storage, StoreError};

/// How a [`PgStore`] connects.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// A libpq URL: `postgres://user@host1:5432,host2:5432/db?target_session_attrs=read-write`.
    pub url: String,
    /// Connections for reads (the writer has one of its own).
    pub readers: usize,
    /// The deadline of opening a connection.
    pub connect_timeout: Duration,
    /// The deadline of every call (the server cancels a statement that runs
    /// longer).
    pub timeout: Duration,
    /// LZ4 for complete entry bundles where it saves space.
    pub compress: bool,
    /// The CA (PEM) the server's TLS certificate must chain to; the
    /// system's store when `None`. TLS is used unless the URL says
    /// `sslmode=disable` (`prefer`, the default, falls back to plain text
    /// only when the server offers no TLS).
    pub ca_file: Option<std::path::PathBuf>,
    /// How long the server lets a session sit inside a transaction before
    /// it ends the session (default: `timeout`). A writer paused in the
    /// middle of a commit holds the lease row; replicas set it to the
    /// lease, so that its takeover waits no longer than that.
    pub idle_in_transaction: Option<Duration>,
    /// Synchronous standbys that must confirm every commit before it is
    /// acknowledged: `None` means one when the primary has any standby,
    /// none otherwise.
    pub sync_standbys: Option<u32>,
    /// Acknowledge commits the database does not replicate (availability
    /// over durability across machines).
    pub allow_unreplicated: bool,
    /// Leaves each replica keeps in memory before the writer stores them
    /// as a sorted run of the leaf index.
    pub leaf_flush: usize,
    /// Runs of similar size the leaf index merges at once (2 to 16).
    pub leaf_fanout: usize,
}

impl PgOptions {
    /// Options for `url` with the defaults: 4 read connections, 5 s to
    /// connect, 10 s a call, compression on.
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            readers: 4,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            compress: true,
            ca_file: None,
            idle_in_transaction: None,
            sync_standbys: None,
            allow_unreplicated: false,
            leaf_flush: leaves::DEFAULT_FLUSH,
            leaf_fanout: leaves::DEFAULT_FANOUT,
        }
    }
}

pub(crate) struct Shared {
    driver: Driver,
    writer: Conn,
    readers: Vec<Conn>,
    next: AtomicUsize,
    log: i64,
    origin: String,
    compress: bool,
    /// What commits are conditional on ([`lease`]).
    fence: std::sync::Mutex<lease::Fence>,
    /// The replication each commit requires.
    replication: replication::SyncCheck,
    /// Whether a commit of this log was ever checked replicated: from then
    /// on a synchronous standby is required by default, so that a primary
    /// left without one after a failover is not taken for a database that
    /// never had one.
    replicated: std::sync::atomic::AtomicBool,
    /// The leaf index's memory ([`leaves`]).
    leaves: leaves::LeafIndex,
    /// The connections commits are settled on ([`settle`]).
    settlers: Vec<Conn>,
    /// The connections runs and merges are written on beside the commits
    /// ([`runs_beside`]).
    runs_conn: Conn,
    merges_conn: Conn,
    /// The settles started and not yet waited for.
    settling: settle::Settling,
}

impl Shared {
    /// A read connection, in turn.
    async fn reader(&self) -> Result<Arc<session::Session>, StoreError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        match self.readers.get(n) {
            Some(c) => c.get(self.driver.config(), self.driver.tls()).await,
            None => {
                self.writer
                    .get(self.driver.config(), self.driver.tls())
                    .await
            }
        }
    }
}

/// One log stored in PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
}

/// Whether a log is created when it is not in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Only an existing log opens.
    No,
    /// A log not in the database is created.
    Yes,
}

impl PgStore {
    /// Opens the log `origin` in the database at `opts.url`, bringing the
    /// schema up to date first.
    ///
    /// # Errors
    /// [`StoreError::Engine`] for a database that cannot be reached or
    /// migrated; [`StoreError::Missing`] for a log that is not in the
    /// database when `create` is [`Create::No`].
    pub fn open(opts: &PgOptions, origin: &str, create: Create) -> Result<Self, StoreError> {
        let driver = Driver::new(opts)?;
        let config = driver.config().clone();
        let tls = driver.tls().cloned();
        let origin_owned = origin.to_owned();
        let (log, replicated) = driver.run("opening the log", async move {
            let c = Conn::new().get(&config, tls.as_ref()).await?;
            schema::migrate(&c).await?;
            let found = c
                .query_opt(
                    "SELECT id FROM quire_logs WHERE origin = $1",
                    &[&origin_owned],
                )
                .await
                .map_err(engine)?;
            if let Some(row) = found {
                let id = row.col::<i64>(0)?;
                let replicated = c
                    .query_opt(
                        "SELECT 1 FROM quire_meta WHERE log = $1 AND key = $2",
                        &[&id, &replication::REPLICATED_META],
                    )
                    .await
                    .map_err(engine)?
                    .is_some();
                return Ok((id, replicated));
            }
            if create == Create::No {
                return Err(StoreError::Missing(format!(
                    "no log {origin_owned:?} in the database"
                )));
            }
            // Two servers creating the same log at once: one row wins.
            c.execute(
                "INSERT INTO quire_logs (origin) VALUES ($1) ON CONFLICT (origin) DO NOTHING",
                &[&origin_owned],
            )
            .await
            .map_err(engine)?;
            let row = c
                .query_one(
                    "SELECT id FROM quire_logs WHERE origin = $1",
                    &[&origin_owned],
                )
                .await
                .map_err(engine)?;
            Ok((row.col::<i64>(0)?, false))
        })?;
        let index = leaves::LeafIndex::new(crate::store::leaf_index::Shape {
            flush: opts.leaf_flush,
            fanout: opts.leaf_fanout,
        });
        let shared = Arc::new(Shared {
            driver,
            writer: Conn::new(),
            readers: (0..opts.readers.max(1)).map(|_| Conn::new()).collect(),
            next: AtomicUsize::new(0),
            log,
            origin: origin.to_owned(),
            compress: opts.compress,
            fence: std::sync::Mutex::default(),
            replication: if opts.allow_unreplicated {
                replication::SyncCheck::Off
            } else {
                replication::SyncCheck::Standbys(opts.sync_standbys)
            },
            replicated: std::sync::atomic::AtomicBool::new(replicated),
            leaves: index,
            settlers: (0..settle::SETTLERS).map(|_| Conn::new()).collect(),
            runs_conn: Conn::new(),
            merges_conn: Conn::new(),
            settling: settle::Settling::default(),
        });
        shared.leaves.start(&shared)?;
        Ok(PgStore { shared })
    }

    /// The origins of the logs in the database at `opts.url`, in order (none
    /// when Quire's schema is not there yet).
    ///
    /// # Errors
    /// [`StoreError::Engine`] for a database that cannot be reached.
    pub fn origins(opts: &PgOptions) -> Result<Vec<String>, StoreError> {
        let driver = Driver::new(opts)?;
        let config = driver.config().clone();
        let tls = driver.tls().cloned();
        driver.run("listing the logs", async move {
            let c = Conn::new().get(&config, tls.as_ref()).await?;
            let exists: bool = c
                .query_one("SELECT to_regclass('quire_logs') IS NOT NULL", &[])
                .await
                .map_err(engine)?
                .col(0)?;
            if !exists {
                return Ok(Vec::new());
            }
            // Bounded as the catalog's rows are: an origin read as at most
            // its limit and a character, and at most as many logs.
            let rows = c
                .query(
                    "SELECT left(origin, $1) FROM quire_logs ORDER BY origin LIMIT $2",
                    &[&bounded::param(bounded::ORIGIN), &(catalog::MAX_ROWS + 1)],
                )
                .await
                .map_err(engine)?;
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) > catalog::MAX_ROWS {
                return Err(StoreError::Corrupt(format!(
                    "the database holds more than {} logs",
                    catalog::MAX_ROWS
                )));
            }
            rows.iter()
                .map(|r| {
                    bounded::within(r.col::<String>(0)?, bounded::ORIGIN, || {
                        "a stored origin".into()
                    })
                })
                .collect()
        })
    }

    /// Where a PostgreSQL URL points, for messages: its hosts and database,
    /// never its user or password.
    pub fn describe_url(url: &str) -> String {
        match url.parse::<tokio_postgres::Config>() {
            Ok(c) => format!(
                "{} (database {})",
                conn::hosts(&c),
                c.get_dbname().unwrap_or("(default)")
            ),
            Err(_) => "(a URL that does not parse)".into(),
        }
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Pauses settling ([`Storage::settle`]) for a fault test: a commit
    /// made unsettled meanwhile stays so, its settle waiting (within its
    /// deadline) until the guard drops; then it checks what the database
    /// holds at that time.
    #[doc(hidden)]
    pub fn pause_settles(&self) -> settle::SettlesPaused {
        settle::SettlesPaused::new(&self.shared.settling)
    }

    /// Whether a leaf index run written beside the commits waits for the
    /// next commit to take it (for tests).
    #[doc(hidden)]
    pub fn leaf_run_ready(&self) -> bool {
        self.shared.leaves.run_ready()
    }

    /// Whether a merge of leaf index runs written beside the commits waits
    /// for the next commit to take it (for tests).
    #[doc(hidden)]
    pub fn leaf_merge_ready(&self) -> bool {
        self.shared.leaves.merge_ready()
    }

    /// Bytes this replica's leaf index filters hold (about two bytes per
    /// leaf in a run once built; none until then).
    pub fn leaf_index_filter_bytes(&self) -> usize {
        self.shared.leaves.filter_bytes()
    }
}

impl Storage for PgStore {
    type Reader = PgReader;

    fn reader(&self) -> Result<PgReader, StoreError> {
        PgReader::open(&self.shared, false)
    }

    fn durable_reader(&self) -> Result<PgReader, StoreError> {
        PgReader::open(&self.shared, true)
    }

    fn shown_durable(&self, view: &PgReader) {
        self.shared.leaves.durable(view.latest_size().unwrap_or(0));
    }

    fn reads_wait_on_network(&self) -> bool {
        true
    }

    /// A commit of leaves said new checks them: the newest leaves in
    /// memory, the runs by their filters and, for a key a filter lets
    /// through, a probe of its block read under the commit's lock (no
    /// lookup round trip before a batch).
    fn checks_new_leaves(&self) -> bool {
        true
    }

    /// A replica (a fenced store) hands its lease on and a new sequencer
    /// reads the head again by itself; a server without `[replication]`
    /// does so when restarted.
    fn resume_after_stop(&self) -> &'static str {
        if self.shared.fenced() {
            "this replica gives up the lease and a new sequencer resumes by itself once it has read the database's head again"
        } else {
            "writes resume when the server is restarted once PostgreSQL answers, reading the database's head again (a server with [replication] resumes by itself)"
        }
    }

    fn reader_at(
        &self,
        head: crate::store::Head,
        latest: &crate::store::StoredCheckpoint,
    ) -> Result<PgReader, StoreError> {
        Ok(PgReader::at(&self.shared, head, latest.clone()))
    }

    fn writable(&self) -> Result<(), StoreError> {
        self.shared.fence().map(|_| ())
    }

    fn commit(&self, commit: &crate::store::Commit) -> Result<(), StoreError> {
        write::commit(&self.shared, commit, false)
    }

    /// Committed with `synchronous_commit = off` when it carries a
    /// checkpoint (the one [`Storage::settle`] looks for), durably
    /// otherwise.
    fn commit_unsettled(&self, commit: &crate::store::Commit) -> Result<(), StoreError> {
        write::commit(&self.shared, commit, true)
    }

    fn settle(&self, size: u64) -> Result<(), StoreError> {
        settle::settle(&self.shared, size)
    }

    fn keep_cosignatures(&self, size: u64, lines: &[u8]) -> Result<(), StoreError> {
        write::keep_cosignatures(&self.shared, size, lines)
    }

    fn replace_event_index(
        &self,
        keys: &[(quire_core::Hash, u64)],
        times: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        events::replace_index(&self.shared, keys, times)
    }

    fn drop_entries(&self, dropped: crate::lifecycle::Dropped) -> Result<(), StoreError> {
        write::drop_entries(&self.shared, dropped)
    }
}
