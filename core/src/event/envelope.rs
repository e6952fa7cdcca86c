//! The `quire-event/v1` envelope: the leaf of a log in event mode
//! (`docs/EVENTS.md`, normative).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

#[cfg(test)]
use super::canonical::Value;
use super::canonical::{CanonicalError, MAX_INT};
use crate::Hash;

/// The envelope's version string (member `v`).
pub const VERSION: &str = "quire-event/v1";
/// The largest envelope: an entry's limit.
pub const MAX_ENVELOPE: usize = 65_535;
/// Bytes of a payload's salt.
pub const SALT_LEN: usize = 32;
/// Most attributes of one event.
pub const MAX_ATTRIBUTES: usize = 64;

/// An event's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed (a refused login, a denied request).
    Failure,
    /// Not known, or not said.
    Unknown,
}

impl Outcome {
    /// Its name in the envelope.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }

    /// The outcome named `s`.
    ///
    /// # Errors
    /// [`EventError`] for any other word.
    pub fn parse(s: &str) -> Result<Self, EventError> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            "unknown" => Ok(Outcome::Unknown),
            _ => Err(EventError::new(
                "outcome",
                format!("must be success, failure or unknown, not {s:?}"),
            )),
        }
    }
}

/// What a submitter says happened: the fields of an event that the
/// envelope carries as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its type (`auth.login`, `k8s.audit`): 1 to 128 bytes of
    /// `A-Z a-z 0-9 . _ : / -`.
    pub kind: String,
    /// Who did it: 1 to 256 bytes, no control characters.
    pub actor: String,
    /// What was done: 1 to 128 bytes, no control characters.
    pub action: String,
    /// To what, if anything: 1 to 1024 bytes, no control characters.
    pub resource: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Where it came from (an address, a system): 1 to 256 bytes, no
    /// control characters.
    pub source: Option<String>,
    /// When it happened by its producer's clock, Unix ms (the log's own
    /// time is the envelope's `log_time_ms`).
    pub occurred_ms: Option<u64>,
    /// Further fields: at most 64, names 1 to 128 bytes without control
    /// characters, values at most 4096 bytes.
    pub attributes: BTreeMap<String, String>,
}

/// The field of an event that a chain of links and the index follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyField {
    /// `actor`.
    Actor,
    /// `action`.
    Action,
    /// `resource`.
    Resource,
    /// `type`.
    Type,
}

impl KeyField {
    /// Every keyed field, in the order of the envelope's `prev` names.
    pub const ALL: [KeyField; 4] = [
        KeyField::Action,
        KeyField::Actor,
        KeyField::Resource,
        KeyField::Type,
    ];

    /// Its member name.
    pub fn name(self) -> &'static str {
        match self {
            KeyField::Actor => "actor",
            KeyField::Action => "action",
            KeyField::Resource => "resource",
            KeyField::Type => "type",
        }
    }

    /// The field named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// The key of `field` = `value` in the log's index and map:
/// SHA-256("quire-event-key/v1\n" ‖ field ‖ "\n" ‖ value).
pub fn key(field: KeyField, value: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(b"quire-event-key/v1\n");
    h.update(field.name().as_bytes());
    h.update(b"\n");
    h.update(value.as_bytes());
    Hash(h.finalize().into())
}

/// The commitment to a payload: SHA-256(salt ‖ payload).
pub fn payload_commitment(salt: &[u8; SALT_LEN], payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(payload);
    Hash(h.finalize().into())
}

/// An invalid event: the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event field {field}: {rule}")]
pub struct EventError {
    /// The field.
    pub field: String,
    /// The rule.
    pub rule: String,
}

