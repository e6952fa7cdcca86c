//! The sequencer's commits are made unsettled (`synchronous_commit = off`
//! for their transaction) and settled before anything they carry is
//! answered or published: a small transaction on another connection that
//! sees the commit's checkpoint, writes WAL and waits for its own flush
//! and the standbys. Settles are paused here (`PgStore::pause_settles`) to
//! place what the database holds between a commit and its settle by
//! counting, never by time. A commit of fewer than 256 entries is made
//! durably instead.
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

/// Entries of a commit made unsettled (a smaller one commits durably).
const N: usize = 300;
const SIZE: u64 = N as u64;

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
    let (c1, w) = w.commit(&entries(0, N), true);
    let (c2, w) = w.commit(&entries(N, N), true);
    // Below the threshold: committed durably, nothing to settle.
    let (small, _) = w.commit(&entries(2 * N, 5), true);
    let paused = store.pause_settles();
    store.commit_unsettled(&c1).unwrap();
    store.commit_unsettled(&c2).unwrap();
    // Made: every read sees them, and the next commit extended the first.
    let latest = |s: &quire_server::store::postgres::PgStore| {
        s.reader()
            .unwrap()
            .latest_checkpoint()
            .unwrap()
            .unwrap()
            .size
    };
    assert_eq!(latest(&store), 2 * SIZE);
    drop(paused);
    store.settle(SIZE).unwrap();
    store.settle(2 * SIZE).unwrap();
    // Nothing left to settle.
    store.settle(2 * SIZE).unwrap();
    let other = quire_tests::postgres::store(&origin, Create::No).unwrap();
    let r = other.durable_reader().unwrap();
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 2 * SIZE);
    assert_eq!(r.entries(0, 2 * SIZE).unwrap().len(), 2 * N);
    // A small commit settles while settles are paused: durable already.
    let paused = store.pause_settles();
    store.commit_unsettled(&small).unwrap();
    store.settle(2 * SIZE + 5).unwrap();
    drop(paused);
    assert_eq!(latest(&store), 2 * SIZE + 5);
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
    let (c, _) = w.commit(&entries(0, N), true);
    let paused = store.pause_settles();
    store.commit_unsettled(&c).unwrap();
    drop_checkpoint(&origin, SIZE);
    drop(paused);
    match store.settle(SIZE) {
        Err(StoreError::Engine(e)) => {
            let e = e.to_string();
            let unknown = format!("the outcome of the commit to size {SIZE} is unknown");
            assert!(e.contains(&unknown), "{e}");
            let lacks = format!("does not hold the checkpoint of size {SIZE}");
            assert!(e.contains(&lacks), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// A commit that does not extend the line this store made (another
/// writer's commit between them, as when the lease went to another
/// replica and came back; a new sequencer that read the head again)
/// starts a new line: the settles pending from before are dropped, never
/// waited for in place of its own. The dropped one would have failed: its
/// checkpoint row was deleted before it ran. A durable commit of this
/// store's own between two extends the line and proves the one before,
/// whose settle then sends nothing (it would have failed too).
#[test]
fn postgres_settles_of_an_abandoned_line_are_not_waited_for() {
    let origin = quire_tests::postgres::unique("line.example/log");
    let store = quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    let other = quire_tests::postgres::store(&origin, Create::No).unwrap();
    let w = Writer::new();
    let (c1, w) = w.commit(&entries(0, N), true);
    let (c2, w) = w.commit(&entries(N, N), true);
    let (c3, w) = w.commit(&entries(2 * N, N), true);
    let (c4, w) = w.commit(&entries(3 * N, N), true);
    let (c5, _) = w.commit(&entries(4 * N, N), true);
    let paused = store.pause_settles();
    store.commit_unsettled(&c1).unwrap();
    drop_checkpoint(&origin, SIZE);
    other.commit(&c2).unwrap();
    store.commit_unsettled(&c3).unwrap();
    drop(paused);
    store.settle(3 * SIZE).unwrap();
    assert_eq!(durable_size(&store), 3 * SIZE);
    let paused = store.pause_settles();
    store.commit_unsettled(&c4).unwrap();
    drop_checkpoint(&origin, 4 * SIZE);
    store.commit(&c5).unwrap();
    drop(paused);
    store.settle(5 * SIZE).unwrap();
    assert_eq!(durable_size(&store), 5 * SIZE);
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
    let adding = rt.spawn(async move { l.add(entries(3, N)).await });
    let want = 3 + SIZE;
    quire_tests::poll("the commit in the database", || {
        (stored_size(&origin) == want).then_some(())
    });
    assert!(!adding.is_finished(), "answered before its commit settled");
    assert_eq!(log.latest().stored.size, 3, "published before settled");
    drop(paused);
    let (added, latest) = rt.block_on(adding).unwrap().unwrap();
    assert_eq!(added.len(), N);
    assert_eq!(latest.stored.size, want);
    assert_eq!(log.latest().stored.size, want);
    rt.block_on(server.stop());
}
