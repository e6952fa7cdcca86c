//! Write unavailability when the PostgreSQL primary's machine is lost
//! (issue 12's second failover figure): three `quire-server` replicas on a
//! `pg_auto_failover` formation (`scripts/pg-auto-failover`, started before);
//! a writer appends one entry at a time; the primary's keeper and
//! PostgreSQL are killed (`SIGKILL`). Each round times, from the kill:
//!
//! - `manager_ms`: the first probe write a new primary accepts (what the
//!   failover manager itself achieves; it may run without a synchronous
//!   standby then, `pg_auto_failover`'s `wait_primary`);
//! - `replicated_ms`: the first probe write a new primary accepts while a
//!   synchronous standby streams (a commit PostgreSQL would not lose);
//! - `quire_ms`: Quire's next acknowledged write.
//!
//! Quire refuses to acknowledge without a synchronous standby, so it is
//! measured against both. The lost node is started again (it rejoins as a
//! standby) before the next round. Every acknowledged entry is read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::failover::{
    check_acked, connect, create_database, retry, start_three, wait_leader, write_20, Spec, NAMES,
};

/// How to run it.
#[derive(Clone, Debug)]
pub struct PgFailoverOptions {
    /// The formation's directory and monitor port (`PAF_DIR`, `PAF_PORT`).
    pub paf_dir: PathBuf,
    /// The monitor's port.
    pub paf_port: u16,
    /// Every node, read-write (the `url` line of the script).
    pub url: String,
    /// Rounds (each one lost primary).
    pub repeats: usize,
    /// The replicas' lease and renewal, milliseconds.
    pub lease_ms: (u64, u64),
    /// Where the replicas' files go.
    pub dir: PathBuf,
    /// The `quire-server` binary.
    pub server: PathBuf,
}

/// One round.
#[derive(Clone, Debug, Serialize)]
pub struct Round {
    /// Kill to the first write a new primary accepted.
    pub manager_ms: f64,
    /// Kill to the first write a new primary accepted with a synchronous
    /// standby streaming.
    pub replicated_ms: f64,
    /// Kill to Quire's next acknowledgement.
    pub quire_ms: f64,
}

/// What it measured.
#[derive(Clone, Debug, Serialize)]
pub struct PgFailoverReport {
    /// The rounds.
    pub rounds: Vec<Round>,
    /// Median and maximum of `quire_ms - replicated_ms`.
    pub after_replicated_ms: (f64, f64),
    /// Median and maximum of `quire_ms - manager_ms`.
    pub after_manager_ms: (f64, f64),
    /// Median of `manager_ms`.
    pub manager_p50_ms: f64,
    /// Entries acknowledged (all read back at their indexes).
    pub acknowledged: usize,
}

