//! Event mode on the log's side (`docs/EVENTS.md`): a submitted event
//! becomes a [`Draft`] in the writer's task (checked, salted, its payload
//! committed to, its keys hashed: the work that runs in parallel), and the
//! sequencer seals drafts into `quire-event/v1` envelopes (`EventSeq`):
//! the log time of the batch, the index, and the links to the previous
//! event of each key, all known only in sequence. The payloads, the
//! newest event of each key and the batch's log time are written in the
//! same commit as the envelopes ([`crate::store::EventRows`]). The
//! domain calls are the log API's (`api/events.rs`); `service.rs` is their
//! gRPC face, `quire.v1.Events`.

pub mod map;
pub(crate) mod migrate;
pub mod reindex;
pub mod replica_map;
pub mod retention;
pub mod service;

use std::collections::HashMap;
use std::sync::Arc;

use quire_core::event::{
    payload_commitment, Envelope, EnvelopeError, Event, KeyField, Links, Template, MAX_ENVELOPE,
    SALT_LEN,
};
use quire_core::Hash;
use rand_core::RngCore;
use tokio::sync::oneshot;

use crate::batch::{Latest, Request, WriteError};
use crate::store::{StorageReader, StoreError, StoredPayload};

/// The largest payload of one event (the original record it came from).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// Who writes an event, as the server authenticated them, and the tenant
/// the log belongs to: what the envelope records, never what the caller
/// says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitter {
    /// The principal: `anonymous`, `token:NAME`, `dns:NAME`, `uri:URI`,
    /// `jwt:ISSUER:SUBJECT`.
    pub name: String,
    /// The tenant whose logs include this one, if any.
    pub tenant: Option<String>,
}

/// An event ready for the sequencer.
#[derive(Debug)]
pub struct Draft {
    /// Its envelope but for the log time and links, which the sequencer
    /// sets: written and checked here, on the writer's task, so that the
    /// log's one sequencing thread only copies it around two numbers.
    template: Template,
    /// The event's type.
    kind: String,
    /// The payload and its salt.
    payload: Option<(Vec<u8>, [u8; SALT_LEN])>,
    /// The keyed fields the event has, each with its key.
    keys: Vec<(KeyField, Hash)>,
    /// An erasure event: the events whose payloads it erases.
    erases: Vec<u64>,
}

/// Why an event cannot be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    /// A field breaks its rule.
    #[error(transparent)]
    Field(#[from] quire_core::event::EventError),
    /// The payload is too large.
    #[error("the payload is {0} bytes; the limit is {MAX_PAYLOAD_BYTES}")]
    PayloadTooLarge(usize),
    /// Its envelope could be longer than an entry may be.
    #[error("its envelope could reach {0} bytes, over the entry limit of {MAX_ENVELOPE}: shorten its attributes")]
    TooLong(usize),
    /// Anything else the envelope refuses.
    #[error("{0}")]
    Envelope(String),
}

impl Draft {
    /// Checks `event` and prepares it: a fresh salt and the commitment to
    /// `payload`, the keys of its links.
    ///
    /// # Errors
    /// [`DraftError`] naming the field and the rule, a payload over
    /// [`MAX_PAYLOAD_BYTES`], or an envelope that could outgrow an entry
    /// (checked with the largest time and links it may get).
    pub fn new(
        event: Event,
        submitter: Submitter,
        payload: Option<Vec<u8>>,
    ) -> Result<Self, DraftError> {
        if let Some(p) = &payload {
            if p.len() > MAX_PAYLOAD_BYTES {
                return Err(DraftError::PayloadTooLarge(p.len()));
            }
        }
        let mut commitment = None;
        let payload = payload.map(|p| {
            let mut salt = [0u8; SALT_LEN];
            // ChaCha12 reseeded from the OS: one system call per 64 KiB of
            // salts, not one per event.
            rand::thread_rng().fill_bytes(&mut salt);
            commitment = Some(payload_commitment(&salt, &p));
            (p, salt)
        });
        let keys: Vec<(KeyField, Hash)> = event.keys().collect();
        let envelope = Envelope {
            log_time_ms: 0,
            submitter: submitter.name,
            tenant: submitter.tenant,
            event,
            payload: commitment,
            prev: Links::default(),
        };
        // The event's rules are checked here, once, as the template is
        // written.
        let template = envelope.template().map_err(|e| match e {
            EnvelopeError::Event(e) => DraftError::Field(e),
            e => DraftError::Envelope(e.to_string()),
        })?;
        // The longest this envelope can be: every link and the time at
        // their largest.
        let max = quire_core::event::canonical::MAX_INT;
        let longest =
            template.sealed_len(max, &Links(keys.iter().map(|(f, _)| (*f, max)).collect()));
        if longest > MAX_ENVELOPE {
            return Err(DraftError::TooLong(longest));
        }
        Ok(Draft {
            template,
            kind: envelope.event.kind,
            payload,
            keys,
            erases: Vec::new(),
        })
    }

