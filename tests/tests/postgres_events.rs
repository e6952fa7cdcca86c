//! An event log on PostgreSQL, end to end: a real server (started by
//! `scripts/postgres`) behind Quire's servers and the `quire` CLI. Payloads,
//! links and times kept with the events, searches by key proven complete,
//! and `quire-server migrate` moving an event log with its payloads,
//! erasures and indexes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "postgres_log/common.rs"]
mod common;

use common::*;
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use quire_server::store::{Storage, StorageReader};

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

    let hw = data.join("high-water");
    let common = redb_args(&data, &hw, origin);
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
