//! # quire-benches
//!
//! Criterion micro-benchmarks (`cargo bench -p quire-benches`) that put
//! `quire-core` beside peer crates in the same run, and the parts of the
//! `quire-bench` harness that are more than its argument handling:
//! [`load`] (writers, proof readers and an auditor at once), [`verify`]
//! (what is checked in everything received), [`prefill`] (a log brought to
//! a size before a measurement), [`machine`] (the machine's
//! limits), [`postgres`] (the hash-chain baseline), [`witness`] (the witness
//! scenarios), [`failover`] and [`pg_failover`] (replicas under faults), [`events`] and
//! [`keyed`] (audit events: ingestion, searches by time and by key) and
//! [`suite`] (all of them in one run, as ratios).

// A measurement crate: counts and byte totals become float rates.
#![allow(clippy::cast_precision_loss)]

pub mod auth;
pub mod entries;
pub mod events;
pub mod failover;
pub mod keyed;
pub mod load;
pub mod machine;
pub mod pg_failover;
pub mod postgres;
pub mod prefill;
pub mod suite;
pub mod tenants;
pub mod verify;
pub mod witness;

/// A client of the log service that sends a bearer token with every call
/// (when it has one).
pub type Client = quire_proto::v1::log_client::LogClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        quire_client::rpc::Bearer,
    >,
>;

/// A [`Client`] over `channel`, sending `bearer`, with 256 MiB messages.
///
/// # Errors
/// A token that is not printable ASCII.
pub fn client(channel: tonic::transport::Channel, bearer: Option<&str>) -> anyhow::Result<Client> {
    let auth = quire_client::rpc::Bearer::new(bearer)?;
    Ok(
        quire_proto::v1::log_client::LogClient::with_interceptor(channel, auth)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
    )
}

/// The resident memory of this process, bytes.
pub fn rss_bytes() -> u64 {
    proc_status_bytes("self", "VmRSS:")
}

/// A size field (`VmRSS:`, `VmHWM:`) of /proc/PID/status, in bytes.
pub fn proc_status_bytes(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}
