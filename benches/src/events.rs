//! Audit events (`quire-bench --scenario events`): realistic Kubernetes
//! audit events written in batches to a log in event mode on an
//! in-process server (redb), then searched by log time with every answer
//! verified by the client as `quire search` verifies it. Reported: events
//! acknowledged per second (median of one-second samples), the time to
//! answer and verify a search of about `query_events` events (median and
//! p99), stored bytes per event against the events' JSON, and the bytes
//! of the event indexes per event.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::bytes::Bytes;
use prost::Message as _;
use quire_client::policy::LogTrust;
use quire_client::search::TimeRangeCheck;
use quire_core::event::Envelope;
use quire_proto::raw::Raw;
use quire_proto::v1::events_client::EventsClient;
use quire_proto::v1::{AddEventsRequest, Event, GetEventRequest, SearchEventsRequest};
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use rand::{Rng, SeedableRng};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

/// What to run.
#[derive(Clone, Debug)]
pub struct EventsOpts {
    /// Concurrent writers.
    pub writers: usize,
    /// Events per request.
    pub batch: usize,
    /// How long the writers write.
    pub duration: Duration,
    /// Events a search answers (about: whole batches).
    pub query_events: u64,
    /// Searches timed.
    pub queries: usize,
}

const ORIGIN: &str = "events.example/audit";
const VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// A pool of realistic events: a Kubernetes API server's audit events
/// (`audit.k8s.io/v1`, stage `ResponseComplete`), mapped to the envelope's
/// fields, the original JSON as the payload.
fn pool(n: usize) -> Vec<Event> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..n)
        .map(|i| {
            let user = if rng.gen_bool(0.3) {
                format!("system:serviceaccount:ns-{}:deployer", rng.gen_range(0..50))
            } else {
                format!("user{}@corp.example", rng.gen_range(0..1000))
            };
            let verb = VERBS[rng.gen_range(0..VERBS.len())];
            let ns = rng.gen_range(0..100);
            let pod = rng.gen_range(0..100);
            let resource = format!("namespaces/ns-{ns}/pods/pod-{pod}");
            let ip = format!("10.{}.{}.{}", rng.gen_range(0..255), rng.gen_range(0..255), rng.gen_range(1..255));
            let code = if rng.gen_bool(0.95) { 200 } else { 403 };
            let audit_id = format!("{:032x}", rng.gen::<u128>());
            let agent = "kubectl/v1.31.0 (linux/amd64) kubernetes/9edcffc";
            let payload = serde_json::json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": audit_id, "stage": "ResponseComplete",
                "requestURI": format!("/api/v1/namespaces/ns-{ns}/pods/pod-{pod}"),
                "verb": verb,
                "user": {"username": user, "groups": ["system:authenticated"]},
                "sourceIPs": [ip], "userAgent": agent,
                "objectRef": {"resource": "pods", "namespace": format!("ns-{ns}"), "name": format!("pod-{pod}"), "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": code},
                "requestReceivedTimestamp": "2026-12-04T10:00:00.000000Z",
                "stageTimestamp": "2026-12-04T10:00:00.004000Z",
                "annotations": {"authorization.k8s.io/decision": if code == 200 { "allow" } else { "forbid" }, "authorization.k8s.io/reason": ""},
                "seq": i,
            });
            Event {
                r#type: "k8s.audit".into(),
                actor: user,
                action: verb.into(),
                resource,
                outcome: if code == 200 { "success" } else { "failure" }.into(),
                source: ip,
                occurred_ms: Some(1_796_371_200_000 + i as u64),
                attributes: [
                    ("auditID".to_owned(), audit_id),
                    ("userAgent".to_owned(), agent.to_owned()),
                    ("code".to_owned(), code.to_string()),
                ]
                .into_iter()
                .collect(),
                payload: payload.to_string().into_bytes(),
            }
        })
        .collect()
}

/// Requests of `batch` events each, encoded, that between them send every
/// event of `events` about four times.
fn encoded_batches(events: &[Event], batch: usize) -> Vec<Bytes> {
    let count = (4 * events.len()).div_ceil(batch).max(1);
    (0..count)
        .map(|j| {
            let request = AddEventsRequest {
                log: ORIGIN.into(),
                events: (0..batch)
                    .map(|k| events[(j * batch + k) % events.len()].clone())
                    .collect(),
            };
            Bytes::from(request.encode_to_vec())
        })
        .collect()
}

/// The event as JSON, as `quire event add --file` takes it: the
/// baseline its stored size is compared with.
fn json_bytes(e: &Event) -> usize {
    let payload: serde_json::Value =
        serde_json::from_slice(&e.payload).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "type": e.r#type, "actor": e.actor, "action": e.action, "resource": e.resource,
        "outcome": e.outcome, "source": e.source, "occurred_ms": e.occurred_ms,
        "attributes": e.attributes, "payload": payload,
    })
    .to_string()
    .len()
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 1, 2)
}

/// The `num`/`den` quantile of `v` (nearest rank).
pub(crate) fn quantile(v: &mut [f64], num: usize, den: usize) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let rank = (v.len() * num).div_ceil(den).clamp(1, v.len());
    v[rank - 1]
}

/// An in-process server (redb, data in `data`) of one log `origin` in
/// event mode taking requests of `batch` events, and a client of its
/// events service; both with 256 MiB messages.
///
/// # Errors
/// The server cannot start or be reached.
pub(crate) async fn event_server(
    data: &Path,
    origin: &str,
    batch: usize,
) -> anyhow::Result<(LocalServer, EventsClient<Channel>)> {
    let mut cfg = LogConfig::new(origin);
    cfg.events = true;
    cfg.max_batch = batch.max(1000);
    cfg.queue_depth = 100_000;
    let config = Config {
        max_message_bytes: 256 << 20,
        ..Config::default()
    };
    let server = LocalServer::start(data, vec![cfg], config).await?;
    let channel = Channel::from_shared(server.url())?.connect().await?;
    let client = EventsClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    Ok((server, client))
}

