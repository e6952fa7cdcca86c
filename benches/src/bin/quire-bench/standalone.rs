//! The scenarios of `quire-bench` that run on their own rather than as
//! load on a log: witnesses, the machine's limits, failovers, the
//! PostgreSQL baseline and suite, tenants, keyed and event queries.

use std::path::Path;
use std::time::Duration;

use quire_benches::{machine, postgres, suite};

use crate::{emit, sibling, Args, LogKey, Scenario, MIB};

/// Runs `args.scenario` when it is one of these, in `data_dir`, and says
/// whether it was.
///
/// # Errors
/// What the scenario failed with.
pub(crate) async fn run(args: &Args, data_dir: &Path) -> anyhow::Result<bool> {
    match args.scenario {
        Scenario::WitnessAdd | Scenario::Witnessed => {
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
                    data_dir: data_dir.to_path_buf(),
                })
                .await?
            } else {
                quire_benches::witness::witnessed(quire_benches::witness::WitnessedOptions {
                    rate: args.rate.unwrap_or(1000),
                    duration: args.duration,
                    data_dir: data_dir.to_path_buf(),
                })
                .await?
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Scenario::Machine => {
            let limits = machine::measure(data_dir, 3.0)?;
            println!(
                "{} cores; {:.0} fsyncs/s (4 KiB + fdatasync); {:.0} MiB/s sequential writes; {:.2} M leaf hashes/s; {:.0} MiB/s SHA-256 (one core)",
                limits.cores,
                limits.fsyncs_per_s,
                limits.write_bytes_per_s / MIB,
                limits.leaf_hashes_per_s / 1e6,
                limits.sha256_bytes_per_s / MIB
            );
            emit(args, &serde_json::json!(limits))?;
        }
        Scenario::Failover => {
            let url = args.pg.clone().ok_or_else(|| {
                anyhow::anyhow!("give --pg URL (scripts/postgres starts a server and prints it)")
            })?;
            let server = sibling("quire-server")?;
            let r = quire_benches::failover::run(&quire_benches::failover::FailoverOptions {
                url,
                repeats: args.repeats,
                lease_ms: args.lease_ms,
                renew_ms: args.renew_ms,
                dir: data_dir.join("failover"),
                server,
            })
            .await?;
            println!(
                "failover: lease {} ms, renew {} ms: writes again after SIGKILL of the leader in p50 {:.0} ms, max {:.0} ms over {} rounds ({} entries acknowledged, all read back)",
                r.lease_ms, r.renew_ms, r.p50_ms, r.max_ms, r.unavailable_ms.len(), r.acknowledged
            );
            emit(args, &serde_json::to_value(&r)?)?;
        }
        Scenario::PgFailover => {
            let url = args.pg.clone().ok_or_else(|| {
                anyhow::anyhow!("give --pg URL (the url line scripts/pg-auto-failover prints)")
            })?;
            let paf_dir = args
                .paf_dir
                .clone()
                .ok_or_else(|| anyhow::anyhow!("give --paf-dir DIR (the formation's PAF_DIR)"))?;
            let server = sibling("quire-server")?;
            let r =
                quire_benches::pg_failover::run(&quire_benches::pg_failover::PgFailoverOptions {
                    paf_dir,
                    paf_port: args.paf_port,
                    url,
                    repeats: args.repeats,
                    lease_ms: (args.lease_ms, args.renew_ms),
                    dir: data_dir.join("pg-failover"),
                    server,
                })
                .await?;
            println!(
                "pg-failover: over {} rounds, the manager's new primary takes writes after p50 {:.0} ms; Quire writes p50 {:.0} ms (max {:.0}) after the new primary takes replicated writes, p50 {:.0} ms (max {:.0}) after it takes any ({} entries acknowledged, all read back)",
                r.rounds.len(), r.manager_p50_ms, r.after_replicated_ms.0, r.after_replicated_ms.1,
                r.after_manager_ms.0, r.after_manager_ms.1, r.acknowledged
            );
            emit(args, &serde_json::to_value(&r)?)?;
        }
        Scenario::Postgres | Scenario::Suite => {
            let url = args.pg.clone().ok_or_else(|| {
                anyhow::anyhow!("give --pg URL (scripts/postgres starts a server and prints it)")
            })?;
            let value = if args.scenario == Scenario::Postgres {
                let r = postgres::run(&postgres::PgLoad {
                    url,
                    writers: args.concurrency,
                    batch: args.batch,
                    duration: Duration::from_secs(args.duration),
                    entry_bytes: args.entry_bytes,
                    payload: args.payload,
                })
                .await?;
                println!(
                    "postgres hash chain: {:.0} entries/s ({} writers x {} per transaction), p50 {} us p99 {} us, {} rows verified, {:.1} bytes/entry, errors {:?}",
                    r.achieved_per_s, r.writers, r.batch, r.write_latency_us.p50, r.write_latency_us.p99, r.rows, r.bytes_per_entry, r.errors
                );
                serde_json::json!(r)
            } else {
                suite::run(&suite::SuiteOptions {
                    data_dir: data_dir.to_path_buf(),
                    pg_url: url,
                    seconds: args.duration,
                    entry_bytes: args.entry_bytes,
                })
                .await?
            };
            emit(args, &value)?;
        }
        Scenario::Tenants => {
            let value = quire_benches::tenants::run(
                data_dir,
                &quire_benches::tenants::TenantsOpts {
                    quota: args.quota,
                    noisy_writers: args.concurrency,
                    noisy_batch: args.batch,
                    quiet_writers: args.quiet_writers,
                    quiet_rate: args.rate.unwrap_or(1000),
                    duration: Duration::from_secs(args.duration),
                    entry_bytes: args.entry_bytes,
                    rounds: args.repeats,
                },
            )
            .await?;
            println!(
                "noisy tenant: {:.0} entries/s under a quota of {} ({:.3}x); quiet tenant p99 {} us alone, {} us beside it ({:.2}x), medians of {} rounds; {} cores",
                num(&value, "noisy_entries_per_s"),
                args.quota,
                num(&value, "noisy_over_quota"),
                value["quiet_alone_p99_us"],
                value["quiet_beside_p99_us"],
                num(&value, "quiet_p99_loaded_over_alone"),
                value["rounds"],
                value["cores"],
            );
            emit(args, &value)?;
        }
        Scenario::Keyed => {
            let value = quire_benches::keyed::run(
                data_dir,
                &quire_benches::keyed::KeyedOpts {
                    events: args.prefill,
                    writers: args.concurrency,
                    batch: args.batch,
                    queries: args.repeats,
                    page: u32::try_from(args.query_events).unwrap_or(u32::MAX),
                },
            )
            .await?;
            println!(
                "keyed: {} events (filled at {:.0}/s, the map {} events behind at the end, caught up in {:.1} s, {} keys); by a rare actor ({:.1} events, complete) {:.2} ms median, {:.2} ms p99; by a frequent actor (newest {:.0}) {:.2} ms median, {:.2} ms p99; every answer verified; {} searches each; {} cores",
                value["events"],
                num(&value, "fill_events_per_s"),
                value["map_lag_events_at_end_of_fill"],
                num(&value, "map_catch_up_s"),
                value["map_keys"],
                num(&value, "rare_events_mean"),
                num(&value, "rare_verified_ms_median"),
                num(&value, "rare_verified_ms_p99"),
                num(&value, "frequent_events_mean"),
                num(&value, "frequent_verified_ms_median"),
                num(&value, "frequent_verified_ms_p99"),
                args.repeats,
                value["cores"],
            );
            emit(args, &value)?;
        }
        Scenario::Events => {
            let value = quire_benches::events::run(
                data_dir,
                &quire_benches::events::EventsOpts {
                    writers: args.concurrency,
                    batch: args.batch,
                    duration: Duration::from_secs(args.duration),
                    query_events: args.query_events,
                    queries: args.repeats,
                },
            )
            .await?;
            println!(
                "events: {:.0} events/s (median of 1 s samples; {} writers of {}); search of {} events verified in {:.1} ms median, {:.1} ms p99 ({} searches); {:.0} bytes stored per event for {:.0} bytes of JSON ({:.2}x), indexes {:.1} bytes per event; {} cores",
                num(&value, "ingest_events_per_s_median"),
                args.concurrency,
                args.batch,
                value["query_events"],
                num(&value, "query_verified_ms_median"),
                num(&value, "query_verified_ms_p99"),
                args.repeats,
                num(&value, "stored_bytes_per_event"),
                num(&value, "json_bytes_per_event"),
                num(&value, "stored_over_json"),
                num(&value, "index_bytes_per_event"),
                value["cores"],
            );
            emit(args, &value)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A figure of a scenario's JSON as a number (0 when it is absent), for
/// the line each scenario prints.
fn num(value: &serde_json::Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or(0.0)
}
