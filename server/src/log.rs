//! One log: its storage, signing keys, right edge and sequencer.
//!
//! Writers queue entries on a bounded channel. A sequencer thread takes what
//! is queued (group commit: batches form by themselves under load), and in
//! one durable transaction stores the entries, their hashes, the dedup index
//! and the new signed checkpoint; only then does it answer the writers.

use std::sync::Arc;

use quire_core::{CompactRange, LogSigner, Note, VerifierKey};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use crate::batch::{now_ms, sign, Request};
pub use crate::batch::{
    system_clock, Added, Clock, DedupPolicy, Latest, WriteError, WriteResult, WriteRoute,
};

use crate::highwater::HighWater;
use crate::lifecycle::{Frozen, Lifecycle, LogState, LIFECYCLE_META};
pub use crate::log_options::{LogLimits, LogOptions};
use crate::sequencer::{RecentLeaves, Sequencer};
pub use crate::signing::Signing;
use crate::signing::SigningGate;
use crate::startup::{
    check_extends, check_origin_and_key, check_stored, newer_than, view_to_serve,
};
pub use crate::startup::{OpenError, Refusal};
use crate::store::{Commit, Storage, StorageReader, StoreError, StoredCheckpoint};

/// A running log. Cheap to clone.
pub struct Log<S: Storage> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S: Storage> Clone for Log<S> {
    fn clone(&self) -> Self {
        Log {
            inner: Arc::clone(&self.inner),
        }
    }
}

pub(crate) struct Inner<S: Storage> {
    pub(crate) origin: String,
    pub(crate) verifiers: Vec<VerifierKey>,
    pub(crate) limits: LogLimits,
    pub(crate) store: Arc<S>,
    pub(crate) queue: std::sync::Mutex<Option<mpsc::Sender<Request>>>,
    pub(crate) sequencer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) latest: watch::Receiver<Arc<Latest>>,
    pub(crate) signing: Arc<SigningGate>,
    /// A log followed from storage ([`crate::follow`]): where what was
    /// read and checked is published. `None` for the sequencing log.
    pub(crate) follower: Option<watch::Sender<Arc<Latest>>>,
    /// Why the sequencer stopped writing, once it did (a storage failure,
    /// a lost lease, a commit of unknown outcome).
    pub(crate) writes_stopped: Arc<std::sync::Mutex<Option<String>>>,
    /// A follower's record of what it served (replicas).
    pub(crate) high_water: Option<HighWater>,
    /// Where a follower sends writes, when it takes them.
    pub(crate) route: std::sync::RwLock<Option<Arc<dyn WriteRoute>>>,
    /// Whether its commits are paced (a writer over its quota).
    pub(crate) pacing: Arc<crate::pacing::Pacing>,
    /// A replica's own sequencer of this log, while it holds the lease.
    pub(crate) leader: std::sync::RwLock<Option<Log<S>>>,
    /// ACTIVE, DRAINING or FROZEN ([`crate::lifecycle`]).
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// Event mode: events only, no opaque entries.
    pub(crate) events: bool,
    /// The key map of a sequencing log in event mode.
    pub(crate) keymap: Option<Arc<crate::events::map::KeyMaps>>,
}