    /// The event's type.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The erasure event of the payload of event `index`, asked by
    /// `submitter` for `reason` (1 to 1024 bytes): type `quire.erasure`,
    /// the submitter as actor, action `erase`, resource `event/INDEX`,
    /// attributes `index` and `reason`. Its commit erases the payload.
    ///
    /// # Errors
    /// [`DraftError`] for a reason that breaks its rule.
    pub fn erasure(submitter: Submitter, index: u64, reason: &str) -> Result<Self, DraftError> {
        if reason.is_empty() || reason.len() > 1024 {
            return Err(DraftError::Field(quire_core::event::EventError {
                field: "reason".into(),
                rule: format!("must be 1 to 1024 bytes, is {}", reason.len()),
            }));
        }
        let mut event = Event::new(ERASURE_TYPE, &submitter.name, "erase");
        event.resource = Some(format!("event/{index}"));
        event.outcome = quire_core::event::Outcome::Success;
        event.attributes.insert("index".into(), index.to_string());
        event.attributes.insert("reason".into(), reason.to_owned());
        let mut d = Draft::new(event, submitter, None)?;
        d.erases = vec![index];
        Ok(d)
    }

    /// The erasure event of retention: the payloads of `indexes`, all in
    /// `[from, to)`, the events logged more than `days` days ago. Type
    /// `quire.erasure`, actor `server`, action `retain`, resource
    /// `events/FROM-TO`, attributes `from`, `to` and `reason`.
    ///
    /// # Errors
    /// [`DraftError`] (not for the values the retention pass gives).
    pub fn retention(from: u64, to: u64, indexes: Vec<u64>, days: u64) -> Result<Self, DraftError> {
        let submitter = Submitter {
            name: quire_core::map::LOG_SUBMITTER.into(),
            tenant: None,
        };
        let mut event = Event::new(ERASURE_TYPE, quire_core::map::LOG_SUBMITTER, "retain");
        event.resource = Some(format!("events/{from}-{to}"));
        event.outcome = quire_core::event::Outcome::Success;
        event.attributes.insert("from".into(), from.to_string());
        event.attributes.insert("to".into(), to.to_string());
        event.attributes.insert(
            "reason".into(),
            format!("retention: payloads of events logged more than {days} days before"),
        );
        let mut d = Draft::new(event, submitter, None)?;
        d.erases = indexes;
        Ok(d)
    }
}

impl<S: crate::store::Storage> crate::log::Log<S> {
    /// Appends events (a log in event mode): each sealed into its
    /// envelope by the sequencer, durable and signed before the answer.
    ///
    /// # Errors
    /// [`WriteError`] as [`Log::add`](crate::log::Log::add); [`WriteError::Mode`] for a log not
    /// in event mode.
    pub async fn add_events(
        &self,
        drafts: Vec<Draft>,
    ) -> Result<(Vec<Sealed>, Arc<Latest>), WriteError> {
        if !self.inner.events {
            return Err(WriteError::Mode {
                origin: self.inner.origin.clone(),
                events: false,
            });
        }
        if drafts.is_empty() {
            return Err(WriteError::Invalid("no events in the request".into()));
        }
        if drafts.len() > self.inner.limits.max_batch {
            return Err(WriteError::Invalid(format!(
                "{} events in one request; the batch limit is {}",
                drafts.len(),
                self.inner.limits.max_batch
            )));
        }
        if self.inner.follower.is_some() {
            return Err(WriteError::NotSequencing {
                origin: self.inner.origin.clone(),
            });
        }
        let (reply, rx) = oneshot::channel();
        let (sealed_tx, sealed_rx) = oneshot::channel();
        self.enqueue(Request {
            events: drafts,
            sealed: Some(sealed_tx),
            ..Request::entries(Vec::new(), reply)
        })?;
        let (_, latest) = rx.await.map_err(|_| WriteError::ShuttingDown)??;
        // Sent by the sequencer before it answered.
        let sealed = sealed_rx.await.map_err(|_| WriteError::ShuttingDown)?;
        Ok((sealed, latest))
    }
}

/// The type of an erasure event.
pub const ERASURE_TYPE: &str = "quire.erasure";

/// A sealed event: what its writer gets back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// Its index.
    pub index: u64,
    /// Its envelope: the entry.
    pub envelope: Vec<u8>,
    /// The salt of its payload, if it has one (with the payload, it proves
    /// what the envelope commits to).
    pub salt: Option<[u8; SALT_LEN]>,
}

/// The sequencer's event state: the newest event of each key it has seen
/// or looked up (`None`: no event has the key), bounded.
pub(crate) struct EventSeq {
    newest: HashMap<Hash, Option<u64>>,
    cap: usize,
    /// Where durable commits' keys go to the key map, if the log keeps one.
    feed: Option<Arc<map::MapFeed>>,
}

/// Keys remembered by the sequencer before it forgets them all and looks
/// them up again.
const KEY_CACHE: usize = 1 << 20;

impl EventSeq {
    pub(crate) fn new(feed: Option<Arc<map::MapFeed>>) -> Self {
        EventSeq {
            newest: HashMap::new(),
            cap: KEY_CACHE,
            feed,
        }
    }

