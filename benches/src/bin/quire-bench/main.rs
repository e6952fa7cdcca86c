//! `quire-bench`: load generator and benchmark harness for Quire.
//!
//! Starts a server in-process on 127.0.0.1 (redb, in a temporary directory
//! unless `--data-dir` is given), or drives one at `--addr`, and runs one
//! scenario:
//!
//! - `batched`, `single`: writers flat out, `--batch` or one entry per call;
//! - `rate`: single-entry writes at an offered `--rate` per second;
//! - `proofs`: inclusion proofs, each verified against a verified checkpoint;
//! - `mixed`: writers and `--readers` proof readers at once;
//! - `soak`: mixed load for `--duration` seconds with everything verified and
//!   the server's memory sampled every second; reports memory growth;
//! - `machine`: the machine's limits (fsyncs/s, write bandwidth, SHA-256);
//! - `postgres`: the append-only hash-chain baseline (`--pg URL`);
//! - `suite`: all of the above in one run, as a table of ratios and JSON;
//! - `witness-add`, `witnessed`, `ready`: see `--help`.
//!
//! Every checkpoint and proof received is verified; any failure fails the
//! run. Throughput is the growth of the signed tree; in Quire an
//! acknowledgement means in a signed checkpoint, so submit → acknowledged is
//! submit → signed.

// A measurement tool: counts become float rates, and `main` reads as one
// scenario from start to report.
#![allow(clippy::cast_precision_loss, clippy::too_many_lines)]

/// The allocator the server binary uses, so that the in-process server
/// is measured as it runs.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod standalone;

use std::time::Duration;

use clap::{Parser, ValueEnum};
use quire_benches::load::{self, Load, Payload, Report};
use quire_benches::{machine, prefill, suite};
use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use quire_server::log::DedupPolicy;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    Batched,
    Single,
    Rate,
    Proofs,
    /// Writers and `--readers` proof readers at once.
    Mixed,
    /// Mixed load for `--duration` s, everything verified, memory sampled.
    Soak,
    /// The machine's limits: fsyncs/s, write bandwidth, SHA-256.
    Machine,
    /// The PostgreSQL hash-chain baseline at `--pg`.
    Postgres,
    /// Everything, beside the machine's limits and the baseline.
    Suite,
    /// Time from start until the server at `--addr` serves a verified
    /// checkpoint (start this beside the server to time a restart).
    Ready,
    /// C2SP add-checkpoint against one in-process witness with durable
    /// state, spread over `--logs` logs.
    WitnessAdd,
    /// Signed → witnessed by 3 local witnesses (quorum 3) under `--rate`.
    Witnessed,
    /// Three replica processes on one log in PostgreSQL at `--pg`: write
    /// unavailability after SIGKILL of the leader, `--repeats` rounds.
    Failover,
    /// Three replica processes on a `pg_auto_failover` formation
    /// (`scripts/pg-auto-failover`; `--pg` its `url` line, `--paf-dir`,
    /// `--paf-port`): write unavailability after the primary's machine is
    /// lost, beside the failover manager's own, `--repeats` rounds.
    PgFailover,
    /// A noisy tenant held by its quota (`--quota`, `--concurrency`
    /// writers of `--batch`) beside a quiet one (`--quiet-writers` at
    /// `--rate`): the quiet tenant's latency alone and beside it, medians
    /// of `--repeats` rounds of both phases.
    Tenants,
    /// Realistic audit events (Kubernetes audit) to a log in event mode:
    /// `--concurrency` writers of `--batch` events for `--duration` s,
    /// then `--repeats` searches of about `--query-events` events, each
    /// verified; stored and index bytes per event.
    Events,
    /// Searches by actor on a log in event mode of `--prefill` events
    /// (written by `--concurrency` writers of `--batch`): `--repeats`
    /// searches of a rare actor (all its events) and of a frequent one
    /// (its newest `--query-events`), each verified.
    Keyed,
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