impl<S: Storage> Log<S> {
    /// Opens the log over `store`, checking the stored tree against the latest
    /// signed checkpoint and the configured keys and origin, and starts its
    /// sequencer thread. A new, empty store gets a signed checkpoint of size 0.
    ///
    /// # Errors
    /// [`OpenError`] saying what does not match.
    #[allow(clippy::too_many_lines)]
    pub fn open(store: S, opts: LogOptions) -> Result<Self, OpenError> {
        let Some(primary) = opts.signers.first() else {
            return Err(OpenError::NoKey(opts.origin));
        };
        let verifiers: Vec<VerifierKey> = opts.signers.iter().map(LogSigner::verifier).collect();
        // Storage ahead of what this server published is taken from a
        // durable view only, everything below read from it.
        let mark = opts.high_water.read()?;
        let reader = store.reader()?;
        let news = newer_than(&reader, mark.as_ref().map(|m| m.size))?;
        let reader = view_to_serve(&store, reader, news)?;
        match reader.meta("origin")? {
            Some(stored) if stored != opts.origin.as_bytes() => {
                return Err(OpenError::OriginChanged {
                    stored: String::from_utf8_lossy(&stored).into_owned(),
                    configured: opts.origin,
                })
            }
            _ => {}
        }
        let mode_stored = crate::events::stored_mode(&reader)?;
        if let Some((target, stored)) = crate::store::import_progress(&reader)? {
            return Err(OpenError::ImportInProgress { target, stored });
        }
        let frozen = crate::lifecycle::stored(&reader)?;
        let dropped = crate::lifecycle::stored_dropped(&reader)?;
        if let Some(m) = &mark {
            let note = Note::parse(&m.note)
                .map_err(|e| OpenError::Mismatch(format!("high-water record: {e}")))?;
            check_origin_and_key(&note, &opts.origin, &primary.verifier())?;
        }
        let record = opts.high_water.path().display().to_string();
        let (range, latest) = match (reader.latest_checkpoint()?, mark) {
            (None, Some(m)) if m.size > 0 => {
                return Err(OpenError::Refused(Box::new(Refusal::DatabaseMissing {
                    origin: opts.origin,
                    hw_size: m.size,
                    hw_root: m.root,
                    record,
                })))
            }
            (None, _) => {
                drop(reader);
                let range = CompactRange::new();
                let stored = StoredCheckpoint {
                    size: 0,
                    signed_at_ms: (opts.clock)(),
                    note: sign(&opts.origin, 0, range.root(), &opts.signers)?,
                };
                // The empty tree is a prefix of every tree: recording it
                // before the database has it can never contradict it.
                opts.high_water.write(&stored.note)?;
                // The origin is recorded with the first checkpoint, in one
                // transaction, so a later start under another origin is refused.
                let mut meta = vec![("origin".into(), opts.origin.as_bytes().to_vec())];
                if opts.events {
                    meta.push(crate::events::mode_meta());
                }
                store.commit(&Commit {
                    checkpoint: Some(stored.clone()),
                    meta,
                    ..Commit::default()
                })?;
                let root = range.root();
                (range, Latest { stored, root })
            }
            (Some(stored), mark) => {
                let range = check_stored(&reader, &stored, &opts.origin, &primary.verifier())?;
                if let Some(meta) =
                    crate::events::check_mode(&opts.origin, mode_stored, opts.events, &stored)?
                {
                    // An empty log turned to event mode before its first
                    // event: recorded on its head.
                    let head = crate::store::Head {
                        size: 0,
                        root: range.root(),
                    };
                    store.commit(&Commit {
                        base: head,
                        head,
                        meta: vec![meta],
                        ..Commit::default()
                    })?;
                }
                let root = range.root();
                match mark {
                    None if !opts.adopt_database => {
                        return Err(OpenError::NoHighWater {
                            origin: opts.origin,
                            size: stored.size,
                            record,
                        })
                    }
                    None => {
                        tracing::warn!(origin = %opts.origin, size = stored.size, record = %record, "no high-water record: adopting the database's latest checkpoint (--adopt-database)");
                        opts.high_water.write(&stored.note)?;
                    }
                    Some(m) => {
                        check_extends(&reader, &stored, root, &m, &opts.origin, &record)?;
                        if stored.size > m.size {
                            // Committed but not yet recorded when the server
                            // stopped: proven to extend the record above.
                            opts.high_water.write(&stored.note)?;
                        }
                    }
                }
                drop(reader);
                (range, Latest { stored, root })
            }
        };
        let store = Arc::new(store);
        let (tx, rx) = mpsc::channel(opts.limits.queue_depth);
        let (latest_tx, latest_rx) = watch::channel(Arc::new(latest));
        let signing = Arc::new(SigningGate::default());
        let stopped: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        let keymap =
            (opts.events && opts.key_map).then(|| Arc::new(crate::events::map::KeyMaps::default()));
        let pacing = Arc::new(crate::pacing::Pacing::default());
        let seq = Sequencer {
            pacing: Arc::clone(&pacing),
            clock: opts.clock,
            origin: opts.origin.clone(),
            signers: opts.signers,
            dedup: opts.dedup,
            max_commit: opts.limits.max_commit_entries,
            group_commit: opts.limits.group_commit,
            recent: RecentLeaves::new(if opts.dedup == DedupPolicy::BestEffort {
                opts.limits.dedup_cache_entries
            } else {
                0
            }),
            store: Arc::clone(&store),
            range,
            newest: Arc::clone(&latest_rx.borrow()),
            latest: Some(latest_tx),
            stopped: Arc::clone(&stopped),
            high_water: Some(opts.high_water),
            signing: Arc::clone(&signing),
            lookup_first: 0,
            last_requests: 0,
            events: opts.events.then(|| {
                crate::events::EventSeq::new(keymap.as_ref().map(|m| Arc::clone(&m.feed)))
            }),
        };
        let handle = std::thread::Builder::new()
            .name(format!("sequencer {}", opts.origin))
            .spawn(move || seq.run(rx))
            .map_err(|e| StoreError::engine(format!("starting the sequencer: {e}")))?;
        Ok(Log {
            inner: Arc::new(Inner {
                origin: opts.origin,
                verifiers,
                limits: opts.limits,
                store,
                queue: std::sync::Mutex::new(Some(tx)),
                sequencer: std::sync::Mutex::new(Some(handle)),
                latest: latest_rx,
                signing,
                follower: None,
                writes_stopped: stopped,
                high_water: None,
                route: std::sync::RwLock::new(None),
                pacing,
                leader: std::sync::RwLock::new(None),
                lifecycle: Arc::new(Lifecycle::with_dropped(frozen, dropped)),
                events: opts.events,
                keymap,
            }),
        })
    }

