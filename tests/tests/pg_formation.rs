//! A log on a real PostgreSQL formation (a primary and a synchronous
//! standby, started by `scripts/pg-formation`): writes are acknowledged
//! only once the standby holds them, refused by name while the database
//! would not replicate them (standby gone, no synchronous standby named,
//! too few), resumed when it would; a commit whose wait for the standby
//! was cancelled is of unknown outcome, served once the standby has it;
//! and after the primary is lost and the
//! standby promoted, every acknowledged entry is there and the log goes on
//! from it without a fork.
//!
//! Waits are bounded polls; faults are placed by the formation's state.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::time::Duration;

use quire_server::config::{Config, Engine, LogConfig};
use quire_server::local::LocalServer;
use quire_server::log::WriteError;
use quire_tests::postgres::Formation;

const ORIGIN: &str = "replicated-db.example/log";

fn log_on(url: &str, sync_standbys: Option<u32>, allow_unreplicated: bool) -> LogConfig {
    let mut cfg = LogConfig::new(ORIGIN);
    cfg.storage.engine = Engine::Postgres;
    cfg.storage.url = Some(url.to_owned());
    cfg.storage.sync_standbys = sync_standbys;
    cfg.storage.allow_unreplicated = allow_unreplicated;
    cfg.storage.timeout_ms = 5_000;
    cfg
}

/// A server for the log on the formation's database `quire`.
async fn start(
    data: &std::path::Path,
    f: &Formation,
    sync_standbys: Option<u32>,
    allow_unreplicated: bool,
) -> LocalServer {
    let cfg = log_on(&f.url_of("quire"), sync_standbys, allow_unreplicated);
    LocalServer::start(data, vec![cfg], Config::default())
        .await
        .unwrap()
}

/// `ALTER SYSTEM {what}` on a node, reloaded.
fn set(node: &quire_tests::postgres::Postgres, what: &str) {
    node.psql("postgres", &format!("ALTER SYSTEM {what}"))
        .unwrap();
    node.psql("postgres", "SELECT pg_reload_conf()").unwrap();
}

