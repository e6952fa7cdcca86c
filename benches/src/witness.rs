//! Witness scenarios of `quire-bench`.
//!
//! - `witness-add`: C2SP add-checkpoint with durable state against one
//!   witness, spread over many logs (P-256 log keys by default), every
//!   returned cosignature verified.
//! - `witnessed`: a log server with three local witnesses and a quorum of
//!   three under write load; for each checkpoint a client sees signed, the
//!   time until a client sees a witnessed checkpoint covering it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use quire_core::{LogKeyAlgorithm, LogSigner, Note, VerifierKey};
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::witness_client::WitnessClient;
use quire_proto::v1::{AddCheckpointRequest, AddEntryRequest, GetCheckpointRequest};
use quire_tests::memlog::MemLog;
use quire_witness::config::{LogEntryConfig, WitnessConfig};
use quire_witness::local::LocalWitness;

/// Options of `witness-add`.
pub struct AddOptions {
    /// Logs the witness knows; the load is spread over all.
    pub logs: usize,
    /// Checkpoints prepared per log (the run ends early if they run out).
    pub steps: usize,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Seconds to run.
    pub duration: u64,
    /// Log key algorithm.
    pub alg: LogKeyAlgorithm,
    /// Where the witness keeps its state.
    pub data_dir: std::path::PathBuf,
}

/// One prepared add-checkpoint call.
struct Step {
    old: u64,
    proof: Vec<Vec<u8>>,
    note: Vec<u8>,
    text: String,
}

fn prepare(opts: &AddOptions) -> anyhow::Result<Vec<(String, String, Vec<Step>)>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per = opts.logs.div_ceil(threads);
    let mut handles = Vec::new();
    for t in 0..threads {
        let (alg, steps) = (opts.alg, opts.steps);
        let range = (t * per)..((t + 1) * per).min(opts.logs);
        handles.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            for i in range {
                let origin = format!("bench.example/witnessed-{i}");
                let signer = LogSigner::generate(alg, &origin)?;
                let vkey = signer.verifier().to_vkey();
                let mut log = MemLog::with_signer(&origin, signer);
                let mut list = Vec::with_capacity(steps);
                let mut old = 0;
                for s in 0..steps {
                    log.append(1 + (s as u64 * 7 + i as u64) % 4, "bench");
                    let new = log.size();
                    list.push(Step {
                        old,
                        proof: quire_proto::hashes_to_wire(&log.proof(old, new)),
                        note: log.checkpoint(new),
                        text: log.text(new),
                    });
                    old = new;
                }
                out.push((origin, vkey, list));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("preparing checkpoints failed"))??,
        );
    }
    Ok(all)
}

/// Runs `witness-add` and returns its JSON report.
///
/// # Errors
/// Set-up failures; failed calls are counted in the report.
pub async fn add_checkpoint(opts: AddOptions) -> anyhow::Result<serde_json::Value> {
    let prep_start = Instant::now();
    let logs = prepare(&opts)?;
    let prep_s = prep_start.elapsed().as_secs_f64();
    let mut cfg = WitnessConfig::new("bench.witness.example", &opts.data_dir);
    cfg.logs = logs
        .iter()
        .map(|(o, k, _)| LogEntryConfig {
            origin: o.clone(),
            keys: vec![k.clone()],
            url: None,
        })
        .collect();
    let witness = LocalWitness::start(cfg).await?;
    let key = witness.key.clone();
    let channel = tonic::transport::Endpoint::from_shared(witness.url())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    // Logs dealt round-robin to the callers; each caller walks its logs'
    // checkpoints in order, so every call's old size is right.
    let mut per_worker: Vec<Vec<Vec<Step>>> = (0..opts.concurrency).map(|_| Vec::new()).collect();
    for (i, (_, _, steps)) in logs.into_iter().enumerate() {
        per_worker[i % opts.concurrency].push(steps);
    }
    let deadline = Instant::now() + Duration::from_secs(opts.duration);
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let bad_cosignatures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mine in per_worker {
        let mut hist = Histogram::<u64>::new(3)?;
        let mut client = WitnessClient::new(channel.clone());
        let (errors, bad, key) = (errors.clone(), bad_cosignatures.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let rounds = mine.first().map_or(0, Vec::len);
            'run: for r in 0..rounds {
                for steps in &mine {
                    if Instant::now() >= deadline {
                        break 'run;
                    }
                    let step = &steps[r];
                    let t = Instant::now();
                    let resp = client
                        .add_checkpoint(AddCheckpointRequest {
                            old_size: step.old,
                            proof: step.proof.clone(),
                            checkpoint: step.note.clone(),
                        })
                        .await;
                    let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                    match resp {
                        Ok(r) => {
                            let _ = hist.record(us);
                            if !cosignature_ok(&step.text, &r.into_inner().cosignatures, &key) {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut m) = errors.lock() {
                                *m.entry(format!("{:?}", e.code())).or_insert(0) += 1;
                            }
                            break 'run;
                        }
                    }
                }
            }
            hist
        }));
    }
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await?)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let rss = crate::rss_bytes();
    witness.stop().await;
    let calls = all.len();
    #[allow(clippy::cast_precision_loss)]
    let rate = calls as f64 / secs;
    let errors = errors.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(serde_json::json!({
        "scenario": "witness-add",
        "cores": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "logs": opts.logs,
        "log_key": format!("{:?}", opts.alg),
        "callers": opts.concurrency,
        "prepare_s": prep_s,
        "seconds": secs,
        "calls": calls,
        "calls_per_s": rate,
        "latency_us": crate::load::Latency::of(&all),
        "errors": errors,
        "bad_cosignatures": bad_cosignatures.load(Ordering::Relaxed),
        "rss_bytes": rss,
    }))
}