    /// Where the log is in its lifecycle, and when it was frozen.
    pub fn state(&self) -> (LogState, Option<Frozen>) {
        self.inner.lifecycle.get()
    }

    /// Freezes the log: from ACTIVE to DRAINING (new writes are refused
    /// with [`WriteError::Frozen`]), then, once every write queued before
    /// is integrated and answered, FROZEN, recorded in storage in the same
    /// commit as the last of them (or one of its own). Returns when it was
    /// frozen; freezing a frozen log is no change.
    ///
    /// # Errors
    /// [`WriteError::NotSequencing`] on a follower with no route to the
    /// sequencer (a follower with one has the sequencer freeze the log and
    /// waits for the record: [`WriteError::Remote`] when it cannot reach
    /// the sequencer or the record does not show), [`WriteError::Frozen`] while another
    /// freeze drains, and the sequencer's error when the record could not
    /// be committed (then the log is ACTIVE again: nothing was frozen).
    pub async fn freeze(&self) -> Result<Frozen, WriteError> {
        let origin = || self.inner.origin.clone();
        if self.inner.follower.is_some() {
            if let (LogState::Frozen, Some(f)) = self.state() {
                return Ok(f);
            }
            return self.freeze_routed().await;
        }
        match self.inner.lifecycle.start_draining() {
            LogState::Active => {}
            LogState::Frozen => {
                if let (_, Some(f)) = self.state() {
                    return Ok(f);
                }
            }
            LogState::Draining => {
                return Err(WriteError::Frozen {
                    origin: origin(),
                    state: LogState::Draining,
                })
            }
        }
        let frozen = Frozen { at_ms: now_ms() };
        let outcome = match self.inner.keymap.clone() {
            // A log in event mode ends on a head of its whole key map, so
            // that searches by key of the frozen log are proven complete.
            Some(maps) => crate::events::map::freeze_with_head(self, &maps, frozen).await,
            None => self.barrier(frozen, Vec::new()).await.map(|_| ()),
        };
        match outcome {
            Ok(()) => {
                self.inner.lifecycle.set(LogState::Frozen, Some(frozen));
                tracing::info!(origin = %self.inner.origin, "log frozen: it takes no more writes");
                Ok(frozen)
            }
            Err(e) => {
                self.inner.lifecycle.set(LogState::Active, None);
                Err(e)
            }
        }
    }

