//! PostgreSQL's leaf index filters and durability, on a real server: a
//! run's filter is kept only while its leaves are durable or its commit's
//! outcome is still open. A commit made before it is settled can be lost
//! in a failover, and its run number given to a run over other leaves: a
//! filter of the lost run would then hide leaves that are stored
//! (`server/src/store/leaf_index/cache.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_core::{leaf_hash, Hash};
use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Storage, StorageReader};
use quire_tests::commits::Writer;

/// Leaves a run holds: a commit of more than two runs' worth writes its
/// run in the commit.
const FLUSH: usize = 16;

fn open(url: &str, origin: &str, create: Create) -> PgStore {
    PgStore::open(
        &PgOptions {
            leaf_flush: FLUSH,
            leaf_fanout: 8,
            ..PgOptions::new(url.to_owned())
        },
        origin,
        create,
    )
    .unwrap()
}

fn entry(n: u64) -> Vec<u8> {
    format!("filtered entry {n}").into_bytes()
}

/// Looks the first `n` entries up (and one never logged) through
/// `store`, checking every answer.
fn lookups_right(store: &PgStore, n: u64) {
    let mut leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&entry(i))).collect();
    leaves.push(leaf_hash(b"never logged"));
    let mut want: Vec<Option<u64>> = (0..n).map(Some).collect();
    want.push(None);
    assert_eq!(store.reader().unwrap().find_leaves(&leaves).unwrap(), want);
}

/// Polls (bounded), looking leaves up meanwhile, until `store` holds a
/// filter.
fn wait_for_filters(store: &PgStore, n: u64, what: &str) {
    for _ in 0..3000 {
        lookups_right(store, n);
        if store.leaf_index_filter_bytes() > 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no leaf index filter built within 30 s: {what}");
}

/// The writer keeps the filter of a run its unsettled commit made until a
/// later commit of its fails; the filter is built again from the database once
/// the commit is settled. A second replica builds filters only for runs
/// shown durable. Lookups are right throughout, probing a run without a
/// filter.
#[test]
fn leaf_filters_are_kept_only_over_leaves_shown_durable() {
    let pg = quire_tests::postgres::shared();
    let origin = quire_tests::postgres::unique("leaf-filters.example/log");
    let store = open(&pg.url, &origin, Create::Yes);
    // A commit of a bundle's entries and more is made unsettled.
    let n = 300;
    let batch: Vec<Vec<u8>> = (0..n).map(entry).collect();
    let (c, w) = Writer::new().commit(&batch, true);
    store.commit_unsettled(&c).unwrap();
    assert!(
        store.leaf_index_filter_bytes() > 0,
        "the filter of the run the commit wrote"
    );
    lookups_right(&store, n);

    // Another writer commits on top, so the writer's next commit is
    // refused: the unsettled commit is not shown durable to it, so its
    // run's filter goes.
    let other = open(&pg.url, &origin, Create::No);
    other.commit(&w.commit(&[entry(1_000)], true).0).unwrap();
    assert!(store.commit(&w.commit(&[entry(2_000)], true).0).is_err());
    assert_eq!(store.leaf_index_filter_bytes(), 0);
    lookups_right(&store, n);

    // Settled, the run's filter is built from what is stored.
    store.settle(n).unwrap();
    wait_for_filters(&store, n, "the writer's, after the settle");

    // A second replica: its reads alone show nothing durable.
    let follower = open(&pg.url, &origin, Create::No);
    lookups_right(&follower, n);
    assert_eq!(follower.leaf_index_filter_bytes(), 0);
    // What the server published (here: settled above) is shown durable.
    follower.shown_durable(&follower.reader().unwrap());
    wait_for_filters(&follower, n, "the second replica's, once shown durable");
}
