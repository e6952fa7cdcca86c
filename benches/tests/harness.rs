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

/// An in-process server of one log, and a channel to it.
async fn serve(dir: &std::path::Path, origin: &str, config: Config) -> (LocalServer, Channel) {
    let server = LocalServer::start(dir, vec![LogConfig::new(origin)], config)
        .await
        .unwrap();
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (server, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_verifies_everything_and_counts_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (server, channel) = serve(dir.path(), "bench.example/harness", Config::default()).await;
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
        log: String::new(),
        bearer: None,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_a_token_or_a_jwt_are_admitted_and_without_one_refused() {
    use quire_benches::auth::{self, Auth};
    for mode in [Auth::Token, Auth::Jwt] {
        let dir = tempfile::tempdir().unwrap();
        let (policy, bearer) = auth::setup(dir.path(), mode, "").unwrap().unwrap();
        let config = Config {
            access: Some(policy),
            ..Config::default()
        };
        let (server, channel) = serve(&dir.path().join("data"), "bench.example/auth", config).await;
        let load = Load {
            writers: 2,
            batch: 3,
            rate: None,
            readers: 1,
            duration: Duration::from_millis(300),
            entry_bytes: 64,
            payload: Payload::Random,
            server_pid: None,
            sample_every: Duration::from_millis(100),
            log: String::new(),
            bearer: Some(bearer),
        };
        let r = load::run(channel.clone(), &load).await.unwrap();
        assert!(r.errors.is_empty(), "{mode:?}: {:?}", r.errors);
        assert_eq!(r.verification_failures, 0, "{:?}", r.failure_examples);
        assert!(r.tree_size.1 > r.tree_size.0, "{mode:?}: nothing written");
        // The policy grants nothing publicly: without the token, refused.
        let e = load::run(
            channel,
            &Load {
                bearer: None,
                ..load
            },
        )
        .await
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("unauthenticated: no credentials were presented"),
            "{mode:?}: {e:#}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_scenario_holds_the_noisy_tenant_and_reports_both() {
    let dir = tempfile::tempdir().unwrap();
    let v = quire_benches::tenants::run(
        dir.path(),
        &quire_benches::tenants::TenantsOpts {
            quota: 200,
            noisy_writers: 4,
            noisy_batch: 10,
            quiet_writers: 2,
            quiet_rate: 100,
            duration: Duration::from_millis(500),
            entry_bytes: 64,
            rounds: 2,
        },
    )
    .await
    .unwrap();
    // Counts, not speeds: the noisy tenant was refused at least once (it
    // offers far more than 200 entries/s), nothing failed to verify.
    assert!(v["noisy_refusals"].as_u64().unwrap() > 0, "{v:#}");
    let rounds = v["each_round"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{v:#}");
    for round in rounds {
        for side in ["quiet_alone", "quiet_beside", "noisy"] {
            assert_eq!(round[side]["verification_failures"], 0, "{side}: {v:#}");
        }
        assert!(
            round["quiet_beside"]["errors"]
                .as_object()
                .unwrap()
                .is_empty(),
            "{v:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_scenario_writes_searches_verified_and_measures_storage() {
    let dir = tempfile::tempdir().unwrap();
    let v = quire_benches::events::run(
        dir.path(),
        &quire_benches::events::EventsOpts {
            writers: 2,
            batch: 50,
            duration: Duration::from_millis(1500),
            query_events: 100,
            queries: 2,
        },
    )
    .await
    .unwrap();
    // Counts and sizes, not speeds: events were written, every search was
    // verified complete (the run fails otherwise) and answered events, the
    // storage was measured by table.
    assert!(v["events"].as_u64().unwrap() >= 100, "{v:#}");
    assert!(v["query_events"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["stored_bytes_per_event"].as_f64().unwrap() > 0.0, "{v:#}");
    assert!(
        v["tables"]["event_payload_chunks"].as_u64().unwrap() > 0,
        "{v:#}"
    );
    assert!(v["tables"]["event_keys"].as_u64().unwrap() > 0, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyed_scenario_searches_by_actor_with_every_answer_verified() {
    let dir = tempfile::tempdir().unwrap();
    let v = quire_benches::keyed::run(
        dir.path(),
        &quire_benches::keyed::KeyedOpts {
            events: 3000,
            writers: 2,
            batch: 100,
            queries: 3,
            page: 5,
        },
    )
    .await
    .unwrap();
    // Counts, not speeds: the log was filled, the map caught up and holds
    // keys, every search was verified (the run fails otherwise), a rare
    // actor's answer was complete and a frequent one's held at most its
    // page.
    assert!(v["events"].as_u64().unwrap() >= 3000, "{v:#}");
    assert!(v["map_keys"].as_u64().unwrap() > 100, "{v:#}");
    let frequent = v["frequent_events_mean"].as_f64().unwrap();
    assert!(frequent > 0.0 && frequent <= 5.0, "{v:#}");
    assert!(
        v["rare_verified_ms_median"].as_f64().unwrap() > 0.0,
        "{v:#}"
    );
}