    /// The sequencer's queue, while the log takes writes.
    fn sender(&self) -> Result<mpsc::Sender<Request>, WriteError> {
        self.inner
            .queue
            .lock()
            .map_err(|_| WriteError::ShuttingDown)?
            .clone()
            .ok_or(WriteError::ShuttingDown)
    }

    /// Queues the freeze's barrier behind every admitted write (with
    /// `events`, the log's own, sealed in the same commit as the record)
    /// and waits until the sequencer committed its record and answered it
    /// (after everything queued before it); returns the events sealed.
    pub(crate) async fn barrier(
        &self,
        frozen: Frozen,
        events: Vec<crate::events::Draft>,
    ) -> Result<Vec<crate::events::Sealed>, WriteError> {
        let sender = self.sender()?;
        let (reply, rx) = oneshot::channel();
        let (sealed_tx, sealed_rx) = oneshot::channel();
        let sealed = (!events.is_empty()).then_some(sealed_tx);
        sender
            .send(Request {
                meta: vec![(LIFECYCLE_META.to_owned(), frozen.encode())],
                events,
                sealed,
                ..Request::entries(Vec::new(), reply)
            })
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        rx.await.map_err(|_| WriteError::ShuttingDown)??;
        Ok(sealed_rx.await.unwrap_or_default())
    }

    /// Waits until every write queued before this call is integrated and
    /// answered (an empty request through the sequencer's queue).
    pub(crate) async fn flush(&self) -> Result<(), WriteError> {
        let sender = self.sender()?;
        let (reply, rx) = oneshot::channel();
        sender
            .send(Request::entries(Vec::new(), reply))
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        rx.await.map_err(|_| WriteError::ShuttingDown)?.map(|_| ())
    }

    /// Whether the log may sign now.
    pub fn signing(&self) -> Signing {
        self.inner.signing.get()
    }

    /// Holds signing until [`Log::open_signing`] (the sequencer waits, at
    /// most [`crate::sequencer::MAX_HOLD`], and writers queue), unless
    /// signing was stopped for good.
    pub fn hold_signing(&self, why: &str) {
        self.inner.signing.hold(why);
    }

    /// Lets a held log sign again; a stopped log stays stopped.
    pub fn open_signing(&self) {
        self.inner.signing.open();
    }

    /// Stops signing for good (until restart): writes answer
    /// `FAILED_PRECONDITION` naming `why`, reads go on. Logged once as an
    /// error and shown by the gauge `quire_signing_stopped`.
    pub fn stop_signing(&self, why: &str) {
        if self.inner.signing.stop(why) {
            tracing::error!(origin = %self.inner.origin, reason = %why, "signing stopped: nothing more will be signed until an operator acts and the server restarts; reads go on");
            metrics::gauge!("quire_signing_stopped", "log" => self.inner.origin.clone()).set(1.0);
        }
    }

    /// A write to this log was refused for a quota: its commits are paced
    /// for a while ([`crate::pacing`]).
    pub fn quota_refused(&self) {
        self.inner.pacing.refused(std::time::Instant::now());
    }

    /// Whether its commits are paced now: a write to it was refused for a
    /// quota within [`crate::pacing::WINDOW`].
    pub fn commits_paced(&self) -> bool {
        self.inner.pacing.paced(std::time::Instant::now())
    }

    /// The origin.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The verifier keys of the log's signing keys.
    pub fn verifiers(&self) -> &[VerifierKey] {
        &self.inner.verifiers
    }

    /// The limits.
    pub fn limits(&self) -> &LogLimits {
        &self.inner.limits
    }

    /// The latest signed state.
    pub fn latest(&self) -> Arc<Latest> {
        Arc::clone(&self.inner.latest.borrow())
    }

