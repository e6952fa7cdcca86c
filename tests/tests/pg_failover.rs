//! Three `quire-server` replicas on a PostgreSQL formation with automatic
//! failover (pg_auto_failover: a monitor, a primary and two standbys, one
//! of which confirms every commit; started by `scripts/pg-auto-failover`),
//! two witnesses fed every checkpoint any replica serves, and writers that
//! record every acknowledgement. Faults: the primary's PostgreSQL
//! SIGKILLed (its keeper restarts it, no standby a candidate for
//! promotion meanwhile); the primary's machine lost (keeper
//! and PostgreSQL SIGKILLed, the monitor promotes a standby); and again,
//! then the new primary lost too as soon as the first one came back and
//! follows it, before the monitor counts it as a caught-up standby. After
//! each: the checks of [`quire_tests::replicas`], and writes resumed.
//!
//! Faults are placed by counting acknowledgements; waits are bounded polls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::Arc;

use quire_tests::failover::AutoFailover;
use quire_tests::replicas::{Replicas, PATIENCE};

const ORIGIN: &str = "failover.example/log";
const ALL: [&str; 3] = ["a", "b", "c"];

/// Runs a blocking call of the formation off the runtime's workers.
async fn blocking<T: Send + 'static>(
    paf: &Arc<AutoFailover>,
    f: impl FnOnce(&AutoFailover) -> Result<T, String> + Send + 'static,
) -> T {
    let paf = Arc::clone(paf);
    tokio::task::spawn_blocking(move || f(&paf))
        .await
        .unwrap()
        .unwrap()
}

/// Waits until the formation is whole again before the next fault: every
/// node but the primary a secondary (as the monitor reports it) streaming
/// from the primary. A node still catching up when its primary is lost
/// holds the manager's failover up (it waits for every node's report):
/// that is the manager's double failure, not the fault a test places.
async fn whole(paf: &Arc<AutoFailover>) {
    let primary = blocking(paf, |p| p.wait_primary(None, PATIENCE)).await;
    for n in (1..=quire_tests::failover::NODES).filter(|n| *n != primary) {
        blocking(paf, move |p| p.wait_reported(n, &["secondary"], PATIENCE)).await;
        blocking(paf, move |p| p.wait_standby(n, PATIENCE)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_lost_postgresql_primaries_without_a_fork() {
    let paf = Arc::new(
        tokio::task::spawn_blocking(AutoFailover::start)
            .await
            .unwrap()
            .unwrap(),
    );
    let url = paf.create_database("failover").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut f = Replicas::new(url, tmp.path(), ORIGIN);
    // A lease outlives a failover's first seconds: a leader cut off by it
    // steps down on time either way.
    f.lease_ms = (3000, 1000);
    let state = Arc::clone(&paf);
    f.context = Some(Box::new(move || state.state()));
    for n in ALL {
        f.start(n);
    }
    f.start_witnesses(2);
    f.wait_leader(None).await;
    f.write(20, &ALL).await;
    f.sample().await;

    // The primary's PostgreSQL SIGKILLed under load: commits of unknown
    // outcome, then the same node back. No standby is a candidate for
    // promotion meanwhile, so its keeper restarts it whatever the time
    // that takes: otherwise a failover races the restart, and an old
    // primary that lost that race may rejoin through pg_auto_failover
    // 2.0's `join_secondary`, which follows the new primary without
    // pg_rewind and stays there when it has WAL the new one lacks (the
    // manager's limit, not this fault; the README says more). The
    // failovers come next.
    let primary = blocking(&paf, |p| p.wait_primary(None, PATIENCE)).await;
    let others: Vec<u32> = (1..=quire_tests::failover::NODES)
        .filter(|n| *n != primary)
        .collect();
    for n in &others {
        paf.candidate_priority(*n, 0).unwrap();
    }
    let load = f.load(3, &ALL);
    f.wait_acked(f.acked() + 30).await;
    paf.kill_postgres(primary).unwrap();
    f.wait_acked(f.acked() + 30).await;
    load.stop().await;
    f.verify().await;
    whole(&paf).await;
    assert_eq!(
        blocking(&paf, |p| p.wait_primary(None, PATIENCE)).await,
        primary,
        "no standby could be promoted: {}",
        paf.state()
    );
    for n in &others {
        paf.candidate_priority(*n, quire_tests::failover::DEFAULT_PRIORITY)
            .unwrap();
    }
    whole(&paf).await;

    // The primary's machine lost under load: a standby is promoted and
    // Quire writes again once the new primary has a synchronous standby.
    // The lost node comes back as a standby.
    let primary = blocking(&paf, |p| p.wait_primary(None, PATIENCE)).await;
    let load = f.load(3, &ALL);
    f.wait_acked(f.acked() + 30).await;
    paf.kill_node(primary).unwrap();
    let next = blocking(&paf, move |p| p.wait_primary(Some(primary), PATIENCE)).await;
    f.wait_acked(f.acked() + 30).await;
    load.stop().await;
    f.sample().await;
    paf.start_node(primary).unwrap();
    f.verify().await;
    whole(&paf).await;

    // Again, and then the new primary lost too, right after the first
    // came back and before it caught up: the standby that confirmed every
    // acknowledged write must be the one promoted, and writes resume on
    // it.
    let load = f.load(3, &ALL);
    f.wait_acked(f.acked() + 30).await;
    paf.kill_node(next).unwrap();
    let third = blocking(&paf, move |p| p.wait_primary(Some(next), PATIENCE)).await;
    f.wait_acked(f.acked() + 30).await;
    // Killed as soon as the returning node follows it (catching up, or
    // caught up when the writers were slow), before it is a standby the
    // monitor counts: a node still rewinding when its primary goes has
    // nothing to follow and holds the formation up (pg_auto_failover
    // waits for it to report), which is the manager's double failure, not
    // this fault.
    paf.start_node(next).unwrap();
    blocking(&paf, move |p| {
        p.wait_reported(next, &["catchingup", "secondary"], PATIENCE)
    })
    .await;
    paf.kill_node(third).unwrap();
    blocking(&paf, move |p| p.wait_primary(Some(third), PATIENCE)).await;
    f.wait_acked(f.acked() + 30).await;
    load.stop().await;
    f.sample().await;
    // Either of the two others may have been promoted: both of the nodes
    // that are not the primary now stream as its standbys.
    paf.start_node(third).unwrap();
    let last = blocking(&paf, |p| p.wait_primary(None, PATIENCE)).await;
    for n in (1..=quire_tests::failover::NODES).filter(|n| *n != last) {
        blocking(&paf, move |p| p.wait_standby(n, PATIENCE)).await;
    }
    f.write(10, &ALL).await;
    f.verify().await;
}
