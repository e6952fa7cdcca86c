//! What a log in event mode stores beside its tree (`docs/EVENTS.md`):
//! each event's payload and salt (erasable: the leaf holds only their
//! hash), the newest event of each key (actor, action, resource, type),
//! and the log time of each commit's first event. All written in the
//! commit of the events themselves, so they never drift from the log.

use quire_core::event::SALT_LEN;
use quire_core::Hash;

/// An event's payload as stored beside the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPayload {
    /// The event's index.
    pub index: u64,
    /// Its salt.
    pub salt: [u8; SALT_LEN],
    /// The payload.
    pub payload: Vec<u8>,
}

/// What the store holds of an event's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The payload and its salt.
    Stored(StoredPayload),
    /// Erased by the erasure event of that index: the payload and salt
    /// are gone, the envelope and every proof stay.
    Erased {
        /// The erasure event.
        by: u64,
    },
}

/// The rows of a commit of events.
#[derive(Clone, Debug, Default)]
pub struct EventRows {
    /// Payloads of the commit's events that have one.
    pub payloads: Vec<StoredPayload>,
    /// For each key of the commit's events
    /// ([`quire_core::event::key`]), its newest event.
    pub newest: Vec<(Hash, u64)>,
    /// The log time of the commit's events and the index of its first:
    /// one row per commit, in time (and index) order.
    pub time: Option<(u64, u64)>,
    /// Payloads erased by this commit: (the event's index, the index of
    /// the erasure event that erases it, in this commit).
    pub erased: Vec<(u64, u64)>,
}

impl EventRows {
    /// Whether the commit has no event rows.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
            && self.newest.is_empty()
            && self.time.is_none()
            && self.erased.is_empty()
    }
}

/// A stored payload record: salt ‖ payload.
pub(crate) fn encode_payload(p: &StoredPayload) -> Vec<u8> {
    let mut b = Vec::with_capacity(SALT_LEN + p.payload.len());
    b.extend_from_slice(&p.salt);
    b.extend_from_slice(&p.payload);
    b
}

/// The record of an erased payload: `E` and the erasure event's index
/// (9 bytes: shorter than any salt, so never a payload's record).
pub(crate) fn encode_erased(by: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(9);
    b.push(b'E');
    b.extend_from_slice(&by.to_be_bytes());
    b
}

/// Whether a payload record is an erasure's ([`encode_erased`]).
pub(crate) fn is_erased(b: &[u8]) -> bool {
    b.len() == 9 && b.first() == Some(&b'E')
}

/// The payload of event `index` from its record.
///
/// # Errors
/// [`crate::store::StoreError::Corrupt`] for a record that is neither a
/// salt and payload nor an erasure.
pub(crate) fn decode_payload(index: u64, b: &[u8]) -> Result<Payload, crate::store::StoreError> {
    if let (true, Some(by)) = (is_erased(b), b.get(1..9)) {
        let mut n = [0u8; 8];
        n.copy_from_slice(by);
        return Ok(Payload::Erased {
            by: u64::from_be_bytes(n),
        });
    }
    let (Some(salt), Some(payload)) = (b.get(..SALT_LEN), b.get(SALT_LEN..)) else {
        return Err(crate::store::StoreError::Corrupt(format!(
            "payload record of event {index} is {} bytes, shorter than its salt",
            b.len()
        )));
    };
    let mut s = [0u8; SALT_LEN];
    s.copy_from_slice(salt);
    Ok(Payload::Stored(StoredPayload {
        index,
        salt: s,
        payload: payload.to_vec(),
    }))
}