    /// A watch of the latest signed state, changed at every new checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Latest>> {
        self.inner.latest.clone()
    }

    /// The storage.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// Why the sequencer stopped writing, once it did; `None` while it
    /// writes (and on a follower).
    pub fn writes_stopped(&self) -> Option<String> {
        self.inner
            .writes_stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Queues entries and waits until they are durable and signed.
    ///
    /// # Errors
    /// [`WriteError`]: a limit, a full queue, shutdown, a clock that went
    /// backwards, or a storage failure (then nothing was written).
    pub async fn add(
        &self,
        entries: Vec<Vec<u8>>,
    ) -> Result<(Vec<Added>, Arc<Latest>), WriteError> {
        let limits = &self.inner.limits;
        if entries.is_empty() {
            return Err(WriteError::Invalid("no entries in the request".into()));
        }
        if entries.len() > limits.max_batch {
            return Err(WriteError::Invalid(format!(
                "{} entries in one request; the batch limit is {}",
                entries.len(),
                limits.max_batch
            )));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.is_empty() {
                return Err(WriteError::Invalid(format!(
                    "entry {i} is empty; entries must be 1 to {} bytes",
                    limits.max_entry_bytes
                )));
            }
            if e.len() > limits.max_entry_bytes {
                return Err(WriteError::Invalid(format!(
                    "entry {i} is {} bytes; the entry size limit is {}",
                    e.len(),
                    limits.max_entry_bytes
                )));
            }
        }
        if self.inner.events {
            return Err(WriteError::Mode {
                origin: self.inner.origin.clone(),
                events: true,
            });
        }
        if self.inner.follower.is_some() {
            if let (state @ (LogState::Frozen | LogState::Draining), _) = self.state() {
                return Err(self.frozen(state));
            }
            return self.add_routed(entries).await;
        }
        let (reply, rx) = oneshot::channel();
        self.enqueue(Request::entries(entries, reply))?;
        rx.await.map_err(|_| WriteError::ShuttingDown)?
    }

    fn frozen(&self, state: LogState) -> WriteError {
        WriteError::Frozen {
            origin: self.inner.origin.clone(),
            state,
        }
    }

    /// The key map of a sequencing log in event mode (`docs/EVENTS.md`
    /// §11).
    pub fn keymap(&self) -> Option<&Arc<crate::events::map::KeyMaps>> {
        self.inner.keymap.as_ref()
    }

    /// Whether the log is in event mode.
    pub fn events(&self) -> bool {
        self.inner.events
    }

    /// Puts `request` on the sequencer's queue while the log is ACTIVE.
    pub(crate) fn enqueue(&self, request: Request) -> Result<(), WriteError> {
        let limits = &self.inner.limits;
        let sender = self.sender()?;
        // Queued while the log is ACTIVE, or refused: never behind a
        // freeze's barrier.
        let sent = self
            .inner
            .lifecycle
            .admit(|| {
                // A refused request is dropped here: what matters is
                // whether the queue was full.
                sender
                    .try_send(request)
                    .map_err(|e| matches!(e, mpsc::error::TrySendError::Full(_)))
            })
            .map_err(|state| self.frozen(state))?;
        metrics::gauge!("quire_queue_depth", "log" => self.inner.origin.clone()).set(
            crate::metrics::value_usize(limits.queue_depth - sender.capacity()),
        );
        sent.map_err(|full| {
            if full {
                WriteError::QueueFull {
                    origin: self.inner.origin.clone(),
                    depth: limits.queue_depth,
                }
            } else {
                WriteError::ShuttingDown
            }
        })
    }

    /// Requests waiting for the sequencer now.
    pub fn queued(&self) -> usize {
        self.inner
            .queue
            .lock()
            .ok()
            .and_then(|q| {
                q.as_ref()
                    .map(|s| self.inner.limits.queue_depth - s.capacity())
            })
            .unwrap_or(0)
    }

    /// Stops taking writes, then waits (blocking) until the sequencer has
    /// integrated and answered everything already queued.
    pub fn close(&self) {
        if let Ok(mut q) = self.inner.queue.lock() {
            q.take();
        }
        let handle = self.inner.sequencer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!(origin = %self.inner.origin, "sequencer thread panicked");
            }
        }
    }
}
