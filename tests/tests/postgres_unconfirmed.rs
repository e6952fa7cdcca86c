//! What PostgreSQL committed on the primary but no synchronous standby
//! confirmed is never served or built on: a failover may drop it.
//! PostgreSQL shows such commits to every read, as here: a server of the
//! test's own names a synchronous standby that never connects, and a
//! commit that requires none has its wait for it cancelled (PostgreSQL
//! answers success with a warning, the commit made locally; the same as
//! after a primary restarted from a crash while commits waited). A
//! durable read view (what a follower serves and a sequencer starts from)
//! refuses that head until the standbys have flushed it: a follower does
//! not start serving it, and one serving already keeps what it served
//! until no standby is required.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::time::Duration;

use quire_core::{LogKeyAlgorithm, LogSigner};
use quire_server::config::Config;
use quire_server::follow::{FollowError, FollowOptions};
use quire_server::local::LocalServer;
use quire_server::log::Log;
use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Storage, StorageReader, StoreError};
use quire_tests::commits::{entries, Writer};

#[test]
fn postgres_never_serves_a_commit_no_synchronous_standby_confirmed() {
    let pg = quire_tests::postgres::start_new().unwrap();
    let db = pg.create_database("unconfirmed").unwrap();
    let url = pg.url_of(&db);
    let origin = "unconfirmed.example/log";
    // Commits that do not ask for a standby (so the commit reaches its
    // `COMMIT`), with a deadline far beyond the test's polling.
    let no_check = PgOptions {
        sync_standbys: Some(0),
        timeout: Duration::from_secs(120),
        ..PgOptions::new(url.clone())
    };
    let w = Writer::new();
    let (c, w) = w.commit(&entries(0, 10), true);
    {
        let store = PgStore::open(&no_check, origin, Create::Yes).unwrap();
        store.commit(&c).unwrap();
        // Durable: no standby is named or required yet.
        let r = store.durable_reader().unwrap();
        assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 10);
    }

    // A log served by a server (its commits ask for no standby) and
    // followed by a replica that requires one when one is named (the
    // default), in a database of its own.
    let db2 = pg.create_database("followed").unwrap();
    let url2 = pg.url_of(&db2);
    let followed = "followed.example/log";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = quire_tests::postgres::log_config(followed, &url2);
    cfg.storage.sync_standbys = Some(0);
    cfg.storage.timeout_ms = 120_000;
    let server = rt
        .block_on(LocalServer::start(
            &data.path().join("server"),
            vec![cfg],
            Config::default(),
        ))
        .unwrap();
    rt.block_on(server.logs[0].add(entries(0, 10))).unwrap();
    let follower = Log::open_follower(
        PgStore::open(&PgOptions::new(url2.clone()), followed, Create::No).unwrap(),
        FollowOptions::new(followed, server.logs[0].verifiers().to_vec()),
    )
    .unwrap();
    assert_eq!(follower.latest().stored.size, 10);

    // A synchronous standby named that never connects: every COMMIT waits.
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'never_connects'",
    )
    .unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    quire_tests::poll("the setting", || {
        (pg.psql("postgres", "SHOW synchronous_standby_names")
            .ok()?
            .trim()
            == "never_connects")
            .then_some(())
    });

    // The commit waits for the standby; its wait is cancelled.
    let store = PgStore::open(&no_check, origin, Create::No).unwrap();
    let (c, _) = w.commit(&entries(10, 5), true);
    let committing = std::thread::spawn(move || store.commit(&c));
    pg.cancel_waiting_commit(&db).unwrap();
    // It asked for no standby: PostgreSQL's success with a warning is one.
    // (One that asks for a standby is of unknown outcome unless shown on
    // it: tests/tests/pg_formation.rs, with a real standby.)
    committing.join().unwrap().unwrap();
    // PostgreSQL did commit it, on the primary alone: every read sees it.
    let sizes = pg
        .psql(
            &db,
            "SELECT h.size FROM quire_heads h JOIN quire_logs l ON l.id = h.log",
        )
        .unwrap();
    assert_eq!(sizes.trim(), "15");

    // A store that requires a standby when one is named (the default)
    // reads it, but a durable view refuses it: no standby flushed it.
    let store = PgStore::open(&PgOptions::new(url.clone()), origin, Create::No).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 15);
    match store.durable_reader() {
        Err(StoreError::NotDurable(why)) => assert!(
            why.contains("0 of 1 required synchronous standbys flushed the WAL up to"),
            "{why}"
        ),
        Err(e) => panic!("{e:?}"),
        Ok(r) => panic!(
            "a durable view of size {:?}",
            r.latest_checkpoint().unwrap().map(|c| c.size)
        ),
    }
    // So a follower does not start serving it.
    let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, origin).unwrap();
    let refused = Log::open_follower(
        store.clone(),
        FollowOptions::new(origin, vec![signer.verifier()]),
    )
    .map(drop)
    .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("not yet on the synchronous standbys its commits require"),
        "{refused}"
    );
    // The server's next commit is made the same way and acknowledged (it
    // asked for no standby); the follower keeps serving what it served.
    let log = server.logs[0].clone();
    let adding = rt.spawn(async move { log.add(entries(10, 1)).await });
    pg.cancel_waiting_commit(&db2).unwrap();
    rt.block_on(adding).unwrap().map(drop).unwrap();
    match follower.refresh() {
        Err(FollowError::Store(StoreError::NotDurable(_))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(follower.latest().stored.size, 10);
    // One that requires none reads it as durable.
    let r = PgStore::open(&no_check, origin, Create::No)
        .unwrap()
        .durable_reader()
        .unwrap();
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 15);
    // The standby no longer named, with standbys still required by
    // default for this log? None was ever confirmed, so none is: durable.
    pg.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names")
        .unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    quire_tests::poll("the setting reset", || {
        pg.psql("postgres", "SHOW synchronous_standby_names")
            .ok()?
            .trim()
            .is_empty()
            .then_some(())
    });
    // And the follower takes the server's commit: no standby is named.
    assert!(follower.refresh().unwrap());
    assert_eq!(follower.latest().stored.size, 11);
    rt.block_on(server.stop());
    let store = PgStore::open(&PgOptions::new(url), origin, Create::No).unwrap();
    assert_eq!(
        store
            .durable_reader()
            .unwrap()
            .latest_checkpoint()
            .unwrap()
            .unwrap()
            .size,
        15
    );
}
