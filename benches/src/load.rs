//! Log load of `quire-bench`: writers (single entries or batches, flat out
//! or at an offered rate), proof readers, and an auditor, all at once.
//!
//! Everything received is verified: the auditor fetches the signed
//! checkpoint at every sample, checks its signature and a consistency proof
//! from the one before; proof readers check inclusion proofs of entries
//! written in the run (and of a sample of older ones) against the latest
//! checkpoint the auditor verified. Any failure is counted and the first
//! ones are kept with what failed.
//!
//! Achieved throughput is the growth of the signed tree over the run. In
//! Quire an acknowledgement means durable and in a signed checkpoint, so
//! submit → acknowledged is also submit → signed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Client;
use hdrhistogram::Histogram;
use quire_core::{leaf_hash, Checkpoint, Hash, VerifierKey};
use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::{
    AddEntriesRequest, GetConsistencyProofRequest, GetEntriesRequest, GetInclusionProofRequest,
};
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use tokio::sync::watch;
use tonic::transport::Channel;

pub use crate::entries::{entry, Entries, Payload};
pub use crate::verify::{check_extends, check_inclusion, log_keys, verified_checkpoint};

/// What to run.
#[derive(Clone, Debug)]
pub struct Load {
    /// Concurrent writers (0: none).
    pub writers: usize,
    /// Entries per write request.
    pub batch: usize,
    /// Offered entries per second over all writers; `None`: flat out.
    pub rate: Option<u64>,
    /// Concurrent proof readers (0: none).
    pub readers: usize,
    /// How long.
    pub duration: Duration,
    /// Entry size.
    pub entry_bytes: usize,
    /// Entry content.
    pub payload: Payload,
    /// The server's process id, for its memory; `None`: this process (an
    /// in-process server).
    pub server_pid: Option<u32>,
    /// How often the auditor checks the checkpoint and samples memory.
    pub sample_every: Duration,
    /// The log's origin (empty: the server's only log).
    pub log: String,
    /// A bearer token every call sends.
    pub bearer: Option<String>,
}

/// Latency percentiles, microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Calls measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Slowest.
    pub max: u64,
}

impl Latency {
    /// The percentiles of a histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Seconds measured.
    pub duration_s: f64,
    /// Writers, entries per request, readers.
    pub writers: usize,
    /// Entries per write request.
    pub batch: usize,
    /// Proof readers.
    pub readers: usize,
    /// Entry size.
    pub entry_bytes: usize,
    /// Offered entries per second, when offered at a rate.
    pub offered_per_s: Option<u64>,
    /// Growth of the signed tree per second.
    pub achieved_per_s: f64,
    /// Signed tree size at the start and at the end.
    pub tree_size: (u64, u64),
    /// Submit → acknowledged (= in a signed checkpoint), per request.
    pub write_latency_us: Latency,
    /// Inclusion proofs verified per second.
    pub proofs_per_s: f64,
    /// Inclusion proof latency.
    pub proof_latency_us: Latency,
    /// Checkpoints whose signature and consistency the auditor verified.
    pub checkpoints_verified: u64,
    /// Failed verifications (signature, consistency, inclusion).
    pub verification_failures: u64,
    /// The first failures, with what failed.
    pub failure_examples: Vec<String>,
    /// Errors by gRPC status code.
    pub errors: BTreeMap<String, u64>,
    /// (seconds since the start, server RSS bytes) at each sample.
    pub rss_samples: Vec<(f64, u64)>,
    /// Server RSS at the end.
    pub rss_bytes: u64,
    /// Server peak RSS (its high-water mark).
    pub peak_rss_bytes: u64,
    /// The server's CPU time over the run divided by the run's wall time.
    pub server_cores_used: f64,
}

