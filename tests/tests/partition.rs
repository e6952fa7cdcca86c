//! The leading replica cut off from the database by the network, not by a
//! crash: three `quire-server` replicas on one log in PostgreSQL, each
//! reaching the database through a loopback address of its own, inside a
//! network namespace the test makes (`unshare --net`); nftables
//! (`scripts/partition`) drops every packet between the leader and the
//! database, both ways, while the leader itself runs on and its clients,
//! its witnesses and the other replicas still reach it. Its lease runs out
//! on its own clock before anyone else's can begin: it must stop signing,
//! another replica takes over, and once the path is back it follows the
//! new leader and signs nothing of its own. Twice, under writers, and the
//! checks of [`quire_tests::replicas`] after each.
//!
//! Faults are placed by counting acknowledgements; waits are bounded polls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_tests::replicas::Replicas;
use quire_tests::{netns, postgres};

const ORIGIN: &str = "partition.example/log";
const ALL: [&str; 3] = ["a", "b", "c"];

/// The loopback address replica `name` reaches the database through.
fn address(name: &str) -> &'static str {
    match name {
        "a" => "127.0.0.11",
        "b" => "127.0.0.12",
        _ => "127.0.0.13",
    }
}

#[test]
fn a_leader_cut_off_from_the_database_stops_signing_and_follows() {
    if !netns::inside("a_leader_cut_off_from_the_database_stops_signing_and_follows") {
        return;
    }
    let addrs: Vec<&str> = ALL.iter().map(|n| address(n)).collect();
    let pg = postgres::start_listening(&addrs).unwrap();
    let db = pg.create_database("partition").unwrap();
    let port = pg.port;
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Replicas::new(pg.url_of(&db), tmp.path(), ORIGIN);
    for n in ALL {
        f.routes.insert(n, pg.url_at(&db, address(n)));
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            for n in ALL {
                f.start(n);
            }
            f.start_witnesses(2);
            let mut leader = f.wait_leader(None).await;
            f.write(20, &ALL).await;
            f.sample().await;
            for _ in 0..2 {
                let before = f.epoch();
                let load = f.load(3, &ALL);
                f.wait_acked(f.acked() + 30).await;
                netns::cut(address(&leader), port).unwrap();
                // Another replica takes over once the lease ran out, and
                // the writers go on through the others (a write sent to
                // the cut one fails and goes to the next).
                let next = f.wait_leader(Some(&leader)).await;
                f.wait_acked(f.acked() + 30).await;
                load.stop().await;
                // What the cut one serves now is what it served before the
                // cut: stored, consistent, the witnesses' too.
                f.sample().await;
                assert!(f.epoch() > before, "a new epoch after the cut");
                netns::heal().unwrap();
                // Back, it follows: writes through it reach the new leader,
                // and it serves the new leader's checkpoints.
                f.write(20, &[leader.as_str(), next.as_str()]).await;
                f.verify().await;
                leader = f.wait_leader(None).await;
            }
            f.write(10, &ALL).await;
            f.verify().await;
        });
}
