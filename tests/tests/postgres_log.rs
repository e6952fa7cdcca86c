//! A log on PostgreSQL, end to end: a real server (started by
//! `scripts/postgres`) behind Quire's servers and the `quire` CLI. What it
//! signs verifies across restarts, two servers writing one log never sign
//! a fork, and a database restored from an old backup is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::path::{Path, PathBuf};

use quire_core::Note;
use quire_server::config::{Config, Engine, LogConfig};
use quire_server::local::LocalServer;
use quire_server::log::WriteError;
use quire_server::store::{Storage, StorageReader};
use quire_tests::copy_dir;
use quire_tests::postgres;
use quire_tests::run_bin;

fn pg_log(origin: &str, db: &str) -> LogConfig {
    let mut cfg = LogConfig::new(origin);
    cfg.storage.engine = Engine::Postgres;
    cfg.storage.url = Some(postgres::shared().url_of(db));
    cfg
}

fn entries(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("{{\"actor\":\"user{i}\",\"action\":\"login\"}}").into_bytes())
        .collect()
}

fn quire(args: &[&str]) -> String {
    let (code, out, err) = run_bin("quire", args);
    assert_eq!(code, 0, "quire {args:?}: {out}{err}");
    out
}

/// A server for one log on PostgreSQL database `db`, its files in `data`.
async fn start(data: &Path, origin: &str, db: &str, config: Config) -> anyhow::Result<LocalServer> {
    LocalServer::start(data, vec![pg_log(origin, db)], config).await
}

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

