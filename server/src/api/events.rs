//! Events (a log in event mode, `docs/EVENTS.md`): writing them, and
//! reading one back with its payload and inclusion proof.

use quire_core::event::{Event, SALT_LEN};
use quire_core::Hash;

use super::{blocking, read_view, Action, ApiError, Caller, LogApi};
use crate::events::{Draft, Sealed};
use crate::log::WriteError;
use crate::store::{Payload, Storage, StorageReader};

/// One event to write: what happened, and the record it came from.
#[derive(Clone, Debug)]
pub struct EventInput {
    /// The event.
    pub event: Event,
    /// The original record (a Kubernetes audit event, a `CloudTrail`
    /// record), stored beside the tree and committed to by its hash.
    pub payload: Option<Vec<u8>>,
}

/// What a write of events gets back.
#[derive(Clone, Debug)]
pub struct WrittenEvents {
    /// The log that took them.
    pub origin: String,
    /// Each event sealed, in the order given.
    pub events: Vec<Sealed>,
    /// The checkpoint that covers them.
    pub checkpoint: Vec<u8>,
}

/// One event as stored.
#[derive(Clone, Debug)]
pub struct EventRecord {
    /// Its index.
    pub index: u64,
    /// Its envelope (the entry), checked against its leaf hash.
    pub envelope: Vec<u8>,
    /// Its payload and salt, unless it had none or it was erased.
    pub payload: Option<(Vec<u8>, [u8; SALT_LEN])>,
    /// The erasure event that erased its payload, if one did.
    pub erased_by: Option<u64>,
    /// Its inclusion proof in the latest checkpoint.
    pub proof: Vec<Hash>,
    /// The latest checkpoint.
    pub checkpoint: Vec<u8>,
}

impl<S: Storage> LogApi<S> {
    /// [`LogApi::log`] for a request only a log in event mode answers.
    pub(super) fn event_log(
        &self,
        caller: &Caller,
        origin: &str,
        action: Action,
    ) -> Result<crate::log::Log<S>, ApiError> {
        events_only(self.log(caller, origin, action)?)
    }

    /// Appends `events` to the log `origin` (in event mode): each checked,
    /// sealed into its envelope with the log's time, the submitter the
    /// server authenticated and the links to the previous events of its
    /// keys, durable and signed before the answer.
    ///
    /// # Errors
    /// An event that breaks a rule (`INVALID_ARGUMENT` naming the event,
    /// the field and the rule), a log not in event mode
    /// (`FAILED_PRECONDITION`), a refusal of access (a writer limited to
    /// other event types among them), or the log's [`WriteError`].
    pub async fn add_events(
        &self,
        caller: &Caller,
        origin: &str,
        events: Vec<EventInput>,
    ) -> Result<WrittenEvents, ApiError> {
        self.add_events_for(caller, origin, events, None).await
    }

