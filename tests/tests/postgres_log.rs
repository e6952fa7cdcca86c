//! A log on PostgreSQL, end to end: a real server (started by
//! `scripts/postgres`) behind Quire's servers and the `quire` CLI. What it
//! signs verifies across restarts, two servers writing one log never sign
//! a fork, and a database restored from an old backup is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::Path;

use quire_core::Note;
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use quire_server::log::WriteError;
use quire_server::store::{Storage, StorageReader};
use quire_tests::copy_dir;
use quire_tests::postgres;
use quire_tests::run_bin;

#[path = "postgres_log/common.rs"]
mod common;

use common::*;

/// Starts a server for `origin` on `db`, writes 3 entries and stops it.
async fn with_three_entries(data: &Path, origin: &str, db: &str) {
    let server = start(data, origin, db, Config::default()).await.unwrap();
    server.logs[0].add(entries(0, 3)).await.unwrap();
    server.stop().await;
}

/// Why a server for `origin` on `db` refuses to start, with its causes.
async fn refusal(data: &Path, origin: &str, db: &str) -> String {
    let e = start(data, origin, db, Config::default())
        .await
        .err()
        .unwrap();
    format!("{e:#}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_on_postgres_proves_what_it_signed_across_a_restart() {
    let (pg, db, dir, data) = setup("e2e");
    let origin = "pg.example/log";
    let server = start(&data, origin, &db, Config::default()).await.unwrap();
    let key = server.keys[0].to_vkey();
    let url = server.url();

    // The CLI as a user runs it: add with a proof bundle, verify offline.
    let entry = dir.path().join("entry.json");
    std::fs::write(&entry, br#"{"actor":"alice","action":"login"}"#).unwrap();
    let bundle = dir.path().join("bundle.proof");
    quire_on(&url, &key, &["add", path(&entry), "--wait", path(&bundle)]);
    quire(&["verify", path(&bundle), "--log-key", &key]);
    // Past a bundle and a tile boundary (256), then a checkpoint saved.
    let log = &server.logs[0];
    log.add(entries(1, 300)).await.unwrap();
    let first = dir.path().join("first.note");
    quire_on(&url, &key, &["entries", "--checkpoint-out", path(&first)]);
    let first_size = log.latest().stored.size;
    assert_eq!(first_size, 301);
    server.stop().await;

    // Restarted on the same database: it goes on from what is stored, and
    // its new checkpoint provably extends the one saved before.
    let server = start(&data, origin, &db, Config::default()).await.unwrap();
    let log = &server.logs[0];
    assert_eq!(log.latest().stored.size, first_size);
    for i in 0..3 {
        log.add(entries(1000 + i * 100, 100)).await.unwrap();
    }
    let url = server.url();
    quire_on(&url, &key, &["consistency", "--from", path(&first)]);
    let dump = dir.path().join("entries.b64");
    quire_on(&url, &key, &["entries", "--out", path(&dump)]);
    let lines = std::fs::read_to_string(&dump).unwrap().lines().count();
    assert_eq!(lines, 601, "every entry, checked against the checkpoint");
    // An entry of the first run, found by its leaf hash (the leaf index)
    // and proven after the restart.
    let proof = dir.path().join("p.proof");
    quire_on(
        &url,
        &key,
        &["prove", "--entry", path(&entry), "--out", path(&proof)],
    );
    quire(&["verify", path(&proof), "--log-key", &key]);
    // Entries live in bundles once complete, the rest in a row a commit.
    let rows = pg
        .psql(&db, "SELECT (SELECT count(*) FROM quire_bundles) || ' ' || (SELECT sum(n) FROM quire_entries)")
        .unwrap();
    assert_eq!(
        rows, "2 89",
        "601 entries: two bundles of 256 and 89 entries in rows"
    );
    // Strict dedup: the commit checks the leaves said new and refuses a
    // stored one (here in the newest leaves, restored from the tile rows
    // after the restart), and the batch goes again after a lookup.
    let log = &server.logs[0];
    let (added, _) = log
        .add(vec![
            entries(1, 1)[0].clone(),
            b"new after the restart".to_vec(),
        ])
        .await
        .unwrap();
    assert_eq!(
        added
            .iter()
            .map(|a| (a.index, a.duplicate))
            .collect::<Vec<_>>(),
        [(1, true), (601, false)]
    );
    // Frozen: the record is in the database, so a restart finds it.
    let frozen = log.freeze().await.unwrap();
    assert!(log.add(entries(5000, 1)).await.is_err());
    server.stop().await;
    let server = start(&data, origin, &db, Config::default()).await.unwrap();
    let log = &server.logs[0];
    assert_eq!(
        log.state(),
        (quire_server::lifecycle::LogState::Frozen, Some(frozen))
    );
    assert_eq!(log.latest().stored.size, 602);
    let e = log.add(entries(5000, 1)).await.unwrap_err();
    assert!(e.to_string().contains("is FROZEN"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_writing_one_log_never_sign_a_fork() {
    let (_, db, dir, one_dir) = setup("cas");
    let origin = "cas.example/log";
    let one = start(&one_dir, origin, &db, Config::default())
        .await
        .unwrap();
    one.logs[0].add(entries(0, 5)).await.unwrap();
    // A second server with the same keys on the same database (a replica
    // started by mistake as a second sequencer).
    let two_dir = dir.path().join("two");
    std::fs::create_dir_all(&two_dir).unwrap();
    copy_dir(&one_dir.join("keys"), &two_dir.join("keys"));
    let config = Config {
        adopt_database: true,
        ..Config::default()
    };
    let two = start(&two_dir, origin, &db, config).await.unwrap();
    assert_eq!(two.logs[0].latest().stored.size, 5);
    // The first writes on; the second's next commit no longer extends the
    // head and is refused by the database, before anything is signed.
    one.logs[0].add(entries(100, 2)).await.unwrap();
    let e = two.logs[0].add(entries(200, 1)).await.unwrap_err();
    assert!(matches!(e, WriteError::Store(_)), "{e:?}");
    assert!(e.to_string().contains("another writer committed"), "{e}");
    assert_eq!(
        two.logs[0].latest().stored.size,
        5,
        "nothing signed over it"
    );
    let e = two.logs[0].add(entries(300, 1)).await.unwrap_err();
    assert!(
        matches!(e, WriteError::Stopped { .. }),
        "writes stay stopped: {e:?}"
    );
    // Without [replication] nothing resumes them but a restart, and the
    // writer is told so (not to fix a disk).
    assert!(
        e.to_string()
            .contains("writes resume when the server is restarted once PostgreSQL answers"),
        "{e}"
    );
    // One tree in the database: the first server's.
    let r = one.logs[0].store().reader().unwrap();
    assert_eq!(r.head().unwrap().unwrap().size, 7);
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 7);
    assert_eq!(r.entries(5, 7).unwrap(), entries(100, 2));
    two.stop().await;
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restored_from_an_old_backup_is_refused() {
    let (pg, db, _dir, data) = setup("restore");
    let origin = "restore.example/log";
    with_three_entries(&data, origin, &db).await;
    // The backup: a copy of the database at size 3.
    let backup = db.clone() + "_backup";
    pg.psql(
        "postgres",
        &format!("CREATE DATABASE {backup} TEMPLATE {db}"),
    )
    .unwrap();
    let server = start(&data, origin, &db, Config::default()).await.unwrap();
    server.logs[0].add(entries(10, 3)).await.unwrap();
    server.stop().await;
    // Pointed at the backup, the log refuses to start: it would fork.
    let text = refusal(&data, origin, &backup).await;
    assert!(text.contains("the database holds size 3"), "{text}");
    assert!(text.contains("published size 6"), "{text}");
    // A database that does not hold the log at all is refused too, naming
    // the record that shows the log has published.
    let empty = pg.create_database("empty").unwrap();
    let text = refusal(&data, origin, &empty).await;
    assert!(text.contains("has published checkpoints"), "{text}");
    assert!(text.contains(&format!("database {empty}")), "{text}");
}

/// A value of another type than the schema's, in a database altered beside
/// the server, is refused as corrupt storage naming the column: never a
/// panic of the engine's task (which would surface as "the engine
/// stopped").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_altered_beside_the_server_is_refused_by_name() {
    let (pg, db, _dir, data) = setup("altered");
    let origin = "altered.example/log";
    with_three_entries(&data, origin, &db).await;
    pg.psql(
        &db,
        "ALTER TABLE quire_heads DROP CONSTRAINT quire_heads_size_check;
         ALTER TABLE quire_heads ALTER COLUMN size TYPE text",
    )
    .unwrap();
    let text = refusal(&data, origin, &db).await;
    assert!(text.contains("a stored row's column 0 is not a"), "{text}");
    assert!(!text.contains("engine stopped"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_origin_in_a_database_of_logs_is_refused_unless_asked_for() {
    let (_, db, _dir, data) = setup("typo");
    let server = start(&data, "a.example/log", &db, Config::default())
        .await
        .unwrap();
    server.stop().await;
    let e = start(&data, "a.exmaple/log", &db, Config::default())
        .await
        .err()
        .unwrap();
    let text = format!("{e:#}");
    assert!(
        text.contains("holds the logs a.example/log but no log \"a.exmaple/log\""),
        "{text}"
    );
    let config = Config {
        new_logs: true,
        ..Config::default()
    };
    let server = start(&data, "b.example/log", &db, config).await.unwrap();
    server.stop().await;
}

/// Every checkpoint a log's storage holds: sizes and notes.
fn all_checkpoints(server: &LocalServer) -> Vec<(u64, Vec<u8>)> {
    let r = server.logs[0].store().reader().unwrap();
    r.checkpoints(0, 100_000)
        .unwrap()
        .into_iter()
        .map(|c| (c.size, c.note))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_a_log_to_postgres_and_back_verified_and_signs_nothing() {
    let (pg, db, dir, data) = setup("migrate");
    let origin = "move.example/log";
    let url = pg.url_of(&db);
    // On redb, the default: several batches, so several checkpoints.
    let server = LocalServer::start(&data, vec![LogConfig::new(origin)], Config::default())
        .await
        .unwrap();
    for i in 0..7 {
        server.logs[0].add(entries(i * 100, 100)).await.unwrap();
    }
    let on_redb = all_checkpoints(&server);
    assert!(on_redb.len() >= 8, "{}", on_redb.len());
    server.stop().await;

    let hw = data.join("high-water");
    let common = redb_args(&data, &hw, origin);
    let (code, out) = migrate(&[&common[..], &["--to", "postgres", "--url", &url]].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("entries 0..700"), "{out}");
    assert!(out.contains("nothing signed"), "{out}");
    // Moving it again to where it is refused by name.
    let (code, out) = migrate(&[&common[..], &["--to", "redb"]].concat());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("on redb already"), "{out}");

    // On PostgreSQL: every checkpoint byte for byte, the high-water record
    // agrees, and the log goes on.
    let server = start(&data, origin, &db, Config::default()).await.unwrap();
    assert_eq!(all_checkpoints(&server), on_redb);
    server.logs[0].add(entries(5000, 5)).await.unwrap();
    let on_pg = all_checkpoints(&server);
    server.stop().await;
    // fsck reads the log where its configuration says it is.
    let config = pg_config(dir.path(), &data, origin, "", &url);
    let (code, out, err) = run_bin("quire-server", &["fsck", "--config", path(&config)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("OK: size 705"), "{out}");

    // And back: the redb file holds a prefix, extended from its own head.
    let (code, out) = migrate(&["--config", path(&config), "--to", "redb"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("entries 700..705"), "{out}");
    let server = LocalServer::start(&data, vec![LogConfig::new(origin)], Config::default())
        .await
        .unwrap();
    assert_eq!(all_checkpoints(&server), on_pg);
    server.logs[0].add(entries(6000, 1)).await.unwrap();
    server.stop().await;

    // A database holding another log of the same origin is refused, and
    // left as it was: other entries (another tree), or the same entries
    // signed by other keys.
    for (name, first, why) in [
        ("othertree", 9000, "another history"),
        ("otherkey", 0, "the source does not hold"),
    ] {
        let other_db = pg.create_database(name).unwrap();
        let other = start(&dir.path().join(name), origin, &other_db, Config::default())
            .await
            .unwrap();
        other.logs[0].add(entries(first, 3)).await.unwrap();
        other.stop().await;
        let other_url = pg.url_of(&other_db);
        let (code, out) =
            migrate(&[&common[..], &["--to", "postgres", "--url", &other_url]].concat());
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(why), "{name}: {out}");
        let size = pg.psql(&other_db, "SELECT size FROM quire_heads").unwrap();
        assert_eq!(size, "3", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witnessed_log_on_postgres_keeps_its_cosignatures_across_a_restart() {
    use quire_proto::v1::log_client::LogClient;
    use quire_proto::v1::AddEntryRequest;
    use quire_witness::config::{LogEntryConfig, WitnessConfig};
    use quire_witness::local::LocalWitness;
    let (_, db, dir, data) = setup("witnessed");
    let origin = "witnessed-pg.example/log";
    let (signers, _) =
        quire_server::keyfile::load_or_create(&data.join("keys"), origin, true).unwrap();
    let mut wcfg = WitnessConfig::new("w.example", &dir.path().join("w"));
    wcfg.logs.push(LogEntryConfig {
        origin: origin.into(),
        keys: signers.iter().map(|s| s.verifier().to_vkey()).collect(),
        url: None,
    });
    let witness = LocalWitness::start(wcfg).await.unwrap();
    let (w_url, w_key) = (witness.url(), witness.key.to_vkey());
    let cfg = || {
        let mut c = pg_log(origin, &db);
        c.witnessing.witnesses = vec![quire_server::config::WitnessEntry {
            protocol: Default::default(),
            url: w_url.clone(),
            key: w_key.clone(),
        }];
        c.witnessing.quorum = Some(1);
        c
    };
    let count = |note: &[u8]| {
        Note::parse(note)
            .unwrap()
            .signatures()
            .iter()
            .filter(|s| s.name() == "w.example")
            .count()
    };
    let server = LocalServer::start(&data, vec![cfg()], Config::default())
        .await
        .unwrap();
    let mut c = LogClient::connect(server.url()).await.unwrap();
    let written = c
        .add_entry(AddEntryRequest {
            log: origin.into(),
            entry: b"witnessed on postgres".to_vec(),
            with_proof: true,
            witnessed: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count(&written.checkpoint), 1, "cosigned by the witness");
    // Kept in PostgreSQL beside the checkpoint (polled: kept after the answer).
    let mut kept = String::new();
    for _ in 0..250 {
        kept = postgres::shared()
            .psql(&db, "SELECT count(*) FROM quire_cosignatures")
            .unwrap();
        if kept != "0" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_ne!(kept, "0");
    server.stop().await;
    drop(witness);
    // Restarted with the witness gone: the kept cosignature is verified
    // again and served at once.
    let server = LocalServer::start(&data, vec![cfg()], Config::default())
        .await
        .unwrap();
    let note = quire_tests::checkpoint(&server.url(), origin, true)
        .await
        .unwrap();
    assert_eq!(count(&note), 1);
    server.stop().await;
}
