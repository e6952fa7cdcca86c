//! A commit PostgreSQL refuses never writes its signed checkpoint, not even
//! into a transaction that rolls back: that would put a signed note over a
//! tree the log never had into the database's WAL, its standbys and its
//! backups. Checked on the checkpoint table's pages themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Commit, Storage, StoreError};
use quire_tests::commits::{entries, Writer};

/// How many tuples on the pages of `quire_checkpoints`, dead ones too,
/// hold `note`. The page inspector is installed, and the table's vacuum
/// turned off, once for the tests of this binary.
fn on_pages(url: &str, note: &[u8]) -> u64 {
    static READY: std::sync::Once = std::sync::Once::new();
    READY.call_once(|| {
        quire_tests::postgres::psql(
            url,
            "CREATE EXTENSION IF NOT EXISTS pageinspect;
             ALTER TABLE quire_checkpoints SET (autovacuum_enabled = false)",
        )
        .unwrap();
    });
    let hex: String = note.iter().map(|b| format!("{b:02x}")).collect();
    quire_tests::postgres::psql(
        url,
        &format!(
            "SELECT count(*) FROM generate_series(0, (pg_relation_size('quire_checkpoints') / 8192)::int - 1) AS p,
             LATERAL heap_page_items(get_raw_page('quire_checkpoints', p)) AS t
             WHERE position('\\x{hex}'::bytea IN t.t_data) > 0"
        ),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

/// A commit the database refuses never writes its signed checkpoint, not
/// even into a transaction that rolls back: that would put a signed note
/// over a tree the log never had into PostgreSQL's WAL, its standbys and
/// its backups. Refused here: a stale base, a lease gone, a standby
/// required and missing, and a leaf index changed under the writer. Checked on the
/// table's pages themselves (`pageinspect`), which keep the dead tuples of
/// rolled-back inserts until a vacuum (off for the table meanwhile).
#[test]
fn postgres_never_writes_the_checkpoint_of_a_refused_commit() {
    use std::time::Duration;
    let pg = quire_tests::postgres::shared();
    let origin = quire_tests::postgres::unique("refused.example/log");
    let store = quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    let note = |what: &str| format!("{what} {origin}").into_bytes();
    let with_note = |mut c: Commit, what: &str| {
        c.checkpoint.as_mut().unwrap().note = note(what);
        c
    };
    let on_pages = |what: &str| on_pages(&pg.url, &note(what));

    let w = Writer::new();
    let (c, next) = w.commit(&entries(0, 10), true);
    store.commit(&with_note(c, "kept")).unwrap();
    let w = next;

    // The leaf index's stored state is not the one the commit's step was
    // computed from (another writer's step): a valid state, but another.
    quire_tests::postgres::psql(
        &pg.url,
        &format!(
            "INSERT INTO quire_meta (log, key, value)
             SELECT id, 'leaf_index', '\\x01'::bytea || int8send(7) || int8send(0) || int8send(0) || int8send(0)
             FROM quire_logs WHERE origin = '{origin}'
             ON CONFLICT (log, key) DO UPDATE SET value = EXCLUDED.value"
        ),
    )
    .unwrap();
    let (c, _) = w.commit(&entries(200, 2), true);
    let e = store.commit(&with_note(c, "leaf-state")).unwrap_err();
    assert!(e.to_string().contains("leaf index changed"), "{e}");
    quire_tests::postgres::psql(
        &pg.url,
        &format!("DELETE FROM quire_meta USING quire_logs l WHERE quire_meta.log = l.id AND l.origin = '{origin}' AND quire_meta.key = 'leaf_index'"),
    )
    .unwrap();
    // A stale base.
    let (c, _) = Writer::new().commit(&entries(100, 3), true);
    let e = store.commit(&with_note(c, "stale")).unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}");
    // A synchronous standby required, and none streams.
    let replicated = PgStore::open(
        &PgOptions {
            sync_standbys: Some(1),
            ..PgOptions::new(pg.url.clone())
        },
        &origin,
        Create::No,
    )
    .unwrap();
    let (c, _) = w.commit(&entries(300, 2), true);
    let e = replicated
        .commit(&with_note(c, "unreplicated"))
        .unwrap_err();
    assert!(matches!(e, StoreError::NotReplicated(_)), "{e:?}");
    // A lease taken over.
    let (a, b) = (
        quire_tests::postgres::store(&origin, Create::No).unwrap(),
        quire_tests::postgres::store(&origin, Create::No).unwrap(),
    );
    let la = a
        .acquire("a", "http://a", Duration::from_secs(60))
        .unwrap()
        .unwrap();
    a.release(&la).unwrap();
    b.acquire("b", "http://b", Duration::from_secs(60))
        .unwrap()
        .unwrap();
    let (c, _) = w.commit(&entries(400, 2), true);
    let e = a.commit(&with_note(c, "lease-gone")).unwrap_err();
    assert!(matches!(e, StoreError::NotLeader(_)), "{e:?}");

    assert_eq!(on_pages("kept"), 1, "the pages show a stored checkpoint");
    for what in ["stale", "leaf-state", "unreplicated", "lease-gone"] {
        assert_eq!(
            on_pages(what),
            0,
            "the checkpoint of a commit refused: {what}"
        );
    }
}

/// A commit's writes go in one round trip with its `COMMIT`, so what each
/// wrote is checked by PostgreSQL itself. A write that finds other rows
/// than its commit planned (a tile row of another length, a row that
/// should be new and exists) aborts the transaction: the error names the
/// row and the count, the `COMMIT` behind it rolls back, nothing of the
/// commit is stored (its signed checkpoint not even in a rolled-back
/// tuple), and the same store commits again once the rows are mended.
#[test]
fn postgres_aborts_a_commit_whose_writes_find_other_rows() {
    let pg = quire_tests::postgres::shared();
    let origin = quire_tests::postgres::unique("rowcheck.example/log");
    let store = quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    let sql = |q: &str| {
        quire_tests::postgres::psql(&pg.url, q)
            .unwrap()
            .trim()
            .to_owned()
    };
    let id = sql(&format!(
        "SELECT id FROM quire_logs WHERE origin = '{origin}'"
    ));
    let stored = || {
        sql(&format!(
            "SELECT (SELECT size FROM quire_heads WHERE log = {id}),
                    (SELECT coalesce(sum(n), 0) FROM quire_entries WHERE log = {id}),
                    (SELECT count(*) FROM quire_checkpoints WHERE log = {id})"
        ))
    };
    // Notes made unique by the origin: every test of the binary writes to
    // the one table.
    let note = |size: u64| format!("note of size {size} {origin}").into_bytes();
    let note_on_pages = |size: u64| on_pages(&pg.url, &note(size));
    let with_note = |mut c: Commit| {
        let size = c.head.size;
        c.checkpoint.as_mut().unwrap().note = note(size);
        c
    };

    let (c, w) = Writer::new().commit(&entries(0, 10), true);
    store.commit(&with_note(c)).unwrap();
    assert_eq!(stored(), "10|10|1");
    // The next commit appends to tile row 0/0 and starts mid row 0/0.
    let c = with_note(w.commit(&entries(10, 10), true).0);
    // Refused, naming the rows, with nothing of the commit stored.
    let refused = |why: &str| {
        let e = store.commit(&c).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert!(e.to_string().contains(why), "{e}");
        assert_eq!(
            stored(),
            "10|10|1",
            "nothing of the refused commit is stored"
        );
    };
    let row = |mid: bool| format!("log = {id} AND mid = {mid} AND level = 0 AND idx = 0");

    // A tile row one hash shorter than the commit extends.
    let full = sql(&format!(
        "SELECT encode(hashes, 'hex') FROM quire_tiles WHERE {}",
        row(false)
    ));
    assert_eq!(full.len(), 10 * 64);
    sql(&format!(
        "UPDATE quire_tiles SET hashes = substring(hashes FROM 1 FOR 288) WHERE {}",
        row(false)
    ));
    refused("tile row 0/0 (not 10 hashes long): 0 rows written, expected 1");
    sql(&format!(
        "UPDATE quire_tiles SET hashes = '\\x{full}' WHERE {}",
        row(false)
    ));

    // A row the commit starts exists already.
    sql(&format!(
        "INSERT INTO quire_tiles (log, mid, level, idx, hashes) VALUES ({id}, true, 0, 0, '\\x00')"
    ));
    refused("1 new tile and mid rows (some exist already): 0 rows written, expected 1");
    assert_eq!(
        note_on_pages(20),
        0,
        "the refused commit's checkpoint was never written"
    );
    sql(&format!("DELETE FROM quire_tiles WHERE {}", row(true)));

    // Mended, the same commit goes through on the same store.
    store.commit(&c).unwrap();
    assert_eq!(stored(), "20|20|2");
    assert_eq!(note_on_pages(20), 1, "the pages show the stored checkpoint");

    // A bundle a commit fills alone (written in its first round trip,
    // behind the locks) exists already: the commit is refused naming the
    // bundle's row, not the aborted transaction the statements behind it
    // met, and nothing of it is stored.
    let w = w.commit(&entries(10, 10), true).1;
    let (c, w) = w.commit(&entries(20, 236), true);
    store.commit(&with_note(c)).unwrap();
    assert_eq!(stored(), "256|0|3");
    let c = with_note(w.commit(&entries(256, 256), true).0);
    sql(&format!(
        "INSERT INTO quire_bundles (log, idx, data) VALUES ({id}, 1, '\\x00')"
    ));
    let e = store.commit(&c).unwrap_err();
    // PostgreSQL's own words are in the error's text, as a log line or a
    // gRPC status shows it: not only "db error".
    let said = e.to_string();
    assert!(said.contains("duplicate key value"), "{said}");
    assert!(said.contains("quire_bundles"), "{said}");
    assert!(!said.contains("aborted"), "{said}");
    assert_eq!(
        stored(),
        "256|0|3",
        "nothing of the refused commit is stored"
    );
    sql(&format!(
        "DELETE FROM quire_bundles WHERE log = {id} AND idx = 1"
    ));
    store.commit(&c).unwrap();
    assert_eq!(stored(), "512|0|4");
}