    /// [`Self::add_events`], from a replica of the formation on behalf of
    /// the submitter `on_behalf_of` that it authenticated (`None`: the
    /// caller itself). On a replica that does not sequence the log, the
    /// events go to the lease holder on behalf of the caller.
    ///
    /// # Errors
    /// As [`Self::add_events`]; `PERMISSION_DENIED` for `on_behalf_of`
    /// from a caller that is not a replica of the formation.
    pub async fn add_events_for(
        &self,
        caller: &Caller,
        origin: &str,
        events: Vec<EventInput>,
        on_behalf_of: Option<String>,
    ) -> Result<WrittenEvents, ApiError> {
        if let Some((i, e)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| e.event.kind.starts_with(RESERVED_TYPES))
        {
            return Err(ApiError::Invalid(format!(
                "event {i}: event field type: {} is reserved for the log's own events (types starting with {RESERVED_TYPES})",
                e.event.kind
            )));
        }
        let log = self.find(caller, origin)?;
        let kinds: Vec<String> = events.iter().map(|e| e.event.kind.clone()).collect();
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let mut submitter = self
            .access
            .check_events(caller, log.origin(), &kinds, events.len() as u64)
            .inspect_err(|e| super::paced_if_over_quota(&log, e))?;
        if let Some(name) = on_behalf_of {
            submitter.name = self.vouched(caller, log.origin(), name)?;
        }
        let recheck = |next: &str| {
            self.access
                .check_events(caller, next, &kinds, 0)
                .map(|_| ())
        };
        let mut events = Some(events);
        let (log, (sealed, latest)) = self
            .write_routed(caller, origin, log, recheck, |log, again| {
                // Kept only for a write that may go again.
                let batch = if again { events.clone() } else { events.take() }.unwrap_or_default();
                let submitter = submitter.clone();
                async move {
                    let Some(seq) = log.sequencer_here() else {
                        // A replica that does not sequence the log: to the
                        // lease holder, on behalf of this caller.
                        let op = crate::batch::EventsOp::Add(batch);
                        return Ok(log.forward_events(op, submitter.name).await?);
                    };
                    let drafts = batch
                        .into_iter()
                        .enumerate()
                        .map(|(i, e)| {
                            Draft::new(e.event, submitter.clone(), e.payload)
                                .map_err(|err| ApiError::Invalid(format!("event {i}: {err}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let (sealed, latest) = seq.add_events(drafts).await?;
                    if let Some(last) = sealed.iter().map(|e| e.index).max() {
                        log.catch_up(last).await;
                    }
                    Ok((sealed, latest))
                }
            })
            .await?;
        Ok(written(&log, sealed, &latest))
    }

    /// Event `index` of the log `origin`: its envelope, its payload (the
    /// reader role: entry contents) and its inclusion proof in the latest
    /// checkpoint.
    ///
    /// # Errors
    /// An index out of range, a payload that does not match its envelope's
    /// commitment or damaged storage (`DATA_LOSS`), an unknown log, a log
    /// not in event mode, a refusal of access.
    pub async fn event(
        &self,
        caller: &Caller,
        origin: &str,
        index: u64,
    ) -> Result<EventRecord, ApiError> {
        let log = self.event_log(caller, origin, Action::ReadEntries)?;
        let e = super::reads::entry_with_proof(&log, index).await?;
        let envelope = e.entry;
        let stored = blocking(move || Ok(read_view(&log)?.payload(index)?)).await?;
        let (payload, erased_by) = match stored {
            None => (None, None),
            Some(Payload::Erased { by }) => (None, Some(by)),
            Some(Payload::Stored(p)) => {
                let env = quire_core::event::Envelope::decode(&envelope).map_err(|err| {
                    ApiError::Store(crate::store::StoreError::Corrupt(format!(
                        "event {index}: its entry is not an envelope: {err}"
                    )))
                })?;
                let c = quire_core::event::payload_commitment(&p.salt, &p.payload);
                if env.payload != Some(c) {
                    return Err(ApiError::Store(crate::store::StoreError::Corrupt(format!(
                        "event {index}: the stored payload does not match its envelope's commitment"
                    ))));
                }
                (Some((p.payload, p.salt)), None)
            }
        };
        Ok(EventRecord {
            index,
            envelope,
            payload,
            erased_by,
            proof: e.proof,
            checkpoint: e.checkpoint,
        })
    }

    /// Erases the payload of event `index` of the log `origin` for
    /// `reason`: appends an erasure event (`quire.erasure`, naming the
    /// index, the reason and who asked) whose commit removes the payload
    /// and its salt. The envelope, every proof and every checkpoint stay;
    /// the erasure event is the signed record of it.
    ///
    /// # Errors
    /// The admin role missing, a log not in event mode, an index past the
    /// tree (`OUT_OF_RANGE`), an event without a payload or one erased
    /// already (`FAILED_PRECONDITION`, naming the erasure), a reason that
    /// breaks its rule, the log's [`WriteError`].
    pub async fn erase_event(
        &self,
        caller: &Caller,
        origin: &str,
        index: u64,
        reason: &str,
    ) -> Result<WrittenEvents, ApiError> {
        self.erase_event_for(caller, origin, index, reason, None)
            .await
    }

    /// [`Self::erase_event`], from a replica of the formation on behalf of
    /// the submitter `on_behalf_of` (`None`: the caller itself). On a
    /// replica that does not sequence the log, the erasure is made by the
    /// lease holder (which checks the payload), on behalf of the caller.
    ///
    /// # Errors
    /// As [`Self::erase_event`]; `PERMISSION_DENIED` for `on_behalf_of`
    /// from a caller that is not a replica of the formation.
    pub async fn erase_event_for(
        &self,
        caller: &Caller,
        origin: &str,
        index: u64,
        reason: &str,
        on_behalf_of: Option<String>,
    ) -> Result<WrittenEvents, ApiError> {
        let follower = self.event_log(caller, origin, Action::Administer)?;
        let mut submitter = self.access.identify(caller, follower.origin());
        if let Some(name) = on_behalf_of {
            submitter.name = self.vouched(caller, follower.origin(), name)?;
        }
        let Some(log) = follower.sequencer_here() else {
            let op = crate::batch::EventsOp::Erase {
                index,
                reason: reason.to_owned(),
            };
            let (sealed, latest) = follower.forward_events(op, submitter.name).await?;
            return Ok(written(&follower, sealed, &latest));
        };
        let size = log.latest().stored.size;
        if index >= size {
            return Err(ApiError::OutOfRange(format!(
                "event {index} is past the tree size {size}"
            )));
        }
        let draft = Draft::erasure(submitter, index, reason)
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        // One erasure at a time: the payload is checked, then erased, with
        // no other erasure between.
        let _one = self.erasing.lock().await;
        let l = log.clone();
        let stored = blocking(move || Ok(read_view(&l)?.payload(index)?)).await?;
        match stored {
            None => {
                return Err(ApiError::Precondition(format!(
                    "event {index} has no payload to erase"
                )))
            }
            Some(Payload::Erased { by }) => {
                return Err(ApiError::Precondition(format!(
                    "the payload of event {index} was erased already, by event {by}"
                )))
            }
            Some(Payload::Stored(_)) => {}
        }
        let (sealed, latest) = log.add_events(vec![draft]).await?;
        if let Some(e) = sealed.first() {
            follower.catch_up(e.index).await;
            self.access.note_admin(
                Some(caller),
                Some(log.origin()),
                format!(
                    "erased the payload of event {index} by erasure event {}: {reason}",
                    e.index
                ),
            );
        }
        Ok(written(&log, sealed, &latest))
    }

    /// One pass of retention on the log `origin` (the server's own act:
    /// no caller): the payloads of events logged more than `days` days
    /// before `now_ms`, at most [`RETENTION_BATCH`] of them, erased by one
    /// erasure event (`Draft::retention`). `None` when there is nothing
    /// left to erase.
    ///
    /// # Errors
    /// An unknown log, a log not in event mode, storage, the log's
    /// [`WriteError`] (a frozen log takes no erasure event).
    pub async fn retain(
        &self,
        origin: &str,
        now_ms: u64,
        days: u64,
    ) -> Result<Option<WrittenEvents>, ApiError> {
        let Some(log) = self.registry().logs.get(origin).cloned() else {
            return Err(ApiError::NotFound(format!("no log {origin:?} here")));
        };
        let log = events_only(log)?;
        // On a formation, the replica that sequences the log erases.
        let Some(log) = log.sequencer_here() else {
            return Ok(None);
        };
        let cutoff = now_ms.saturating_sub(days.saturating_mul(86_400_000));
        let _one = self.erasing.lock().await;
        let size = log.latest().stored.size;
        let l = log.clone();
        let indexes = blocking(move || {
            let r = read_view(&l)?;
            let older = r.first_logged_at(cutoff)?.map_or(size, |i| i.min(size));
            Ok(r.stored_payloads(0, older, RETENTION_BATCH)?)
        })
        .await?;
        let (Some(&from), Some(&last)) = (indexes.first(), indexes.last()) else {
            return Ok(None);
        };
        let draft = Draft::retention(from, last + 1, indexes, days)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let (sealed, latest) = log.add_events(vec![draft]).await?;
        Ok(Some(written(&log, sealed, &latest)))
    }
}

/// The prefix of the types of the log's own events (erasures, map heads):
/// no caller writes them.
pub const RESERVED_TYPES: &str = "quire.";

/// Most payloads one retention erasure event erases.
pub const RETENTION_BATCH: usize = 10_000;

/// `log`, when it is in event mode.
fn events_only<S: Storage>(log: crate::log::Log<S>) -> Result<crate::log::Log<S>, ApiError> {
    if log.events() {
        return Ok(log);
    }
    Err(ApiError::Write(WriteError::Mode {
        origin: log.origin().to_owned(),
        events: false,
    }))
}

/// What a write of events to `log` answers.
fn written<S: Storage>(
    log: &crate::log::Log<S>,
    events: Vec<Sealed>,
    latest: &crate::log::Latest,
) -> WrittenEvents {
    WrittenEvents {
        origin: log.origin().to_owned(),
        events,
        checkpoint: latest.stored.note.clone(),
    }
}
