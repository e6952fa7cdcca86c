//! Searching events by key (`docs/EVENTS.md` §11): the events of one
//! actor, action, resource or type, newest first, walked along the links
//! of their envelopes, with the newest map head event and the key's proof
//! in its map, all proven against one checkpoint, so that a client sees
//! that no event of the key before the map's size was left out.

use std::sync::Arc;

use quire_core::event::{key, Envelope, KeyField};
use quire_core::map::MapProof;
use quire_core::{inclusion_plan, Hash};

use super::search::MAX_SEARCH_EVENTS;
use super::{blocking, read_view, Action, ApiError, Caller, LogApi};
use crate::api::budget::{PageSender, PageStream, ResponseBudget};
use crate::events::map::MapHead;
use crate::log::{Latest, Log};
use crate::proofs::checked_inclusion;
use crate::store::{Storage, StorageReader, StoreError};

/// Events in one page of an answer.
pub const KEY_PAGE: usize = 256;

/// The longest value a key query takes (the longest keyed field, a
/// resource).
pub const MAX_KEY_VALUE: usize = 1024;

/// An event with its inclusion proof.
#[derive(Clone, Debug)]
pub struct ProvenEvent {
    /// Its index.
    pub index: u64,
    /// Its envelope, checked against its leaf hash.
    pub envelope: Vec<u8>,
    /// Its inclusion proof in the answer's checkpoint.
    pub proof: Vec<Hash>,
}

/// One page of a key's events.
#[derive(Clone, Debug)]
pub struct KeyPage {
    /// The checkpoint of every page of the answer.
    pub checkpoint: Arc<Vec<u8>>,
    /// First page only: the map head event and the key's proof in its map.
    pub head: Option<(ProvenEvent, MapProof)>,
    /// Events of the key, newest first, each linked to the next.
    pub events: Vec<ProvenEvent>,
}

/// A key query.
#[derive(Clone, Debug)]
pub struct KeyQuery {
    /// The field.
    pub field: KeyField,
    /// Its value.
    pub value: String,
    /// Start at this event instead of the key's newest.
    pub before: Option<u64>,
    /// Stop after the first event logged before this (0: none).
    pub from_ms: u64,
    /// Most events (0: [`MAX_SEARCH_EVENTS`]).
    pub limit: u32,
}

