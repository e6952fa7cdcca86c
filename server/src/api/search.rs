//! Searching events by log time (`docs/EVENTS.md` §8): the events of
//! `[from, to)` are one run of indexes, because log time never decreases;
//! the answer is that run and the event on each side of it, in pages that
//! each carry a range proof against one checkpoint, so that a client sees
//! that nothing inside was left out.

use std::sync::Arc;

use quire_core::range::{range_plan, verify_range};
use quire_core::{leaf_hash, prove_consistency, Hash};

use super::{blocking, read_view, Action, ApiError, Caller, LogApi, PAGE_ENTRIES};
use crate::api::budget::{PageSender, PageStream, ResponseBudget};
use crate::log::{Latest, Log};
use crate::store::{Storage, StorageReader, StoreError};

/// Most events one search answers.
pub const MAX_SEARCH_EVENTS: u32 = 100_000;

/// A run of consecutive events with its range proof.
#[derive(Clone, Debug)]
pub struct EventRun {
    /// The checkpoint the proof is against (the same for every run of an
    /// answer).
    pub checkpoint: Arc<Vec<u8>>,
    /// The index of the first.
    pub first: u64,
    /// The envelopes, each checked against its leaf hash.
    pub envelopes: Vec<Vec<u8>>,
    /// The compact range of `[0, first)`.
    pub left: Vec<Hash>,
    /// The consistency proof from the run's end to the checkpoint's size.
    pub consistency: Vec<Hash>,
}

/// The indexes a search of `[from, to)` answers in a tree of `size`:
/// the run `[a, b)` of the range's events, widened by the event before and
/// the event after, cut at `limit` events of the range.
fn answer_bounds(a: u64, b: u64, size: u64, limit: u64) -> (u64, u64) {
    let start = a.saturating_sub(1);
    let end = if b - a > limit {
        a + limit
    } else {
        (b + 1).min(size)
    };
    (start, end)
}

impl<S: Storage> LogApi<S> {
    /// The events of log `origin` logged in `[from_ms, to_ms)` (`to_ms` 0:
    /// no end), with the event before and the one after, in runs proven
    /// against the latest checkpoint. At most `limit` events of the range
    /// (0: [`MAX_SEARCH_EVENTS`]).
    ///
    /// # Errors
    /// An empty range or a limit over the maximum (`INVALID_ARGUMENT`), a
    /// log not in event mode, the server's stream cap, an unknown log, a
    /// refusal of access (the reader role). Failures while streaming end
    /// the stream.
    pub async fn search_events(
        &self,
        caller: &Caller,
        origin: &str,
        from_ms: u64,
        to_ms: u64,
        limit: u32,
    ) -> Result<PageStream<EventRun>, ApiError> {
        let log = self.event_log(caller, origin, Action::ReadEntries)?;
        if to_ms != 0 && to_ms <= from_ms {
            return Err(ApiError::Invalid(format!(
                "the time range [{from_ms}, {to_ms}) is empty"
            )));
        }
        if limit > MAX_SEARCH_EVENTS {
            return Err(ApiError::Invalid(format!(
                "limit {limit} is over the server's {MAX_SEARCH_EVENTS}"
            )));
        }
        let limit = if limit == 0 { MAX_SEARCH_EVENTS } else { limit };
        let latest = log.latest();
        let size = latest.stored.size;
        let l = log.clone();
        let (a, b) = blocking(move || {
            let r = read_view(&l)?;
            // Rows of commits after the checkpoint are beyond it.
            let at = |t: u64| -> Result<u64, ApiError> {
                Ok(r.first_logged_at(t)?.map_or(size, |i| i.min(size)))
            };
            let a = at(from_ms)?;
            let b = if to_ms == 0 { size } else { at(to_ms)? };
            Ok((a, b.max(a)))
        })
        .await?;
        let (start, end) = answer_bounds(a, b, size, u64::from(limit));
        let (mut tx, rx) = crate::api::budget::channel(self.slots.take()?);
        let budget = self.budget.clone();
        tokio::spawn(async move {
            let checkpoint = Arc::new(latest.stored.note.clone());
            let mut at = start;
            while at < end {
                let to = ((at / PAGE_ENTRIES + 1) * PAGE_ENTRIES).min(end);
                if !send_run(&log, &latest, &checkpoint, &budget, &mut tx, at, to).await {
                    return;
                }
                at = to;
            }
        });
        Ok(rx)
    }
}

/// Sends events `[from, to)` (one bundle at most) as one run with its
/// range proof, checked against the signed root before it is sent; its
/// bytes reserved from `budget`. Returns false when the stream is over.
async fn send_run<S: Storage>(
    log: &Log<S>,
    latest: &Arc<Latest>,
    checkpoint: &Arc<Vec<u8>>,
    budget: &ResponseBudget,
    tx: &mut PageSender<EventRun>,
    from: u64,
    to: u64,
) -> bool {
    if !tx.wanted().await {
        return false;
    }
    let worst = usize::try_from(to - from)
        .unwrap_or(usize::MAX)
        .saturating_mul(crate::store::bundle::MAX_ENTRY_BYTES + 8)
        .saturating_add(4096);
    let permit = match budget.reserve(worst).await {
        Ok(p) => p,
        Err(e) => {
            tx.fail(e);
            return false;
        }
    };
    let (l, signed, cp) = (log.clone(), Arc::clone(latest), Arc::clone(checkpoint));
    let run = blocking(move || prove_run(&read_view(&l)?, &signed, cp, from, to)).await;
    match run {
        Ok(run) => tx.send(run, permit).await,
        Err(e) => {
            tx.fail(e);
            false
        }
    }
}

/// Events `[from, to)` and their range proof in the tree of `latest`,
/// checked against its root.
fn prove_run<R: StorageReader>(
    r: &R,
    latest: &Latest,
    checkpoint: Arc<Vec<u8>>,
    from: u64,
    to: u64,
) -> Result<EventRun, ApiError> {
    let size = latest.stored.size;
    let plan = range_plan(from, to, size).map_err(|e| ApiError::Internal(e.to_string()))?;
    let envelopes = r.checked_entries(from, to)?;
    let left = r.read_hashes(&plan.left)?;
    let consistency = if to < size {
        prove_consistency(r, to, size).map_err(|e| ApiError::Internal(e.to_string()))?
    } else {
        Vec::new()
    };
    let leaves: Vec<Hash> = envelopes.iter().map(|e| leaf_hash(e)).collect();
    verify_range(from, &leaves, size, &left, &consistency, &latest.root).map_err(|e| {
        ApiError::Store(StoreError::Corrupt(format!(
            "the proof of events [{from}, {to}) does not verify against the signed root: {e}"
        )))
    })?;
    Ok(EventRun {
        checkpoint,
        first: from,
        envelopes,
        left,
        consistency,
    })
}

#[cfg(test)]
mod tests {
    use super::answer_bounds;

    #[test]
    fn an_answer_spans_the_range_and_one_event_each_side() {
        // Range [3, 7) of 10: events 2 to 7.
        assert_eq!(answer_bounds(3, 7, 10, 100), (2, 8));
        // At the log's start and end: no event before, none after.
        assert_eq!(answer_bounds(0, 10, 10, 100), (0, 10));
        // No event of the range: the one before (a = b = size) shows it.
        assert_eq!(answer_bounds(10, 10, 10, 100), (9, 10));
        // All events after the range: event 0 shows it.
        assert_eq!(answer_bounds(0, 0, 10, 100), (0, 1));
        // Cut at the limit: no event after.
        assert_eq!(answer_bounds(3, 7, 10, 2), (2, 5));
    }
}
