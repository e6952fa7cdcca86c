//! A noisy tenant beside a quiet one (`quire-bench --scenario tenants`):
//! two logs of two tenants on one in-process server, the noisy tenant's
//! token held by a quota. First the quiet tenant alone writes at a fixed
//! rate; then the noisy tenant's writers go flat out on their own log
//! while the quiet tenant writes as before. Reported: the noisy tenant's
//! acknowledged entries per second against its quota, and the quiet
//! tenant's latency loaded against unloaded: medians over the rounds
//! (`--repeats`), each round both phases, so that a slow spell of the
//! disk does not decide the figure alone. Each tenant has its own
//! connection, and both retry a quota's refusal as Quire's client does
//! (after the hint or the doubling backoff, whichever is longer).

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
    /// Rounds of the two phases, one after the other (at least 1).
    pub rounds: usize,
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
    // Two tenants are two clients: each its own connection and its own
    // runtime (one thread), as each would be its own process. On the
    // server's runtime, the noisy tenant's 32 writer tasks would queue
    // ahead of the quiet tenant's, in the same process, a delay no
    // tenant of a real server can cause another.
    let quiet_client = Tenant::connect("quiet", server.url()).await?;
    let noisy_client = Tenant::connect("noisy", server.url()).await?;
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
    let mut rounds = Vec::new();
    for _ in 0..o.rounds.max(1) {
        let alone = quiet_client.run(&quiet_load).await?;
        let (loud, beside) =
            tokio::join!(noisy_client.run(&noisy_load), quiet_client.run(&quiet_load));
        rounds.push((alone, loud?, beside?));
    }
    server.stop().await;
    Ok(report(o, &rounds))
}

/// A tenant's client: a connection made on, and loads run on, a runtime
/// of its own with one worker thread.
struct Tenant {
    handle: tokio::runtime::Handle,
    channel: Channel,
    _runtime: OwnRuntime,
}

impl Tenant {
    /// A runtime named after `name`, and a connection to `url` made on it
    /// (so that the connection's own task runs there too).
    async fn connect(name: &str, url: String) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("tenant {name}"))
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let runtime = OwnRuntime(Some(runtime));
        let channel = handle
            .spawn(async move { anyhow::Ok(Channel::from_shared(url)?.connect().await?) })
            .await??;
        Ok(Tenant {
            handle,
            channel,
            _runtime: runtime,
        })
    }

    /// Runs `load` on this tenant's runtime.
    async fn run(&self, load: &Load) -> anyhow::Result<load::Report> {
        let (channel, load) = (self.channel.clone(), load.clone());
        self.handle
            .spawn(async move { load::run(channel, &load).await })
            .await?
    }
}

/// A runtime dropped from the harness's async code: its threads are left
/// to end in the background rather than waited for there.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// One round: the quiet tenant alone, the noisy tenant, the quiet tenant
/// beside it.
type Round = (load::Report, load::Report, load::Report);

/// The JSON report of the rounds: medians, and each round.
fn report(o: &TenantsOpts, rounds: &[Round]) -> serde_json::Value {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let alone_p99 = median(
        rounds
            .iter()
            .map(|r| r.0.write_latency_us.p99 as f64)
            .collect(),
    );
    let beside_p99 = median(
        rounds
            .iter()
            .map(|r| r.2.write_latency_us.p99 as f64)
            .collect(),
    );
    let noisy_rate = median(rounds.iter().map(|r| r.1.achieved_per_s).collect());
    let refusals: u64 = rounds
        .iter()
        .map(|r| r.1.errors.get("ResourceExhausted").copied().unwrap_or(0))
        .sum();
    let each: Vec<_> = rounds
        .iter()
        .map(|(alone, loud, beside)| {
            serde_json::json!({
                "noisy_entries_per_s": loud.achieved_per_s,
                "quiet_alone_p99_us": alone.write_latency_us.p99,
                "quiet_beside_p99_us": beside.write_latency_us.p99,
                "quiet_alone": alone,
                "quiet_beside": beside,
                "noisy": loud,
            })
        })
        .collect();
    serde_json::json!({
        "scenario": "Tenants",
        "cores": crate::machine::cores(),
        "rounds": rounds.len(),
        "quota_entries_per_s": o.quota,
        "noisy_entries_per_s": noisy_rate,
        "noisy_over_quota": noisy_rate / o.quota as f64,
        "noisy_refusals": refusals,
        "quiet_alone_p99_us": alone_p99,
        "quiet_beside_p99_us": beside_p99,
        "quiet_p99_loaded_over_alone": beside_p99 / alone_p99.max(1.0),
        "each_round": each,
    })
}
