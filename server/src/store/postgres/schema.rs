//! The PostgreSQL schema, owned by the server: numbered migrations, applied
//! in order at open under an advisory lock, so that replicas starting
//! together apply each once. A database whose schema is newer than this
//! server knows is refused rather than written with old assumptions.
//!
//! One database holds any number of logs; every row names its log by the
//! number `quire_logs` gives its origin.

use tokio_postgres::Client;

use super::conn::{engine, Column as _};
use crate::store::StoreError;

/// The advisory lock key of migrations ("quire" in ASCII).
const MIGRATION_LOCK: i64 = 0x0071_7569_7265;

/// Each migration, in order; the schema version is how many are applied.
const MIGRATIONS: &[&str] = &[
    // 1: the log's tables.
    r"
    CREATE TABLE quire_logs (
        id BIGSERIAL PRIMARY KEY,
        origin TEXT NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    -- The compare-and-swap value of every commit: entries stored and their
    -- root.
    CREATE TABLE quire_heads (
        log BIGINT PRIMARY KEY REFERENCES quire_logs (id),
        size BIGINT NOT NULL CHECK (size >= 0),
        root BYTEA NOT NULL CHECK (length(root) = 32)
    );
    -- Entries of the bundle still filling, one row each; moved into
    -- quire_bundles by the commit that completes their bundle.
    CREATE TABLE quire_entries (
        log BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (log, idx)
    );
    -- Complete bundles of 256 entries, in Quire's bundle record format.
    CREATE TABLE quire_bundles (
        log BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (log, idx)
    );
    ALTER TABLE quire_bundles ALTER COLUMN data SET STORAGE EXTERNAL;
    -- C2SP tlog-tiles rows (mid false: up to 256 hashes of level 8L) and
    -- their mid rows (mid true: up to 16 hashes of level 8L+4), appended to
    -- in place.
    CREATE TABLE quire_tiles (
        log BIGINT NOT NULL,
        mid BOOLEAN NOT NULL,
        level SMALLINT NOT NULL,
        idx BIGINT NOT NULL,
        hashes BYTEA NOT NULL,
        PRIMARY KEY (log, mid, level, idx)
    );
    -- Hashes do not compress; stored out of line, read by substring.
    ALTER TABLE quire_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;
    -- Leaf hash -> the lowest index with it.
    CREATE TABLE quire_leaves (
        log BIGINT NOT NULL,
        leaf BYTEA NOT NULL,
        idx BIGINT NOT NULL,
        PRIMARY KEY (log, leaf)
    );
    CREATE TABLE quire_checkpoints (
        log BIGINT NOT NULL,
        size BIGINT NOT NULL,
        signed_at_ms BIGINT NOT NULL,
        note BYTEA NOT NULL,
        PRIMARY KEY (log, size)
    );
    CREATE TABLE quire_cosignatures (
        log BIGINT NOT NULL,
        size BIGINT NOT NULL,
        lines BYTEA NOT NULL,
        PRIMARY KEY (log, size)
    );
    CREATE TABLE quire_meta (
        log BIGINT NOT NULL,
        key TEXT NOT NULL,
        value BYTEA NOT NULL,
        PRIMARY KEY (log, key)
    );
    ",
    // 2: leases, one row per log: who sequences it, until when (on the
    // database's clock), in which epoch.
    r"
    CREATE TABLE quire_leases (
        log BIGINT PRIMARY KEY REFERENCES quire_logs (id),
        holder TEXT NOT NULL,
        address TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        expires TIMESTAMPTZ NOT NULL
    );
    ",
    // 3: what a log in event mode stores beside its tree: payloads with
    // their salts (erasable), the newest event of each key, the log time
    // of each commit's first event.
    r"
    CREATE TABLE quire_event_payloads (
        log BIGINT NOT NULL,
        idx BIGINT NOT NULL,
        salt BYTEA NOT NULL CHECK (length(salt) = 32),
        payload BYTEA NOT NULL,
        PRIMARY KEY (log, idx)
    );
    CREATE TABLE quire_event_keys (
        log BIGINT NOT NULL,
        key BYTEA NOT NULL CHECK (length(key) = 32),
        idx BIGINT NOT NULL,
        PRIMARY KEY (log, key)
    );
    CREATE TABLE quire_log_times (
        log BIGINT NOT NULL,
        time_ms BIGINT NOT NULL,
        first_idx BIGINT NOT NULL,
        PRIMARY KEY (log, time_ms, first_idx)
    );
    ",
    // 4: erased payloads: the row stays, naming the erasure event, its
    // salt and payload emptied.
    r"
    ALTER TABLE quire_event_payloads DROP CONSTRAINT quire_event_payloads_salt_check;
    ALTER TABLE quire_event_payloads ADD COLUMN erased_by BIGINT;
    ALTER TABLE quire_event_payloads ADD CONSTRAINT quire_event_payloads_erased CHECK (
        (erased_by IS NULL AND length(salt) = 32)
        OR (erased_by IS NOT NULL AND length(salt) = 0 AND length(payload) = 0)
    );
    ",
    // 5: a formation's catalog of the logs its replicas created: each
    // log's settings (a `[[logs]]` table) and verifier keys.
    r"
    CREATE TABLE quire_catalog (
        origin TEXT PRIMARY KEY,
        settings TEXT NOT NULL,
        vkeys TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    ",
    // 6: the leaf index as sorted runs of (key, index) pairs in blocks
    // (crate::store::leaf_index), its state in quire_meta: a commit no
    // longer writes a row per entry. Keys are a leaf hash's first 8 bytes,
    // big-endian, with the sign bit flipped so that BIGINT order is their
    // order; pairs are 16 bytes, key then index, big-endian. The rows of
    // quire_leaves become run 0 of each log, covering its head.
    r"
    CREATE TABLE quire_leaf_blocks (
        log BIGINT NOT NULL,
        run BIGINT NOT NULL,
        first_key BIGINT NOT NULL,
        first_idx BIGINT NOT NULL,
        pairs BYTEA NOT NULL,
        PRIMARY KEY (log, run, first_key, first_idx)
    );
    -- Random bytes do not compress, and a block fits a page.
    ALTER TABLE quire_leaf_blocks ALTER COLUMN pairs SET STORAGE PLAIN;
    INSERT INTO quire_leaf_blocks (log, run, first_key, first_idx, pairs)
    SELECT log, 0,
           ('x' || encode((array_agg(pk ORDER BY pk, idx))[1], 'hex'))::bit(64)::bigint
               # (-9223372036854775807 - 1),
           (array_agg(idx ORDER BY pk, idx))[1],
           string_agg(pk || int8send(idx), ''::bytea ORDER BY pk, idx)
    FROM (
        SELECT log, idx, substring(leaf FROM 1 FOR 8) AS pk,
               (row_number() OVER (PARTITION BY log ORDER BY substring(leaf FROM 1 FOR 8), idx) - 1)
                   / 240 AS blk
        FROM quire_leaves
    ) AS t
    GROUP BY log, blk;
    INSERT INTO quire_meta (log, key, value)
    SELECT log, 'leaf_index',
           CASE WHEN size = 0
                THEN '\x01'::bytea || int8send(0) || int8send(0) || int8send(0) || int8send(0)
                ELSE '\x01'::bytea || int8send(1) || int8send(1) || int8send(0) || int8send(0)
                     || int8send(size) || int8send(0) || int8send(0)
           END
    FROM quire_heads
    ON CONFLICT (log, key) DO UPDATE SET value = EXCLUDED.value;
    DROP TABLE quire_leaves;
    ",
    // 7: a commit's writes are pipelined with its COMMIT, so what each
    // wrote is checked by PostgreSQL itself: a statement reports the rows
    // it wrote to quire_expect, whose error aborts the transaction and
    // turns that COMMIT into a rollback.
    r"
    CREATE OR REPLACE FUNCTION quire_expect(got BIGINT, want BIGINT, what TEXT) RETURNS BIGINT
    LANGUAGE plpgsql AS $$
    BEGIN
        IF got IS DISTINCT FROM want THEN
            RAISE EXCEPTION USING
                ERRCODE = 'QU001',
                MESSAGE = format('%s: %s rows written, expected %s', what, got, want);
        END IF;
        RETURN got;
    END
    $$;
    ",
    // 8: the entries of the bundle still filling are stored one row a
    // commit, not one an entry (`filling.rs`): a row holds n entries from
    // idx, one raw entry when n is 1 (as every row before), else a bundle
    // record of n entries.
    r"
    ALTER TABLE quire_entries
        ADD COLUMN IF NOT EXISTS n INT NOT NULL DEFAULT 1 CHECK (n BETWEEN 1 AND 255);
    -- A row of several entries is a bundle record, compressed by Quire
    -- when that helps: PostgreSQL does not try again.
    ALTER TABLE quire_entries ALTER COLUMN data SET STORAGE EXTERNAL;
    ",
];

/// The schema version this server writes.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)] // a handful
pub(crate) const VERSION: i32 = MIGRATIONS.len() as i32;

/// Brings the schema to [`VERSION`].
///
/// # Errors
/// [`StoreError::Engine`] from the database, or for a schema newer than
/// this server's.
pub(crate) async fn migrate(client: &Client) -> Result<(), StoreError> {
    client.batch_execute("BEGIN").await.map_err(engine)?;
    let result = async {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(engine)?;
        let exists: bool = client
            .query_one("SELECT to_regclass('quire_schema') IS NOT NULL", &[])
            .await
            .map_err(engine)?
            .col(0)?;
        if !exists {
            client
                .batch_execute("CREATE TABLE quire_schema (version INT NOT NULL)")
                .await
                .map_err(engine)?;
        }
        let row = client
            .query_opt("SELECT version FROM quire_schema", &[])
            .await
            .map_err(engine)?;
        let have: i32 = if let Some(r) = row {
            r.col(0)?
        } else {
            client
                .execute("INSERT INTO quire_schema (version) VALUES (0)", &[])
                .await
                .map_err(engine)?;
            0
        };
        if have > VERSION {
            return Err(StoreError::engine(format!(
                "the database's Quire schema is version {have}, newer than this server's {VERSION}: upgrade quire-server"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(have).unwrap_or(0)) {
            client.batch_execute(sql).await.map_err(engine)?;
            tracing::info!(version = i + 1, "PostgreSQL schema migrated");
        }
        // Written only when it changed: opening writes nothing, so it never
        // waits on a synchronous standby.
        if have != VERSION {
            client
                .execute("UPDATE quire_schema SET version = $1", &[&VERSION])
                .await
                .map_err(engine)?;
        }
        Ok(())
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await.map_err(engine);
    result.and(ended)
}
