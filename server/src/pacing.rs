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

#[cfg(test)]
mod tests {
    use super::*;

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
