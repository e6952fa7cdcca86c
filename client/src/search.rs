//! Checking the answer to a search by log time (`docs/EVENTS.md` §8):
//! every run of events proven against one checkpoint the client trusts,
//! the runs consecutive, log time never going backwards, and the answer
//! framed by the event before the range and the event after it (or the
//! log's start and the checkpoint's end), so that no event of the range
//! can have been left out. Nothing the server says is taken without its
//! proof.

use quire_core::event::Envelope;
use quire_core::range::verify_range;
use quire_core::{leaf_hash, Checkpoint, Hash, Note};
use quire_proto::v1::EventsPage;

use crate::policy::LogTrust;

/// Why an answer to a search is not what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// The checkpoint is not the log's, or lacks its witnesses, or pages
    /// name different checkpoints.
    #[error("the checkpoint: {0}")]
    Checkpoint(String),
    /// A run does not verify, or runs are not consecutive.
    #[error("{0}")]
    Proof(String),
    /// An entry is not an envelope.
    #[error("event {index}: not a quire-event/v1 envelope: {why}")]
    Envelope {
        /// The event.
        index: u64,
        /// Why.
        why: String,
    },
    /// Something of the range may be missing.
    #[error("the answer is not complete: {0}")]
    Incomplete(String),
}

/// The checkpoint of a page of an answer: the first page's, verified
/// under `trust` and kept in `held`; every later page must name the same.
///
/// # Errors
/// [`SearchError::Checkpoint`]: a checkpoint that does not verify, or
/// pages that name different ones.
pub(crate) fn answer_checkpoint(
    trust: &LogTrust,
    held: &mut Option<(Vec<u8>, Checkpoint)>,
    bytes: &[u8],
) -> Result<Checkpoint, SearchError> {
    match held {
        Some((b, cp)) if b.as_slice() == bytes => Ok(cp.clone()),
        Some(_) => Err(SearchError::Checkpoint(
            "pages of one answer name different checkpoints".into(),
        )),
        None => {
            let note = Note::parse(bytes).map_err(|e| SearchError::Checkpoint(e.to_string()))?;
            let (cp, _) = trust
                .verify_note(&note)
                .map_err(|e| SearchError::Checkpoint(e.to_string()))?;
            *held = Some((bytes.to_vec(), cp.clone()));
            Ok(cp)
        }
    }
}

/// A verified answer.
#[derive(Clone, Debug)]
pub struct TimeRangeAnswer {
    /// The checkpoint it is proven against.
    pub checkpoint: Checkpoint,
    /// The events of the range, in index order.
    pub events: Vec<(u64, Envelope)>,
    /// `None`: every event of the range in the checkpoint's tree is here.
    /// `Some(i)`: the answer stops before index `i` (the server's limit);
    /// the events here are complete up to it.
    pub more_from: Option<u64>,
}

/// Checks the pages of a search of `[from_ms, to_ms)` (`to_ms` 0: no end)
/// page by page.
pub struct TimeRangeCheck<'a> {
    trust: &'a LogTrust,
    from_ms: u64,
    to_ms: u64,
    checkpoint: Option<(Vec<u8>, Checkpoint)>,
    next: Option<u64>,
    last_time: u64,
    last_in_range: bool,
    events: Vec<(u64, Envelope)>,
}

impl<'a> TimeRangeCheck<'a> {
    /// A check of a search of `[from_ms, to_ms)` against `trust`.
    pub fn new(trust: &'a LogTrust, from_ms: u64, to_ms: u64) -> Self {
        TimeRangeCheck {
            trust,
            from_ms,
            to_ms,
            checkpoint: None,
            next: None,
            last_time: 0,
            last_in_range: false,
            events: Vec::new(),
        }
    }

    fn in_range(&self, t: u64) -> bool {
        t >= self.from_ms && (self.to_ms == 0 || t < self.to_ms)
    }

    /// Checks one page, in the order received.
    ///
    /// # Errors
    /// [`SearchError`] naming what does not hold.
    pub fn page(&mut self, p: &EventsPage) -> Result<(), SearchError> {
        let cp = answer_checkpoint(self.trust, &mut self.checkpoint, &p.checkpoint)?;
        let first = p.first_index;
        match self.next {
            Some(n) if n != first => {
                return Err(SearchError::Proof(format!(
                    "a run starts at event {first}, the previous ended before {n}: events are missing or repeated"
                )))
            }
            _ => {}
        }
        let leaves: Vec<Hash> = p.envelopes.iter().map(|e| leaf_hash(e)).collect();
        let left = quire_proto::hashes_from_wire(&p.left)
            .map_err(|e| SearchError::Proof(e.to_string()))?;
        let cons = quire_proto::hashes_from_wire(&p.consistency)
            .map_err(|e| SearchError::Proof(e.to_string()))?;
        verify_range(first, &leaves, cp.size(), &left, &cons, cp.root())
            .map_err(|e| SearchError::Proof(e.to_string()))?;
        for (index, bytes) in (first..).zip(&p.envelopes) {
            let env = Envelope::decode(bytes).map_err(|e| SearchError::Envelope {
                index,
                why: e.to_string(),
            })?;
            let t = env.log_time_ms;
            if self.next.is_none() && index > 0 && t >= self.from_ms {
                // The answer must start with the event before the range.
                return Err(SearchError::Incomplete(format!(
                    "it starts at event {index}, logged at {t} ms, not before {} ms: earlier events of the range may be left out",
                    self.from_ms
                )));
            }
            if self.next.is_some() && t < self.last_time {
                return Err(SearchError::Proof(format!(
                    "event {index} was logged at {t} ms, before the event ahead of it ({} ms): log time went backwards",
                    self.last_time
                )));
            }
            self.last_time = t;
            self.last_in_range = self.in_range(t);
            if self.last_in_range {
                self.events.push((index, env));
            }
            self.next = Some(index + 1);
        }
        Ok(())
    }

    /// Whether any page was answered (a log that answers none must show it
    /// is empty: [`TimeRangeCheck::finish`]).
    pub fn answered(&self) -> bool {
        self.checkpoint.is_some()
    }

    /// The verified answer, once every page is checked.
    ///
    /// # Errors
    /// [`SearchError::Incomplete`] for an answer that stops inside the
    /// range without saying so; [`SearchError::Checkpoint`] for one with
    /// no page from a log that holds events.
    pub fn finish(self, size_if_empty: Option<Checkpoint>) -> Result<TimeRangeAnswer, SearchError> {
        let Some((_, cp)) = self.checkpoint else {
            // No page: only an empty log answers so.
            return match size_if_empty {
                Some(cp) if cp.size() == 0 => Ok(TimeRangeAnswer {
                    checkpoint: cp,
                    events: Vec::new(),
                    more_from: None,
                }),
                _ => Err(SearchError::Incomplete(
                    "no event was answered, and the log is not shown to be empty".into(),
                )),
            };
        };
        let end = self.next.unwrap_or(0);
        let past_range = self.to_ms != 0 && self.last_time >= self.to_ms;
        let more_from = if end == cp.size() || past_range {
            None
        } else if self.last_in_range {
            Some(end)
        } else {
            return Err(SearchError::Incomplete(format!(
                "it stops at event {} before the range's end",
                end.saturating_sub(1)
            )));
        };
        Ok(TimeRangeAnswer {
            checkpoint: cp,
            events: self.events,
            more_from,
        })
    }
}
