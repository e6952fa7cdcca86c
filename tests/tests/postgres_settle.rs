//! The sequencer's commits are made unsettled (`synchronous_commit = off`
//! for their transaction) and settled before anything they carry is
//! answered or published: a small transaction on another connection that
//! sees the commit's checkpoint, writes WAL and waits for its own flush
//! and the standbys. Settles are paused here (`PgStore::pause_settles`) to
//! place what the database holds between a commit and its settle by
//! counting, never by time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_server::config::Config;
use quire_server::local::LocalServer;
use quire_server::store::any::AnyStore;
use quire_server::store::postgres::Create;
use quire_server::store::{Storage, StorageReader, StoreError};
use quire_tests::commits::{entries, Writer};

/// The stored head size of log `origin` in the shared server's database.
fn stored_size(origin: &str) -> u64 {
    let pg = quire_tests::postgres::shared();
    pg.psql(
        "postgres",
        &format!(
            "SELECT COALESCE((SELECT h.size FROM quire_heads h JOIN quire_logs l ON l.id = h.log
                              WHERE l.origin = '{origin}'), 0)"
        ),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap()
}

/// Deletes the stored checkpoint of `size` of log `origin`, as a server
/// that never received its commit would lack it.
fn drop_checkpoint(origin: &str, size: u64) {
    quire_tests::postgres::shared()
        .psql(
            "postgres",
            &format!(
                "DELETE FROM quire_checkpoints WHERE size = {size}
                 AND log = (SELECT id FROM quire_logs WHERE origin = '{origin}')"
            ),
        )
        .unwrap();
}

/// The size of the latest checkpoint of a durable view of `store`.
fn durable_size(store: &impl Storage) -> u64 {
    let r = store.durable_reader().unwrap();
    r.latest_checkpoint().unwrap().unwrap().size
}

#[test]
fn postgres_settles_unsettled_commits_in_order() {
    let origin = quire_tests::postgres::unique("settled.example/log");
    let store = quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    let w = Writer::new();
    let (c1, w) = w.commit(&entries(0, 10), true);
    let (c2, _) = w.commit(&entries(10, 5), true);
    let paused = store.pause_settles();
    store.commit_unsettled(&c1).unwrap();
    store.commit_unsettled(&c2).unwrap();
    // Made: every read sees them, and the next commit extended the first.
    assert_eq!(
        store
            .reader()
            .unwrap()
            .latest_checkpoint()
            .unwrap()
            .unwrap()
            .size,
        15
    );
    drop(paused);
    store.settle(10).unwrap();
    store.settle(15).unwrap();
    // Nothing left to settle.
    store.settle(15).unwrap();
    let other = quire_tests::postgres::store(&origin, Create::No).unwrap();
    let r = other.durable_reader().unwrap();
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 15);
    assert_eq!(r.entries(0, 15).unwrap().len(), 15);
}

/// A settle on a server that does not hold the commit (here its
/// checkpoint row deleted between the commit and its settle, as a
/// failover to a standby that never received it would leave it) proves
/// nothing: the outcome is unknown, said as such.
#[test]
fn postgres_settle_of_a_commit_the_server_lacks_is_of_unknown_outcome() {
    let origin = quire_tests::postgres::unique("lost.example/log");
    let store = quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    let w = Writer::new();
    let (c, _) = w.commit(&entries(0, 10), true);
    let paused = store.pause_settles();
    store.commit_unsettled(&c).unwrap();
    drop_checkpoint(&origin, 10);
    drop(paused);
    match store.settle(10) {
        Err(StoreError::Engine(e)) => {
            let e = e.to_string();
            assert!(
                e.contains("the outcome of the commit to size 10 is unknown"),
                "{e}"
            );
            assert!(e.contains("does not hold the checkpoint of size 10"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// A commit that does not extend the one made unsettled before it starts
/// a new line (a new sequencer that read the head again after a stop; here
/// a durable commit between them, whose flush covers what came before):
/// the settles pending from before are dropped, never waited for in place
/// of its own. The dropped one would have failed: its checkpoint row was
/// deleted before it ran.
#[test]
fn postgres_settles_of_an_abandoned_line_are_not_waited_for() {
    let origin = quire_tests::postgres::unique("line.example/log");
    let store = quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    let w = Writer::new();
    let (c1, w) = w.commit(&entries(0, 10), true);
    let (c2, w) = w.commit(&entries(10, 5), true);
    let (c3, _) = w.commit(&entries(15, 5), true);
    let paused = store.pause_settles();
    store.commit_unsettled(&c1).unwrap();
    drop_checkpoint(&origin, 10);
    store.commit(&c2).unwrap();
    store.commit_unsettled(&c3).unwrap();
    drop(paused);
    store.settle(20).unwrap();
    assert_eq!(durable_size(&store), 20);
}

/// A write is answered, and its checkpoint published, only once its
/// commit is settled: with settles paused, the commit is in the database
/// and the writer still waits.
#[test]
fn postgres_log_answers_a_write_only_once_its_commit_is_settled() {
    let pg = quire_tests::postgres::shared();
    let origin = quire_tests::postgres::unique("answered.example/log");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let cfg = quire_tests::postgres::log_config(&origin, &pg.url);
    let dir = data.path().join("server");
    let starting = LocalServer::start(&dir, vec![cfg], Config::default());
    let server = rt.block_on(starting).unwrap();
    let log = server.logs[0].clone();
    rt.block_on(log.add(entries(0, 3))).unwrap();
    assert_eq!(log.latest().stored.size, 3);
    let AnyStore::Postgres(store) = log.store() else {
        panic!("not on PostgreSQL");
    };
    let paused = store.pause_settles();
    let l = log.clone();
    let adding = rt.spawn(async move { l.add(entries(3, 4)).await });
    quire_tests::poll("the commit in the database", || {
        (stored_size(&origin) == 7).then_some(())
    });
    assert!(!adding.is_finished(), "answered before its commit settled");
    assert_eq!(log.latest().stored.size, 3, "published before settled");
    drop(paused);
    let (added, latest) = rt.block_on(adding).unwrap().unwrap();
    assert_eq!(added.len(), 4);
    assert_eq!(latest.stored.size, 7);
    assert_eq!(log.latest().stored.size, 7);
    rt.block_on(server.stop());
}