fn cosignature_ok(text: &str, lines: &[String], key: &VerifierKey) -> bool {
    quire_core::cosignature::verify_answer(text, lines, key).is_ok()
}

/// Options of `witnessed`.
pub struct WitnessedOptions {
    /// Offered single-entry writes per second.
    pub rate: u64,
    /// Seconds to run.
    pub duration: u64,
    /// Where the server and witnesses keep their data.
    pub data_dir: std::path::PathBuf,
}

/// Runs `witnessed` and returns its JSON report.
///
/// # Errors
/// Set-up failures.
#[allow(clippy::too_many_lines)]
pub async fn witnessed(opts: WitnessedOptions) -> anyhow::Result<serde_json::Value> {
    use quire_server::config::{Config, LogConfig, WitnessEntry};
    use quire_server::local::LocalServer;
    let origin = "bench.example/witnessed";
    let server_dir = opts.data_dir.join("server");
    let (signers, _) =
        quire_server::keyfile::load_or_create(&server_dir.join("keys"), origin, true)?;
    let vkeys: Vec<String> = signers.iter().map(|s| s.verifier().to_vkey()).collect();
    let mut witnesses = Vec::new();
    for i in 0..3 {
        let mut cfg = WitnessConfig::new(
            &format!("w{i}.bench.example"),
            &opts.data_dir.join(format!("w{i}")),
        );
        cfg.logs.push(LogEntryConfig {
            origin: origin.into(),
            keys: vkeys.clone(),
            url: None,
        });
        witnesses.push(LocalWitness::start(cfg).await?);
    }
    let mut lc = LogConfig::new(origin);
    lc.witnessing.witnesses = witnesses
        .iter()
        .map(|w| WitnessEntry {
            protocol: quire_server::witnessing::WitnessProtocol::Grpc,
            url: w.url(),
            key: w.key.to_vkey(),
        })
        .collect();
    lc.witnessing.quorum = Some(3);
    let server = LocalServer::start(&server_dir, vec![lc], Config::default()).await?;
    let channel = tonic::transport::Endpoint::from_shared(server.url())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut trusted: Vec<VerifierKey> = signers.iter().map(LogSigner::verifier).collect();
    let witness_keys: Vec<VerifierKey> = witnesses.iter().map(|w| w.key.clone()).collect();
    trusted.extend(witness_keys.iter().cloned());

    // Two followers: when each size was first seen signed, and witnessed.
    let signed_at = Arc::new(Mutex::new(BTreeMap::<u64, Instant>::new()));
    let witnessed_at = Arc::new(Mutex::new(BTreeMap::<u64, Instant>::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let follow = |witnessed: bool, into: Arc<Mutex<BTreeMap<u64, Instant>>>| {
        let mut c = LogClient::new(channel.clone());
        let (keys, wkeys, failures) = (trusted.clone(), witness_keys.clone(), failures.clone());
        tokio::spawn(async move {
            let Ok(stream) = c
                .watch_checkpoints(GetCheckpointRequest {
                    log: String::new(),
                    witnessed,
                })
                .await
            else {
                return;
            };
            let mut stream = stream.into_inner();
            while let Ok(Some(msg)) = stream.message().await {
                let now = Instant::now();
                let Ok(note) = Note::parse(&msg.checkpoint) else {
                    failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let ok = note.verify(&keys).ok().filter(|v| {
                    !witnessed || v.iter().filter(|s| wkeys.contains(&s.key)).count() == 3
                });
                let size = quire_core::Checkpoint::parse(note.text().as_bytes()).map(|c| c.size());
                match (ok, size) {
                    (Some(_), Ok(size)) => {
                        if let Ok(mut m) = into.lock() {
                            m.entry(size).or_insert(now);
                        }
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let f1 = follow(false, signed_at.clone());
    let f2 = follow(true, witnessed_at.clone());

    // Writers at the offered rate.
    let workers = 32u64;
    let interval = Duration::from_nanos(workers * 1_000_000_000 / opts.rate.max(1));
    let deadline = Instant::now() + Duration::from_secs(opts.duration);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut c = LogClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                n += 1;
                let _ = c
                    .add_entry(AddEntryRequest {
                        log: String::new(),
                        entry: format!("witnessed bench {w} {n}").into_bytes(),
                        with_proof: false,
                        witnessed: false,
                    })
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    // Let the last rounds finish, then stop following.
    tokio::time::sleep(Duration::from_millis(500)).await;
    f1.abort();
    f2.abort();
    let signed = signed_at.lock().map(|m| m.clone()).unwrap_or_default();
    let cosigned = witnessed_at.lock().map(|m| m.clone()).unwrap_or_default();
    // For each signed size: the first witnessed size that covers it.
    let mut h = Histogram::<u64>::new(3)?;
    let mut never = 0u64;
    for (size, t) in &signed {
        match cosigned.range(size..).next() {
            Some((_, tw)) => {
                let us =
                    u64::try_from(tw.saturating_duration_since(*t).as_micros()).unwrap_or(u64::MAX);
                h.record(us)?;
            }
            None => never += 1,
        }
    }
    let final_size = server.logs[0].latest().stored.size;
    server.stop().await;
    for w in witnesses {
        w.stop().await;
    }
    Ok(serde_json::json!({
        "scenario": "witnessed",
        "cores": std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        "witnesses": 3,
        "quorum": 3,
        "offered_entries_per_s": opts.rate,
        "entries": final_size,
        "signed_checkpoints_seen": signed.len(),
        "witnessed_checkpoints_seen": cosigned.len(),
        "signed_to_witnessed_us": crate::load::Latency::of(&h),
        "signed_sizes_never_witnessed": never,
        "verification_failures": failures.load(Ordering::Relaxed),
    }))
}
