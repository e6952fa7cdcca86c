//! What writers, the log and its sequencer share: a write request and its
//! result, why a write fails, the dedup policy, the clock checkpoints are
//! timed by, and the signing of a checkpoint note (C2SP `tlog-checkpoint`
//! in a `signed-note`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use quire_core::{Checkpoint, Hash, LogSigner, Note};
use tokio::sync::oneshot;

use crate::store::{StoreError, StoredCheckpoint};

/// How duplicates are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DedupPolicy {
    /// Every entry is checked against a durable index: a duplicate always
    /// gets its original index.
    Strict,
    /// Entries are checked against a bounded cache of recent leaf hashes
    /// (`dedup_cache_entries`): recent duplicates get their original index,
    /// older ones are appended again.
    BestEffort,
    /// No dedup: every entry is appended.
    Off,
}

/// A source of Unix time in milliseconds: the system clock, or another for
/// tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

/// Why a write failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The request breaks a limit.
    #[error("{0}")]
    Invalid(String),
    /// The queue is full.
    #[error("log {origin} queue is full ({depth} requests waiting, the limit); retry later")]
    QueueFull {
        /// The log.
        origin: String,
        /// The limit.
        depth: usize,
    },
    /// This server follows the log from storage and does not sequence it.
    #[error("this server follows log {origin} from storage and does not sequence it; send writes to the server that sequences it")]
    NotSequencing {
        /// The log.
        origin: String,
    },
    /// The log is shutting down.
    #[error("log is shutting down")]
    ShuttingDown,
    /// The sequencer on another server refused the write or could not be
    /// reached; its status and words are passed on.
    #[error("log {origin}: the sequencer at {to} answered: {message}")]
    Remote {
        /// The log.
        origin: String,
        /// Where the write went.
        to: String,
        /// Its gRPC status code.
        code: i32,
        /// Its message.
        message: String,
    },
    /// The log's database would not replicate the batch before
    /// acknowledging it; nothing was written, writes resume once it does.
    #[error("log {origin}: not acknowledged, the database would not replicate it: {why}; retry once its synchronous standby is back (or set allow_unreplicated)")]
    Unreplicated {
        /// The log.
        origin: String,
        /// What the database said.
        why: String,
    },
    /// Entries the sequencer acknowledged that this server cannot read
    /// back from storage yet.
    #[error("log {origin}: the sequencer at {to} stored entries up to index {last}, but this server reads only size {size} from storage yet; retry (with strict dedup the retry returns their indexes)")]
    Forwarded {
        /// The log.
        origin: String,
        /// Where the write went.
        to: String,
        /// The size this server serves.
        size: u64,
        /// The last index written.
        last: u64,
    },
    /// This server lost the lease of the log while writing: the batch is
    /// not acknowledged and nothing was signed over it.
    #[error("this server no longer sequences log {origin} ({why}); the batch is not acknowledged; retry: it goes to the new sequencer")]
    NotLeader {
        /// The log.
        origin: String,
        /// Why.
        why: String,
    },
    /// The log is frozen, or being frozen: it takes no writes.
    #[error("log {origin} is {state}: it takes no more writes (reads and proofs go on); write to its successor")]
    Frozen {
        /// The log.
        origin: String,
        /// Its state.
        state: crate::lifecycle::LogState,
    },
    /// The request is of the other kind than the log takes: entries to a
    /// log in event mode, or events to a log of opaque entries.
    #[error("{}", if *events { format!("log {origin} is in event mode: it takes events (AddEvents, `quire event add`), not opaque entries") } else { format!("log {origin} takes opaque entries, not events: events go to a log configured with events = true") })]
    Mode {
        /// The log.
        origin: String,
        /// Whether the log is in event mode.
        events: bool,
    },
    /// Signing stopped because the clock went backwards.
    #[error("clock went backwards: now {now_ms} ms < last checkpoint signed at {last_ms} ms; signing stopped")]
    ClockBackwards {
        /// Now.
        now_ms: u64,
        /// Last signing time.
        last_ms: u64,
    },
    /// Signing is held until a start-up check finishes.
    #[error("log {origin} does not sign yet: {why}; retry shortly")]
    SigningHeld {
        /// The log.
        origin: String,
        /// What it waits for.
        why: String,
    },
    /// Signing stopped for good: what was found needs an operator.
    #[error("log {origin} stopped signing: {why}")]
    SigningStopped {
        /// The log.
        origin: String,
        /// What was found.
        why: String,
    },
    /// Storage failed; the batch was not acknowledged (it may or may not
    /// have reached the disk, so a retry may find it stored).
    #[error("storage failed; the batch is not acknowledged: {0}")]
    Store(String),
    /// The disk is full (or a quota or file size limit was reached); the
    /// batch was not acknowledged.
    #[error(
        "storage is full; the batch is not acknowledged: {0}; free space and restart the server"
    )]
    StorageFull(String),
    /// An earlier storage failure stopped this log's writes until a new
    /// sequencer reads storage again (`remedy` says when); reads go on
    /// from what is stored.
    #[error("log {origin} stopped writing after a storage failure ({cause}); entries up to size {size} are stored and signed and reads go on; {remedy}")]
    Stopped {
        /// The log.
        origin: String,
        /// The size of the last signed checkpoint.
        size: u64,
        /// The failure that stopped writes.
        cause: String,
        /// What resumes writes ([`crate::store::Storage::resume_after_stop`]).
        remedy: &'static str,
    },
}

