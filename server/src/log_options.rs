//! What a log is opened with: its limits ([`LogLimits`]) and options
//! ([`LogOptions`]: origin, keys, dedup, clock, high-water record, mode).

use quire_core::LogSigner;

use crate::batch::{system_clock, Clock, DedupPolicy};
use crate::highwater::HighWater;

/// Limits of one log.
#[derive(Clone, Copy, Debug)]
pub struct LogLimits {
    /// Largest entry, bytes.
    pub max_entry_bytes: usize,
    /// Most entries in one request.
    pub max_batch: usize,
    /// Most requests waiting for the sequencer.
    pub queue_depth: usize,
    /// Most entries one commit takes.
    pub max_commit_entries: usize,
    /// Leaf hashes remembered for best-effort dedup.
    pub dedup_cache_entries: usize,
    /// Group commit ([`crate::pacing::GroupCommit`]).
    pub group_commit: crate::pacing::GroupCommit,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_entry_bytes: crate::store::bundle::MAX_ENTRY_BYTES,
            max_batch: 1000,
            queue_depth: 4096,
            max_commit_entries: 16_384,
            dedup_cache_entries: 100_000,
            group_commit: crate::pacing::GroupCommit::default(),
        }
    }
}

/// What a log needs to open.
pub struct LogOptions {
    /// The origin line of its checkpoints.
    pub origin: String,
    /// Signing keys; the first is the primary and must sign every checkpoint.
    pub signers: Vec<LogSigner>,
    /// Dedup policy.
    pub dedup: DedupPolicy,
    /// Limits.
    pub limits: LogLimits,
    /// The clock checkpoints are timed by (Unix milliseconds).
    pub clock: Clock,
    /// The record of the newest checkpoint this log published, kept outside
    /// its database.
    pub high_water: HighWater,
    /// When there is no high-water record but the database holds
    /// checkpoints: take the database's latest as the high-water mark
    /// (once, for a log that never had a record) instead of refusing.
    pub adopt_database: bool,
    /// Event mode (`docs/EVENTS.md`): the log takes events, sealed into
    /// `quire-event/v1` envelopes, and no opaque entries. Recorded with
    /// the log; never changes.
    pub events: bool,
    /// Event mode: keep the key map (`docs/EVENTS.md` §11), committed to
    /// by map head events the server appends at most once a second while
    /// events arrive, so that searches by key prove they are complete.
    pub key_map: bool,
}

impl LogOptions {
    /// Options for log `origin` signed by `signers` with its high-water
    /// record `high_water`, and the defaults for the rest: strict dedup,
    /// default limits, the system clock, no adoption of a database.
    pub fn new(origin: &str, signers: Vec<LogSigner>, high_water: HighWater) -> Self {
        LogOptions {
            origin: origin.to_owned(),
            signers,
            dedup: DedupPolicy::Strict,
            limits: LogLimits::default(),
            clock: system_clock(),
            high_water,
            adopt_database: false,
            events: false,
            key_map: false,
        }
    }
}
