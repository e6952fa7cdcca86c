//! Entry streams and checkpoint watches: the requests that answer for a
//! while, each bounded as [`crate::budget`] says.

use std::sync::Arc;

use super::{blocking, read_view, Action, ApiError, Caller, LogApi, PAGE_ENTRIES};
use crate::api::budget::{split_pages, PageSender, PageStream, ResponseBudget};
use crate::log::Log;
use crate::store::{Storage, StorageReader};

/// A page of entries: `entries[i]` is entry `start + i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPage {
    /// The index of the first.
    pub start: u64,
    /// The entries, each checked against its leaf hash.
    pub entries: Vec<Vec<u8>>,
}

/// A page of a followed log: entries and the checkpoint that covers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailPage {
    /// The index of the first.
    pub start: u64,
    /// The entries, each checked against its leaf hash.
    pub entries: Vec<Vec<u8>>,
    /// A signed checkpoint whose tree holds them.
    pub checkpoint: Vec<u8>,
}

/// Checkpoint notes as they are published, the current one first.
pub type CheckpointStream = tokio_stream::wrappers::ReceiverStream<Vec<u8>>;

/// The end of the page that starts at `at`: the next bundle boundary, or
/// `end`.
fn page_end(at: u64, end: u64) -> u64 {
    ((at / PAGE_ENTRIES + 1) * PAGE_ENTRIES).min(end)
}

impl<S: Storage> LogApi<S> {
    /// Entries `[start, end)` (`end` 0 or beyond the latest size: up to the
    /// latest size), in pages of at most one bundle and
    /// [`crate::api::budget::PAGE_BYTES`].
    ///
    /// # Errors
    /// `start` not below the end (`INVALID_ARGUMENT` when below the end asked
    /// for, else `OUT_OF_RANGE`), the server's stream cap, an unknown log, a
    /// refusal of access. Failures while streaming end the stream.
    pub fn entries(
        &self,
        caller: &Caller,
        origin: &str,
        start: u64,
        end: u64,
    ) -> Result<PageStream<EntryPage>, ApiError> {
        let log = self.log(caller, origin, Action::ReadEntries)?;
        let size = log.latest().stored.size;
        if end != 0 && start >= end {
            return Err(ApiError::Invalid(format!(
                "start {start} is not below the end {end} asked for"
            )));
        }
        let end = if end == 0 { size } else { end.min(size) };
        if start >= end {
            return Err(ApiError::OutOfRange(format!(
                "start {start} is not below the end {end} (the tree size is {size})"
            )));
        }
        let (mut tx, rx) = crate::api::budget::channel(self.slots.take()?);
        let budget = self.budget.clone();
        tokio::spawn(async move {
            let mut at = start;
            while at < end {
                let to = page_end(at, end);
                if !send_entries(&log, &budget, &mut tx, at, to, |start, entries| EntryPage {
                    start,
                    entries,
                })
                .await
                {
                    return;
                }
                at = to;
            }
        });
        Ok(rx)
    }

    /// Entries from `start` on, following the log: each page comes with a
    /// checkpoint that covers it; the stream waits for new checkpoints and
    /// ends when the server stops.
    ///
    /// # Errors
    /// `start` past the latest size (a stream parked in the future would be
    /// held open for nothing), the server's stream cap, an unknown log, a
    /// refusal of access.
    pub fn tail(
        &self,
        caller: &Caller,
        origin: &str,
        start: u64,
    ) -> Result<PageStream<TailPage>, ApiError> {
        let log = self.log(caller, origin, Action::ReadEntries)?;
        let size = log.latest().stored.size;
        if start > size {
            return Err(ApiError::OutOfRange(format!(
                "start {start} is past the tree size {size}; tail from the size or below"
            )));
        }
        let mut watch = log.subscribe();
        let mut stopping = self.stopping.clone();
        let (mut tx, rx) = crate::api::budget::channel(self.slots.take()?);
        let budget = self.budget.clone();
        let mut at = start;
        tokio::spawn(async move {
            loop {
                let latest = Arc::clone(&watch.borrow_and_update());
                let size = latest.stored.size;
                while at < size {
                    let to = page_end(at, size);
                    let note = &latest.stored.note;
                    if !send_entries(&log, &budget, &mut tx, at, to, |start, entries| TailPage {
                        start,
                        entries,
                        checkpoint: note.clone(),
                    })
                    .await
                    {
                        return;
                    }
                    at = to;
                }
                tokio::select! {
                    changed = watch.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
        Ok(rx)
    }

    /// The log's checkpoints as they are published (the witnessed ones when
    /// `witnessed`), the current one first, until the server stops.
    ///
    /// # Errors
    /// No witnesses for a witnessed watch, an unknown log, a refusal of
    /// access.
    pub fn watch_checkpoints(
        &self,
        caller: &Caller,
        origin: &str,
        witnessed: bool,
    ) -> Result<CheckpointStream, ApiError> {
        let log = self.log(caller, origin, Action::Audit)?;
        let rx = if witnessed {
            self.witnessing_of(&log)?.watch(self.stopping.clone())
        } else {
            watch_signed(&log, self.stopping.clone())
        };
        Ok(CheckpointStream::new(rx))
    }
}

/// The log's signed checkpoints as they are published, until `stopping`.
fn watch_signed<S: Storage>(
    log: &Log<S>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let mut watch = log.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            let note = watch.borrow_and_update().stored.note.clone();
            if tx.send(note).await.is_err() {
                return;
            }
            tokio::select! {
                changed = watch.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    });
    rx
}

/// Sends entries `[from, to)` (one bundle at most) as pages of at most
/// [`crate::api::budget::PAGE_BYTES`], each produced only when the transport asks
/// for it: read on the blocking pool, checked against the leaf hashes, with
/// its bytes reserved from `budget` while it is read and queued. What does
/// not fit the page is dropped and read again for the next one, so a stream
/// whose client stops reading holds nothing here. Returns false when the
/// stream is over (client gone, or a failure sent).
async fn send_entries<S: Storage, T: Send + 'static>(
    log: &Log<S>,
    budget: &ResponseBudget,
    tx: &mut PageSender<T>,
    from: u64,
    to: u64,
    page: impl Fn(u64, Vec<Vec<u8>>) -> T,
) -> bool {
    let mut at = from;
    while at < to {
        if !tx.wanted().await {
            return false;
        }
        // The read's worst case, reserved before it is read; the page then
        // holds what it really is.
        let worst = usize::try_from(to - at)
            .unwrap_or(usize::MAX)
            .saturating_mul(crate::store::bundle::MAX_ENTRY_BYTES + 8);
        let reading = match budget.reserve(worst).await {
            Ok(p) => p,
            Err(e) => {
                tx.fail(e);
                return false;
            }
        };
        let l = log.clone();
        let read = blocking(move || Ok(read_view(&l)?.checked_entries(at, to)?)).await;
        let entries = match read {
            Ok(e) => e,
            Err(e) => {
                tx.fail(e);
                return false;
            }
        };
        let Some((start, entries, bytes)) = split_pages(at, entries).into_iter().next() else {
            return true;
        };
        drop(reading);
        let permit = match budget.reserve(bytes).await {
            Ok(p) => p,
            Err(e) => {
                tx.fail(e);
                return false;
            }
        };
        at = start + entries.len() as u64;
        if !tx.send(page(start, entries), permit).await {
            return false;
        }
    }
    true
}
