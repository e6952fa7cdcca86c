//! `quire-bench`: load generator for a Quire log server.
//!
//! Starts a server in-process on 127.0.0.1 (redb, in a temporary directory
//! unless `--data-dir` is given), or drives one at `--addr`, and runs one
//! scenario:
//!
//! - `batched`: writers send `--batch` entries per request, flat out;
//! - `single`: `--concurrency` writers send one entry per request, flat out;
//! - `rate`: single-entry writes at an offered `--rate` per second;
//! - `proofs`: inclusion proofs by random index, each verified against a
//!   verified checkpoint.
//!
//! Throughput is the growth of the signed tree over the run (checkpoints are
//! verified with the log's keys); latency is submit → acknowledged, which in
//! Quire is also submit → in a signed checkpoint. Prints a table, or JSON
//! with `--json`.

// A measurement tool: counts become float rates, and `main` reads as one
// scenario from start to report.
#![allow(clippy::cast_precision_loss, clippy::too_many_lines)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use quire_core::{verify_inclusion, Checkpoint, Note, VerifierKey};
use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::{
    AddEntriesRequest, GetCheckpointRequest, GetInclusionProofRequest, ListLogsRequest,
};
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use quire_server::log::DedupPolicy;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    Batched,
    Single,
    Rate,
    Proofs,
    /// Time from start until the server at `--addr` serves a verified
    /// checkpoint (start this beside the server to time a restart).
    Ready,
    /// C2SP add-checkpoint against one in-process witness with durable
    /// state, spread over `--logs` logs.
    WitnessAdd,
    /// Signed → witnessed by 3 local witnesses (quorum 3) under `--rate`.
    Witnessed,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum LogKey {
    P256,
    Ed25519,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Dedup {
    Strict,
    BestEffort,
    Off,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Payload {
    /// Incompressible random bytes.
    Random,
    /// JSON audit events.
    Json,
}

#[derive(Parser, Debug)]
#[command(
    name = "quire-bench",
    about = "Load generator for the Quire log server"
)]
struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value = "batched")]
    scenario: Scenario,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Entries per request (batched).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Offered entries per second (rate).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Entry size in bytes.
    #[arg(long, default_value_t = 256)]
    entry_bytes: usize,
    /// Entry content.
    #[arg(long, value_enum, default_value = "random")]
    payload: Payload,
    /// Dedup policy of the in-process server.
    #[arg(long, value_enum, default_value = "strict")]
    dedup: Dedup,
    /// Entries to write before measuring (to measure on a larger log).
    #[arg(long, default_value_t = 0)]
    prefill: u64,
    /// Data directory of the in-process server (default: a temporary one).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Drive an external server instead of starting one.
    #[arg(long)]
    addr: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Origin of the in-process server's log (to reopen a kept data dir).
    #[arg(long, default_value = "bench.example/log")]
    origin: String,
    /// After the run, compact the in-process server's redb file and report
    /// its size per entry (the file otherwise includes free space redb
    /// reserved when it grew).
    #[arg(long)]
    compact: bool,
    /// Report the resident memory of this process (an external server).
    #[arg(long)]
    server_pid: Option<u32>,
    /// witness-add: logs the witness knows.
    #[arg(long, default_value_t = 1000)]
    logs: usize,
    /// witness-add: checkpoints prepared per log.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// witness-add: the logs' key algorithm.
    #[arg(long, value_enum, default_value = "p256")]
    log_key: LogKey,
}

const MIB: f64 = 1_048_576.0;

struct Shared {
    requests: AtomicU64,
    failures: AtomicU64,
}

/// What one worker saw.
struct WorkerReport {
    latency: Histogram<u64>,
    errors: std::collections::BTreeMap<String, u64>,
}

