//! The load harness against a real in-process server: what it reports is
//! consistent with itself whatever the machine's speed (acknowledged
//! entries are all in the final signed tree, every received proof and
//! checkpoint verified), and the machine measurement returns real figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::time::Duration;

use quire_benches::load::{self, Load, Payload};
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_verifies_everything_and_counts_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(
        dir.path(),
        vec![LogConfig::new("bench.example/harness")],
        Config::default(),
    )
    .await
    .unwrap();
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let base = Load {
        writers: 3,
        batch: 7,
        rate: None,
        readers: 2,
        duration: Duration::from_millis(600),
        entry_bytes: 64,
        payload: Payload::Json,
        server_pid: None,
        sample_every: Duration::from_millis(100),
    };
    let first = load::run(channel.clone(), &base).await.unwrap();
    // A second run starts from the first's tree: its entries are new (no
    // duplicates), so every acknowledged entry grows the tree.
    let second = load::run(channel, &base).await.unwrap();
    for r in [&first, &second] {
        assert_eq!(r.verification_failures, 0, "{:?}", r.failure_examples);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r.checkpoints_verified >= 1);
        let acked = r.write_latency_us.count * 7;
        assert!(
            r.tree_size.1 - r.tree_size.0 >= acked,
            "{acked} entries acknowledged but the tree grew {} -> {}",
            r.tree_size.0,
            r.tree_size.1
        );
        assert!(!r.rss_samples.is_empty() && r.rss_bytes > 0);
    }
    assert_eq!(second.tree_size.0, first.tree_size.1);
    assert_eq!(server.logs[0].latest().stored.size, second.tree_size.1);
    server.stop().await;
}

#[test]
fn the_machine_measurement_returns_figures() {
    let dir = tempfile::tempdir().unwrap();
    let l = quire_benches::machine::measure(dir.path(), 0.05).unwrap();
    assert!(l.cores >= 1);
    assert!(l.fsyncs_per_s > 0.0 && l.write_bytes_per_s > 0.0);
    assert!(l.leaf_hashes_per_s > 0.0 && l.sha256_bytes_per_s > 0.0);
    // Nothing is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
