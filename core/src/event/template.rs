//! An envelope written before it is sequenced: every member but the log
//! time and the links, checked and in canonical order, with the leaf
//! hash's SHA-256 state over what comes before the log time. The log's
//! sequencer then only copies the parts around the two numbers it sets
//! and hashes the rest, which keeps the work of one event on the writer's
//! thread, not on the log's one sequencing thread. The bytes are those of
//! [`Envelope::encode`] (`docs/EVENTS.md`), byte for byte.

use sha2::{Digest, Sha256};

use super::codec;
use super::envelope::{check_sequenced, Envelope, EnvelopeError, KeyField, Links, MAX_ENVELOPE};
use crate::Hash;

/// An envelope but for its log time and links ([`Envelope::template`]).
#[derive(Clone)]
pub struct Template {
    /// `{"action":…, "log_time_ms":` after the leaf prefix 0x00.
    head: Vec<u8>,
    /// `,"occurred_ms":…,"outcome":…,"payload_sha256":…`.
    middle: Vec<u8>,
    /// `,"resource":… "v":"quire-event/v1"}`.
    tail: Vec<u8>,
    /// SHA-256 over 0x00 ‖ `head`.
    hasher: Sha256,
    /// The keyed fields the event has: the only ones a link may name.
    fields: Vec<KeyField>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("bytes", &self.fixed_len())
            .finish_non_exhaustive()
    }
}

/// What the sequencer writes into a template: the log time's digits, then
/// the member `prev` (empty without links); and where the digits end.
fn numbers(time: u64, prev: &Links) -> (String, usize) {
    let mut n = String::with_capacity(96);
    codec::write_int(&mut n, time);
    let split = n.len();
    codec::write_prev(prev, &mut n);
    (n, split)
}

impl Envelope {
    /// This envelope as a [`Template`]: its log time and links are left
    /// for [`Template::seal`].
    ///
    /// # Errors
    /// [`EnvelopeError`] for a member that breaks its rule (as
    /// [`Envelope::encode`], but for the log time and the links).
    pub fn template(&self) -> Result<Template, EnvelopeError> {
        self.check_fixed()?;
        let mut head = String::with_capacity(512);
        codec::write_head(&self.event, &mut head);
        let mut middle = String::with_capacity(128);
        codec::write_middle(self, &mut middle);
        let mut tail = String::with_capacity(128);
        codec::write_tail(self, &mut tail);
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(head.as_bytes());
        let fields = KeyField::ALL
            .into_iter()
            .filter(|f| self.event.value(*f).is_some())
            .collect();
        Ok(Template {
            head: head.into_bytes(),
            middle: middle.into_bytes(),
            tail: tail.into_bytes(),
            hasher,
            fields,
        })
    }
}

impl Template {
    /// The length of the envelope sealed with `time` and `prev`.
    pub fn sealed_len(&self, time: u64, prev: &Links) -> usize {
        self.fixed_len() + numbers(time, prev).0.len()
    }

    fn fixed_len(&self) -> usize {
        self.head.len() + self.middle.len() + self.tail.len()
    }

    /// The envelope logged at `time` with the links `prev`, and its leaf
    /// hash (RFC 9162 §2.1.1): the bytes and hash of [`Envelope::encode`]
    /// of the same envelope.
    ///
    /// # Errors
    /// [`EnvelopeError`] for a link of a field the event lacks, a number
    /// above 2^53 − 1, or an envelope longer than [`MAX_ENVELOPE`].
    pub fn seal(&self, time: u64, prev: &Links) -> Result<(Vec<u8>, Hash), EnvelopeError> {
        check_sequenced(|f| self.fields.contains(&f), time, prev)?;
        let (numbers, split) = numbers(time, prev);
        let len = self.fixed_len() + numbers.len();
        if len > MAX_ENVELOPE {
            return Err(EnvelopeError::TooLong(len));
        }
        let (time_digits, links) = numbers.as_bytes().split_at(split);
        let mut out = Vec::with_capacity(len);
        for part in [&self.head[..], time_digits, &self.middle, links, &self.tail] {
            out.extend_from_slice(part);
        }
        let mut h = self.hasher.clone();
        h.update(&out[self.head.len()..]);
        Ok((out, Hash(h.finalize().into())))
    }
}
