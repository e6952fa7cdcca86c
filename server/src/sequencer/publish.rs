//! The publisher: the thread that records committed checkpoints in the
//! high-water record, publishes the newest and answers the writers; and
//! the stop every storage failure of the log's writes leads to.

use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use crate::batch::{Added, Latest, WriteError, WriteResult};
use crate::highwater::{HighWater, HighWaterError};

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

/// The publisher of a log: the thread that records each committed
/// batch's checkpoint in the high-water record (one sync for all batches
/// waiting), then publishes the newest and answers the writers. Nothing
/// is answered or published before the record covers it.
pub(super) struct Publisher {
    pub(super) high_water: HighWater,
    pub(super) latest: watch::Sender<Arc<Latest>>,
    /// The failure that stopped writes, shared with the sequencer.
    pub(super) stopped: Arc<Mutex<Option<String>>>,
    /// What resumes them ([`crate::store::Storage::resume_after_stop`]).
    pub(super) remedy: &'static str,
    pub(super) origin: String,
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
                        high_water.write(&newest.stored.note)
                    } else {
                        Ok(())
                    };
                    match recorded {
                        Ok(()) => {
                            metrics::gauge!("quire_tree_size", "log" => origin.to_owned())
                                .set(crate::metrics::value(newest.stored.size));
                            latest.send_replace(newest);
                            Ok(())
                        }
                        Err(e) => {
                            let full = matches!(&e, HighWaterError::Io { source, .. } if crate::store::is_full(source));
                            stop_writes(stopped, origin, newest.stored.size, &e.to_string());
                            Err(if full {
                                WriteError::StorageFull(e.to_string())
                            } else {
                                WriteError::Store(e.to_string())
                            })
                        }
                    }
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
