//! The baseline users reach for instead of a transparency log: an
//! append-only PostgreSQL table with a SHA-256 hash chain, doing the same
//! durable appends (PostgreSQL's defaults: `fsync`, `synchronous_commit`
//! and `full_page_writes` on). `scripts/postgres` installs and starts a
//! server for it.
//!
//! Each call appends a batch in one transaction through a PL/pgSQL
//! function: lock the chain head, then for each entry `hash = sha256(prev
//! || entry)` and one insert, then move the head. Writers serialize on the
//! head row, as any hash chain must. After the run the chain is read back
//! and recomputed: a wrong link fails the run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::SeedableRng as _;
use serde::Serialize;
use sha2::Digest as _;
use tokio_postgres::types::ToSql;
use tokio_stream::StreamExt as _;

use crate::load::{Latency, Payload};

const SCHEMA: &str = r"
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS audit_head;
CREATE TABLE audit_log (seq bigint PRIMARY KEY, entry bytea NOT NULL, hash bytea NOT NULL);
CREATE TABLE audit_head (id int PRIMARY KEY, seq bigint NOT NULL, hash bytea NOT NULL);
INSERT INTO audit_head VALUES (1, -1, '\x0000000000000000000000000000000000000000000000000000000000000000');
CREATE OR REPLACE FUNCTION audit_append(entries bytea[]) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE s bigint; h bytea; e bytea; first bigint;
BEGIN
  SELECT seq, hash INTO s, h FROM audit_head WHERE id = 1 FOR UPDATE;
  first := s + 1;
  FOREACH e IN ARRAY entries LOOP
    s := s + 1;
    h := sha256(h || e);
    INSERT INTO audit_log VALUES (s, e, h);
  END LOOP;
  UPDATE audit_head SET seq = s, hash = h WHERE id = 1;
  RETURN first;
END $$;
";

/// What to run against PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgLoad {
    /// Connection URL (`scripts/postgres` prints one).
    pub url: String,
    /// Concurrent writers, one connection each.
    pub writers: usize,
    /// Entries per transaction.
    pub batch: usize,
    /// How long.
    pub duration: Duration,
    /// Entry size.
    pub entry_bytes: usize,
    /// Entry content.
    pub payload: Payload,
}

/// What the baseline measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PgReport {
    /// The server's version string.
    pub server: String,
    /// Seconds measured.
    pub duration_s: f64,
    /// Writers and entries per transaction.
    pub writers: usize,
    /// Entries per transaction.
    pub batch: usize,
    /// Entries committed per second.
    pub achieved_per_s: f64,
    /// Submit → committed, per transaction.
    pub write_latency_us: Latency,
    /// Errors by SQL state (or "connection").
    pub errors: BTreeMap<String, u64>,
    /// Rows in the chain at the end.
    pub rows: u64,
    /// Whether the chain read back recomputes link by link to the head.
    pub chain_verified: bool,
    /// Table and index bytes per entry.
    pub bytes_per_entry: f64,
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            anyhow::anyhow!("connecting to {url}: {e} (scripts/postgres starts a server)")
        })?;
    tokio::spawn(conn);
    Ok(client)
}

/// Runs the baseline: a fresh chain, `writers` appending for `duration`.
///
/// # Errors
/// PostgreSQL cannot be reached or set up, or the chain does not verify.
pub async fn run(load: &PgLoad) -> anyhow::Result<PgReport> {
    let admin = connect(&load.url).await?;
    admin.batch_execute(SCHEMA).await?;
    let server: String = admin.query_one("SELECT version()", &[]).await?.get(0);
    // Drawn before the clock starts, as Quire's writers' are.
    let made = crate::entries::Entries::new(load.payload, load.entry_bytes, 7);
    let start = Instant::now();
    let deadline = start + load.duration;
    let mut tasks = Vec::new();
    for w in 0..load.writers {
        let load = load.clone();
        let made = made.clone();
        tasks.push(tokio::spawn(async move {
            let client = connect(&load.url).await?;
            let stmt = client.prepare("SELECT audit_append($1)").await?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(7 + w as u64);
            let mut h = crate::load::histogram()?;
            let mut errors = BTreeMap::<String, u64>::new();
            let mut n = (w as u64) << 40;
            while Instant::now() < deadline {
                let entries: Vec<Vec<u8>> = (0..load.batch)
                    .map(|_| {
                        n += 1;
                        made.make(&mut rng, n)
                    })
                    .collect();
                let t0 = Instant::now();
                match client.query_one(&stmt, &[&entries]).await {
                    Ok(_) => {
                        let _ = h.record(crate::load::micros(t0));
                    }
                    Err(e) => {
                        let code = e.code().map_or("connection", |c| c.code()).to_owned();
                        *errors.entry(code).or_default() += 1;
                    }
                }
            }
            anyhow::Ok((h, errors))
        }));
    }
    let mut h = crate::load::histogram()?;
    let mut errors = BTreeMap::new();
    for t in tasks {
        let (th, te) = t.await??;
        h.add(&th)?;
        for (k, v) in te {
            *errors.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rows = verify_chain(&admin).await?;
    let bytes: i64 = admin
        .query_one(
            "SELECT pg_total_relation_size('audit_log') + pg_total_relation_size('audit_head')",
            &[],
        )
        .await?
        .get(0);
    Ok(PgReport {
        server,
        duration_s: elapsed,
        writers: load.writers,
        batch: load.batch,
        achieved_per_s: rows as f64 / elapsed,
        write_latency_us: Latency::of(&h),
        errors,
        rows,
        chain_verified: true,
        bytes_per_entry: bytes as f64 / rows.max(1) as f64,
    })
}

/// Reads the chain back in order and recomputes every link and the head.
async fn verify_chain(c: &tokio_postgres::Client) -> anyhow::Result<u64> {
    let params: [&(dyn ToSql + Sync); 0] = [];
    let stream = c
        .query_raw(
            "SELECT seq, entry, hash FROM audit_log ORDER BY seq",
            params.iter().copied(),
        )
        .await?;
    tokio::pin!(stream);
    let mut h = vec![0u8; 32];
    let mut next = 0i64;
    while let Some(row) = stream.next().await {
        let row = row?;
        let (seq, entry, hash): (i64, Vec<u8>, Vec<u8>) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let mut d = sha2::Sha256::new();
        d.update(&h);
        d.update(&entry);
        h = d.finalize().to_vec();
        if seq != next || hash != h {
            anyhow::bail!("hash chain broken at seq {seq} (expected seq {next})");
        }
        next += 1;
    }
    let head = c
        .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
        .await?;
    let (seq, hash): (i64, Vec<u8>) = (head.get(0), head.get(1));
    if seq != next - 1 || hash != h {
        anyhow::bail!("chain head at {seq} does not match the {next} rows");
    }
    Ok(u64::try_from(next).unwrap_or(0))
}
