//! Dropping the entries of a frozen log: the retention of a log family's
//! old shards (`drop_entries_after_days`), which keeps what proofs need.
//!
//! A frozen log's entry bundles (and, in event mode, its payloads) are
//! deleted; its tiles, leaf index, checkpoints and cosignatures stay, so
//! inclusion proofs (by index or by leaf hash), consistency proofs, tiles
//! and the witnessed checkpoint are served as before, and a read of its
//! entries answers `NOT_FOUND` naming when they were dropped
//! ([`crate::store::StoreError::Dropped`]). The entries go only when
//! nothing can still need them from this server: the log is frozen, this
//! server sequences it, storage holds exactly the tree of its final
//! checkpoint, and, when the log has witnesses, that final checkpoint is
//! witnessed (its cosignatures kept beside it), so a verifier can be sent
//! the last witnessed checkpoint forever.
//!
//! Out of scope: dropping the entries of a log that is not frozen, or part
//! of a log's entries; moving them to cold storage first (an operator
//! copies `quire audit` dumps before the period ends).

use crate::lifecycle::{Dropped, LogState};
use crate::log::Log;
use crate::store::{Storage, StorageReader as _, StoreError};

use super::{ApiError, LogApi};

/// Why a log's entries were not dropped.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// Only a frozen log drops its entries.
    #[error("log {origin:?} is {state}: only a frozen log's entries are dropped")]
    NotFrozen {
        /// The log.
        origin: String,
        /// Its state.
        state: LogState,
    },
    /// This server follows the log from storage; the one that sequences it
    /// drops its entries.
    #[error("log {origin:?} is followed from storage here: the server that sequences it drops its entries")]
    NotSequencing {
        /// The log.
        origin: String,
    },
    /// The log has witnesses and its final checkpoint has no quorum of
    /// cosignatures yet.
    #[error("log {origin:?}: its final checkpoint (size {size}) is not witnessed yet (newest witnessed: {witnessed}); its entries are kept until it is")]
    NotWitnessed {
        /// The log.
        origin: String,
        /// Its final size.
        size: u64,
        /// The newest witnessed size, in words.
        witnessed: String,
    },
    /// Storage does not hold exactly the tree of the final checkpoint.
    #[error("log {origin:?}: storage holds size {stored}, its final checkpoint says {size}: its entries are kept")]
    NotFinal {
        /// The log.
        origin: String,
        /// The size of its final checkpoint.
        size: u64,
        /// The size storage holds.
        stored: u64,
    },
    /// Storage failed; nothing was deleted.
    #[error("log {origin:?}: dropping its entries: {source}")]
    Store {
        /// The log.
        origin: String,
        /// The engine's failure.
        #[source]
        source: StoreError,
    },
}

impl From<DropError> for ApiError {
    fn from(e: DropError) -> Self {
        match e {
            DropError::Store { .. } => ApiError::Internal(e.to_string()),
            _ => ApiError::Precondition(e.to_string()),
        }
    }
}

impl<S: Storage> Log<S> {
    /// Whether, and when, the log's entries were dropped.
    pub fn dropped(&self) -> Option<Dropped> {
        self.inner.lifecycle.dropped()
    }
}

impl<S: Storage> LogApi<S> {
    /// Drops the entries of `log`, a frozen log this server sequences, at
    /// `now_ms`; returns the record (the one kept when they were dropped
    /// before).
    ///
    /// # Errors
    /// [`DropError`] naming what keeps them.
    pub async fn drop_entries(&self, log: &Log<S>, now_ms: u64) -> Result<Dropped, DropError> {
        let origin = || log.origin().to_owned();
        if let Some(d) = log.dropped() {
            return Ok(d);
        }
        if log.inner.follower.is_some() {
            return Err(DropError::NotSequencing { origin: origin() });
        }
        let state = log.state().0;
        if state != LogState::Frozen {
            return Err(DropError::NotFrozen {
                origin: origin(),
                state,
            });
        }
        let size = log.latest().stored.size;
        if let Some(w) = self.registry().witnessing.get(log.origin()) {
            let witnessed = w.witnessed().map(|x| x.size);
            if witnessed != Some(size) {
                return Err(DropError::NotWitnessed {
                    origin: origin(),
                    size,
                    witnessed: witnessed.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                });
            }
        }
        let dropped = Dropped {
            size,
            at_ms: now_ms,
        };
        let l = log.clone();
        let done = tokio::task::spawn_blocking(move || {
            let stored = l.store().reader()?.head()?.map_or(0, |h| h.size);
            if stored == size {
                l.store().drop_entries(dropped)?;
            }
            Ok::<_, StoreError>(stored)
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::engine(format!("worker failed: {e}"))));
        let stored = done.map_err(|source| DropError::Store {
            origin: origin(),
            source,
        })?;
        if stored != size {
            return Err(DropError::NotFinal {
                origin: origin(),
                size,
                stored,
            });
        }
        log.inner.lifecycle.set_dropped(Some(dropped));
        tracing::info!(origin = %log.origin(), size, "entries dropped: the log's tiles, checkpoints and proofs remain");
        Ok(dropped)
    }
}
