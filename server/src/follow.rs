//! A log followed from storage: a server that shares a log's storage with
//! the server that sequences it serves the log's reads from what that
//! server committed, taking the latest checkpoint from storage instead of
//! from a sequencer of its own (the read replicas of a replicated engine).
//!
//! A checkpoint read from storage is served only once it is proven: it is
//! as durable as an acknowledged commit ([`crate::store::Storage::durable_reader`]:
//! on PostgreSQL, flushed by the synchronous standbys the log requires);
//! the note parses, names the log's origin and verifies with the log's
//! primary key; the stored hashes give its root at its size; the newest
//! entries hash to their leaves; and it is consistent (RFC 9162 §2.1.4)
//! with the one served before. Storage that went back, or a checkpoint that fails any of
//! these, is an error and the checkpoint served before stays: a follower
//! never serves a fork it could detect. A follower never signs and refuses
//! writes by name.
//!
//! Out of scope: forwarding writes to the sequencing server, and leases.

use std::sync::Arc;
use std::time::Duration;

use quire_core::{prove_consistency, VerifierKey};
use tokio::sync::watch;

use crate::highwater::HighWater;
use crate::log::{Inner, Latest, Log, LogLimits};
use crate::signing::SigningGate;
use crate::startup::{check_extends, check_stored, newer_than, view_to_serve, OpenError};
use crate::store::{Storage, StorageReader, StoreError};

/// What a follower needs to open.
pub struct FollowOptions {
    /// The log's origin.
    pub origin: String,
    /// The log's verifier keys; the first is the primary, which signs every
    /// checkpoint.
    pub verifiers: Vec<VerifierKey>,
    /// Limits (for what reads report; a follower takes no writes).
    pub limits: LogLimits,
    /// This server's record of what it published (replicas, which serve
    /// what they follow): the store must hold it or extend it to open,
    /// and every checkpoint is recorded before it is served. `None`: a
    /// follower that records nothing.
    pub high_water: Option<HighWater>,
    /// Keep the key map of a log in event mode
    /// ([`crate::events::replica_map`]), so that this follower answers
    /// searches by key.
    pub key_map: bool,
}

impl FollowOptions {
    /// Options for log `origin` with `verifiers`: default limits, no
    /// high-water record, no key map.
    pub fn new(origin: impl Into<String>, verifiers: Vec<VerifierKey>) -> Self {
        FollowOptions {
            origin: origin.into(),
            verifiers,
            limits: LogLimits::default(),
            high_water: None,
            key_map: false,
        }
    }
}

/// Why a checkpoint in storage is not followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Storage holds no checkpoint yet.
    #[error("storage holds no checkpoint of log {origin:?} yet: start the server that sequences it first")]
    Empty {
        /// The log.
        origin: String,
    },
    /// Storage is behind what was served from it.
    #[error("log {origin:?}: storage's latest checkpoint has size {found}, but size {served} was served from it before; storage went back, the checkpoint of size {served} stays")]
    Behind {
        /// The log.
        origin: String,
        /// The size served.
        served: u64,
        /// The size storage holds now.
        found: u64,
    },
    /// The checkpoint in storage is not one to serve.
    #[error("log {origin:?}: the checkpoint of size {size} in storage is not followed: {why}")]
    Invalid {
        /// The log.
        origin: String,
        /// Its size.
        size: u64,
        /// What is wrong with it.
        why: String,
    },
}

impl<S: Storage> Log<S> {
    /// Opens a follower of the log over `store`: its latest checkpoint is
    /// the store's, proven as the module says; it has no sequencer.
    ///
    /// # Errors
    /// [`OpenError::NoKey`] without keys, [`FollowError`] as an
    /// [`OpenError::Mismatch`] for a store without a checkpoint or with one
    /// that does not hold up.
    pub fn open_follower(store: S, opts: FollowOptions) -> Result<Self, OpenError> {
        let Some(primary) = opts.verifiers.first() else {
            return Err(OpenError::NoKey(opts.origin));
        };
        let mark = match &opts.high_water {
            Some(hw) => hw.read()?,
            None => None,
        };
        let reader = store.reader()?;
        let news = newer_than(&reader, mark.as_ref().map(|m| m.size))?;
        let reader = view_to_serve(&store, reader, news)?;
        let Some(stored) = reader.latest_checkpoint()? else {
            return Err(OpenError::Mismatch(
                FollowError::Empty {
                    origin: opts.origin,
                }
                .to_string(),
            ));
        };
        let range = check_stored(&reader, &stored, &opts.origin, primary)?;
        if let Some(hw) = &opts.high_water {
            if let Some(mark) = mark {
                let record = hw.path().display().to_string();
                check_extends(&reader, &stored, range.root(), &mark, &opts.origin, &record)?;
            }
            hw.write_if_newer(stored.size, &stored.note)?;
        }
        let frozen = crate::lifecycle::stored(&reader)?;
        let dropped = crate::lifecycle::stored_dropped(&reader)?;
        let events = crate::events::stored_mode(&reader)?;
        drop(reader);
        let latest = Arc::new(Latest {
            stored,
            root: range.root(),
        });
        let (tx, rx) = watch::channel(latest);
        Ok(Log {
            inner: Arc::new(Inner {
                origin: opts.origin,
                verifiers: opts.verifiers,
                limits: opts.limits,
                store: Arc::new(store),
                queue: std::sync::Mutex::new(None),
                sequencer: std::sync::Mutex::new(None),
                latest: rx,
                signing: Arc::new(SigningGate::default()),
                follower: Some(tx),
                writes_stopped: Arc::default(),
                high_water: opts.high_water,
                route: std::sync::RwLock::new(None),
                pacing: Arc::default(),
                leader: std::sync::RwLock::new(None),
                lifecycle: Arc::new(crate::lifecycle::Lifecycle::with_dropped(frozen, dropped)),
                events,
                keymap: (events && opts.key_map)
                    .then(|| Arc::new(crate::events::map::KeyMaps::default())),
            }),
        })
    }