fn entry(rng: &mut rand::rngs::StdRng, payload: Payload, len: usize, n: u64) -> Vec<u8> {
    match payload {
        Payload::Random => {
            let mut e = vec![0u8; len.max(8)];
            rng.fill(&mut e[..]);
            e[..8].copy_from_slice(&n.to_be_bytes());
            e
        }
        Payload::Json => {
            let users = ["alice", "bob", "carol", "dave"];
            let actions = ["login", "logout", "read", "update", "delete"];
            let mut s = format!(
                "{{\"seq\":{n},\"time\":\"2026-11-21T10:{:02}:{:02}.{:03}Z\",\"user\":\"{}\",\"action\":\"{}\",\"resource\":\"/records/{}\",\"ip\":\"10.{}.{}.{}\",\"result\":\"ok\"",
                rng.gen_range(0..60),
                rng.gen_range(0..60),
                rng.gen_range(0..1000),
                users[rng.gen_range(0..users.len())],
                actions[rng.gen_range(0..actions.len())],
                rng.gen_range(0..100_000),
                rng.gen_range(0..256),
                rng.gen_range(0..256),
                rng.gen_range(0..256)
            );
            while s.len() + 1 < len {
                s.push(' ');
            }
            s.push('}');
            s.into_bytes()
        }
    }
}

/// The verifier keys of the server's (first) log, as it lists them.
async fn log_keys(c: &mut LogClient<Channel>) -> anyhow::Result<Vec<VerifierKey>> {
    let logs = c.list_logs(ListLogsRequest {}).await?.into_inner().logs;
    Ok(logs
        .first()
        .map(|l| {
            l.verifier_keys
                .iter()
                .filter_map(|k| VerifierKey::parse(k).ok())
                .collect()
        })
        .unwrap_or_default())
}