/// `n` random (index, leaf hash) pairs of the first `size` entries.
///
/// # Errors
/// A call fails or an entry is missing.
pub async fn leaf_sample(
    c: &mut Client,
    log: &str,
    size: u64,
    n: u64,
) -> anyhow::Result<Vec<(u64, Hash)>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut out = Vec::new();
    for _ in 0..n.min(size) {
        let index = rng.gen_range(0..size);
        let mut s = c
            .get_entries(GetEntriesRequest {
                log: log.to_owned(),
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
        out.push((index, leaf_hash(e)));
        // Read the stream to its end: dropping thousands of unfinished
        // streams trips h2's limit on locally reset streams.
        while s.message().await?.is_some() {}
    }
    Ok(out)
}

/// State shared by the tasks of a run.
struct Shared {
    log: String,
    keys: Vec<VerifierKey>,
    /// Entries acknowledged in the run, newest last (bounded).
    recent: Mutex<VecDeque<(u64, Hash)>>,
    failures: AtomicU64,
    examples: Mutex<Vec<String>>,
    counter: AtomicU64,
    /// What the writers write, drawn before the clock starts.
    entries: Entries,
}

impl Shared {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut e) = self.examples.lock() {
            if e.len() < 10 {
                e.push(what);
            }
        }
    }
}

const RECENT: usize = 8192;

/// What one task measured.
struct TaskReport {
    latency: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// A latency histogram, microseconds up to ten minutes.
pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?)
}

/// Microseconds since `t`, at least 1.
pub(crate) fn micros(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros().max(1)).unwrap_or(u64::MAX)
}

async fn writer(
    mut c: Client,
    shared: Arc<Shared>,
    load: Load,
    w: usize,
    deadline: Instant,
) -> anyhow::Result<TaskReport> {
    let seed = shared.counter.load(Ordering::Relaxed) ^ ((w as u64 + 100) << 40);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64((load.writers * load.batch) as f64 / r.max(1) as f64));
    // Each writer starts at its own point of the interval, so that writers
    // at a rate spread their calls over it instead of calling together.
    let mut next =
        Instant::now() + interval.map_or(Duration::ZERO, |iv| iv.mul_f64(rng.gen_range(0.0..1.0)));
    let mut report = TaskReport {
        latency: histogram()?,
        errors: BTreeMap::new(),
    };
    let mut backoff = quire_client::rpc::FIRST_BACKOFF;
    while Instant::now() < deadline {
        if let Some(iv) = interval {
            tokio::time::sleep_until(next.into()).await;
            next += iv;
        }
        let entries: Vec<Vec<u8>> = (0..load.batch)
            .map(|_| {
                let n = shared.counter.fetch_add(1, Ordering::Relaxed);
                shared.entries.make(&mut rng, n)
            })
            .collect();
        let pick = rng.gen_range(0..entries.len().max(1));
        let leaf = entries.get(pick).map(|e| leaf_hash(e));
        let t0 = Instant::now();
        let r = c
            .add_entries(AddEntriesRequest {
                log: load.log.clone(),
                entries,
                with_proof: false,
                witnessed: false,
            })
            .await;
        match r {
            Ok(r) => {
                let _ = report.latency.record(micros(t0));
                backoff = quire_client::rpc::FIRST_BACKOFF;
                let r = r.into_inner();
                if let (Some(added), Some(leaf)) = (r.entries.get(pick), leaf) {
                    if let Ok(mut recent) = shared.recent.lock() {
                        if recent.len() >= RECENT {
                            recent.pop_front();
                        }
                        recent.push_back((added.index, leaf));
                    }
                }
            }
            Err(s) => {
                *report.errors.entry(format!("{:?}", s.code())).or_default() += 1;
                // A quota's refusal is retried as Quire's client retries
                // (`retry_wait`: after the hint or the backoff, whichever is
                // longer, spread at random), the backoff doubling while
                // refusals follow each other.
                if let Some(hint) = quire_client::rpc::retry_after(&s) {
                    let wait = quire_client::rpc::retry_wait(backoff, Some(hint));
                    let until = (Instant::now() + wait).min(deadline);
                    backoff = (backoff * 2).min(quire_client::rpc::MAX_BACKOFF);
                    tokio::time::sleep_until(until.into()).await;
                    next = next.max(until);
                }
            }
        }
    }
    Ok(report)
}

