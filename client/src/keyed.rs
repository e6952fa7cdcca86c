//! Checking the answer to a search by key (`docs/EVENTS.md` §11): the map
//! head event proven in the trusted checkpoint, the key's proof in the
//! head's map, and every event proven, of the key, linked to the next, so
//! that no event of the key before the map's size can have been left out.
//! Nothing the server says is taken without its proof.

use quire_core::event::{key, Envelope, KeyField};
use quire_core::map::{head_of, MapProof, HEAD_TYPE};
use quire_core::{leaf_hash, verify_inclusion, Checkpoint, Hash};
use quire_proto::v1::{KeyPage, ProvenEvent};

use crate::policy::LogTrust;
use crate::search::{answer_checkpoint, SearchError};

/// A verified answer to a search by key.
#[derive(Clone, Debug)]
pub struct KeyAnswer {
    /// The checkpoint it is proven against.
    pub checkpoint: Checkpoint,
    /// The map head: its index, and the size of the map it commits to.
    pub head: (u64, u64),
    /// The events of the key answered, newest first.
    pub events: Vec<(u64, Envelope)>,
    /// `None`: every event of the key before the map's size (and after
    /// `from_ms`) is here. `Some(i)`: the answer stops before event `i`,
    /// the next of the key (the server's limit); ask again from it.
    pub more_from: Option<u64>,
}

/// Checks the pages of a search of `field` = `value` page by page.
pub struct KeyCheck<'a> {
    trust: &'a LogTrust,
    field: KeyField,
    value: String,
    key: Hash,
    before: Option<u64>,
    from_ms: u64,
    checkpoint: Option<(Vec<u8>, Checkpoint)>,
    /// The map's size and what it says of the key.
    map: Option<(u64, u64, Option<u64>)>,
    /// The index the next event must have (the last one's link); `None`
    /// before the first and after the last.
    expect: Option<u64>,
    ended: bool,
    /// Whether it ended at an event logged before `from_ms`.
    by_time: bool,
    /// Whether the walk has reached the map's newest event of the key.
    reached_map: bool,
    events: Vec<(u64, Envelope)>,
}

impl<'a> KeyCheck<'a> {
    /// A check of a search of `field` = `value`, from `before` (or the
    /// key's newest), stopping at the first event logged before `from_ms`
    /// (0: none), against `trust`.
    pub fn new(
        trust: &'a LogTrust,
        field: KeyField,
        value: &str,
        before: Option<u64>,
        from_ms: u64,
    ) -> Self {
        KeyCheck {
            trust,
            field,
            value: value.to_owned(),
            key: key(field, value),
            before,
            from_ms,
            checkpoint: None,
            map: None,
            expect: before,
            ended: false,
            by_time: false,
            reached_map: false,
            events: Vec::new(),
        }
    }
}

/// The envelope of `e`, once its inclusion in `cp` is verified.
fn proven(cp: &Checkpoint, e: &ProvenEvent) -> Result<Envelope, SearchError> {
    let proof = quire_proto::hashes_from_wire(&e.inclusion_proof)
        .map_err(|err| SearchError::Proof(format!("event {}: {err}", e.index)))?;
    verify_inclusion(
        &leaf_hash(&e.envelope),
        e.index,
        cp.size(),
        &proof,
        cp.root(),
    )
    .map_err(|err| SearchError::Proof(format!("event {}: {err}", e.index)))?;
    Envelope::decode(&e.envelope).map_err(|err| SearchError::Envelope {
        index: e.index,
        why: err.to_string(),
    })
}