async fn verified_checkpoint(
    c: &mut LogClient<Channel>,
    keys: &[VerifierKey],
) -> anyhow::Result<(Checkpoint, Vec<u8>)> {
    let note = c
        .get_checkpoint(GetCheckpointRequest::default())
        .await?
        .into_inner()
        .checkpoint;
    let n = Note::parse(&note)?;
    n.verify(keys)?;
    Ok((Checkpoint::parse(n.text().as_bytes())?, note))
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

use quire_benches::{proc_status_bytes, rss_bytes};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_owned());
    if matches!(args.scenario, Scenario::WitnessAdd | Scenario::Witnessed) {
        let report = if args.scenario == Scenario::WitnessAdd {
            quire_benches::witness::add_checkpoint(quire_benches::witness::AddOptions {
                logs: args.logs,
                steps: args.steps,
                concurrency: args.concurrency,
                duration: args.duration,
                alg: match args.log_key {
                    LogKey::P256 => quire_core::LogKeyAlgorithm::EcdsaP256,
                    LogKey::Ed25519 => quire_core::LogKeyAlgorithm::Ed25519,
                },
                data_dir: data_dir.clone(),
            })
            .await?
        } else {
            quire_benches::witness::witnessed(quire_benches::witness::WitnessedOptions {
                rate: args.rate,
                duration: args.duration,
                data_dir: data_dir.clone(),
            })
            .await?
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut local = None;
    let addr = if let Some(a) = &args.addr {
        a.clone()
    } else {
        let mut cfg = LogConfig::new(&args.origin);
        cfg.dedup = match args.dedup {
            Dedup::Strict => DedupPolicy::Strict,
            Dedup::BestEffort => DedupPolicy::BestEffort,
            Dedup::Off => DedupPolicy::Off,
        };
        cfg.max_batch = args.batch.max(1000);
        cfg.queue_depth = 100_000;
        let server = LocalServer::start(&data_dir, vec![cfg], Config::default()).await?;
        let url = server.url();
        local = Some(server);
        url
    };
    if args.scenario == Scenario::Ready {
        return ready(&addr).await;
    }
    let channel = Channel::from_shared(addr.clone())?.connect().await?;
    let mut client = LogClient::new(channel.clone())
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let keys = log_keys(&mut client).await?;

    // Prefill: 8 concurrent writers of 1000-entry batches (so commits group),
    // topping up an existing log to `--prefill` entries.
    let (have, _) = verified_checkpoint(&mut client, &keys).await?;
    let have_size = have.size();
    let left = Arc::new(AtomicU64::new(args.prefill.saturating_sub(have_size)));
    let mut fill = Vec::new();
    for w in 0..8u64 {
        let mut c = client.clone();
        let left = Arc::clone(&left);
        let (payload, len) = (args.payload, args.entry_bytes);
        fill.push(tokio::spawn(async move {
            // Seeded by the size already stored: a top-up writes new entries.
            let mut rng = rand::rngs::StdRng::seed_from_u64(have_size ^ (7 + w));
            let mut n_seq = (w + 1) << 40;
            loop {
                let Ok(taken) = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                    (l > 0).then(|| l - l.min(1000))
                }) else {
                    return Ok::<(), tonic::Status>(());
                };
                let entries = (0..taken.min(1000))
                    .map(|_| {
                        n_seq += 1;
                        entry(&mut rng, payload, len, n_seq)
                    })
                    .collect();
                c.add_entries(AddEntriesRequest {
                    log: String::new(),
                    entries,
                    with_proof: false,
                    witnessed: false,
                })
                .await?;
            }
        }));
    }
    for f in fill {
        f.await??;
    }

    // Entries written in the run are numbered apart from the prefill's.
    let counter = Arc::new(AtomicU64::new(1 << 50));
    let (before, _) = verified_checkpoint(&mut client, &keys).await?;
    let start_size = before.size();
    let shared = Arc::new(Shared {
        requests: AtomicU64::new(0),
        failures: AtomicU64::new(0),
    });
    // Proofs are checked against leaves fetched before the clock starts.
    let sample: Arc<Vec<(u64, quire_core::Hash)>> =
        Arc::new(if args.scenario == Scenario::Proofs {
            leaf_sample(&mut client, before.size(), 4096).await?
        } else {
            Vec::new()
        });
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let workers = if args.scenario == Scenario::Rate {
        args.concurrency.max(64)
    } else {
        args.concurrency
    };
    let per_worker_interval = if args.scenario == Scenario::Rate {
        Some(Duration::from_secs_f64(workers as f64 / args.rate as f64))
    } else {
        None
    };
    for w in 0..workers {
        let mut c = LogClient::new(channel.clone())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let shared = Arc::clone(&shared);
        let counter = Arc::clone(&counter);
        let keys = keys.clone();
        let args_scenario = args.scenario;
        let (payload, len, batch) = (args.payload, args.entry_bytes, args.batch);
        let sample = Arc::clone(&sample);
        tasks.push(tokio::spawn(async move {
            // Seeded by the starting size: a run on a kept log writes new
            // entries, not duplicates of an earlier run's.
            let mut rng = rand::rngs::StdRng::seed_from_u64(start_size ^ ((w as u64 + 100) << 40));
            let mut next = Instant::now() + Duration::from_micros(rng.gen_range(0..1000));
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = std::collections::BTreeMap::<String, u64>::new();
            // Proof workers verify against one verified checkpoint.
            let cp = if args_scenario == Scenario::Proofs {
                verified_checkpoint(&mut c, &keys).await.ok()
            } else {
                None
            };
            while Instant::now() < deadline {
                if let Some(iv) = per_worker_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let t0 = Instant::now();
                let result = if args_scenario == Scenario::Proofs {
                    {
                        let Some((cp, _)) = &cp else { break };
                        let Some(&(index, leaf)) =
                            sample.get(rng.gen_range(0..sample.len().max(1)))
                        else {
                            break;
                        };
                        let r = c
                            .get_inclusion_proof(GetInclusionProofRequest {
                                log: String::new(),
                                leaf: Some(Leaf::Index(index)),
                                tree_size: cp.size(),
                            })
                            .await
                            .map(tonic::Response::into_inner);
                        if let Ok(p) = &r {
                            let ok =
                                quire_proto::hashes_from_wire(&p.proof)
                                    .ok()
                                    .is_some_and(|proof| {
                                        verify_inclusion(&leaf, index, cp.size(), &proof, cp.root())
                                            .is_ok()
                                    });
                            if !ok {
                                shared.failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        r.map(|_| ())
                    }
                } else {
                    {
                        let n = if args_scenario == Scenario::Batched {
                            batch
                        } else {
                            1
                        };
                        let entries: Vec<Vec<u8>> = (0..n)
                            .map(|_| {
                                entry(
                                    &mut rng,
                                    payload,
                                    len,
                                    counter.fetch_add(1, Ordering::Relaxed),
                                )
                            })
                            .collect();
                        let r = c
                            .add_entries(AddEntriesRequest {
                                log: String::new(),
                                entries,
                                with_proof: false,
                                witnessed: false,
                            })
                            .await;
                        r.map(|_| ())
                    }
                };
                match result {
                    Ok(()) => {
                        let _ = local.record(
                            u64::try_from(t0.elapsed().as_micros().max(1)).unwrap_or(u64::MAX),
                        );
                        shared.requests.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(s) => {
                        *errors.entry(format!("{:?}", s.code())).or_default() += 1;
                    }
                }
            }
            anyhow::Ok(WorkerReport {
                latency: local,
                errors,
            })
        }));
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    for t in tasks {
        let r = t.await??;
        h.add(&r.latency)?;
        for (k, v) in r.errors {
            *errors.entry(k).or_default() += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (after, _) = verified_checkpoint(&mut client, &keys).await?;

    let grown = after.size() - before.size();
    let disk = dir_bytes(&data_dir);
    let space = local
        .as_ref()
        .and_then(|l| l.logs.first())
        .and_then(|l| l.store().space().ok());
    let per_entry = |b: u64| {
        if after.size() > 0 {
            b as f64 / after.size() as f64
        } else {
            0.0
        }
    };
    let report = serde_json::json!({
        "scenario": format!("{:?}", args.scenario),
        "cores": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "duration_s": elapsed,
        "concurrency": workers,
        "batch": if args.scenario == Scenario::Batched { args.batch } else { 1 },
        "entry_bytes": args.entry_bytes,
        "payload": format!("{:?}", args.payload),
        "dedup": format!("{:?}", args.dedup),
        "tree_size_before": before.size().to_string(),
        "tree_size_after": after.size().to_string(),
        "entries_per_s_signed": grown as f64 / elapsed,
        "offered_per_s": if args.scenario == Scenario::Rate { Some(args.rate) } else { None },
        "requests_per_s": shared.requests.load(Ordering::Relaxed) as f64 / elapsed,
        "latency_us": quire_benches::percentiles(&h),
        "errors": &errors,
        "verification_failures": shared.failures.load(Ordering::Relaxed),
        "process_rss_bytes": rss_bytes(),
        "server_rss_bytes": args.server_pid.map(|p| proc_status_bytes(&p.to_string(), "VmRSS:")),
        "server_peak_rss_bytes": args.server_pid.map(|p| proc_status_bytes(&p.to_string(), "VmHWM:")),
        "disk_bytes": disk,
        "disk_bytes_per_entry": per_entry(disk),
        "stored_bytes_per_entry": space.map(|s| per_entry(s.stored_bytes + s.metadata_bytes + s.fragmented_bytes)),
        "redb_space": space,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "scenario               {:?} ({} callers, {} cores)",
            args.scenario, workers, report["cores"]
        );
        println!(
            "tree size              {} -> {} (checkpoints verified)",
            before.size(),
            after.size()
        );
        println!("signed entries/s       {:.0}", grown as f64 / elapsed);
        println!(
            "requests/s             {:.0}",
            report["requests_per_s"].as_f64().unwrap_or(0.0)
        );
        println!(
            "latency us             p50 {} p90 {} p99 {} max {}",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max()
        );
        println!("errors                 {}", report["errors"]);
        println!("verification failures  {}", report["verification_failures"]);
        println!(
            "process RSS            {:.1} MiB (client and server)",
            rss_bytes() as f64 / MIB
        );
        if let Some(p) = args.server_pid {
            println!(
                "server RSS             {:.1} MiB now, {:.1} MiB peak (pid {p})",
                proc_status_bytes(&p.to_string(), "VmRSS:") as f64 / MIB,
                proc_status_bytes(&p.to_string(), "VmHWM:") as f64 / MIB
            );
        }
        println!(
            "disk                   {:.1} MiB, {:.1} bytes/entry",
            disk as f64 / MIB,
            report["disk_bytes_per_entry"].as_f64().unwrap_or(0.0)
        );
        if let Some(sp) = space {
            println!(
                "redb pages in use     {:.1} bytes/entry (stored {:.1}, metadata {:.1}, fragmented {:.1})",
                per_entry(sp.stored_bytes + sp.metadata_bytes + sp.fragmented_bytes),
                per_entry(sp.stored_bytes),
                per_entry(sp.metadata_bytes),
                per_entry(sp.fragmented_bytes)
            );
        }
    }
    // Stopped and its storage closed before the file is compacted.
    if let Some(server) = local {
        server.stop().await;
    }
    if args.compact && args.addr.is_none() {
        for e in std::fs::read_dir(data_dir.join("logs"))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "redb") {
                let bytes = quire_server::store::redb::RedbStore::compact_file(&e.path())?;
                let per = bytes as f64 / after.size().max(1) as f64;
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"compacted_bytes": bytes, "compacted_bytes_per_entry": per})
                    );
                } else {
                    println!(
                        "compacted file         {:.1} MiB, {per:.1} bytes/entry for {}-byte entries ({:.2}x the entry)",
                        bytes as f64 / MIB,
                        args.entry_bytes,
                        per / args.entry_bytes as f64,
                    );
                }
            }
        }
    }
    if shared.failures.load(Ordering::Relaxed) > 0 {
        anyhow::bail!("verification failures");
    }
    Ok(())
}