/// Runs the scenario in `dir`; the JSON report.
///
/// # Errors
/// The server cannot start, a request or a verification fails.
#[allow(clippy::too_many_lines)] // one phase after the other
pub async fn run(dir: &Path, o: &EventsOpts) -> anyhow::Result<serde_json::Value> {
    let data = dir.join("data");
    let (server, client) = event_server(&data, ORIGIN, o.batch).await?;
    let trust = LogTrust {
        origin: ORIGIN.into(),
        log_keys: server.keys.clone(),
        witnesses: Vec::new(),
        quorum: 0,
    };
    let events = Arc::new(pool(8192));
    let json_per_event = events.iter().map(json_bytes).sum::<usize>() as f64 / events.len() as f64;

    // Ingestion: writers flat out, acknowledged events counted. The
    // requests are encoded once, before the clock starts, and sent as
    // bytes: the load generator shares the machine's two cores with the
    // server, and re-encoding a megabyte for every request would take them
    // from the server it measures. The server decodes every request as it
    // would any other; each event gets its own salt and log time.
    let batch = o.batch.max(1);
    let requests = Arc::new(encoded_batches(&events, batch));
    let channel = Channel::from_shared(server.url())?.connect().await?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + o.duration;
    let mut tasks = Vec::new();
    for w in 0..o.writers {
        let (requests, done) = (Arc::clone(&requests), Arc::clone(&done));
        let mut grpc = tonic::client::Grpc::new(channel.clone())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        tasks.push(tokio::spawn(async move {
            let mut at = w * 7;
            // At least one request each, whatever the clock says.
            loop {
                let body = &requests[at % requests.len()];
                at += 1;
                grpc.ready().await?;
                grpc.unary(
                    tonic::Request::new(body.clone()),
                    http::uri::PathAndQuery::from_static("/quire.v1.Events/AddEvents"),
                    Raw,
                )
                .await?;
                done.fetch_add(batch as u64, Ordering::Relaxed);
                if Instant::now() >= stop {
                    break;
                }
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last = 0;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = done.load(Ordering::Relaxed);
        samples.push((now - last) as f64);
        last = now;
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = done.load(Ordering::Relaxed);
    // The last sample may be cut short by the end: left out.
    if samples.len() > 2 {
        samples.pop();
    }
    let ingest_median = median(&mut samples);

    // Searches of about `query_events` events, from the middle of the log.
    let mut c = client.clone();
    let size = server.logs[0].latest().stored.size;
    let first = size.saturating_sub(o.query_events) / 2;
    let last_index = (first + o.query_events).min(size.saturating_sub(1));
    let time_of = |index: u64| {
        let mut c = c.clone();
        async move {
            let r = c
                .get_event(GetEventRequest {
                    log: ORIGIN.into(),
                    index,
                })
                .await?
                .into_inner();
            anyhow::Ok(Envelope::decode(&r.envelope)?.log_time_ms)
        }
    };
    let (from_ms, to_ms) = (time_of(first).await?, time_of(last_index).await?);
    let mut times = Vec::new();
    let mut answered = 0;
    for _ in 0..o.queries {
        let t = Instant::now();
        let mut pages = c
            .search_events(SearchEventsRequest {
                log: ORIGIN.into(),
                from_ms,
                to_ms,
                limit: 0,
            })
            .await?
            .into_inner();
        let mut check = TimeRangeCheck::new(&trust, from_ms, to_ms);
        while let Some(p) = pages.next().await {
            check.page(&p?)?;
        }
        let a = check.finish(None)?;
        anyhow::ensure!(a.more_from.is_none(), "a search was cut short");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        answered = a.events.len();
    }
    let query_median = median(&mut times);
    let query_p99 = quantile(&mut times, 99, 100);
    server.stop().await;

    // Storage, compacted, by table.
    let file = data
        .join("logs")
        .read_dir()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "redb"));
    let Some(file) = file else {
        anyhow::bail!("no redb file in {}", data.display());
    };
    let file_bytes = quire_server::store::redb::RedbStore::compact_file(&file)?;
    let tables = quire_server::store::redb::RedbStore::table_bytes(&file)?;
    let table = |name: &str| {
        tables
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, b)| *b)
    };
    let index_bytes = table("event_keys") + table("log_times");
    let per = |b: u64| b as f64 / size.max(1) as f64;
    Ok(serde_json::json!({
        "scenario": "Events",
        "cores": crate::machine::cores(),
        "writers": o.writers,
        "batch": o.batch,
        "events": total,
        "ingest_events_per_s_median": ingest_median,
        "ingest_events_per_s_mean": total as f64 / elapsed,
        "query_events": answered,
        "queries": o.queries,
        "query_verified_ms_median": query_median,
        "query_verified_ms_p99": query_p99,
        "json_bytes_per_event": json_per_event,
        "stored_bytes_per_event": per(file_bytes),
        "stored_over_json": per(file_bytes) / json_per_event,
        "index_bytes_per_event": per(index_bytes),
        "payload_bytes_per_event": per(table("event_payload_chunks")),
        "bundle_bytes_per_event": per(table("bundles")),
        "tables": tables.iter().map(|(n, b)| (n.clone(), serde_json::json!(b))).collect::<serde_json::Map<_, _>>(),
    }))
}
