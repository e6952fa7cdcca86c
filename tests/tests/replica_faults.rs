//! Three `quire-server` replica processes on one log in PostgreSQL (a real
//! server started by `scripts/postgres`) and two witnesses fed every
//! checkpoint any replica serves, under faults: the leader SIGKILLed while
//! writers write, the next one SIGSTOPped past its lease and woken, the
//! killed one restarted, a second server from one configuration; and a
//! lone replica whose PostgreSQL server stops and starts again. After
//! each: the checks of [`quire_tests::replicas`], and writes going on.
//!
//! Faults are placed by counting acknowledgements; waits are bounded polls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_tests::postgres;
use quire_tests::replicas::Replicas;
use quire_tests::server::{free_port, ServerProcess};

const ORIGIN: &str = "faults.example/log";

fn replicas(db: &str, dir: &std::path::Path) -> Replicas {
    let pg = postgres::shared();
    let db = pg.create_database(db).unwrap();
    Replicas::new(pg.url_of(&db), dir, ORIGIN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_a_killed_and_a_paused_leader_without_a_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = replicas("faults", tmp.path());
    f.start("a");
    f.start("b");
    f.start("c");
    f.start_witnesses(2);
    let first = f.wait_leader(None).await;
    f.write(20, &["a", "b", "c"]).await;
    f.sample().await;

    // Twice: SIGKILL the leader while three writers write, after 30 more
    // acknowledgements; the others take over and the writes go on. The
    // killed one comes back as a follower.
    let mut leader = first;
    for _ in 0..2 {
        let load = f.load(3, &["a", "b", "c"]);
        f.wait_acked(f.acked() + 30).await;
        let killed = f.kill(&leader);
        f.wait_acked(f.acked() + 30).await;
        load.stop().await;
        leader = f.wait_leader(Some(killed)).await;
        f.sample().await;
        f.start(killed);
        f.verify().await;
    }

    // SIGSTOP the leader past its lease: another takes over.
    let paused = leader.clone();
    f.procs[paused.as_str()].signal("STOP");
    let next = f.wait_leader(Some(&paused)).await;
    let live: Vec<&str> = f.procs.keys().copied().filter(|n| *n != paused).collect();
    f.write(20, &live).await;
    // Woken, it must not sign: its commits are refused, it steps down, and
    // writes sent to it go to the new leader.
    f.procs[paused.as_str()].signal("CONT");
    f.write(20, &[paused.as_str(), next.as_str()]).await;
    f.sample().await;
    let all: Vec<&str> = f.procs.keys().copied().collect();
    f.write(10, &all).await;
    f.verify().await;
    let epoch = f.epoch();
    assert!(epoch >= 3, "epoch {epoch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_from_the_same_configuration_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut f = replicas("twice", tmp.path());
    f.start("a");
    f.write(3, &["a"]).await;
    // The same file, another port: the first keeps its files to itself.
    let port = free_port().unwrap();
    let e = ServerProcess::start(
        &f.config_path("a"),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
    .err()
    .unwrap();
    assert!(e.contains("in use by another process"), "{e}");
    // The first goes on, alone.
    f.write(3, &["a"]).await;
    assert_eq!(f.leader().as_deref(), Some("a"));
    f.verify().await;
}

/// One replica alone (`[replication]` on a single server) on a PostgreSQL
/// server of its own: the database stopped while two writers write, until
/// a write is refused (the sequencer stopped on the failed commit), then
/// started again. The replica gives up its lease and takes it again with a
/// new sequencer that reads the head again: writes resume with no restart
/// of the replica, and nothing acknowledged is lost or forked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_replica_resumes_writing_after_its_database_restarts() {
    let pg = postgres::start_new().unwrap();
    let db = pg.create_database("alone").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Replicas::new(pg.url_of(&db), tmp.path(), ORIGIN);
    f.start("a");
    f.wait_leader(None).await;
    f.write(10, &["a"]).await;
    let epoch = f.epoch();
    let load = f.load(2, &["a"]);
    f.wait_acked(f.acked() + 20).await;
    let refused = f.refusals();
    tokio::task::block_in_place(|| pg.stop_server()).unwrap();
    f.wait_refused(refused + 1).await;
    tokio::task::block_in_place(|| pg.start_server()).unwrap();
    f.wait_acked(f.acked() + 20).await;
    load.stop().await;
    f.sample().await;
    f.verify().await;
    let now = f.epoch();
    assert!(
        now > epoch,
        "a new sequencer took the lease (epoch {epoch} then {now})\n{}",
        f.said()
    );
}