/// The log's size on `standby` once it is past `size` (bounded polling;
/// until replayed there, even the tables may not exist).
async fn standby_past(standby: &quire_tests::postgres::Postgres, size: u64) -> u64 {
    let mut seen = 0;
    let mut said = String::new();
    for _ in 0..3000 {
        match standby.psql("quire", "SELECT size FROM quire_heads") {
            Ok(out) => seen = out.parse::<u64>().unwrap_or(0),
            Err(e) => said = e,
        }
        if seen > size {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the standby holds size {seen}, not past {size} ({said})");
}

/// `kill -SIGNAL pid`.
fn signal(signal: &str, pid: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.trim())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// Writes one entry, polling until the outcome is `want` (Ok or the
/// refusal's words); returns the index when it was written.
async fn write_until(server: &LocalServer, n: &mut u64, want: Result<(), &str>) -> Option<u64> {
    let mut last = String::new();
    for _ in 0..300 {
        *n += 1;
        let entry = format!("replicated entry {n}").into_bytes();
        match (server.logs[0].add(vec![entry]).await, want) {
            (Ok((added, _)), Ok(())) => return Some(added[0].index),
            (Err(e @ WriteError::Unreplicated { .. }), Err(words))
                if e.to_string().contains(words) =>
            {
                return None
            }
            (r, _) => last = format!("{:?}", r.map(|(a, _)| a)),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never {want:?}; last {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_acknowledged_only_when_the_standby_holds_them() {
    let metrics = quire_server::metrics::install().expect("the first recorder of this binary");
    let f = Formation::start().unwrap();
    f.primary.psql("postgres", "CREATE DATABASE quire").unwrap();
    let standby = f.standby(1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start(&data, &f, None, false).await;
    let mut n = 0;
    let mut acked = Vec::new();
    for _ in 0..20 {
        acked.push(write_until(&server, &mut n, Ok(())).await.unwrap());
    }
    // Acknowledged means on the standby too (flushed there; visible once
    // replayed, which the poll waits for: until then even the tables may
    // not exist there).
    let last = *acked.iter().max().unwrap();
    standby_past(&standby, last).await;
    let text = metrics.render();
    assert!(
        text.contains(&format!(
            "quire_replication_lag_seconds{{log=\"{ORIGIN}\"}}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("quire_settle_seconds_count{{log=\"{ORIGIN}\"}}")),
        "{text}"
    );

    // The standby gone: refused by name, nothing acknowledged; back: resumed.
    f.node("stop-node", 1).unwrap();
    write_until(
        &server,
        &mut n,
        Err("0 synchronous standbys are streaming, 1 required"),
    )
    .await;
    f.node("start-node", 1).unwrap();
    acked.push(write_until(&server, &mut n, Ok(())).await.unwrap());

    // No synchronous standby named (as after a failover that left the
    // standby asynchronous): refused by name, unless allowed.
    set(&f.primary, "SET synchronous_standby_names = ''");
    write_until(&server, &mut n, Err("synchronous_standby_names is empty")).await;
    server.stop().await;
    let server = start(&data, &f, None, true).await;
    acked.push(write_until(&server, &mut n, Ok(())).await.unwrap());
    server.stop().await;
    set(&f.primary, "RESET synchronous_standby_names");
    // More standbys required than there are.
    let server = start(&data, &f, Some(2), false).await;
    write_until(
        &server,
        &mut n,
        Err("1 synchronous standbys are streaming, 2 required"),
    )
    .await;
    server.stop().await;

    // A commit whose wait for the standby is cancelled (the standby's WAL
    // receiver paused): PostgreSQL answers success with a warning, the
    // commit made on the primary alone. Not acknowledged: its outcome is
    // unknown and the log stops writing. Once the standby has it, a
    // restart serves it. (A call deadline far beyond the test's polls, so
    // the cancel is the test's, not the statement timeout's.)
    let mut cfg = log_on(&f.url_of("quire"), None, false);
    cfg.storage.timeout_ms = 120_000;
    let server = LocalServer::start(&data, vec![cfg.clone()], Config::default())
        .await
        .unwrap();
    acked.push(write_until(&server, &mut n, Ok(())).await.unwrap());
    let size = server.logs[0].latest().stored.size;
    let receiver = standby
        .psql("postgres", "SELECT pid FROM pg_stat_wal_receiver")
        .unwrap();
    signal("STOP", &receiver);
    let log = server.logs[0].clone();
    let write = tokio::spawn(async move { log.add(vec![b"cancelled wait".to_vec()]).await });
    let primary = f.primary.clone();
    tokio::task::spawn_blocking(move || primary.cancel_waiting_commit("quire"))
        .await
        .unwrap()
        .unwrap();
    let refused = write.await.unwrap().map(drop).unwrap_err().to_string();
    assert!(
        refused.contains(&format!(
            "the outcome of the commit to size {} is unknown",
            size + 1
        )) && refused.contains("canceling wait for synchronous replication")
            && refused.contains("0 of 1 required synchronous standbys flushed the WAL"),
        "{refused}"
    );
    signal("CONT", &receiver);
    server.stop().await;
    // The standby has it once it shows it (replayed after flushed).
    assert_eq!(
        standby_past(&standby, size).await,
        size + 1,
        "the standby holds the cancelled commit"
    );
    let server = LocalServer::start(&data, vec![cfg], Config::default())
        .await
        .unwrap();
    assert_eq!(server.logs[0].latest().stored.size, size + 1);
    acked.push(write_until(&server, &mut n, Ok(())).await.unwrap());
    server.stop().await;

    // The primary lost, the standby promoted by hand: the server finds it
    // through the multi-host URL; every acknowledged entry is there, and it
    // refuses to acknowledge until the new primary has a standby of its own
    // (allowed here, as an operator who prefers availability would).
    let server = start(&data, &f, None, false).await;
    acked.push(write_until(&server, &mut n, Ok(())).await.unwrap());
    let size_before = server.logs[0].latest().stored.size;
    server.stop().await;
    f.node("stop-node", 0).unwrap();
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin/pg_ctl"))
        .find(|p| p.exists())
        .unwrap();
    let mut promote = std::process::Command::new("runuser");
    let as_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n";
    if as_root {
        promote.args(["-u", "postgres", "--"]).arg(&bin);
    } else {
        promote = std::process::Command::new(&bin);
    }
    let ok = promote
        .args(["-D"])
        .arg(f.dir.join("standby1"))
        .args(["-w", "promote"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "promoting the standby");
    let server = start(&data, &f, None, false).await;
    assert!(
        server.logs[0].latest().stored.size >= size_before,
        "nothing acknowledged was lost"
    );
    write_until(&server, &mut n, Err("synchronous standbys are streaming")).await;
    // The promoted standby kept the old primary's synchronous setting; an
    // operator (or a failover manager) clears it: the log was replicated
    // before, so it is still refused by name, until allowed.
    set(&standby, "SET synchronous_standby_names = ''");
    write_until(&server, &mut n, Err("synchronous_standby_names is empty")).await;
    server.stop().await;
    let server = start(&data, &f, None, true).await;
    acked.push(write_until(&server, &mut n, Ok(())).await.unwrap());
    let r = {
        use quire_server::store::Storage as _;
        server.logs[0].store().reader().unwrap()
    };
    use quire_server::store::StorageReader as _;
    let mut sorted = acked.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), acked.len(), "no index acknowledged twice");
    let size = r.head().unwrap().unwrap().size;
    assert!(acked.iter().all(|i| *i < size));
    server.stop().await;
}