    /// Whether this log is followed from storage (it does not sequence).
    pub fn is_follower(&self) -> bool {
        self.inner.follower.is_some()
    }

    /// Takes the store's latest checkpoint if it is newer than the one
    /// served and holds up; returns whether it was newer. On a sequencing
    /// log it does nothing.
    ///
    /// # Errors
    /// [`FollowError`]: storage behind what was served, or a checkpoint that
    /// does not verify, does not match the stored tree, or is not
    /// consistent with the one served. The one served stays.
    pub fn refresh(&self) -> Result<bool, FollowError> {
        let Some(publish) = &self.inner.follower else {
            return Ok(false);
        };
        let origin = &self.inner.origin;
        let served = self.latest();
        let reader = self.inner.store.reader()?;
        // Anything new taken from storage (a checkpoint, a freeze, a drop)
        // is taken only from a durable view.
        let news = reader
            .latest_checkpoint()?
            .is_some_and(|c| c.note != served.stored.note)
            || self.lifecycle_news(&reader)?;
        let reader = view_to_serve(&*self.inner.store, reader, news)?;
        let Some(stored) = reader.latest_checkpoint()? else {
            return Err(FollowError::Empty {
                origin: origin.clone(),
            });
        };
        if stored.size < served.stored.size {
            return Err(FollowError::Behind {
                origin: origin.clone(),
                served: served.stored.size,
                found: stored.size,
            });
        }
        // Without news, the lifecycle reads above found nothing to take.
        let frozen = self.inner.lifecycle.get().0 == crate::lifecycle::LogState::Frozen;
        if news && !frozen {
            // Frozen by the sequencing server: a record without a new tree.
            if let Some(f) = crate::lifecycle::stored(&reader)? {
                self.inner
                    .lifecycle
                    .set(crate::lifecycle::LogState::Frozen, Some(f));
            }
        } else if news && self.inner.lifecycle.dropped().is_none() {
            // A frozen log whose entries the sequencing server dropped.
            let dropped = crate::lifecycle::stored_dropped(&reader)?;
            self.inner.lifecycle.set_dropped(dropped);
        }
        if stored.note == served.stored.note {
            return Ok(false);
        }
        let invalid = |why: String| FollowError::Invalid {
            origin: origin.clone(),
            size: stored.size,
            why,
        };
        let Some(primary) = self.inner.verifiers.first() else {
            return Err(invalid("the log has no verifier key".into()));
        };
        let range = check_stored(&reader, &stored, origin, primary).map_err(|e| match e {
            OpenError::WrongKey { key, why, .. } => {
                invalid(format!("it is not signed by the log's key {key}: {why}"))
            }
            e => invalid(e.to_string()),
        })?;
        let root = range.root();
        let (old, new) = (served.stored.size, stored.size);
        if old == new && root != served.root {
            return Err(invalid(format!(
                "its root {root} is not the root {} served for that size",
                served.root
            )));
        }
        if old > 0 && old < new {
            let proof = prove_consistency(&reader, old, new).map_err(|e| invalid(e.to_string()))?;
            quire_core::verify_consistency(old, new, &proof, &served.root, &root).map_err(|e| {
                invalid(format!(
                    "it is not consistent with the size {old} served: {e}"
                ))
            })?;
        }
        drop(reader);
        if let Some(hw) = &self.inner.high_water {
            // Recorded before it is served: what this server published is
            // never ahead of its record.
            hw.write_if_newer(stored.size, &stored.note)
                .map_err(|e| invalid(format!("recording it: {e}")))?;
        }
        publish.send_replace(Arc::new(Latest { stored, root }));
        Ok(true)
    }

    /// Whether storage records a freeze, or a drop of a frozen log's
    /// entries, that this follower does not know of yet.
    fn lifecycle_news(&self, reader: &S::Reader) -> Result<bool, StoreError> {
        Ok(
            if self.inner.lifecycle.get().0 == crate::lifecycle::LogState::Frozen {
                self.inner.lifecycle.dropped().is_none()
                    && crate::lifecycle::stored_dropped(reader)?.is_some()
            } else {
                crate::lifecycle::stored(reader)?.is_some()
            },
        )
    }

    /// Refreshes every `every` until `stop` turns true (spawned on the
    /// current runtime, each read on the blocking pool): a checkpoint the
    /// sequencing server committed is served here within `every` plus one
    /// read. Failures are retried and logged (once while they repeat); the
    /// checkpoint served before stays until one holds up.
    pub fn follow(&self, every: Duration, mut stop: watch::Receiver<bool>) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut failing = crate::repeats::Repeats::default();
            loop {
                let l = log.clone();
                let failed = match tokio::task::spawn_blocking(move || l.refresh()).await {
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("follower read failed: {e}")),
                    Ok(Ok(_)) => None,
                };
                match failed {
                    Some(e) => {
                        if let Some(repeats) = failing.failed(&e) {
                            tracing::error!(error = %e, repeats, "not following storage");
                        }
                    }
                    None => {
                        if failing.recovered() {
                            tracing::warn!("following storage again");
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
}