#[derive(Parser, Debug)]
#[command(
    name = "quire-bench",
    about = "Load generator and benchmark harness for Quire"
)]
struct Args {
    /// What to run.
    #[arg(long, value_enum, default_value = "batched")]
    scenario: Scenario,
    /// Seconds to run (per scenario, for `suite`).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent callers (writers; readers for `proofs`).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Entries per request (batched, mixed, soak, postgres).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Offered entries per second (rate: default 10000; mixed and soak:
    /// flat out unless given).
    #[arg(long)]
    rate: Option<u64>,
    /// Proof readers (mixed, soak).
    #[arg(long, default_value_t = 4)]
    readers: usize,
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
    /// Data directory of the in-process server, of `machine`'s test files
    /// and of `suite`'s server (default: a temporary one).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Drive an external server instead of starting one.
    #[arg(long)]
    addr: Option<String>,
    /// Store the in-process server's log in this PostgreSQL database
    /// instead of redb (its keys and high-water record stay in the data
    /// directory).
    #[arg(long)]
    store_pg: Option<String>,
    /// The in-process log's group commit wait, microseconds
    /// (`[logs.storage] commit_delay_us`; default: the engine's).
    #[arg(long)]
    commit_delay_us: Option<u64>,
    /// Requests of a commit that make the next one gather
    /// (`[logs.storage] commit_siblings`; default 2).
    #[arg(long)]
    commit_siblings: Option<usize>,
    /// PostgreSQL URL for `postgres` and `suite` (`scripts/postgres` starts
    /// a server and prints it).
    #[arg(long)]
    pg: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Origin of the in-process server's log (to reopen a kept data dir).
    #[arg(long, default_value = "bench.example/log")]
    origin: String,
    /// After the run, compact the in-process server's redb file and report
    /// its size per entry (the file otherwise includes free space redb
    /// reserved when it grew).
    #[arg(long)]
    compact: bool,
    /// The external server's process id, for its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// soak: fail when the server's memory grows by more than this.
    #[arg(long)]
    max_rss_growth_mib: Option<u64>,
    /// witness-add: logs the witness knows.
    #[arg(long, default_value_t = 1000)]
    logs: usize,
    /// witness-add: checkpoints prepared per log.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// pg-failover: the formation's directory (its `PAF_DIR`).
    #[arg(long)]
    paf_dir: Option<std::path::PathBuf>,
    /// pg-failover: the formation monitor's port (its `PAF_PORT`).
    #[arg(long, default_value_t = 7460)]
    paf_port: u16,
    /// failover, pg-failover, tenants: rounds; events, keyed: searches.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// failover: the replicas' lease, milliseconds.
    #[arg(long, default_value_t = 3000)]
    lease_ms: u64,
    /// failover: how often leases are renewed and looked for, ms.
    #[arg(long, default_value_t = 1000)]
    renew_ms: u64,
    /// How callers identify themselves to the in-process server (an access
    /// policy is set for `token` and `jwt`).
    #[arg(long, value_enum, default_value = "none")]
    auth: quire_benches::auth::Auth,
    /// tenants: the noisy tenant's quota, entries per second.
    #[arg(long, default_value_t = 2000)]
    quota: u64,
    /// tenants: the quiet tenant's writers.
    #[arg(long, default_value_t = 8)]
    quiet_writers: usize,
    /// events: events a timed search answers (about).
    #[arg(long, default_value_t = 10_000)]
    query_events: u64,
    /// witness-add: the logs' key algorithm.
    #[arg(long, value_enum, default_value = "p256")]
    log_key: LogKey,
}

const MIB: f64 = 1_048_576.0;

/// A binary built beside this one (`quire-server`).
fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe()?
        .parent()
        .map(|d| d.join(name))
        .ok_or_else(|| anyhow::anyhow!("no directory of quire-bench"))
}

