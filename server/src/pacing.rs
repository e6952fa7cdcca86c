//! Commit pacing of a log whose writers are held to a quota.
//!
//! A tenant over its quota still gets its quota's worth of entries
//! admitted, each request on its own: left alone, its log would commit
//! (and flush to disk) once per admitted request, hundreds of times a
//! second, and take the disk and the cores from the other tenants' logs
//! that a quota is there to protect. So a log that refused a write for a
//! quota within the last [`WINDOW`] gathers what it is sent for
//! [`GATHER`] from the first request of each commit before committing:
//! the same entries, in a few larger commits. The cost is at most
//! [`GATHER`] more latency for that log's writers, and only while some
//! writer of it is over its quota (all of that log's writers: a log shared
//! by tenants is paced for all of them while one is over its quota).
//!
//! Measured (`docs/PERFORMANCE.md`, issue 13): a quiet tenant's p99 beside
//! a noisy one held to 2,000 entries/s went from 1.25× to 1.08× its
//! unloaded value (medians of three runs of 15 rounds; 1.20× with a
//! 20 ms gather).
//!
//! Group commit ([`GroupCommit`]) is the same gathering for a log with many
//! writers at once, as PostgreSQL's `commit_delay` and `commit_siblings`
//! do for its own commits: after a commit that carried at least
//! `siblings` requests, the next batch gathers until it holds as many
//! requests as that commit (the writers just answered, sending again) or
//! `delay` has passed. Fewer, larger commits cost the database less for
//! the same entries. A lone writer (commits of one request) never waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after a quota's refusal a log's commits stay paced.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How long a paced log gathers requests for one commit.
pub const GATHER: Duration = Duration::from_millis(50);

/// Whether a log's commits are paced now.
pub(crate) struct Pacing {
    base: Instant,
    /// Milliseconds after `base` until which commits are paced.
    until_ms: AtomicU64,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }
}

impl Pacing {
    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// A write to the log was refused for a quota at `now`.
    pub(crate) fn refused(&self, now: Instant) {
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let until = self.ms(now).saturating_add(window);
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether commits are paced at `now`.
    pub(crate) fn paced(&self, now: Instant) -> bool {
        self.ms(now) < self.until_ms.load(Ordering::Relaxed)
    }

    /// How long to wait at `now` before committing a batch whose first
    /// request was queued at `first`: none when the log is not paced.
    pub(crate) fn wait(&self, first: Instant, now: Instant) -> Option<Duration> {
        if !self.paced(now) {
            return None;
        }
        first
            .checked_add(GATHER)?
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }
}

/// Group commit on PostgreSQL unless configured: the longest a batch
/// gathers; most gathers end before it, once the writers just answered
/// are back. Measured (`docs/PERFORMANCE.md`, issue 12) against 500 µs:
/// 64 and 96 single-entry writers gained 12–37% with lower latency, on
/// one instance and with a synchronous standby; 4 and 16 writers were
/// even; 3 and 5 ms gained no more. (A fixed 2 ms wait, without the
/// early end, had lost.)
pub const PG_COMMIT_DELAY: Duration = Duration::from_millis(2);
/// Group commit unless configured: requests of the commit before that
/// make the next one gather. Two: a lone writer never waits, and 4 and
/// 16 writers gained 17–25% (a fixed wait had cost them 1–9%).
pub const COMMIT_SIBLINGS: usize = 2;

/// Group commit: the wait before a commit, by how many requests the commit
/// before carried. The default waits never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommit {
    /// How long to gather (zero: never).
    pub delay: Duration,
    /// Requests the commit before must have carried for a wait.
    pub siblings: usize,
}

/// How often a gathering batch looks at the queue again (group commit).
pub const GATHER_POLL: Duration = Duration::from_micros(50);
/// Entries of a batch that gathers no more: one entry bundle. A commit
/// of more is mostly work per entry, which waiting does not save
/// (measured: 8 writers of 1,000 entries lost 7–18% gathering).
pub const GATHER_ENTRIES: usize = 256;

impl GroupCommit {
    /// How long the next batch may gather after a commit of `last`
    /// requests: not at all below `siblings`, or when the delay is zero.
    pub fn wait(&self, last: usize) -> Option<Duration> {
        (!self.delay.is_zero() && last >= self.siblings.max(1)).then_some(self.delay)
    }

    /// The gathering of the batch that starts at `now`, after a commit of
    /// `last` requests, whose commit takes at most `max_entries` entries:
    /// none when [`GroupCommit::wait`] says so.
    pub fn gather(&self, last: usize, max_entries: usize, now: Instant) -> Option<Gather> {
        Some(Gather {
            until: now.checked_add(self.wait(last)?)?,
            requests: last,
            entries: max_entries.min(GATHER_ENTRIES),
        })
    }
}