fn script(opts: &PgFailoverOptions, args: &[&str]) -> anyhow::Result<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no workspace"))?;
    let out = Command::new("bash")
        .arg(root.join("scripts/pg-auto-failover"))
        .args(args)
        .env("PAF_DIR", &opts.paf_dir)
        .env("PAF_PORT", opts.paf_port.to_string())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "scripts/pg-auto-failover {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn settled_primary(opts: &PgFailoverOptions, not: Option<u32>) -> anyhow::Result<u32> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok(p) = script(opts, &["primary"])?.parse::<u32>() {
            if Some(p) != not {
                return Ok(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no primary: {}", script(opts, &["state"])?)
}

/// One probe: a write on the read-write node, and whether a synchronous
/// standby streams there.
async fn probe(url: &str) -> Option<bool> {
    let db = tokio::time::timeout(Duration::from_secs(1), connect(url))
        .await
        .ok()?
        .ok()?;
    db.batch_execute(
        "SET statement_timeout = 1000; SET synchronous_commit = local; \
         INSERT INTO quire_probe VALUES (clock_timestamp())",
    )
    .await
    .ok()?;
    let row = db
        .query_one(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')",
            &[],
        )
        .await
        .ok()?;
    Some(row.try_get::<_, i64>(0).ok()? > 0)
}

/// Probes every 20 ms from `killed_at` until a new primary takes replicated
/// writes (bounded: 120 s): when it first took any write, and when it
/// first took one with a synchronous standby streaming.
async fn probe_until_replicated(
    url: String,
    killed_at: Instant,
) -> (Option<Duration>, Option<Duration>) {
    let (mut manager, mut replicated) = (None, None);
    while replicated.is_none() && killed_at.elapsed() < Duration::from_secs(120) {
        if let Some(sync) = probe(&url).await {
            let at = killed_at.elapsed();
            manager.get_or_insert(at);
            if sync {
                replicated = Some(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (manager, replicated)
}

/// Until node `node` streams again as a standby (bounded: 120 s).
async fn wait_rejoined(opts: &PgFailoverOptions, db_url: &str, node: u32) -> anyhow::Result<()> {
    let standby = format!("pgautofailover_standby_{node}");
    let start = Instant::now();
    loop {
        let streams = match connect(db_url).await {
            Ok(db) => db
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication \
                     WHERE application_name = $1 AND state = 'streaming'",
                    &[&standby],
                )
                .await
                .is_ok_and(|r| r.try_get::<_, i64>(0).is_ok_and(|n| n == 1)),
            Err(_) => false,
        };
        if streams {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "node {node} does not rejoin: {}",
            script(opts, &["state"])?
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the rounds.
///
/// # Errors
/// The formation or a replica that does not start, a write or a primary
/// that never comes back, or an acknowledged entry not in storage.
pub async fn run(opts: &PgFailoverOptions) -> anyhow::Result<PgFailoverReport> {
    let db_url = create_database(&opts.url, "quire_pgfailover").await?;
    connect(&db_url)
        .await?
        .batch_execute("CREATE TABLE quire_probe (at timestamptz)")
        .await?;
    let spec = Spec {
        server: &opts.server,
        dir: &opts.dir,
        lease_ms: opts.lease_ms,
        db_url: &db_url,
    };
    let replicas = start_three(&spec)?;
    let probe_url = format!("{db_url}&connect_timeout=1");
    let mut acked = Vec::new();
    let mut rounds = Vec::new();
    let mut n = 0u64;
    for round in 0..opts.repeats {
        let primary = settled_primary(opts, None).await?;
        let lead = wait_leader(&connect(&db_url).await?, Duration::from_secs(60)).await?;
        let li = NAMES.iter().position(|x| *x == lead).unwrap_or(0);
        let mut client = write_20(&replicas, li, &mut acked, &mut n).await?;
        script(opts, &["kill-node", &primary.to_string()])?;
        let killed_at = Instant::now();
        let probing = tokio::spawn(probe_until_replicated(probe_url.clone(), killed_at));
        let entry = format!("failover {n}").into_bytes();
        n += 1;
        let index = retry(&mut client, &entry, Duration::from_secs(120)).await?;
        let quire = killed_at.elapsed();
        acked.push((index, entry));
        let (Some(manager), Some(replicated)) = probing.await? else {
            anyhow::bail!("round {round}: no new primary took a write");
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let r = Round {
            manager_ms: ms(manager),
            replicated_ms: ms(replicated),
            quire_ms: ms(quire),
        };
        eprintln!(
            "round {round}: node {primary} lost; a new primary takes writes after {:.0} ms, \
             replicated writes after {:.0} ms; Quire writes after {:.0} ms",
            r.manager_ms, r.replicated_ms, r.quire_ms
        );
        rounds.push(r);
        script(opts, &["start-node", &primary.to_string()])?;
        wait_rejoined(opts, &db_url, primary).await?;
    }
    check_acked(&db_url, acked.clone()).await?;
    drop(replicas);
    let stats = |v: Vec<f64>| {
        let mut v = v;
        v.sort_by(f64::total_cmp);
        (
            v.get(v.len() / 2).copied().unwrap_or(0.0),
            v.last().copied().unwrap_or(0.0),
        )
    };
    Ok(PgFailoverReport {
        after_replicated_ms: stats(
            rounds
                .iter()
                .map(|r| r.quire_ms - r.replicated_ms)
                .collect(),
        ),
        after_manager_ms: stats(rounds.iter().map(|r| r.quire_ms - r.manager_ms).collect()),
        manager_p50_ms: stats(rounds.iter().map(|r| r.manager_ms).collect()).0,
        rounds,
        acknowledged: acked.len(),
    })
}