    /// Looks up the keys of `drafts` that are not remembered.
    pub(crate) fn prepare<'a, R: StorageReader>(
        &mut self,
        drafts: impl Iterator<Item = &'a Draft>,
        reader: impl FnOnce() -> Result<R, StoreError>,
    ) -> Result<(), StoreError> {
        let mut missing: Vec<Hash> = drafts
            .flat_map(|d| d.keys.iter().map(|(_, k)| *k))
            .filter(|k| !self.newest.contains_key(k))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        if self.newest.len() + missing.len() > self.cap {
            self.newest.clear();
        }
        let found = reader()?.newest_events(&missing)?;
        for (k, i) in missing.into_iter().zip(found) {
            self.newest.insert(k, i);
        }
        Ok(())
    }

    /// Seals `drafts`, appending each envelope to `range` and `commit`
    /// (whose event rows it fills) as the events logged at `time`; their
    /// keys' newest events go to `batch` (this batch's, applied by
    /// [`EventSeq::committed`] once the commit is durable). Returns what
    /// their writer gets back, the envelopes still to be moved in from the
    /// commit ([`Sealed::envelope`] empty: see [`fill_envelopes`]).
    ///
    /// # Errors
    /// The envelope refused (not after [`Draft::new`] accepted it), a tree
    /// at its largest size.
    pub(crate) fn seal(
        &self,
        drafts: Vec<Draft>,
        time: u64,
        range: &mut quire_core::CompactRange,
        commit: &mut crate::store::Commit,
        batch: &mut HashMap<Hash, u64>,
    ) -> Result<Vec<Sealed>, String> {
        let mut out = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let index = range.size();
            let mut prev = Links::default();
            for (f, k) in &draft.keys {
                let last = batch
                    .get(k)
                    .copied()
                    .or_else(|| self.newest.get(k).copied().flatten());
                if let Some(i) = last {
                    prev.0.insert(*f, i);
                }
                batch.insert(*k, index);
            }
            let (envelope, leaf) = draft
                .template
                .seal(time, &prev)
                .map_err(|e| format!("event {index}: {e}"))?;
            let rows = &mut commit.events;
            let salt = draft.payload.map(|(payload, salt)| {
                rows.payloads.push(StoredPayload {
                    index,
                    salt,
                    payload,
                });
                salt
            });
            if rows.time.is_none() {
                rows.time = Some((time, index));
            }
            for erased in draft.erases {
                rows.erased.push((erased, index));
            }
            crate::sequencer::append_entry(range, commit, envelope, leaf)
                .map_err(|e| e.to_string())?;
            out.push(Sealed {
                index,
                envelope: Vec::new(),
                salt,
            });
        }
        Ok(out)
    }

    /// Takes a durable batch's newest events (the tree now of `size`),
    /// and hands them to the key map.
    pub(crate) fn committed(&mut self, batch: HashMap<Hash, u64>, size: u64) {
        if let Some(feed) = &self.feed {
            feed.committed(&batch, size);
        }
        for (k, i) in batch {
            self.newest.insert(k, Some(i));
        }
    }
}

/// Metadata key of a log's mode: `events` for a log in event mode, absent
/// for a log of opaque entries.
pub const MODE_META: &str = "mode";

/// Moves each sealed event's envelope out of the durable commit's
/// entries (`first` is the commit's first index): the sequencer copies no
/// envelope on its way to the writer.
pub(crate) fn fill_envelopes(sealed: &mut [Vec<Sealed>], entries: &mut [Vec<u8>], first: u64) {
    for s in sealed.iter_mut().flatten() {
        let at = s
            .index
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(e) = at.and_then(|i| entries.get_mut(i)) {
            s.envelope = std::mem::take(e);
        }
    }
}

/// The metadata record of event mode.
pub(crate) fn mode_meta() -> (String, Vec<u8>) {
    (MODE_META.to_owned(), b"events".to_vec())
}

/// Whether the store holds a log in event mode.
///
/// # Errors
/// [`StoreError::Corrupt`] for a mode record Quire does not write.
pub fn stored_mode<R: StorageReader>(r: &R) -> Result<bool, StoreError> {
    match r.meta(MODE_META)?.as_deref() {
        None => Ok(false),
        Some(b"events") => Ok(true),
        Some(other) => Err(StoreError::Corrupt(format!(
            "mode record {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// Checks the configured mode of an existing log against the stored one:
/// the record to commit when an empty log turns to event mode.
///
/// # Errors
/// [`crate::log::OpenError::ModeChanged`] for a log that holds entries of
/// the other kind.
pub(crate) fn check_mode(
    origin: &str,
    stored: bool,
    configured: bool,
    latest: &crate::store::StoredCheckpoint,
) -> Result<Option<(String, Vec<u8>)>, crate::log::OpenError> {
    let words = |events: bool| {
        if events {
            "is in event mode"
        } else {
            "holds opaque entries"
        }
    };
    match (stored, configured) {
        (true, true) | (false, false) => Ok(None),
        (false, true) if latest.size == 0 => Ok(Some(mode_meta())),
        _ => Err(crate::log::OpenError::ModeChanged {
            origin: origin.to_owned(),
            stored: words(stored),
            configured: if configured {
                "events = true"
            } else {
                "no event mode"
            },
        }),
    }
}