impl EventError {
    fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        EventError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), EventError> {
    if s.is_empty() || s.len() > max {
        return Err(EventError::new(
            field,
            format!("must be 1 to {max} bytes, is {}", s.len()),
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(EventError::new(
            field,
            format!(
                "must not hold control characters, holds U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

impl Event {
    /// An event of `kind`, by `actor`, doing `action`, with nothing else
    /// said.
    pub fn new(kind: &str, actor: &str, action: &str) -> Self {
        Event {
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            resource: None,
            outcome: Outcome::Unknown,
            source: None,
            occurred_ms: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Checks every rule of the fields.
    ///
    /// # Errors
    /// [`EventError`] naming the first field that breaks one, and the rule.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.kind.is_empty() || self.kind.len() > 128 {
            return Err(EventError::new(
                "type",
                format!("must be 1 to 128 bytes, is {}", self.kind.len()),
            ));
        }
        if let Some(c) = self
            .kind
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._:/-".contains(*c)))
        {
            return Err(EventError::new(
                "type",
                format!("may hold only A-Z a-z 0-9 . _ : / -, holds {c:?}"),
            ));
        }
        check_text("actor", &self.actor, 256)?;
        check_text("action", &self.action, 128)?;
        if let Some(r) = &self.resource {
            check_text("resource", r, 1024)?;
        }
        if let Some(s) = &self.source {
            check_text("source", s, 256)?;
        }
        if let Some(t) = self.occurred_ms {
            if t > MAX_INT {
                return Err(EventError::new(
                    "occurred_ms",
                    format!("must be at most 2^53 - 1, is {t}"),
                ));
            }
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(EventError::new(
                "attributes",
                format!(
                    "at most {MAX_ATTRIBUTES} are allowed, there are {}",
                    self.attributes.len()
                ),
            ));
        }
        for (k, v) in &self.attributes {
            check_text("attributes (a name)", k, 128)?;
            if v.len() > 4096 {
                return Err(EventError::new(
                    format!("attributes.{k}"),
                    format!("must be at most 4096 bytes, is {}", v.len()),
                ));
            }
        }
        Ok(())
    }

    /// The value of a keyed field, if the event has one.
    pub fn value(&self, field: KeyField) -> Option<&str> {
        match field {
            KeyField::Actor => Some(&self.actor),
            KeyField::Action => Some(&self.action),
            KeyField::Resource => self.resource.as_deref(),
            KeyField::Type => Some(&self.kind),
        }
    }

    /// Each keyed field the event has, with its key ([`key`]), in the
    /// order of [`KeyField::ALL`].
    pub fn keys(&self) -> impl Iterator<Item = (KeyField, Hash)> + '_ {
        KeyField::ALL
            .into_iter()
            .filter_map(|f| self.value(f).map(|v| (f, key(f, v))))
    }
}

/// For each keyed field the event has, the index of the previous event of
/// this log with the same value of it (none for the first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Links(pub BTreeMap<KeyField, u64>);

impl Links {
    /// The previous event with the same value of `field`.
    pub fn get(&self, field: KeyField) -> Option<u64> {
        self.0.get(&field).copied()
    }
}

/// The leaf of a log in event mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The log's time when it sequenced the event, Unix ms; never smaller
    /// than an earlier event's in the same log.
    pub log_time_ms: u64,
    /// Who submitted it, as the server authenticated them.
    pub submitter: String,
    /// The submitter's tenant, if it has one.
    pub tenant: Option<String>,
    /// What happened.
    pub event: Event,
    /// SHA-256(salt ‖ payload) of the payload stored beside the tree.
    pub payload: Option<Hash>,
    /// Links to earlier events of the same keys.
    pub prev: Links,
}

/// Why bytes are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Longer than an entry may be.
    #[error("an envelope is at most {MAX_ENVELOPE} bytes, this one is {0}")]
    TooLong(usize),
    /// Not canonical JSON of the subset.
    #[error("envelope: {0}")]
    Canonical(#[from] CanonicalError),
    /// A member is missing, unknown or of the wrong kind.
    #[error("envelope: {0}")]
    Shape(String),
    /// The event it holds breaks a rule.
    #[error("envelope: {0}")]
    Event(#[from] EventError),
}

/// Checks the members the sequencer sets: a link only for a keyed field
/// the event has (`has`), and numbers at most 2^53 − 1.
pub(super) fn check_sequenced(
    has: impl Fn(KeyField) -> bool,
    time: u64,
    prev: &Links,
) -> Result<(), EnvelopeError> {
    if let Some((f, i)) = prev.0.iter().find(|(f, _)| !has(**f)) {
        return Err(EnvelopeError::Shape(format!(
            "a link of {} (to {i}) for an event without one",
            f.name()
        )));
    }
    if time > MAX_INT {
        return Err(EnvelopeError::Shape(format!(
            "log_time_ms {time} is above 2^53 - 1"
        )));
    }
    if let Some((f, i)) = prev.0.iter().find(|(_, i)| **i > MAX_INT) {
        return Err(EnvelopeError::Shape(format!(
            "the link of {} to {i} is above 2^53 - 1",
            f.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
fn s(v: &str) -> Value {
    Value::Str(v.to_owned())
}

impl Envelope {
    /// The envelope as a value of the canonical subset: the reference the
    /// fast writer is tested against.
    #[cfg(test)]
    pub(crate) fn to_value(&self) -> Value {
        let e = &self.event;
        let mut m = vec![
            ("v".to_owned(), s(VERSION)),
            ("log_time_ms".to_owned(), Value::Int(self.log_time_ms)),
            ("submitter".to_owned(), s(&self.submitter)),
            ("type".to_owned(), s(&e.kind)),
            ("actor".to_owned(), s(&e.actor)),
            ("action".to_owned(), s(&e.action)),
            ("outcome".to_owned(), s(e.outcome.as_str())),
        ];
        let optional = [
            ("tenant", self.tenant.as_deref()),
            ("resource", e.resource.as_deref()),
            ("source", e.source.as_deref()),
        ];
        for (name, v) in optional {
            if let Some(v) = v {
                m.push((name.to_owned(), s(v)));
            }
        }
        if let Some(t) = e.occurred_ms {
            m.push(("occurred_ms".to_owned(), Value::Int(t)));
        }
        if !e.attributes.is_empty() {
            let attrs = e
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), s(v)))
                .collect();
            m.push(("attributes".to_owned(), Value::Obj(attrs)));
        }
        if let Some(p) = &self.payload {
            m.push(("payload_sha256".to_owned(), s(&p.to_hex())));
        }
        if !self.prev.0.is_empty() {
            let links = self
                .prev
                .0
                .iter()
                .map(|(f, i)| (f.name().to_owned(), Value::Int(*i)))
                .collect();
            m.push(("prev".to_owned(), Value::Obj(links)));
        }
        Value::Obj(m)
    }

    /// The envelope's canonical bytes: the log's entry.
    ///
    /// # Errors
    /// [`EnvelopeError`] for an event that breaks a rule, a number above
    /// 2^53 − 1, or an envelope longer than an entry may be.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        self.check_fixed()?;
        check_sequenced(
            |f| self.event.value(f).is_some(),
            self.log_time_ms,
            &self.prev,
        )?;
        let mut out = String::with_capacity(512);
        super::codec::write(self, &mut out);
        if out.len() > MAX_ENVELOPE {
            return Err(EnvelopeError::TooLong(out.len()));
        }
        Ok(out.into_bytes())
    }

    /// Checks the rules of every member but the log time and the links.
    pub(super) fn check_fixed(&self) -> Result<(), EnvelopeError> {
        self.event.validate()?;
        if let Some(t) = &self.tenant {
            check_text("tenant", t, 256)?;
        }
        check_text("submitter", &self.submitter, 512)?;
        Ok(())
    }

    /// The envelope of canonical bytes `b`.
    ///
    /// # Errors
    /// [`EnvelopeError`]: too long, not canonical, a member missing,
    /// unknown or of the wrong kind, or an event that breaks a rule.
    pub fn decode(b: &[u8]) -> Result<Self, EnvelopeError> {
        if b.len() > MAX_ENVELOPE {
            return Err(EnvelopeError::TooLong(b.len()));
        }
        let env = super::codec::read(b)?;
        // Every rule of the fields, and the bytes are this envelope's own.
        if env.encode()? != b {
            return Err(EnvelopeError::Canonical(CanonicalError::NotCanonical));
        }
        Ok(env)
    }
}
