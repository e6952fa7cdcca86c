//! `quire-bench --scenario suite`: every figure in one run, beside the
//! machine's own limits and the PostgreSQL hash-chain baseline measured in
//! the same run, as a table of ratios and as JSON.
//!
//! The log server is the real `quire-server` binary (next to `quire-bench`)
//! as its own process, so its memory is its own; its data directory, the
//! machine measurements and PostgreSQL's data share one disk when
//! `scripts/bench` runs it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use tonic::transport::Channel;

use crate::load::{self, Load, Payload, Report};
use crate::{machine, postgres};

/// What to run.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// Where the server's data and the machine measurements go.
    pub data_dir: PathBuf,
    /// PostgreSQL for the baseline.
    pub pg_url: String,
    /// Seconds per scenario.
    pub seconds: u64,
    /// Entry size.
    pub entry_bytes: usize,
}

/// A `quire-server` child process.
struct ServerProcess {
    child: Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(data: &Path) -> anyhow::Result<ServerProcess> {
    let bin = std::env::current_exe()?.with_file_name("quire-server");
    if !bin.exists() {
        anyhow::bail!(
            "{} not found: cargo build --release -p quire-server",
            bin.display()
        );
    }
    // A throwaway log: its high-water record lives (and is removed) with
    // it, unless QUIRE_BENCH_HIGH_WATER_DIR puts it elsewhere (another
    // volume, to measure what the record's own sync costs on this one).
    let high_water = match std::env::var_os("QUIRE_BENCH_HIGH_WATER_DIR") {
        Some(d) => {
            let d = std::path::PathBuf::from(d).join(data.file_name().unwrap_or_default());
            // A throwaway log's record, from an earlier run of the scenario.
            let _ = std::fs::remove_dir_all(&d);
            d
        }
        None => data.join("high-water"),
    };
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--high-water-dir")
        .arg(high_water)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(out).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on ") {
                    break a.to_owned();
                }
            }
            _ => anyhow::bail!("quire-server exited before listening"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(ServerProcess {
        child,
        url: format!("http://{addr}"),
    })
}

/// Compacts each log's redb file under `data_dir/logs` (stopped first):
/// redb reserves free space as it grows, so only a compacted file says what
/// is stored. Returns each file with its compacted size.
///
/// # Errors
/// The directory cannot be read or a file cannot be compacted.
pub fn compact_logs(data_dir: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data_dir.join("logs"))?.flatten() {
        if e.path().extension().is_some_and(|x| x == "redb") {
            let bytes = quire_server::store::redb::RedbStore::compact_file(&e.path())?;
            out.push((e.path(), bytes));
        }
    }
    Ok(out)
}

