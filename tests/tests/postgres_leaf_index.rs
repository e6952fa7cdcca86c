//! PostgreSQL's leaf index (sorted runs in `quire_leaf_blocks`, a memtable
//! per replica rebuilt from tile rows) against a model, on a real server:
//! tiny flush sizes so that flushes, merges, deletions of merged-away runs
//! and restarts in the middle of a merge all happen many times, with a
//! second replica answering lookups throughout from its own cache. And the
//! migration that turns the rows of the old `quire_leaves` table into a run.
//! Commits of leaves said new (checked inside the commit) take part.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;

use quire_core::{leaf_hash, Hash};
use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Storage, StorageReader};
use quire_tests::commits::Writer;

/// SplitMix64: a seeded sequence, the same on every run.
struct Seq(u64);

impl Seq {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn pool_entry(n: u64) -> Vec<u8> {
    format!("pooled entry {n}").into_bytes()
}

fn open(url: &str, origin: &str, (flush, fanout): (usize, usize), create: Create) -> PgStore {
    PgStore::open(
        &PgOptions {
            leaf_flush: flush,
            leaf_fanout: fanout,
            ..PgOptions::new(url.to_owned())
        },
        origin,
        create,
    )
    .unwrap()
}

/// Pools larger than this are checked by the leaves logged (and a few
/// not), not entry by entry.
const WHOLE_POOL: u64 = 10_000;

/// Every pool entry's lowest index (or absence) as `store` answers it; of
/// a larger pool, a hundred entries of the pool and, when `all`, every
/// leaf logged.
fn check(store: &PgStore, pool: u64, model: &HashMap<Hash, u64>, all: bool, ctx: &str) {
    let leaves: Vec<Hash> = if pool <= WHOLE_POOL {
        (0..pool).map(|n| leaf_hash(&pool_entry(n))).collect()
    } else {
        let mut logged: Vec<Hash> = if all {
            model.keys().copied().collect()
        } else {
            Vec::new()
        };
        logged.sort_unstable_by_key(|h| h.0);
        logged.extend((0..100).map(|n| leaf_hash(&pool_entry(n))));
        logged
    };
    let got = store.reader().unwrap().find_leaves(&leaves).unwrap();
    for (n, (leaf, got)) in leaves.iter().zip(got).enumerate() {
        assert_eq!(got, model.get(leaf).copied(), "{ctx}: leaf {n} checked");
    }
}

#[test]
fn postgres_leaf_index_matches_a_model_through_flushes_merges_restarts_and_a_second_replica() {
    let pg = quire_tests::postgres::shared();
    // (seed, flush, merge fanout, largest batch, pool): the last makes runs
    // of thousands of pairs, so that merges and deletions take several
    // commits each.
    for (seed, flush, fanout, batch, pool) in [
        (1u64, 5usize, 2usize, 30u64, 300u64),
        (2, 23, 3, 30, 300),
        (3, 200, 8, 600, 1500),
        // Runs of thousands of pairs merged two at a time: each input is
        // read in several statements, the later ones ahead of the step.
        // Entries almost never repeat, so every pair a merge lost or
        // doubled shows.
        (4, 1000, 2, 600, 1 << 40),
    ] {
        let origin = quire_tests::postgres::unique("leaf-index.example/log");
        let mut rng = Seq(seed);
        let mut writer = open(&pg.url, &origin, (flush, fanout), Create::Yes);
        let follower = open(&pg.url, &origin, (flush, fanout), Create::No);
        let mut w = Writer::new();
        let mut model: HashMap<Hash, u64> = HashMap::new();
        // Every entry committed, in order (the fresh ones aside).
        let mut logged: Vec<Vec<u8>> = Vec::new();
        for step in 0..90 {
            let n = 1 + rng.below(batch);
            let batch: Vec<Vec<u8>> = (0..n).map(|_| pool_entry(rng.below(pool))).collect();
            let size = w.head().size;
            let (c, next) = w.commit(&batch, true);
            writer.commit(&c).unwrap();
            w = next;
            for (i, e) in (size..).zip(&batch) {
                model.entry(leaf_hash(e)).or_insert(i);
            }
            logged.extend(batch);
            let ctx = format!("seed {seed} flush {flush} step {step}");
            if step % 2 == 0 {
                // Leaves said new (strict dedup without a lookup first): a
                // commit carrying a stored one, among the newest leaves or
                // in a run, is refused and writes nothing; one of new
                // leaves is taken, each probed in the runs whose filters
                // let it through.
                let stored = logged[rng.below(logged.len() as u64) as usize].clone();
                let fresh = |k: u64| format!("fresh {seed} {step} {k}").into_bytes();
                let (mut c, _) = w.commit(&[fresh(0), stored.clone()], true);
                c.new_leaves = true;
                let e = writer.commit(&c).unwrap_err();
                assert!(
                    matches!(e, quire_server::store::StoreError::LeafStored(_)),
                    "{ctx}: {e:?}"
                );
                let size = w.head().size;
                let news: Vec<Vec<u8>> = (1..=1 + rng.below(40)).map(fresh).collect();
                let (mut c, next) = w.commit(&news, true);
                c.new_leaves = true;
                writer.commit(&c).unwrap();
                w = next;
                let leaves: Vec<Hash> = news.iter().map(|e| leaf_hash(e)).collect();
                let want: Vec<Option<u64>> = (size..).take(news.len()).map(Some).collect();
                let r = writer.reader().unwrap();
                assert_eq!(r.find_leaves(&leaves).unwrap(), want, "{ctx}");
            }
            // Of a large pool, every leaf logged now and then (a lookup of
            // each takes a while).
            let all = step % 15 == 14;
            check(&writer, pool, &model, all, &format!("{ctx}, the writer"));
            if step % 3 == 0 {
                check(
                    &follower,
                    pool,
                    &model,
                    all,
                    &format!("{ctx}, the second replica"),
                );
            }
            if rng.below(20) == 0 {
                // A restart: the memtable from the tile rows, filters built
                // again in the background, a merge picked up midway.
                drop(writer);
                writer = open(&pg.url, &origin, (flush, fanout), Create::No);
            }
        }
        let runs: u64 = quire_tests::postgres::psql(
            &pg.url,
            &format!(
                "SELECT count(DISTINCT run) FROM quire_leaf_blocks b JOIN quire_logs l ON l.id = b.log WHERE l.origin = '{origin}'"
            ),
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        // Runs stay few: up to fanout - 1 of each size, sizes growing by the
        // fanout (bounded here by log2), plus a merge's inputs and output
        // and runs whose deletion is under way.
        let leaves = w.head().size;
        let levels = u64::from(64 - (leaves / flush as u64).leading_zeros());
        let t = fanout as u64;
        let bound = (t - 1) * (levels + 2) + 2 * t + 2;
        assert!(
            (1..=bound).contains(&runs),
            "seed {seed}: {runs} runs stored for {leaves} leaves, flush {flush}, fanout {fanout}"
        );
        // No run holds a pair twice: merges read their inputs (ahead, in
        // the background) each pair once.
        let repeated: u64 = quire_tests::postgres::psql(
            &pg.url,
            &format!(
                "SELECT count(*) FROM (SELECT b.run, substring(b.pairs FROM g * 16 + 1 FOR 16) \
                 FROM quire_leaf_blocks b JOIN quire_logs l ON l.id = b.log, \
                 generate_series(0, length(b.pairs) / 16 - 1) g WHERE l.origin = '{origin}' \
                 GROUP BY 1, 2 HAVING count(*) > 1) d"
            ),
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        assert_eq!(repeated, 0, "seed {seed}: pairs stored twice in a run");
        // A leaf never logged, and one whose first 8 bytes are a logged
        // leaf's but not the rest: neither is found.
        let mut forged = leaf_hash(&pool_entry(0)).0;
        forged[31] ^= 1;
        let got = follower
            .reader()
            .unwrap()
            .find_leaves(&[leaf_hash(b"never logged"), Hash(forged)])
            .unwrap();
        assert_eq!(got, [None, None]);
    }
}

/// A database written by a server before the leaf index was runs: the
/// migration turns each log's `quire_leaves` rows into one run covering
/// its head, and the log answers lookups and takes commits after it.
#[test]
fn the_migration_turns_leaf_rows_into_a_run() {
    let pg = quire_tests::postgres::shared();
    let db = pg.create_database("leaf_rows").unwrap();
    let url = pg.url_of(&db);
    let origin = "old-rows.example/log";
    let store = open(&url, origin, (1 << 16, 8), Create::Yes);
    let mut w = Writer::new();
    let mut all = Vec::new();
    for k in 0..3u64 {
        let batch: Vec<Vec<u8>> = (0..400).map(|n| pool_entry(k * 1000 + n % 350)).collect();
        let (c, next) = w.commit(&batch, true);
        store.commit(&c).unwrap();
        all.extend(batch);
        w = next;
    }
    drop(store);
    // Back to schema 5: the old table, one row per distinct leaf at its
    // lowest index, and no runs.
    let mut rows = String::new();
    let mut seen = HashMap::new();
    for (i, e) in all.iter().enumerate() {
        let h = leaf_hash(e);
        if let std::collections::hash_map::Entry::Vacant(v) = seen.entry(h) {
            v.insert(i);
            let hex: String = h.0.iter().map(|b| format!("{b:02x}")).collect();
            rows.push_str(&format!(
                "{}(1, '\\x{hex}', {i})",
                if rows.is_empty() { "" } else { "," }
            ));
        }
    }
    pg.psql(
        &db,
        &format!(
            "DROP TABLE quire_leaf_blocks;
             DELETE FROM quire_meta WHERE key = 'leaf_index';
             CREATE TABLE quire_leaves (log BIGINT NOT NULL, leaf BYTEA NOT NULL, idx BIGINT NOT NULL, PRIMARY KEY (log, leaf));
             INSERT INTO quire_leaves (log, leaf, idx) VALUES {rows};
             UPDATE quire_schema SET version = 5"
        ),
    )
    .unwrap();
    let store = open(&url, origin, (1 << 16, 8), Create::No);
    assert_eq!(
        pg.psql(&db, "SELECT to_regclass('quire_leaves') IS NULL, count(DISTINCT run) FROM quire_leaf_blocks")
            .unwrap()
            .trim(),
        "t|1"
    );
    let leaves: Vec<Hash> = seen.keys().copied().collect();
    let got = store.reader().unwrap().find_leaves(&leaves).unwrap();
    for (leaf, got) in leaves.iter().zip(got) {
        assert_eq!(got, seen.get(leaf).map(|i| *i as u64));
    }
    // It takes commits after the migration, and still finds old and new.
    let (c, _) = w.commit(&[pool_entry(0), pool_entry(99_999)], true);
    store.commit(&c).unwrap();
    let got = store
        .reader()
        .unwrap()
        .find_leaves(&[leaf_hash(&pool_entry(0)), leaf_hash(&pool_entry(99_999))])
        .unwrap();
    // The store appends what it is given: the repeat lands at 1200, the new
    // entry at 1201, and the repeat's lowest index is still 0.
    assert_eq!(got, [Some(0), Some(1201)]);
}

/// The psql answer of `sql` against `url`, trimmed.
fn sql(url: &str, sql: &str) -> String {
    quire_tests::postgres::psql(url, sql)
        .unwrap()
        .trim()
        .to_owned()
}

/// Commits pool entries `[from, from + n)`, each in `model` at its index.
fn commit_pool(store: &PgStore, w: &mut Writer, model: &mut HashMap<Hash, u64>, from: u64, n: u64) {
    let batch: Vec<Vec<u8>> = (from..from + n).map(pool_entry).collect();
    let size = w.head().size;
    let (c, next) = w.commit(&batch, true);
    store.commit(&c).unwrap();
    *w = next;
    for (i, e) in (size..).zip(&batch) {
        model.insert(leaf_hash(e), i);
    }
}

/// A new log's rows, read with psql.
struct Rows {
    url: String,
    log: String,
}

impl Rows {
    fn of(url: &str, origin: &str) -> Self {
        let log = sql(
            url,
            &format!("SELECT id FROM quire_logs WHERE origin = '{origin}'"),
        );
        Rows {
            url: url.to_owned(),
            log,
        }
    }

    /// The run id reserved under `key`, or "none".
    fn reserved(&self, key: &str) -> String {
        sql(
            &self.url,
            &format!("SELECT coalesce((SELECT ('x' || encode(value, 'hex'))::bit(64)::bigint FROM quire_meta WHERE log = {} AND key = '{key}')::text, 'none')", self.log),
        )
    }

    /// The blocks of `run`.
    fn blocks_of(&self, run: &str) -> String {
        sql(
            &self.url,
            &format!(
                "SELECT count(*) FROM quire_leaf_blocks WHERE log = {} AND run = {run}",
                self.log
            ),
        )
    }

    /// Each run with blocks, as `run:blocks`, by run.
    fn runs(&self) -> String {
        sql(
            &self.url,
            &format!("SELECT string_agg(run::text || ':' || n::text, ',' ORDER BY run) FROM (SELECT run, count(*) n FROM quire_leaf_blocks WHERE log = {} GROUP BY run) r", self.log),
        )
    }
}

/// A new log named after `name` on the shared server, its leaf index
/// flushed every 100 leaves and merged `fanout` runs at a time: the
/// server, the log's writer and its rows.
fn beside_log(
    name: &str,
    fanout: usize,
) -> (
    &'static quire_tests::postgres::Postgres,
    String,
    PgStore,
    Rows,
) {
    let pg = quire_tests::postgres::shared();
    let origin = quire_tests::postgres::unique(&format!("{name}.example/log"));
    let store = open(&pg.url, &origin, (BESIDE_FLUSH, fanout), Create::Yes);
    let rows = Rows::of(&pg.url, &origin);
    (pg, origin, store, rows)
}

/// The flush of the tests of writing beside the commits.
const BESIDE_FLUSH: usize = 100;

/// Polls (bounded) until `ready` holds of `store`.
fn wait_for(store: &PgStore, ready: fn(&PgStore) -> bool, what: &str) {
    for _ in 0..3000 {
        if ready(store) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no {what} written beside the commits within 30 s");
}

/// Polls (bounded) until a run written beside the commits waits.
fn wait_ready(store: &PgStore) {
    wait_for(store, PgStore::leaf_run_ready, "leaf index run");
}

/// A memtable's run is written beside the commits: the commit that fills
/// it reserves an id, the run is written under it on a connection of its
/// own, and a later commit takes it (checking its blocks) and clears the
/// reservation. A reservation left by a writer that stopped is moved to
/// the runs to delete by the next writer's first commit, and its blocks
/// go.
#[test]
fn a_run_is_written_beside_the_commits_and_a_stale_reservation_is_collected() {
    let (pg, origin, store, rows) = beside_log("runs-beside", 8);
    let flush = BESIDE_FLUSH;
    let reserved = || rows.reserved("leaf_index_reserved");
    let blocks_of = |run: &str| rows.blocks_of(run);
    let mut w = Writer::new();
    let mut model: HashMap<Hash, u64> = HashMap::new();
    let m = &mut model;
    // The first flush of leaves reserves a run id; nothing is a run yet.
    commit_pool(&store, &mut w, m, 0, flush as u64);
    let first = reserved();
    assert_ne!(
        first, "none",
        "no run reserved by the commit that filled the memtable"
    );
    wait_ready(&store);
    assert_eq!(
        blocks_of(&first),
        "1",
        "the run's one block, written beside"
    );
    // The next commit takes it: the reservation goes, the state names it.
    commit_pool(&store, &mut w, m, 1000, 1);
    assert_eq!(reserved(), "none");
    assert!(!store.leaf_run_ready());
    let leaves: Vec<Hash> = (0..flush as u64)
        .chain(1000..1001)
        .map(|n| leaf_hash(&pool_entry(n)))
        .collect();
    let want: Vec<Option<u64>> = leaves.iter().map(|l| m.get(l).copied()).collect();
    assert_eq!(store.reader().unwrap().find_leaves(&leaves).unwrap(), want);
    // A second replica, which writes nothing, finds them in the run.
    let follower = open(&pg.url, &origin, (flush, 8), Create::No);
    assert_eq!(
        follower.reader().unwrap().find_leaves(&leaves).unwrap(),
        want
    );
    // A leaf of the run said new is refused by its block, probed.
    let (mut c, _) = w.commit(&[pool_entry(5)], true);
    c.new_leaves = true;
    assert!(matches!(
        store.commit(&c).unwrap_err(),
        quire_server::store::StoreError::LeafStored(_)
    ));
    // The next flush reserves again; the writer stops once its run is
    // written, before any commit takes it.
    commit_pool(&store, &mut w, m, 2000, flush as u64);
    let stale = reserved();
    assert_ne!(stale, "none");
    assert_ne!(stale, first);
    wait_ready(&store);
    assert_eq!(blocks_of(&stale), "1");
    drop(store);
    // A new writer owns no run under that reservation: its first commit
    // moves it to the runs to delete, and a later one deletes its block.
    let store = open(&pg.url, &origin, (flush, 8), Create::No);
    commit_pool(&store, &mut w, m, 3000, 1);
    assert_ne!(reserved(), stale);
    commit_pool(&store, &mut w, m, 3001, 1);
    assert_eq!(
        blocks_of(&stale),
        "0",
        "the stale reservation's block is deleted"
    );
    let leaves: Vec<Hash> = m.keys().copied().collect();
    let want: Vec<Option<u64>> = leaves.iter().map(|l| m.get(l).copied()).collect();
    assert_eq!(store.reader().unwrap().find_leaves(&leaves).unwrap(), want);
    assert_eq!(
        follower.reader().unwrap().find_leaves(&leaves).unwrap(),
        want
    );
}

/// Runs merged beside the commits: once two runs of a size are taken
/// (fanout 2), the commit that took the second reserves their merge, the
/// merge is written beside, a later commit takes it in their place, and
/// the next deletes their blocks. Lookups and the check of leaves said
/// new find everything through it, on the writer and a second replica.
#[test]
fn runs_are_merged_beside_the_commits() {
    let (pg, origin, store, rows) = beside_log("merges-beside", 2);
    let flush = BESIDE_FLUSH;
    let follower = open(&pg.url, &origin, (flush, 2), Create::No);
    let runs = || rows.runs();
    let merge_reserved = || rows.reserved("leaf_index_merge_reserved");
    let mut w = Writer::new();
    let mut model: HashMap<Hash, u64> = HashMap::new();
    let m = &mut model;
    // Two runs of a flush each, taken one after the other.
    commit_pool(&store, &mut w, m, 0, flush as u64);
    wait_ready(&store);
    commit_pool(&store, &mut w, m, 1000, 1);
    assert_eq!(merge_reserved(), "none", "one run is nothing to merge");
    commit_pool(&store, &mut w, m, 2000, flush as u64 - 1);
    wait_ready(&store);
    let two = runs();
    assert_eq!(two.split(',').count(), 2, "{two}");
    commit_pool(&store, &mut w, m, 3000, 1);
    let output = merge_reserved();
    assert_ne!(
        output, "none",
        "the commit taking the second run reserves their merge"
    );
    wait_for(&store, PgStore::leaf_merge_ready, "leaf index merge");
    // Taken: its blocks checked, the inputs now to delete.
    commit_pool(&store, &mut w, m, 4000, 1);
    assert_eq!(merge_reserved(), "none");
    assert!(!store.leaf_merge_ready());
    commit_pool(&store, &mut w, m, 4001, 1);
    // Only the merge's run is left, its 200 pairs in one block: the
    // inputs' blocks are deleted.
    assert_eq!(runs(), format!("{output}:1"), "after {two}");
    let leaves: Vec<Hash> = m.keys().copied().collect();
    let want: Vec<Option<u64>> = leaves.iter().map(|l| m.get(l).copied()).collect();
    assert_eq!(store.reader().unwrap().find_leaves(&leaves).unwrap(), want);
    assert_eq!(
        follower.reader().unwrap().find_leaves(&leaves).unwrap(),
        want
    );
    for entry in [pool_entry(3), pool_entry(2050)] {
        let (mut c, _) = w.commit(&[entry], true);
        c.new_leaves = true;
        assert!(matches!(
            store.commit(&c).unwrap_err(),
            quire_server::store::StoreError::LeafStored(_)
        ));
    }
}
