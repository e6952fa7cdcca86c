//! A noisy tenant beside a quiet one (`quire-bench --scenario tenants`):
//! two logs of two tenants on one in-process server, the noisy tenant's
//! token held by a quota. First the quiet tenant alone writes at a fixed
//! rate; then the noisy tenant's writers go flat out on their own log
//! while the quiet tenant writes as before. Reported: the noisy tenant's
//! acknowledged entries per second against its quota, and the quiet
//! tenant's latency loaded against unloaded. Both clients honour the
//! quota's retry hint, as Quire's client does.

use std::path::Path;
use std::time::Duration;

use quire_server::config::{Config, LogConfig};
use quire_server::local::LocalServer;
use tonic::transport::Channel;

use crate::load::{self, Load, Payload};

/// What to run.
#[derive(Clone, Debug)]
pub struct TenantsOpts {
    /// The noisy tenant's quota, entries per second.
    pub quota: u64,
    /// Its writers, flat out.
    pub noisy_writers: usize,
    /// Entries per noisy request.
    pub noisy_batch: usize,
    /// The quiet tenant's writers.
    pub quiet_writers: usize,
    /// The quiet tenant's offered entries per second.
    pub quiet_rate: u64,
    /// Each phase's length.
    pub duration: Duration,
    /// Entry size.
    pub entry_bytes: usize,
}

const NOISY: &str = "noisy.example/log";
const QUIET: &str = "quiet.example/log";

/// Runs both phases; the JSON report.
///
/// # Errors
/// The server cannot start, a run fails.
pub async fn run(dir: &Path, o: &TenantsOpts) -> anyhow::Result<serde_json::Value> {
    let (noisy, noisy_hash) = quire_server::access::new_token();
    let (quiet, quiet_hash) = quire_server::access::new_token();
    // A bucket of a tenth of a second of the quota.
    let burst = (o.quota / 10).max(o.noisy_batch as u64);
    let policy = format!(
        r#"public = []
[[tokens]]
name = "noisy"
sha256 = "{noisy_hash}"
[[tokens]]
name = "quiet"
sha256 = "{quiet_hash}"
[[grants]]
who = "token:noisy"
roles = ["writer", "reader"]
logs = ["{NOISY}"]
[[grants]]
who = "token:quiet"
roles = ["writer", "reader"]
logs = ["{QUIET}"]
[[quotas]]
who = "token:noisy"
entries_per_s = {quota}
burst = {burst}
"#,
        quota = o.quota
    );
    let path = dir.join("tenants-access.toml");
    std::fs::write(&path, policy)?;
    let logs = [NOISY, QUIET]
        .iter()
        .map(|origin| {
            let mut cfg = LogConfig::new(origin);
            cfg.queue_depth = 100_000;
            cfg
        })
        .collect();
    let config = Config {
        access: Some(path),
        ..Config::default()
    };
    let server = LocalServer::start(&dir.join("data"), logs, config).await?;
    let channel = Channel::from_shared(server.url())?.connect().await?;
    let base = Load {
        writers: 0,
        batch: 1,
        rate: None,
        readers: 0,
        duration: o.duration,
        entry_bytes: o.entry_bytes,
        payload: Payload::Random,
        server_pid: None,
        sample_every: Duration::from_millis(250),
        log: String::new(),
        bearer: None,
    };
    let quiet_load = Load {
        writers: o.quiet_writers,
        rate: Some(o.quiet_rate),
        log: QUIET.into(),
        bearer: Some(quiet),
        ..base.clone()
    };
    let noisy_load = Load {
        writers: o.noisy_writers,
        batch: o.noisy_batch,
        log: NOISY.into(),
        bearer: Some(noisy),
        ..base
    };
    let alone = load::run(channel.clone(), &quiet_load).await?;
    let (loud, beside) = tokio::join!(
        load::run(channel.clone(), &noisy_load),
        load::run(channel, &quiet_load)
    );
    let (loud, beside) = (loud?, beside?);
    server.stop().await;
    let held = loud.achieved_per_s / o.quota as f64;
    let p99 = beside.write_latency_us.p99 as f64 / alone.write_latency_us.p99.max(1) as f64;
    Ok(serde_json::json!({
        "scenario": "Tenants",
        "cores": crate::machine::cores(),
        "quota_entries_per_s": o.quota,
        "noisy_entries_per_s": loud.achieved_per_s,
        "noisy_over_quota": held,
        "noisy_refusals": loud.errors.get("ResourceExhausted").copied().unwrap_or(0),
        "quiet_alone_p99_us": alone.write_latency_us.p99,
        "quiet_beside_p99_us": beside.write_latency_us.p99,
        "quiet_p99_loaded_over_alone": p99,
        "quiet_alone": alone,
        "quiet_beside": beside,
        "noisy": loud,
    }))
}