async fn reader(
    mut c: Client,
    shared: Arc<Shared>,
    sample: Arc<Vec<(u64, Hash)>>,
    mut latest: watch::Receiver<Checkpoint>,
    r: usize,
    deadline: Instant,
) -> anyhow::Result<TaskReport> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + r as u64);
    let mut report = TaskReport {
        latency: histogram()?,
        errors: BTreeMap::new(),
    };
    while Instant::now() < deadline {
        let cp = latest.borrow_and_update().clone();
        // Half from what this run wrote, half from the older sample (either
        // when the other has nothing yet).
        // One random recent entry, or else the oldest, whichever the
        // checkpoint covers: O(1) under the lock the writers share.
        let from_recent = shared.recent.lock().ok().and_then(|recent| {
            let any = recent.get(rng.gen_range(0..recent.len().max(1))).copied();
            any.into_iter()
                .chain(recent.front().copied())
                .find(|(i, _)| *i < cp.size())
        });
        let from_sample = sample.get(rng.gen_range(0..sample.len().max(1))).copied();
        let Some((index, leaf)) = (if rng.gen_bool(0.5) {
            from_recent.or(from_sample)
        } else {
            from_sample.or(from_recent)
        }) else {
            // Nothing to prove yet: wait for the next checkpoint.
            let _ = tokio::time::timeout(Duration::from_millis(100), latest.changed()).await;
            continue;
        };
        let t0 = Instant::now();
        let r = c
            .get_inclusion_proof(GetInclusionProofRequest {
                log: shared.log.clone(),
                leaf: Some(Leaf::Index(index)),
                tree_size: cp.size(),
            })
            .await;
        match r {
            Ok(p) => {
                let _ = report.latency.record(micros(t0));
                let p = p.into_inner();
                if let Err(e) = check_inclusion(&leaf, index, &cp, &p.proof) {
                    shared.fail(e);
                }
            }
            Err(s) => *report.errors.entry(format!("{:?}", s.code())).or_default() += 1,
        }
    }
    Ok(report)
}

/// RSS and peak RSS of `pid` (or this process), bytes.
fn memory(pid: Option<u32>) -> (u64, u64) {
    let p = pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
    (
        crate::proc_status_bytes(&p, "VmRSS:"),
        crate::proc_status_bytes(&p, "VmHWM:"),
    )
}