/// The shared server, a new database named from `prefix`, a temporary
/// directory and the server's data directory in it.
fn setup(
    prefix: &str,
) -> (
    &'static postgres::Postgres,
    String,
    tempfile::TempDir,
    PathBuf,
) {
    let pg = postgres::shared();
    let db = pg.create_database(prefix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    (pg, db, dir, data)
}

/// `quire ARGS --addr URL --log-key KEY`, which must succeed.
fn quire_on(url: &str, key: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--addr", url, "--log-key", key]);
    quire(&all)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
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

/// `quire-server migrate ARGS`: exit code and all it printed.
fn migrate(args: &[&str]) -> (i32, String) {
    let mut all = vec!["migrate"];
    all.extend(args);
    let (code, out, err) = run_bin("quire-server", &all);
    (code, format!("{out}{err}"))
}

/// A configuration file in `dir` for the server of `data` with one log
/// `origin` on PostgreSQL at `url`, with the `[[logs]]` lines `extra`.
fn pg_config(dir: &Path, data: &Path, origin: &str, extra: &str, url: &str) -> PathBuf {
    let (d, hw) = (path(data), data.join("high-water"));
    let hw = path(&hw);
    let config = dir.join("pg.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {d:?}\nhigh_water_dir = {hw:?}\n[[logs]]\norigin = {origin:?}\n{extra}[logs.storage]\nengine = \"postgres\"\nurl = {url:?}\n"
        ),
    )
    .unwrap();
    config
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

    let d = path(&data);
    let hw = data.join("high-water");
    let hw = path(&hw);
    let common = ["--data-dir", d, "--high-water-dir", hw, "--origin", origin];
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_log_on_postgres_keeps_payloads_links_and_times_with_its_events() {
    let (_, db, dir, data) = setup("events");
    let origin = "pg.example/events";
    let event_log = || {
        let mut cfg = pg_log(origin, &db);
        cfg.events = true;
        // Exact indexes: no map head events between the test's.
        cfg.key_map = false;
        cfg
    };
    let server = LocalServer::start(&data, vec![event_log()], Config::default())
        .await
        .unwrap();
    let key = server.keys[0].to_vkey();
    let url = server.url();
    // The CLI as a user runs it.
    let raw = dir.path().join("raw.json");
    std::fs::write(&raw, "{\"verb\":\"delete\",\"user\":\"alice\"}").unwrap();
    let payload = format!("payload=@{}", path(&raw));
    quire(&[
        "event",
        "add",
        "type=k8s.audit",
        "actor=alice",
        "action=delete",
        "resource=pods/a",
        &payload,
        "--addr",
        &url,
    ]);
    quire(&[
        "event",
        "add",
        "type=k8s.audit",
        "actor=bob",
        "action=get",
        "resource=pods/a",
        "--addr",
        &url,
    ]);
    let got = quire_on(&url, &key, &["--json", "event", "get", "0"]);
    let v: serde_json::Value = serde_json::from_str(got.trim()).unwrap();
    assert_eq!(v["verified"], true, "{got}");
    assert_eq!(v["payload"], "{\"verb\":\"delete\",\"user\":\"alice\"}");
    server.stop().await;
    // After a restart the links go on from what PostgreSQL holds.
    let server = LocalServer::start(&data, vec![event_log()], Config::default())
        .await
        .unwrap();
    let url = server.url();
    let out = quire(&[
        "--json",
        "event",
        "add",
        "type=k8s.audit",
        "actor=alice",
        "action=get",
        "--addr",
        &url,
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let env =
        quire_core::event::Envelope::decode(v["envelope"].as_str().unwrap().as_bytes()).unwrap();
    use quire_core::event::KeyField;
    assert_eq!(env.prev.get(KeyField::Actor), Some(0));
    assert_eq!(env.prev.get(KeyField::Action), Some(1));
    assert_eq!(env.prev.get(KeyField::Type), Some(1));
    assert_eq!(env.prev.get(KeyField::Resource), None);
    let r = server.logs[0].store().reader().unwrap();
    let alice = quire_core::event::key(KeyField::Actor, "alice");
    let pods = quire_core::event::key(KeyField::Resource, "pods/a");
    assert_eq!(
        r.newest_events(&[alice, pods]).unwrap(),
        vec![Some(2), Some(1)]
    );
    let Some(quire_server::store::Payload::Stored(p)) = r.payload(0).unwrap() else {
        panic!("event 0's payload is not stored");
    };
    assert_eq!(p.payload, b"{\"verb\":\"delete\",\"user\":\"alice\"}");
    assert_eq!(r.payload(1).unwrap(), None);
    assert_eq!(r.first_logged_at(0).unwrap(), Some(0));
    // Event 1 was logged before the restart: at or before event 2's time.
    let one = r.entries(1, 2).unwrap().pop().unwrap();
    let one = quire_core::event::Envelope::decode(&one).unwrap();
    let first = if one.log_time_ms == env.log_time_ms {
        1
    } else {
        2
    };
    assert_eq!(r.first_logged_at(env.log_time_ms).unwrap(), Some(first));
    assert_eq!(r.first_logged_at(env.log_time_ms + 1).unwrap(), None);
    // The index written at ingestion is the one the envelopes give; a
    // damaged one is found and mended.
    use quire_server::events::reindex::reindex;
    let store = server.logs[0].store();
    let (diff, rebuilt) = reindex(store, false, |_, _| {}).unwrap();
    assert!(diff.is_empty(), "{diff:?}");
    let keys: Vec<_> = rebuilt
        .newest
        .iter()
        .skip(1)
        .map(|(k, i)| (*k, *i))
        .collect();
    let times: Vec<_> = rebuilt.times.iter().map(|(t, i)| (*t, *i)).collect();
    store.replace_event_index(&keys, &times).unwrap();
    assert_eq!(reindex(store, false, |_, _| {}).unwrap().0.wrong_keys, 1);
    reindex(store, true, |_, _| {}).unwrap();
    assert!(reindex(store, false, |_, _| {}).unwrap().0.is_empty());
    // Erased: the row names the erasure event, the payload is gone.
    let out = quire(&[
        "--json",
        "event",
        "erase",
        "0",
        "--reason",
        "right to erasure",
        "--addr",
        &url,
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["erased_by"], "3");
    let r = server.logs[0].store().reader().unwrap();
    assert_eq!(
        r.payload(0).unwrap(),
        Some(quire_server::store::Payload::Erased { by: 3 })
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_log_on_postgres_answers_searches_by_key_proven_complete() {
    let (_, db, _dir, data) = setup("keyed");
    let origin = "pg.example/keyed";
    let mut cfg = pg_log(origin, &db);
    cfg.events = true;
    let server = LocalServer::start(&data, vec![cfg.clone()], Config::default())
        .await
        .unwrap();
    let key = server.keys[0].to_vkey();
    let url = server.url();
    let mut written: Vec<(String, String)> = Vec::new();
    for (actor, action) in [("alice", "login"), ("bob", "login"), ("alice", "delete")] {
        let out = quire(&[
            "--json",
            "event",
            "add",
            "type=app.event",
            &format!("actor={actor}"),
            &format!("action={action}"),
            "--addr",
            &url,
        ]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        written.push((actor.into(), v["index"].as_str().unwrap().to_owned()));
    }
    // The map's head follows within a second: polled, bounded. Each
    // answer is verified by the CLI against the log's key.
    let search = |flag: &str, value: &str| -> Vec<String> {
        let out = quire_tests::eventlog::search_by_key(&url, &key, flag, value);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (summary, events) = lines.split_last().unwrap();
        assert_eq!(summary["verified"], true, "{out}");
        assert!(summary["more_from"].is_null(), "{out}");
        events
            .iter()
            .map(|e| e["index"].as_str().unwrap().to_owned())
            .collect()
    };
    let alice: Vec<String> = written
        .iter()
        .rev()
        .filter(|(a, _)| a == "alice")
        .map(|(_, i)| i.clone())
        .collect();
    assert_eq!(search("--actor", "alice"), alice);
    assert_eq!(search("--action", "login").len(), 2);
    assert!(search("--actor", "nobody").is_empty());
    server.stop().await;
    // Restarted, the map is read back from PostgreSQL's index of keys.
    let server = LocalServer::start(&data, vec![cfg], Config::default())
        .await
        .unwrap();
    let url = server.url();
    // A head is published again at once, or appended within a second.
    let bob = quire_tests::eventlog::search_by_key(&url, &key, "--actor", "bob");
    assert!(
        bob.lines()
            .next()
            .unwrap()
            .contains(&format!("\"index\":\"{}\"", written[1].1)),
        "{bob}"
    );
    server.stop().await;
}

/// An event log moves to PostgreSQL and back with its payloads, its
/// erasures, its indexes and its key map: every event reads back verified
/// with the same payload, an erased one still names its erasure, a search
/// by key is proven complete, and the indexes equal the envelopes'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_an_event_log_with_its_payloads_erasures_and_indexes() {
    use quire_server::events::reindex::reindex;
    let (pg, db, dir, data) = setup("migrate_events");
    let origin = "move.example/events";
    let url = pg.url_of(&db);
    let on_redb = || {
        let mut cfg = LogConfig::new(origin);
        cfg.events = true;
        cfg
    };
    let server = LocalServer::start(&data, vec![on_redb()], Config::default())
        .await
        .unwrap();
    let key = server.keys[0].to_vkey();
    let at = server.url();
    let add = |at: &str, actor: &str, payload: Option<&str>| -> String {
        let mut args = vec![
            "--json".to_owned(),
            "event".into(),
            "add".into(),
            "type=app.event".into(),
            format!("actor={actor}"),
            "action=login".into(),
        ];
        if let Some(p) = payload {
            let file = dir.path().join(format!("{actor}-{}.json", p.len()));
            std::fs::write(&file, p).unwrap();
            args.push(format!("payload=@{}", path(&file)));
        }
        args.extend(["--addr".into(), at.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let v: serde_json::Value = serde_json::from_str(quire(&args).trim()).unwrap();
        v["index"].as_str().unwrap().to_owned()
    };
    let erased = add(&at, "alice", Some("{\"secret\":\"gone\"}"));
    let kept = add(&at, "bob", Some("{\"kept\":true}"));
    add(&at, "alice", None);
    quire(&[
        "event",
        "erase",
        &erased,
        "--reason",
        "right to erasure",
        "--addr",
        &at,
    ]);
    let get = |at: &str, index: &str| -> serde_json::Value {
        let out = quire_on(at, &key, &["--json", "event", "get", index]);
        serde_json::from_str(out.trim()).unwrap()
    };
    let before_erased = get(&at, &erased);
    let before_kept = get(&at, &kept);
    assert!(before_erased["erased_by"].is_string(), "{before_erased}");
    let size = server.logs[0].latest().stored.size;
    server.stop().await;

    let d = path(&data);
    let hw = data.join("high-water");
    let hw = path(&hw);
    let common = ["--data-dir", d, "--high-water-dir", hw, "--origin", origin];
    let (code, out) = migrate(&[&common[..], &["--to", "postgres", "--url", &url]].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("entries 0..{size}")), "{out}");

    let mut on_pg = pg_log(origin, &db);
    on_pg.events = true;
    let server = LocalServer::start(&data, vec![on_pg], Config::default())
        .await
        .unwrap();
    let at = server.url();
    for (index, before) in [(&erased, &before_erased), (&kept, &before_kept)] {
        let after = get(&at, index);
        assert_eq!(after["verified"], true, "{after}");
        for field in ["envelope", "payload", "erased_by"] {
            assert_eq!(after[field], before[field], "event {index}: {field}");
        }
    }
    let found = quire_tests::eventlog::search_by_key(&at, &key, "--actor", "alice");
    let lines: Vec<serde_json::Value> = found
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, events) = lines.split_last().unwrap();
    assert_eq!(summary["verified"], true, "{found}");
    assert_eq!(events.len(), 2, "{found}");
    let (diff, _) = reindex(server.logs[0].store(), false, |_, _| {}).unwrap();
    assert!(diff.is_empty(), "{diff:?}");
    // The log goes on on PostgreSQL, then moves back: the redb file holds
    // a prefix and is extended with the new events and their payloads.
    let later = add(&at, "carol", Some("{\"later\":1}"));
    let before_later = get(&at, &later);
    let grown = server.logs[0].latest().stored.size;
    server.stop().await;
    let config = pg_config(dir.path(), &data, origin, "events = true\n", &url);
    let (code, out) = migrate(&["--config", path(&config), "--to", "redb"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("entries {size}..{grown}")), "{out}");
    let server = LocalServer::start(&data, vec![on_redb()], Config::default())
        .await
        .unwrap();
    let at = server.url();
    let after = get(&at, &later);
    assert_eq!(after["payload"], before_later["payload"], "{after}");
    assert_eq!(get(&at, &erased)["erased_by"], before_erased["erased_by"]);
    let (diff, _) = reindex(server.logs[0].store(), false, |_, _| {}).unwrap();
    assert!(diff.is_empty(), "{diff:?}");
    server.stop().await;
}