/// `n` random (index, leaf hash) pairs of the first `size` entries.
async fn leaf_sample(
    c: &mut LogClient<Channel>,
    size: u64,
    n: u64,
) -> anyhow::Result<Vec<(u64, quire_core::Hash)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut out = Vec::new();
    for _ in 0..n.min(size) {
        let index = rng.gen_range(0..size);
        let mut s = c
            .get_entries(quire_proto::v1::GetEntriesRequest {
                log: String::new(),
                start: index,
                end: index + 1,
            })
            .await?
            .into_inner();
        let page = s
            .message()
            .await?
            .ok_or_else(|| anyhow::anyhow!("no entry {index}"))?;
        let e = page
            .entries
            .first()
            .ok_or_else(|| anyhow::anyhow!("no entry {index}"))?;
        out.push((index, quire_core::leaf_hash(e)));
        // Read the stream to its end: dropping thousands of unfinished
        // streams trips h2's limit on locally reset streams.
        while s.message().await?.is_some() {}
    }
    Ok(out)
}

/// Polls `addr` until it answers with a checkpoint that verifies under the
/// keys it lists, and prints how long that took.
async fn ready(addr: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let attempt = async {
            let channel = Channel::from_shared(addr.to_owned())?.connect().await?;
            let mut c = LogClient::new(channel);
            let keys = log_keys(&mut c).await?;
            verified_checkpoint(&mut c, &keys).await
        };
        match attempt.await {
            Ok((cp, _)) => {
                println!(
                    "serving a verified checkpoint of size {} after {} ms",
                    cp.size(),
                    start.elapsed().as_millis()
                );
                return Ok(());
            }
            Err(e) if start.elapsed() > Duration::from_secs(120) => {
                anyhow::bail!("not serving after 120 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}
