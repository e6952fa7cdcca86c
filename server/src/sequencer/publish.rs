//! The publisher: the thread that settles the commits it is handed
//! ([`crate::store::Storage::settle`]), records their checkpoints in the
//! high-water record, publishes the newest and answers the writers; and
//! the stop every storage failure of the log's writes leads to.

use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use crate::batch::{Added, Latest, WriteError, WriteResult};
use crate::highwater::{HighWater, HighWaterError};
use crate::store::StoreError;

/// A committed batch on its way to the publisher: its checkpoint and the
/// answers it owes.
pub(super) struct Committed {
    pub(super) latest: Arc<Latest>,
    pub(super) replies: Vec<(oneshot::Sender<WriteResult>, Vec<Added>)>,
}

/// Batches committed and not yet recorded: the sequencer commits the next
/// batch while the publisher syncs the record of the previous ones.
pub(super) const PUBLISH_QUEUE: usize = 2;

/// The refusal of every batch once writes stopped: the failure that
/// stopped them, the size signed, and what resumes them (`remedy`,
/// [`crate::store::Storage::resume_after_stop`]). `None` while they go on.
pub(super) fn refusal(
    stopped: &Mutex<Option<String>>,
    origin: &str,
    size: u64,
    remedy: &'static str,
) -> Option<WriteError> {
    let cause = stopped
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()?;
    Some(WriteError::Stopped {
        origin: origin.to_owned(),
        size,
        cause,
        remedy,
    })
}

/// Stops writes when `e` is a storage failure that leaves the log in
/// doubt (a failed write, a full disk, an epoch lost: a new sequencer
/// takes over from what storage holds); refusals that change nothing
/// stored (too few standbys) do not stop them.
pub(super) fn stop_on(stopped: &Mutex<Option<String>>, origin: &str, size: u64, e: &WriteError) {
    if let WriteError::Store(cause)
    | WriteError::StorageFull(cause)
    | WriteError::NotLeader { why: cause, .. } = e
    {
        stop_writes(stopped, origin, size, cause);
    }
}

/// Records `cause` as the failure that stopped writes (the first one wins),
/// logging it once.
pub(super) fn stop_writes(stopped: &Mutex<Option<String>>, origin: &str, size: u64, cause: &str) {
    let mut s = stopped
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if s.is_none() {
        tracing::error!(
            origin = %origin,
            size,
            cause = %cause,
            "storage failed: this log stops writing until restart; reads go on"
        );
        metrics::gauge!("quire_writes_stopped", "log" => origin.to_owned()).set(1.0);
        *s = Some(cause.to_owned());
    }
}

/// The publisher of a log: the thread that settles the committed batches
/// waiting and records the newest one's checkpoint in the high-water
/// record (one settle and one sync for all of them), then publishes it and
/// answers the writers. Nothing is answered or published before it is
/// settled and the record covers it.
pub(super) struct Publisher {
    pub(super) high_water: HighWater,
    pub(super) latest: watch::Sender<Arc<Latest>>,
    /// The failure that stopped writes, shared with the sequencer.
    pub(super) stopped: Arc<Mutex<Option<String>>>,
    /// What resumes them ([`crate::store::Storage::resume_after_stop`]).
    pub(super) remedy: &'static str,
    pub(super) origin: String,
    /// Proves the store's commits durable ([`crate::store::Storage::settle`]).
    pub(super) settle: Box<dyn Fn(u64) -> Result<(), StoreError> + Send>,
}

impl Publisher {
    /// Starts the thread, taking what `rx` brings until it closes.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(super) fn spawn(
        self,
        rx: std::sync::mpsc::Receiver<Committed>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("publisher {}", self.origin))
            .spawn(move || self.publish(&rx))
    }

    fn publish(&self, rx: &std::sync::mpsc::Receiver<Committed>) {
        let Publisher {
            high_water,
            latest,
            stopped,
            remedy,
            origin,
            settle,
        } = self;
        let (remedy, origin) = (*remedy, origin.as_str());
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(c) = rx.try_recv() {
                group.push(c);
            }
            let newest = group
                .iter()
                .map(|c| &c.latest)
                .max_by_key(|l| l.stored.size)
                .map(Arc::clone);
            // The size published so far.
            let size = latest.borrow().stored.size;
            let outcome = match (refusal(stopped, origin, size, remedy), newest) {
                (Some(e), _) => Err(e),
                (None, None) => Ok(()),
                (None, Some(newest)) => {
                    let recorded = if newest.stored.size > size {
                        settle_and_record(settle, high_water, &newest, stopped, origin)
                    } else {
                        Ok(())
                    };
                    if recorded.is_ok() {
                        metrics::gauge!("quire_tree_size", "log" => origin.to_owned())
                            .set(crate::metrics::value(newest.stored.size));
                        latest.send_replace(newest);
                    }
                    recorded
                }
            };
            for c in group {
                for (reply, added) in c.replies {
                    let _ = reply.send(match &outcome {
                        Ok(()) => Ok((added, Arc::clone(&c.latest))),
                        Err(e) => Err(e.clone()),
                    });
                }
            }
        }
    }
}

/// Settles the store's commits (`settle`), then records `newest` in the
/// high-water record: the commits carrying what is published, and
/// anything answered with it, are durable before the record or anyone
/// sees it. A failure that leaves storage in doubt stops writes; too few
/// synchronous standbys only refuses (the commits stay for a later settle).
fn settle_and_record(
    settle: &(dyn Fn(u64) -> Result<(), StoreError> + Send),
    high_water: &HighWater,
    newest: &Latest,
    stopped: &Mutex<Option<String>>,
    origin: &str,
) -> Result<(), WriteError> {
    let size = newest.stored.size;
    if let Err(e) = settle(size) {
        let e = super::write_error(origin, e);
        stop_on(stopped, origin, size, &e);
        return Err(e);
    }
    high_water.write(&newest.stored.note).map_err(|e| {
        let full = matches!(&e, HighWaterError::Io { source, .. } if crate::store::is_full(source));
        stop_writes(stopped, origin, size, &e.to_string());
        if full {
            WriteError::StorageFull(e.to_string())
        } else {
            WriteError::Store(e.to_string())
        }
    })
}