fn emit(args: &Args, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    if args.json {
        println!("{text}");
    }
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{text}\n"))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // As the server runs: with transparent huge pages off.
    if let Err(e) = quire_host::memory::no_transparent_huge_pages() {
        eprintln!("quire-bench: transparent huge pages stay on: {e}");
    }
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| anyhow::anyhow!("--data-dir {}: {e}", data_dir.display()))?;
    let payload = args.payload;
    if standalone::run(&args, &data_dir).await? {
        return Ok(());
    }

    let mut local = None;
    let mut bearer = None;
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
        cfg.storage.commit_delay_us = args.commit_delay_us;
        cfg.storage.commit_siblings = args.commit_siblings;
        if let Some(url) = &args.store_pg {
            cfg.storage.engine = quire_server::config::Engine::Postgres;
            cfg.storage.url = Some(url.clone());
        }
        let mut config = Config::default();
        if let Some((policy, token)) = quire_benches::auth::setup(&data_dir, args.auth, "")? {
            config.access = Some(policy);
            bearer = Some(token);
        }
        let server = LocalServer::start(&data_dir, vec![cfg], config).await?;
        let url = server.url();
        local = Some(server);
        url
    };
    if args.scenario == Scenario::Ready {
        return prefill::ready(&addr).await;
    }
    let channel = Channel::from_shared(addr.clone())?.connect().await?;
    prefill::prefill(
        &channel,
        bearer.as_deref(),
        args.prefill,
        payload,
        args.entry_bytes,
    )
    .await?;

    let base = Load {
        writers: 0,
        batch: 1,
        rate: None,
        readers: 0,
        duration: Duration::from_secs(args.duration),
        entry_bytes: args.entry_bytes,
        payload,
        server_pid: args.server_pid,
        sample_every: Duration::from_millis(250),
        log: String::new(),
        bearer,
    };
    let load = match args.scenario {
        Scenario::Batched => Load {
            writers: args.concurrency,
            batch: args.batch,
            ..base
        },
        Scenario::Single => Load {
            writers: args.concurrency,
            ..base
        },
        Scenario::Rate => Load {
            writers: args.concurrency.max(64),
            rate: Some(args.rate.unwrap_or(10_000)),
            ..base
        },
        Scenario::Proofs => Load {
            readers: args.concurrency,
            ..base
        },
        Scenario::Soak => Load {
            writers: args.concurrency,
            batch: args.batch,
            rate: args.rate,
            readers: args.readers,
            sample_every: Duration::from_secs(1),
            ..base
        },
        _ => Load {
            writers: args.concurrency,
            batch: args.batch,
            rate: args.rate,
            readers: args.readers,
            ..base
        },
    };
    let report = load::run(channel, &load).await?;
    let disk = suite::dir_bytes(&data_dir);
    let per_entry = |b: u64| b as f64 / report.tree_size.1.max(1) as f64;
    let space = local
        .as_ref()
        .and_then(|l| l.logs.first())
        .and_then(|l| l.store().as_redb().and_then(|s| s.space().ok()));
    let growth = load::rss_growth(&report.rss_samples);
    let value = serde_json::json!({
        "scenario": format!("{:?}", args.scenario),
        "cores": machine::cores(),
        "dedup": format!("{:?}", args.dedup),
        "auth": args.auth,
        "payload": payload,
        "report": report,
        "rss_of": if args.server_pid.is_some() { "server" } else { "this process (client and in-process server)" },
        "rss_growth_bytes": growth,
        "disk_bytes": disk,
        "disk_bytes_per_entry": per_entry(disk),
        "stored_bytes_per_entry": space.map(|s| per_entry(s.stored_bytes + s.metadata_bytes + s.fragmented_bytes)),
        "redb_space": space,
    });
    print_report(&args, &report, growth, disk);
    emit(&args, &value)?;
    // Stopped and its storage closed before the file is compacted.
    if let Some(server) = local {
        server.stop().await;
    }
    if args.compact && args.addr.is_none() {
        compact(&data_dir, report.tree_size.1, args.entry_bytes)?;
    }
    if report.verification_failures > 0 {
        anyhow::bail!(
            "{} verification failures: {:?}",
            report.verification_failures,
            report.failure_examples
        );
    }
    if let Some(max) = args.max_rss_growth_mib {
        if growth > i64::try_from(max << 20).unwrap_or(i64::MAX) {
            anyhow::bail!(
                "memory grew by {:.1} MiB (limit {max})",
                growth as f64 / MIB
            );
        }
    }
    Ok(())
}

fn print_report(args: &Args, r: &Report, growth: i64, disk: u64) {
    if args.json {
        return;
    }
    println!(
        "scenario               {:?} ({} writers x {} per call, {} readers, {} cores)",
        args.scenario,
        r.writers,
        r.batch,
        r.readers,
        machine::cores()
    );
    println!(
        "tree size              {} -> {} ({} checkpoints verified, each consistent with the one before)",
        r.tree_size.0, r.tree_size.1, r.checkpoints_verified
    );
    match r.offered_per_s {
        Some(o) => println!(
            "entries/s              {:.0} signed of {o} offered",
            r.achieved_per_s
        ),
        None => println!("entries/s              {:.0} signed", r.achieved_per_s),
    }
    let l = &r.write_latency_us;
    if l.count > 0 {
        println!(
            "submit -> signed us    p50 {} p90 {} p99 {} max {} ({} calls)",
            l.p50, l.p90, l.p99, l.max, l.count
        );
    }
    let l = &r.proof_latency_us;
    if l.count > 0 {
        println!(
            "proofs/s               {:.0} verified; us p50 {} p90 {} p99 {} max {}",
            r.proofs_per_s, l.p50, l.p90, l.p99, l.max
        );
    }
    println!("errors                 {:?}", r.errors);
    println!(
        "verification failures  {} {:?}",
        r.verification_failures, r.failure_examples
    );
    let of = if args.server_pid.is_some() {
        "server"
    } else {
        "client and server"
    };
    println!(
        "RSS ({of})    {:.1} MiB, peak {:.1} MiB, growth {:+.1} MiB (last quarter vs second quarter of {} samples)",
        r.rss_bytes as f64 / MIB,
        r.peak_rss_bytes as f64 / MIB,
        growth as f64 / MIB,
        r.rss_samples.len()
    );
    println!(
        "cores used ({of}) {:.2} of {}",
        r.server_cores_used,
        machine::cores()
    );
    println!(
        "disk                   {:.1} MiB, {:.1} bytes/entry",
        disk as f64 / MIB,
        disk as f64 / r.tree_size.1.max(1) as f64
    );
}

fn compact(data_dir: &std::path::Path, size: u64, entry_bytes: usize) -> anyhow::Result<()> {
    for (_, bytes) in suite::compact_logs(data_dir)? {
        let per = bytes as f64 / size.max(1) as f64;
        println!(
            "compacted file         {:.1} MiB, {per:.1} bytes/entry for {entry_bytes}-byte entries ({:.2}x the entry)",
            bytes as f64 / MIB,
            per / entry_bytes as f64,
        );
    }
    Ok(())
}
