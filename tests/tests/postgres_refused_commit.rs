//! A commit PostgreSQL refuses never writes its signed checkpoint, not even
//! into a transaction that rolls back: that would put a signed note over a
//! tree the log never had into the database's WAL, its standbys and its
//! backups. Checked on the checkpoint table's pages themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Commit, Storage, StoreError};
use quire_tests::commits::{entries, Writer};

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
    quire_tests::postgres::psql(
        &pg.url,
        "CREATE EXTENSION IF NOT EXISTS pageinspect;
         ALTER TABLE quire_checkpoints SET (autovacuum_enabled = false)",
    )
    .unwrap();
    let note = |what: &str| format!("{what} {origin}").into_bytes();
    let with_note = |mut c: Commit, what: &str| {
        c.checkpoint.as_mut().unwrap().note = note(what);
        c
    };
    let on_pages = |what: &str| -> u64 {
        let hex: String = note(what).iter().map(|b| format!("{b:02x}")).collect();
        quire_tests::postgres::psql(
            &pg.url,
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
    };

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