/// One appended entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Added {
    /// Its index.
    pub index: u64,
    /// Whether it was already in the log.
    pub duplicate: bool,
}

/// The latest signed state.
#[derive(Clone, Debug)]
pub struct Latest {
    /// The checkpoint as stored.
    pub stored: StoredCheckpoint,
    /// Its root.
    pub root: Hash,
}

/// What a write gets back: one [`Added`] per entry and the checkpoint that
/// covers them all.
pub type WriteResult = Result<(Vec<Added>, Arc<Latest>), WriteError>;

/// A write queued for the sequencer.
pub(crate) struct Request {
    pub(crate) entries: Vec<Vec<u8>>,
    /// The entries' leaf hashes, computed by the writer's task before it
    /// queues them (beside decoding the request, and off the sequencer's
    /// path, which every batch of the log waits on).
    pub(crate) leaves: Vec<Hash>,
    pub(crate) queued_at: std::time::Instant,
    pub(crate) reply: oneshot::Sender<WriteResult>,
    /// Metadata the commit that integrates this request sets (a freeze's
    /// barrier: no entries, the lifecycle record).
    pub(crate) meta: Vec<(String, Vec<u8>)>,
    /// Events to seal and append (a log in event mode), after `entries`.
    pub(crate) events: Vec<crate::events::Draft>,
    /// Where the sealed events go once their commit is durable (before
    /// `reply` answers).
    pub(crate) sealed: Option<oneshot::Sender<Vec<crate::events::Sealed>>>,
}

impl Request {
    /// A request of `entries`, answered on `reply`.
    pub(crate) fn entries(entries: Vec<Vec<u8>>, reply: oneshot::Sender<WriteResult>) -> Self {
        Request {
            leaves: entries.iter().map(|e| quire_core::leaf_hash(e)).collect(),
            entries,
            queued_at: std::time::Instant::now(),
            reply,
            meta: Vec::new(),
            events: Vec::new(),
            sealed: None,
        }
    }

    /// The leaf hashes of `batch`'s entries, in order: those each request
    /// carries. One whose hashes do not match its entries in number (none
    /// that [`Request::entries`] made) has them computed here, so that one
    /// request's hashes can never shift onto another's entries.
    pub(crate) fn leaves_of(batch: &[Request]) -> Vec<Hash> {
        let mut leaves = Vec::with_capacity(batch.iter().map(|r| r.entries.len()).sum());
        for r in batch {
            if r.leaves.len() == r.entries.len() {
                leaves.extend_from_slice(&r.leaves);
            } else {
                leaves.extend(r.entries.iter().map(|e| quire_core::leaf_hash(e)));
            }
        }
        leaves
    }
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn sign(
    origin: &str,
    size: u64,
    root: Hash,
    signers: &[LogSigner],
) -> Result<Vec<u8>, StoreError> {
    let text = Checkpoint::new(origin, size, root)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?
        .to_text();
    let mut note = Note::new(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    for s in signers {
        note.add_signature(s.sign(text.as_bytes()))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    }
    Ok(note.to_bytes())
}

/// What a [`WriteRoute`] answers, later.
pub type RouteFuture<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, WriteError>> + Send>>;

/// An event operation a replica sends to the lease holder.
#[derive(Debug)]
pub enum EventsOp {
    /// Events to append.
    Add(Vec<crate::api::EventInput>),
    /// The erasure of the payload of event `index` for `reason`.
    Erase {
        /// The event.
        index: u64,
        /// Why.
        reason: String,
    },
}

/// Where a follower sends the writes it takes: the log's sequencer, in this
/// server or another.
pub trait WriteRoute: Send + Sync + 'static {
    /// Sends `entries` to the sequencer and returns what it acknowledged.
    ///
    /// # Errors
    /// The sequencer's [`WriteError`], or one saying it cannot be reached.
    fn add(&self, entries: Vec<Vec<u8>>) -> RouteFuture<Vec<Added>>;

    /// Sends an event operation to the server that sequences the log, on
    /// behalf of `submitter` (whom this server authenticated): what that
    /// server sealed. Only the lease holder's server is reached this way
    /// (this server's own sequencer is used directly).
    ///
    /// # Errors
    /// The sequencer's refusal, or one saying it cannot be reached.
    fn events(&self, op: EventsOp, submitter: String) -> RouteFuture<Vec<crate::events::Sealed>>;

    /// Freezes the log at its sequencer ([`crate::log::Log::freeze`]).
    ///
    /// # Errors
    /// The sequencer's [`WriteError`], or one saying it cannot be reached.
    fn freeze(&self) -> RouteFuture<()>;

    /// Where the writes go, for messages.
    fn describe(&self) -> String;
}