/// CPU seconds (user and system) of `pid`, or this process, so far. /proc
/// counts in `USER_HZ`, which is 100 on Linux.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let p = pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
    std::fs::read_to_string(format!("/proc/{p}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces).
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let utime: f64 = rest.get(11)?.parse().ok()?;
            let stime: f64 = rest.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Runs `load` against the server behind `channel`.
///
/// # Errors
/// The server cannot be reached or its first checkpoint does not verify.
/// Verification failures during the run are counted in the report instead.
#[allow(clippy::too_many_lines)] // one run, start to report
pub async fn run(channel: Channel, load: &Load) -> anyhow::Result<Report> {
    let mut client = crate::client(channel.clone(), load.bearer.as_deref())?;
    let keys = log_keys(&mut client, &load.log).await?;
    let before = verified_checkpoint(&mut client, &load.log, &keys).await?;
    let sample = Arc::new(if load.readers > 0 {
        leaf_sample(&mut client, &load.log, before.size(), 2048).await?
    } else {
        Vec::new()
    });
    let shared = Arc::new(Shared {
        log: load.log.clone(),
        keys,
        recent: Mutex::new(VecDeque::new()),
        failures: AtomicU64::new(0),
        examples: Mutex::new(Vec::new()),
        // Entries of this run are numbered apart from earlier ones.
        counter: AtomicU64::new((1 << 50) + before.size()),
        entries: Entries::new(load.payload, load.entry_bytes, before.size()),
    });
    let (latest_tx, latest_rx) = watch::channel(before.clone());
    let cpu_before = cpu_seconds(load.server_pid);
    let start = Instant::now();
    let deadline = start + load.duration;
    let mut writers = Vec::new();
    for w in 0..load.writers {
        let c = client.clone();
        writers.push(tokio::spawn(writer(
            c,
            Arc::clone(&shared),
            load.clone(),
            w,
            deadline,
        )));
    }
    let mut readers = Vec::new();
    for r in 0..load.readers {
        readers.push(tokio::spawn(reader(
            client.clone(),
            Arc::clone(&shared),
            Arc::clone(&sample),
            latest_rx.clone(),
            r,
            deadline,
        )));
    }

    // The auditor: every sample, the checkpoint (signature and consistency
    // with the one before) and the server's memory.
    let mut report = Report::default();
    let mut prev = before.clone();
    let mut audit = client.clone();
    loop {
        let now = Instant::now();
        if now < deadline {
            tokio::time::sleep(load.sample_every.min(deadline - now)).await;
        }
        report
            .rss_samples
            .push((start.elapsed().as_secs_f64(), memory(load.server_pid).0));
        match audit_step(&mut audit, &shared.log, &shared.keys, &prev).await {
            Ok(cp) => {
                report.checkpoints_verified += 1;
                prev = cp.clone();
                latest_tx.send_replace(cp);
            }
            Err(e) => shared.fail(e),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let mut write_h = histogram()?;
    let mut proof_h = histogram()?;
    for (tasks, h) in [(writers, &mut write_h), (readers, &mut proof_h)] {
        for t in tasks {
            let r = t.await??;
            h.add(&r.latency)?;
            for (k, v) in r.errors {
                *report.errors.entry(k).or_default() += v;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    report.server_cores_used = (cpu_seconds(load.server_pid) - cpu_before) / elapsed;
    let after = match audit_step(&mut audit, &shared.log, &shared.keys, &prev).await {
        Ok(cp) => cp,
        Err(e) => {
            shared.fail(e);
            prev
        }
    };
    let (rss, peak) = memory(load.server_pid);
    report.duration_s = elapsed;
    report.writers = load.writers;
    report.batch = load.batch;
    report.readers = load.readers;
    report.entry_bytes = load.entry_bytes;
    report.offered_per_s = load.rate;
    report.achieved_per_s = (after.size() - before.size()) as f64 / elapsed;
    report.tree_size = (before.size(), after.size());
    report.write_latency_us = Latency::of(&write_h);
    report.proofs_per_s = proof_h.len() as f64 / elapsed;
    report.proof_latency_us = Latency::of(&proof_h);
    report.verification_failures = shared.failures.load(Ordering::Relaxed);
    report.failure_examples = shared
        .examples
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    report.rss_bytes = rss;
    report.peak_rss_bytes = peak;
    Ok(report)
}

/// Fetches the latest checkpoint and verifies its signature and its
/// consistency with `prev`. The error says what failed.
async fn audit_step(
    c: &mut Client,
    log: &str,
    keys: &[VerifierKey],
    prev: &Checkpoint,
) -> Result<Checkpoint, String> {
    let cp = verified_checkpoint(c, log, keys)
        .await
        .map_err(|e| format!("checkpoint: {e}"))?;
    let mut proof = Vec::new();
    if prev.size() > 0 && cp.size() > prev.size() {
        proof = c
            .get_consistency_proof(GetConsistencyProofRequest {
                log: log.to_owned(),
                old_size: prev.size(),
                new_size: cp.size(),
                with_seed: false,
            })
            .await
            .map_err(|e| format!("consistency {} -> {}: {e}", prev.size(), cp.size()))?
            .into_inner()
            .proof;
    }
    check_extends(prev, &cp, &proof)?;
    Ok(cp)
}

/// Memory growth over a soak: the mean RSS of the last quarter of the
/// samples minus the mean of the second quarter (after warm-up), bytes.
pub fn rss_growth(samples: &[(f64, u64)]) -> i64 {
    let n = samples.len();
    if n < 4 {
        return 0;
    }
    let mean = |s: &[(f64, u64)]| {
        let sum: u128 = s.iter().map(|(_, b)| u128::from(*b)).sum();
        i64::try_from(sum / s.len().max(1) as u128).unwrap_or(i64::MAX)
    };
    mean(&samples[n * 3 / 4..]) - mean(&samples[n / 4..n / 2])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]
    use super::*;

    #[test]
    fn memory_growth_compares_late_samples_with_early_ones() {
        let flat: Vec<(f64, u64)> = (0..40).map(|i| (f64::from(i), 100)).collect();
        assert_eq!(rss_growth(&flat), 0);
        let growing: Vec<(f64, u64)> = (0..40u32)
            .map(|i| (f64::from(i), u64::from(i) * 10))
            .collect();
        // Mean of samples 30..40 (345) minus mean of 10..20 (145).
        assert_eq!(rss_growth(&growing), 200);
        assert_eq!(rss_growth(&growing[..3]), 0);
    }
}
