//! Searches by key (`quire-bench --scenario keyed`): a log in event mode
//! on an in-process server (redb) filled with `events` events (no
//! payloads: the search reads envelopes only), the key map following,
//! then searches by actor through gRPC, each answer verified by the
//! client as `quire search --actor` verifies it (map head, map proof,
//! every inclusion proof, the links). Two kinds of actor: a rare one
//! (about ten events: the whole history, proven complete) and a frequent
//! one (thousands of events: the newest `page` of them, the page proven
//! to be the newest with nothing left out between). Reported: median and
//! p99 of each, the map's lag behind the log and its number of keys.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_client::keyed::KeyCheck;
use quire_client::policy::LogTrust;
use quire_core::event::KeyField;
use quire_proto::v1::events_client::EventsClient;
use quire_proto::v1::{AddEventsRequest, Event, SearchKeyRequest};
use rand::{Rng, SeedableRng};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

use crate::events::{event_server, quantile};

/// What to run.
#[derive(Clone, Debug)]
pub struct KeyedOpts {
    /// Events in the log before the searches.
    pub events: u64,
    /// Concurrent writers filling it.
    pub writers: usize,
    /// Events per request.
    pub batch: usize,
    /// Searches of each kind.
    pub queries: usize,
    /// Events a search of a frequent actor answers.
    pub page: u32,
}

const ORIGIN: &str = "keyed.example/audit";
/// Frequent actors; each event is by one of them but for one in a hundred.
const FREQUENT: u64 = 1000;
/// Rare actors: one in a hundred events, spread over this many.
const RARE: u64 = 10_000;
const VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn actor(rare: bool, n: u64) -> String {
    if rare {
        format!("contractor{n}@partner.example")
    } else {
        format!("user{n}@corp.example")
    }
}

/// An event of a Kubernetes-like audit trail (without its payload).
fn event(rng: &mut rand::rngs::StdRng) -> Event {
    let rare = rng.gen_bool(0.01);
    let who = actor(rare, rng.gen_range(0..if rare { RARE } else { FREQUENT }));
    let (ns, pod) = (rng.gen_range(0..100), rng.gen_range(0..100));
    Event {
        r#type: "k8s.audit".into(),
        actor: who,
        action: VERBS[rng.gen_range(0..VERBS.len())].into(),
        resource: format!("namespaces/ns-{ns}/pods/pod-{pod}"),
        outcome: "success".into(),
        source: format!(
            "10.{}.{}.{}",
            rng.gen_range(0..255),
            rng.gen_range(0..255),
            rng.gen_range(1..255)
        ),
        occurred_ms: None,
        attributes: [("auditID".to_owned(), format!("{:032x}", rng.gen::<u128>()))]
            .into_iter()
            .collect(),
        payload: Vec::new(),
    }
}

/// One verified search of `value`'s events, at most `limit`: the time
/// and the number of events answered.
async fn search(
    c: &mut EventsClient<Channel>,
    trust: &LogTrust,
    value: &str,
    limit: u32,
) -> anyhow::Result<(f64, usize, bool)> {
    let t = Instant::now();
    let mut pages = c
        .search_key(SearchKeyRequest {
            log: ORIGIN.into(),
            field: "actor".into(),
            value: value.into(),
            before: None,
            from_ms: 0,
            limit,
        })
        .await?
        .into_inner();
    let mut check = KeyCheck::new(trust, KeyField::Actor, value, None, 0);
    while let Some(p) = pages.next().await {
        check.page(&p?)?;
    }
    let a = check.finish()?;
    Ok((
        t.elapsed().as_secs_f64() * 1000.0,
        a.events.len(),
        a.more_from.is_none(),
    ))
}

/// Runs the scenario in `dir`; the JSON report.
///
/// # Errors
/// The server cannot start, a request or a verification fails, the map
/// does not catch up within ten minutes.
#[allow(clippy::too_many_lines)] // one phase after the other
pub async fn run(dir: &Path, o: &KeyedOpts) -> anyhow::Result<serde_json::Value> {
    let (server, client) = event_server(&dir.join("data"), ORIGIN, o.batch).await?;
    let trust = LogTrust::of_key(ORIGIN, server.keys[0].clone());

    // Filled flat out.
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..o.writers {
        let (mut c, done) = (client.clone(), Arc::clone(&done));
        let (batch, target) = (o.batch, o.events);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
            while done.fetch_add(batch as u64, Ordering::Relaxed) < target {
                let events = (0..batch).map(|_| event(&mut rng)).collect();
                c.add_events(AddEventsRequest {
                    log: ORIGIN.into(),
                    events,
                })
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let fill_s = started.elapsed().as_secs_f64();
    let log = &server.logs[0];
    let size = log.latest().stored.size;
    let maps = log
        .keymap()
        .ok_or_else(|| anyhow::anyhow!("the log keeps no key map"))?;
    let lag_at_end = size - maps.head().map_or(0, |h| h.size);
    // The map catches up (a head of the whole log); bounded.
    let caught = Instant::now();
    while maps.head().is_none_or(|h| h.size + 1 < size) {
        anyhow::ensure!(
            caught.elapsed() < Duration::from_secs(600),
            "the map is not caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up_s = caught.elapsed().as_secs_f64();
    let head = maps.head().ok_or_else(|| anyhow::anyhow!("no map head"))?;
    let keys = head.map.len();

    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut c = client.clone();
    let (mut rare_ms, mut frequent_ms) = (Vec::new(), Vec::new());
    let (mut rare_events, mut frequent_events) = (0, 0);
    for _ in 0..o.queries {
        let (ms, n, complete) =
            search(&mut c, &trust, &actor(true, rng.gen_range(0..RARE)), 0).await?;
        anyhow::ensure!(complete, "a rare actor's search was cut");
        rare_ms.push(ms);
        rare_events += n;
        let who = actor(false, rng.gen_range(0..FREQUENT));
        let (ms, n, _) = search(&mut c, &trust, &who, o.page).await?;
        frequent_ms.push(ms);
        frequent_events += n;
    }
    let rss = crate::rss_bytes();
    server.stop().await;
    let q = o.queries.max(1) as f64;
    Ok(serde_json::json!({
        "scenario": "Keyed",
        "cores": crate::machine::cores(),
        "events": size,
        "fill_s": fill_s,
        "fill_events_per_s": size as f64 / fill_s,
        "map_lag_events_at_end_of_fill": lag_at_end,
        "map_catch_up_s": catch_up_s,
        "map_keys": keys,
        "queries": o.queries,
        "rare_events_mean": rare_events as f64 / q,
        "rare_verified_ms_median": quantile(&mut rare_ms, 1, 2),
        "rare_verified_ms_p99": quantile(&mut rare_ms, 99, 100),
        "frequent_page": o.page,
        "frequent_events_mean": frequent_events as f64 / q,
        "frequent_verified_ms_median": quantile(&mut frequent_ms, 1, 2),
        "frequent_verified_ms_p99": quantile(&mut frequent_ms, 99, 100),
        "rss_bytes": rss,
    }))
}