/// Bytes of the files under `path`.
pub fn dir_bytes(path: &Path) -> u64 {
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

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// Runs everything; prints the table; returns the JSON.
///
/// # Errors
/// A server or PostgreSQL cannot be started or reached, or any
/// verification fails (the JSON is printed first).
#[allow(clippy::too_many_lines)] // the whole suite, then its table
pub async fn run(opts: &SuiteOptions) -> anyhow::Result<serde_json::Value> {
    let secs = Duration::from_secs(opts.seconds);
    eprintln!("machine limits ...");
    let limits = machine::measure(&opts.data_dir, 3.0)?;

    let data = opts.data_dir.join("quire-suite");
    let _ = std::fs::remove_dir_all(&data);
    let server = start_server(&data)?;
    let pid = server.child.id();
    let channel = Channel::from_shared(server.url.clone())?.connect().await?;
    let base = Load {
        writers: 0,
        batch: 1,
        rate: None,
        readers: 0,
        duration: secs,
        entry_bytes: opts.entry_bytes,
        payload: Payload::Random,
        server_pid: Some(pid),
        sample_every: Duration::from_millis(250),
        log: String::new(),
        bearer: None,
    };
    let names = ["single", "batched", "rate", "proofs", "mixed"];
    let mut reports: Vec<Report> = Vec::new();
    for (name, load) in names.into_iter().zip([
        Load {
            writers: 64,
            ..base.clone()
        },
        Load {
            writers: 8,
            batch: 1000,
            ..base.clone()
        },
        Load {
            writers: 64,
            rate: Some(5000),
            ..base.clone()
        },
        Load {
            readers: 16,
            ..base.clone()
        },
        Load {
            writers: 8,
            batch: 100,
            readers: 8,
            ..base.clone()
        },
    ]) {
        eprintln!("quire {name} ...");
        reports.push(load::run(channel.clone(), &load).await?);
    }
    let size = reports.last().map_or(0, |r| r.tree_size.1);
    let file_per_entry = dir_bytes(&data) as f64 / size.max(1) as f64;
    // Stopped first: the file is compacted (redb reserves free space as it
    // grows), so bytes per entry count what is stored.
    drop(server);
    let compacted: u64 = compact_logs(&data)?.iter().map(|(_, b)| b).sum();
    let disk_per_entry = compacted as f64 / size.max(1) as f64;
    let _ = std::fs::remove_dir_all(&data);

    let pg = |writers, batch| postgres::PgLoad {
        url: opts.pg_url.clone(),
        writers,
        batch,
        duration: secs,
        entry_bytes: opts.entry_bytes,
        payload: Payload::Random,
    };
    eprintln!("postgres single ...");
    let pg_single = postgres::run(&pg(64, 1)).await?;
    eprintln!("postgres batched ...");
    let pg_batched = postgres::run(&pg(8, 1000)).await?;

    eprintln!("witness add-checkpoint ...");
    let wdir = opts.data_dir.join("quire-suite-witness");
    let _ = std::fs::remove_dir_all(&wdir);
    let witness_add = crate::witness::add_checkpoint(crate::witness::AddOptions {
        logs: 1000,
        steps: 20,
        concurrency: 8,
        duration: opts.seconds,
        alg: quire_core::LogKeyAlgorithm::EcdsaP256,
        data_dir: wdir.join("add"),
    })
    .await?;
    eprintln!("signed -> witnessed ...");
    let witnessed = crate::witness::witnessed(crate::witness::WitnessedOptions {
        rate: 1000,
        duration: opts.seconds,
        data_dir: wdir.join("witnessed"),
    })
    .await?;
    let _ = std::fs::remove_dir_all(&wdir);

    let [single, batched, rate, proofs, mixed] = reports.as_slice() else {
        anyhow::bail!("{} scenario reports, not {}", reports.len(), names.len());
    };
    let runs: Vec<(&str, &Report)> = names.into_iter().zip(&reports).collect();
    let witness_failures = witness_add["bad_cosignatures"].as_u64().unwrap_or(0)
        + witnessed["verification_failures"].as_u64().unwrap_or(0);
    let failures: u64 = runs
        .iter()
        .map(|(_, r)| r.verification_failures)
        .sum::<u64>()
        + witness_failures;
    let peak = runs
        .iter()
        .map(|(_, r)| r.peak_rss_bytes)
        .max()
        .unwrap_or(0);
    let mib = 1_048_576.0;

    println!(
        "Quire vs. PostgreSQL hash chain, same run, {} cores, {}-byte entries, {} s each",
        limits.cores, opts.entry_bytes, opts.seconds
    );
    println!("machine: {:.0} fsyncs/s, {:.0} MiB/s sequential writes, {:.2} M leaf hashes/s, {:.0} MiB/s SHA-256 (one core)",
        limits.fsyncs_per_s, limits.write_bytes_per_s / mib, limits.leaf_hashes_per_s / 1e6, limits.sha256_bytes_per_s / mib);
    println!(
        "{:<44} {:>12} {:>12} {:>9}  vs the machine",
        "figure", "Quire", "PostgreSQL", "ratio"
    );
    let row = |f: &str, q: f64, p: f64, m: String| {
        println!("{f:<44} {q:>12.0} {p:>12.0} {:>9}  {m}", ratio(q, p));
    };
    row(
        "durable appends/s, 1 per call, 64 callers",
        single.achieved_per_s,
        pg_single.achieved_per_s,
        format!(
            "{:.1} entries per fsync",
            single.achieved_per_s / limits.fsyncs_per_s
        ),
    );
    row(
        "  p99 submit -> signed/committed, us",
        single.write_latency_us.p99 as f64,
        pg_single.write_latency_us.p99 as f64,
        String::new(),
    );
    row(
        "durable appends/s, 1000 per call, 8 callers",
        batched.achieved_per_s,
        pg_batched.achieved_per_s,
        format!(
            "{:.0}% of the disk's write bandwidth, {:.0}% of one core's leaf hashing",
            100.0 * batched.achieved_per_s * opts.entry_bytes as f64 / limits.write_bytes_per_s,
            100.0 * batched.achieved_per_s / limits.leaf_hashes_per_s
        ),
    );
    row(
        "  p99 submit -> signed/committed, us",
        batched.write_latency_us.p99 as f64,
        pg_batched.write_latency_us.p99 as f64,
        String::new(),
    );
    row(
        "bytes on disk per entry (compacted file)",
        disk_per_entry,
        pg_batched.bytes_per_entry,
        format!("entry is {} bytes", opts.entry_bytes),
    );
    println!(
        "{:<44} {:>12}  offered {}/s: p50 {} us, p99 {} us, max {} us",
        "rate: achieved entries/s",
        format!("{:.0}", rate.achieved_per_s),
        rate.offered_per_s.unwrap_or(0),
        rate.write_latency_us.p50,
        rate.write_latency_us.p99,
        rate.write_latency_us.max
    );
    println!(
        "{:<44} {:>12}  p50 {} us, p99 {} us (a hash chain has no inclusion proofs)",
        "inclusion proofs verified/s, 16 callers",
        format!("{:.0}", proofs.proofs_per_s),
        proofs.proof_latency_us.p50,
        proofs.proof_latency_us.p99
    );
    println!(
        "{:<44} {:>12}  and {:.0} proofs/s (p99 {} us) at once",
        "mixed: entries/s, 8 x 100 per call",
        format!("{:.0}", mixed.achieved_per_s),
        mixed.proofs_per_s,
        mixed.proof_latency_us.p99
    );
    println!("{:<44} {:>12.1}", "server peak RSS, MiB", peak as f64 / mib);
    println!(
        "{:<44} {:>12}",
        "server cores: single/batched/proofs/mixed",
        format!(
            "{:.2}/{:.2}/{:.2}/{:.2}",
            single.server_cores_used,
            batched.server_cores_used,
            proofs.server_cores_used,
            mixed.server_cores_used
        )
    );
    println!(
        "{:<44} {:>12.0}  p99 {} us (1000 logs, P-256, 8 callers, durable)",
        "witness add-checkpoint/s",
        witness_add["calls_per_s"].as_f64().unwrap_or(0.0),
        witness_add["latency_us"]["p99"]
    );
    println!(
        "{:<44} {:>12}  p50 {} us, max {} us (3 witnesses, quorum 3, 1000 entries/s)",
        "signed -> witnessed p99, us",
        witnessed["signed_to_witnessed_us"]["p99"],
        witnessed["signed_to_witnessed_us"]["p50"],
        witnessed["signed_to_witnessed_us"]["max"]
    );
    println!(
        "errors: {}",
        json!(runs
            .iter()
            .map(|(n, r)| (n.to_string(), r.errors.clone()))
            .collect::<std::collections::BTreeMap<_, _>>())
    );
    println!(
        "verification failures: {failures}; PostgreSQL chains verified: {}",
        pg_single.chain_verified && pg_batched.chain_verified
    );

    let out = json!({
        "machine": limits,
        "quire": runs.iter().map(|(n, r)| (n.to_string(), json!(r))).collect::<serde_json::Map<_, _>>(),
        "quire_disk_bytes_per_entry": disk_per_entry,
        "quire_file_bytes_per_entry_before_compaction": file_per_entry,
        "postgres": { "single": pg_single, "batched": pg_batched },
        "witness_add": witness_add,
        "witnessed": witnessed,
        "ratios": {
            "single_vs_postgres": single.achieved_per_s / pg_single.achieved_per_s.max(f64::MIN_POSITIVE),
            "batched_vs_postgres": batched.achieved_per_s / pg_batched.achieved_per_s.max(f64::MIN_POSITIVE),
            "single_entries_per_fsync": single.achieved_per_s / limits.fsyncs_per_s,
        },
        "verification_failures": failures,
    });
    if failures > 0 {
        println!("{}", serde_json::to_string_pretty(&out)?);
        anyhow::bail!("{failures} verification failures");
    }
    Ok(out)
}
