//! A formation's catalog of created logs in its own database
//! (`quire_catalog`): one row per log, its settings (a `[[logs]]` table in
//! TOML) and its verifier keys, never a private key. Rows are only added:
//! an origin, once taken, is the formation's for good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::conn::{engine, Column as _, Conn, Driver};
use super::session::Session;
use super::{schema, PgOptions};
use crate::store::StoreError;

/// Most bytes of one row's settings or keys, checked before parsing.
pub const MAX_ROW_BYTES: usize = 64 * 1024;

/// Most characters read of a row's text: one over [`MAX_ROW_BYTES`], so
/// that PostgreSQL sends at most four bytes a character of a row over it
/// (a row altered beside the servers), which is then refused.
const READ_CHARS: i32 = super::bounded::param(MAX_ROW_BYTES);

/// Most rows read at once.
pub const MAX_ROWS: i64 = 100_000;

/// One created log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogRow {
    /// Its origin.
    pub origin: String,
    /// Its `[[logs]]` table, TOML.
    pub settings: String,
    /// Its verifier keys (note verifier key texts), one per line.
    pub vkeys: String,
    /// When it was added, milliseconds since the epoch.
    pub created_ms: i64,
}

/// The catalog in one database, with a connection kept between calls.
#[derive(Clone)]
pub struct PgCatalog {
    shared: Arc<Shared>,
    place: String,
}

/// What every call shares: the driver, the kept connection, and whether
/// the schema was brought up to date (on first use only).
struct Shared {
    driver: Driver,
    conn: Conn,
    migrated: AtomicBool,
}

impl Shared {
    /// The kept connection, the schema brought up to date on first use.
    async fn session(
        &self,
        config: &tokio_postgres::Config,
        tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
    ) -> Result<Arc<Session>, StoreError> {
        let c = self.conn.get(config, tls).await?;
        if !self.migrated.load(Ordering::Acquire) {
            schema::migrate(&c).await?;
            self.migrated.store(true, Ordering::Release);
        }
        Ok(c)
    }
}

/// A row read from `quire_catalog` (`origin, settings, vkeys, created_ms`),
/// refused when its origin, settings or keys are over [`MAX_ROW_BYTES`].
fn row_of(r: &tokio_postgres::Row) -> Result<CatalogRow, StoreError> {
    let row = CatalogRow {
        origin: r.col(0)?,
        settings: r.col(1)?,
        vkeys: r.col(2)?,
        created_ms: r.col(3)?,
    };
    if row.origin.len() > MAX_ROW_BYTES
        || row.settings.len() > MAX_ROW_BYTES
        || row.vkeys.len() > MAX_ROW_BYTES
    {
        return Err(StoreError::Corrupt(format!(
            "catalog row of {:?} is over {MAX_ROW_BYTES} bytes",
            row.origin
        )));
    }
    Ok(row)
}

impl PgCatalog {
    /// The catalog of the database at `opts.url` (connected on first use).
    ///
    /// # Errors
    /// [`StoreError::Engine`] for a URL that does not parse.
    pub fn new(opts: &PgOptions) -> Result<Self, StoreError> {
        Ok(PgCatalog {
            shared: Arc::new(Shared {
                driver: Driver::new(opts)?,
                conn: Conn::new(),
                migrated: AtomicBool::new(false),
            }),
            place: super::PgStore::describe_url(&opts.url),
        })
    }

    /// Where it is, for messages (hosts and database only).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Every row, in the order they were added.
    ///
    /// # Errors
    /// [`StoreError::Engine`] for a database that cannot be reached or
    /// migrated; [`StoreError::Corrupt`] for a row over [`MAX_ROW_BYTES`].
    pub fn rows(&self) -> Result<Vec<CatalogRow>, StoreError> {
        let shared = Arc::clone(&self.shared);
        let driver = &self.shared.driver;
        let config = driver.config().clone();
        let tls = driver.tls().cloned();
        driver.run("reading the catalog of created logs", async move {
            let c = shared.session(&config, tls.as_ref()).await?;
            let rows = c
                .query(
                    "SELECT left(origin, $2), left(settings, $2), left(vkeys, $2), created_ms \
                     FROM quire_catalog ORDER BY created_ms, origin LIMIT $1",
                    &[&MAX_ROWS, &READ_CHARS],
                )
                .await
                .map_err(engine)?;
            rows.iter().map(row_of).collect()
        })
    }

    /// Adds `row` unless its origin is there; returns the row stored for
    /// the origin afterwards (another's, when it was there first).
    ///
    /// # Errors
    /// [`StoreError::Engine`] for a database that cannot be reached;
    /// [`StoreError::Corrupt`] when the stored row is over [`MAX_ROW_BYTES`].
    pub fn add(&self, row: &CatalogRow) -> Result<CatalogRow, StoreError> {
        let shared = Arc::clone(&self.shared);
        let driver = &self.shared.driver;
        let config = driver.config().clone();
        let tls = driver.tls().cloned();
        let row = row.clone();
        driver.run("adding to the catalog of created logs", async move {
            let c = shared.session(&config, tls.as_ref()).await?;
            c.execute(
                "INSERT INTO quire_catalog (origin, settings, vkeys, created_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (origin) DO NOTHING",
                &[&row.origin, &row.settings, &row.vkeys, &row.created_ms],
            )
            .await
            .map_err(engine)?;
            let r = c
                .query_one(
                    "SELECT left(origin, $2), left(settings, $2), left(vkeys, $2), created_ms \
                     FROM quire_catalog WHERE origin = $1",
                    &[&row.origin, &READ_CHARS],
                )
                .await
                .map_err(engine)?;
            row_of(&r)
        })
    }
}