impl<S: Storage> LogApi<S> {
    /// The events of log `origin` with `query.value` in `query.field`,
    /// newest first (or from `query.before`), each with its inclusion
    /// proof, after the newest map head and the key's proof in its map;
    /// all against the latest checkpoint.
    ///
    /// # Errors
    /// A value empty or over [`MAX_KEY_VALUE`] bytes, a limit over the
    /// maximum (`INVALID_ARGUMENT`); `before` past the tree
    /// (`OUT_OF_RANGE`) or not an event of the key; a log not in event
    /// mode or whose map has no head yet (`FAILED_PRECONDITION`); the
    /// server's stream cap; an unknown log; a refusal of access (the
    /// reader role). Failures while streaming end the stream.
    pub async fn search_key(
        &self,
        caller: &Caller,
        origin: &str,
        query: KeyQuery,
    ) -> Result<PageStream<KeyPage>, ApiError> {
        let log = self.event_log(caller, origin, Action::ReadEntries)?;
        // A replica that sequences the log answers from its sequencer's
        // map, the freshest; another from the map it keeps from storage.
        let log = log.sequencer_here().unwrap_or(log);
        if query.value.is_empty() || query.value.len() > MAX_KEY_VALUE {
            return Err(ApiError::Invalid(format!(
                "the value of {} is {} bytes; it must be 1 to {MAX_KEY_VALUE}",
                query.field.name(),
                query.value.len()
            )));
        }
        if query.limit > MAX_SEARCH_EVENTS {
            return Err(ApiError::Invalid(format!(
                "limit {} is over the server's {MAX_SEARCH_EVENTS}",
                query.limit
            )));
        }
        let Some(head) = log.keymap().and_then(|m| m.head()) else {
            return Err(ApiError::Precondition(format!(
                "log {} has not committed to a key map yet (a map head follows its first events within seconds); try again",
                log.origin()
            )));
        };
        let latest = log.latest();
        let size = latest.stored.size;
        if head.index >= size {
            return Err(ApiError::Internal(format!(
                "map head {} is past the checkpoint of size {size}",
                head.index
            )));
        }
        if let Some(b) = query.before {
            if b >= size {
                return Err(ApiError::OutOfRange(format!(
                    "event {b} is past the tree size {size}"
                )));
            }
        }
        let k = key(query.field, &query.value);
        let start = if query.before.is_some() {
            query.before
        } else {
            let (l, field) = (log.clone(), query.field);
            blocking(move || newest_below(&l, field, &k, size)).await?
        };
        let limit = if query.limit == 0 {
            MAX_SEARCH_EVENTS
        } else {
            query.limit
        };
        let (mut tx, rx) = crate::api::budget::channel(self.slots.take()?);
        let answer = Answer {
            checkpoint: Arc::new(latest.stored.note.clone()),
            log,
            latest,
            budget: self.budget.clone(),
            query,
            key: k,
        };
        tokio::spawn(async move {
            let mut walk = Walk {
                next: start,
                left: u64::from(limit),
                first: Some(head),
            };
            while answer.send_page(&mut tx, &mut walk).await {
                if walk.next.is_none() || walk.left == 0 {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// Where a walk is: the next event, how many more it may answer, and the
/// map head the first page carries.
struct Walk {
    next: Option<u64>,
    left: u64,
    first: Option<Arc<MapHead>>,
}

/// The newest event of key `k` (of `field`) in the tree of `size`: the
/// stored index may name one past it, whose links lead back inside.
fn newest_below<S: Storage>(
    log: &Log<S>,
    field: KeyField,
    k: &Hash,
    size: u64,
) -> Result<Option<u64>, ApiError> {
    let r = log.store().reader()?;
    let mut at = r.newest_events(std::slice::from_ref(k))?.pop().flatten();
    while let Some(i) = at.filter(|i| *i >= size) {
        let (_, env) = entry(&r, i)?;
        at = link(&env, field, i)?;
    }
    Ok(at)
}

/// The previous event of `field`'s value that event `i` links to, which
/// must come before it.
fn link(env: &Envelope, field: KeyField, i: u64) -> Result<Option<u64>, ApiError> {
    match env.prev.get(field) {
        Some(p) if p >= i => Err(corrupt(format!("event {i} links forward, to event {p}"))),
        at => Ok(at),
    }
}

fn corrupt(text: String) -> ApiError {
    ApiError::Store(StoreError::Corrupt(text))
}

/// Event `i`: its envelope's bytes (checked against its leaf hash) and
/// the envelope.
fn entry<R: StorageReader>(r: &R, i: u64) -> Result<(Vec<u8>, Envelope), ApiError> {
    let bytes = r
        .checked_entries(i, i + 1)?
        .pop()
        .ok_or_else(|| corrupt(format!("event {i} is missing")))?;
    let env = Envelope::decode(&bytes)
        .map_err(|e| corrupt(format!("event {i} is not an envelope: {e}")))?;
    Ok((bytes, env))
}

/// What every page of one answer shares.
struct Answer<S: Storage> {
    log: Log<S>,
    latest: Arc<Latest>,
    checkpoint: Arc<Vec<u8>>,
    budget: ResponseBudget,
    query: KeyQuery,
    key: Hash,
}

impl<S: Storage> Answer<S> {
    /// Sends the next page of `walk`, its bytes reserved from the budget.
    /// Returns false when the stream is over.
    async fn send_page(&self, tx: &mut PageSender<KeyPage>, walk: &mut Walk) -> bool {
        if !tx.wanted().await {
            return false;
        }
        let budget = &self.budget;
        let count = walk.left.min(KEY_PAGE as u64);
        let worst = usize::try_from(count + 1)
            .unwrap_or(usize::MAX)
            .saturating_mul(crate::store::bundle::MAX_ENTRY_BYTES + 64 * 32)
            .saturating_add(256 * 32 + 4096);
        let permit = match budget.reserve(worst).await {
            Ok(p) => p,
            Err(e) => {
                tx.fail(e);
                return false;
            }
        };
        let (log, signed, query, key) = (
            self.log.clone(),
            Arc::clone(&self.latest),
            self.query.clone(),
            self.key,
        );
        let (next, head) = (walk.next, walk.first.take());
        let cp = Arc::clone(&self.checkpoint);
        let page = blocking(move || {
            let r = read_view(&log)?;
            read_page(&r, &signed, cp, &query, &key, head.as_deref(), next, count)
        })
        .await;
        match page {
            Ok((page, at)) => {
                walk.left -= page.events.len() as u64;
                walk.next = at;
                tx.send(page, permit).await
            }
            Err(e) => {
                tx.fail(e);
                false
            }
        }
    }
}

/// A page of checkpoint `checkpoint` read from `r`: the head's event and
/// the key's map proof when `head` is given, then up to `count` events of
/// the key from `next`, each proven against the signed root of `signed`;
/// and the next event to read.
#[allow(clippy::too_many_arguments)]
fn read_page<R: StorageReader>(
    r: &R,
    signed: &Latest,
    checkpoint: Arc<Vec<u8>>,
    q: &KeyQuery,
    key: &Hash,
    head: Option<&MapHead>,
    next: Option<u64>,
    count: u64,
) -> Result<(KeyPage, Option<u64>), ApiError> {
    let size = signed.stored.size;
    let prove = |index: u64, envelope: Vec<u8>| -> Result<ProvenEvent, ApiError> {
        let plan = inclusion_plan(index, size)?;
        let proof = checked_inclusion(r, &plan, index, size, &signed.root)?;
        Ok(ProvenEvent {
            index,
            envelope,
            proof,
        })
    };
    let head = match head {
        Some(h) => Some((prove(h.index, h.envelope.clone())?, h.map.prove(key))),
        None => None,
    };
    let mut events = Vec::new();
    let mut at = next;
    while let Some(i) = at.filter(|_| (events.len() as u64) < count) {
        let (bytes, env) = entry(r, i)?;
        if env.event.value(q.field) != Some(q.value.as_str()) {
            let what = format!("{} {:?}", q.field.name(), q.value);
            return Err(if q.before == Some(i) {
                ApiError::Invalid(format!("event {i} is not an event of {what}"))
            } else {
                corrupt(format!(
                    "event {i} is linked as an event of {what} but is not one"
                ))
            });
        }
        let older = q.from_ms != 0 && env.log_time_ms < q.from_ms;
        at = if older { None } else { link(&env, q.field, i)? };
        events.push(prove(i, bytes)?);
    }
    let page = KeyPage {
        checkpoint,
        head,
        events,
    };
    Ok((page, at))
}