/// One batch's gathering (group commit): until when, and the requests
/// and entries that end it sooner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    until: Instant,
    /// The requests of the commit before.
    requests: usize,
    /// [`GATHER_ENTRIES`], or the commit's limit when lower.
    entries: usize,
}

impl Gather {
    /// How long a batch of `requests` requests and `entries` entries waits
    /// at `now` before it looks at the queue again: none once it holds as
    /// many requests as the commit before or enough entries, nor past the
    /// deadline.
    pub fn pause(&self, requests: usize, entries: usize, now: Instant) -> Option<Duration> {
        if requests >= self.requests || entries >= self.entries {
            return None;
        }
        self.until
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
            .map(|d| d.min(GATHER_POLL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_commit_waits_only_after_a_commit_of_enough_requests() {
        let g = GroupCommit {
            delay: PG_COMMIT_DELAY,
            siblings: COMMIT_SIBLINGS,
        };
        assert_eq!(g.wait(0), None);
        assert_eq!(g.wait(1), None, "a lone writer never waits");
        assert_eq!(g.wait(COMMIT_SIBLINGS - 1), None);
        assert_eq!(g.wait(COMMIT_SIBLINGS), Some(PG_COMMIT_DELAY));
        assert_eq!(g.wait(10_000), Some(PG_COMMIT_DELAY));
        assert_eq!(GroupCommit::default().wait(10_000), None, "off by default");
        let zero = GroupCommit {
            delay: Duration::ZERO,
            siblings: 1,
        };
        assert_eq!(zero.wait(100), None);
        // Siblings of zero count as one: still never before any commit.
        let any = GroupCommit {
            delay: PG_COMMIT_DELAY,
            siblings: 0,
        };
        assert_eq!(any.wait(0), None);
        assert_eq!(any.wait(1), Some(PG_COMMIT_DELAY));
    }

    #[test]
    fn a_gathering_batch_stops_at_the_last_commits_size_its_limit_or_its_deadline() {
        let g = GroupCommit {
            delay: PG_COMMIT_DELAY,
            siblings: COMMIT_SIBLINGS,
        };
        let now = Instant::now();
        // Not gathering at all after a lone writer's commit, or when off.
        assert_eq!(g.gather(1, 16_384, now), None);
        assert_eq!(GroupCommit::default().gather(24, 16_384, now), None);
        let gather = g.gather(24, 16_384, now).unwrap();
        // Short of the last commit's requests: looks again soon, never
        // later than the deadline.
        assert_eq!(gather.pause(10, 10, now), Some(GATHER_POLL));
        let near = now + PG_COMMIT_DELAY.saturating_sub(Duration::from_micros(20));
        assert_eq!(gather.pause(10, 10, near), Some(Duration::from_micros(20)));
        // As many as the last commit, enough entries, or the deadline
        // passed: commits now.
        assert_eq!(gather.pause(24, 24, now), None);
        assert_eq!(gather.pause(30, 30, now), None);
        assert_eq!(gather.pause(10, GATHER_ENTRIES, now), None);
        assert_eq!(gather.pause(10, GATHER_ENTRIES - 1, now), Some(GATHER_POLL));
        assert_eq!(gather.pause(10, 10, now + PG_COMMIT_DELAY), None);
        assert_eq!(gather.pause(10, 10, now + Duration::from_secs(1)), None);
        // A commit's limit below a bundle ends gathering there.
        let small = g.gather(24, 100, now).unwrap();
        assert_eq!(small.pause(10, 99, now), Some(GATHER_POLL));
        assert_eq!(small.pause(10, 100, now), None);
    }

    #[test]
    fn paces_for_a_window_after_a_refusal_and_never_past_the_gather_time() {
        let p = Pacing::default();
        let t0 = p.base + Duration::from_secs(5);
        assert_eq!(p.wait(t0, t0), None, "not paced before any refusal");
        p.refused(t0);
        assert_eq!(p.wait(t0, t0), Some(GATHER));
        // A batch whose first request waited already waits only the rest.
        let later = t0 + Duration::from_millis(15);
        assert_eq!(
            p.wait(t0, later),
            GATHER.checked_sub(Duration::from_millis(15))
        );
        assert_eq!(p.wait(t0, t0 + GATHER), None);
        // The window ends a second after the last refusal.
        let end = t0 + WINDOW;
        assert_eq!(p.wait(end, end), None);
        p.refused(t0 + Duration::from_millis(500));
        assert_eq!(p.wait(end, end), Some(GATHER));
        // An older refusal never shortens the window.
        p.refused(t0);
        assert_eq!(p.wait(end, end), Some(GATHER));
    }
}