impl KeyCheck<'_> {
    /// Checks one page, in the order received.
    ///
    /// # Errors
    /// [`SearchError`] naming what does not hold.
    pub fn page(&mut self, p: &KeyPage) -> Result<(), SearchError> {
        let cp = answer_checkpoint(self.trust, &mut self.checkpoint, &p.checkpoint)?;
        match (&self.map, &p.head, &p.map_proof) {
            (None, Some(head), Some(mp)) => self.head(&cp, head, mp)?,
            (None, _, _) => {
                return Err(SearchError::Incomplete(
                    "the first page has no map head and map proof".into(),
                ))
            }
            (Some(_), None, None) => {}
            (Some(_), _, _) => {
                return Err(SearchError::Proof("a later page carries a map head".into()))
            }
        }
        for e in &p.events {
            self.event(&cp, e)?;
        }
        Ok(())
    }

    fn head(
        &mut self,
        cp: &Checkpoint,
        head: &ProvenEvent,
        mp: &quire_proto::v1::MapProof,
    ) -> Result<(), SearchError> {
        let env = proven(cp, head)?;
        let (size, root) = head_of(&env).ok_or_else(|| {
            SearchError::Proof(format!(
                "event {} is not a map head of the log (type {HEAD_TYPE}, submitter server, attributes size and root)",
                head.index
            ))
        })?;
        if size > head.index {
            return Err(SearchError::Proof(format!(
                "map head {} claims a map of {size} events, past itself",
                head.index
            )));
        }
        let siblings = quire_proto::hashes_from_wire(&mp.siblings)
            .map_err(|e| SearchError::Proof(format!("the map proof: {e}")))?;
        let leaf = if mp.leaf_key.is_empty() {
            None
        } else {
            let k = quire_proto::hash_from_wire(&mp.leaf_key)
                .map_err(|e| SearchError::Proof(format!("the map proof: {e}")))?;
            Some((k, mp.leaf_index))
        };
        let found = MapProof { siblings, leaf }
            .verify(&self.key, &root)
            .map_err(|e| SearchError::Proof(e.to_string()))?;
        if let Some(i) = found {
            if i >= size {
                return Err(SearchError::Proof(format!(
                    "the map of {size} events names event {i} as the key's newest"
                )));
            }
        }
        // A walk that starts below the map's size started from a link an
        // earlier answer proved: the map says nothing of it.
        self.reached_map = self.before.is_some_and(|b| b < size);
        self.map = Some((head.index, size, found));
        Ok(())
    }

    fn event(&mut self, cp: &Checkpoint, e: &ProvenEvent) -> Result<(), SearchError> {
        let i = e.index;
        if self.ended {
            return Err(SearchError::Proof(format!(
                "event {i} follows the end of the key's chain"
            )));
        }
        if let Some(want) = self.expect {
            if want != i {
                return Err(SearchError::Incomplete(format!(
                    "event {i} is answered where the link names event {want}"
                )));
            }
        }
        let env = proven(cp, e)?;
        if env.event.value(self.field) != Some(self.value.as_str()) {
            return Err(SearchError::Proof(format!(
                "event {i} is not an event of {} {:?}",
                self.field.name(),
                self.value
            )));
        }
        let (_, size, newest) = self.map.unwrap_or((0, 0, None));
        if i < size && !self.reached_map {
            // The first event below the map's size must be the one the
            // map names: newer ones of the key below it would be missing.
            if newest != Some(i) {
                return Err(SearchError::Incomplete(format!(
                    "the map of {size} events names {} as the key's newest event, the answer event {i}",
                    newest.map_or("no event".into(), |n| format!("event {n}"))
                )));
            }
            self.reached_map = true;
        }
        let older = self.from_ms != 0 && env.log_time_ms < self.from_ms;
        match env.prev.get(self.field) {
            Some(p) if p >= i => {
                return Err(SearchError::Proof(format!(
                    "event {i} links to event {p}, not an earlier one"
                )))
            }
            Some(p) if !older => self.expect = Some(p),
            _ => {
                self.ended = true;
                self.by_time = older;
                self.expect = None;
            }
        }
        self.events.push((i, env));
        Ok(())
    }

    /// The verified answer, once every page is checked.
    ///
    /// # Errors
    /// [`SearchError`] for an answer without its map head, or one that
    /// stops before the map's newest event of the key without the link
    /// to go on from.
    pub fn finish(self) -> Result<KeyAnswer, SearchError> {
        let (Some((_, cp)), Some((head, size, newest))) = (self.checkpoint, self.map) else {
            return Err(SearchError::Incomplete("no page was answered".into()));
        };
        if !self.reached_map && self.ended && !self.by_time && newest.is_some() {
            return Err(SearchError::Incomplete(format!(
                "the answer ends without reaching the map's newest event of the key, {}",
                newest.unwrap_or(0)
            )));
        }
        if self.events.is_empty() && self.expect.is_none() && newest.is_some() {
            return Err(SearchError::Incomplete(format!(
                "no event is answered, but the map of {size} events names event {}",
                newest.unwrap_or(0)
            )));
        }
        Ok(KeyAnswer {
            checkpoint: cp,
            head: (head, size),
            events: self.events,
            more_from: if self.ended { None } else { self.expect },
        })
    }
}
