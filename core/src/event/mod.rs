//! Audit events: the `quire-event/v1` envelope that is the leaf of a log in
//! event mode, its canonical encoding, and the keys its links and index
//! follow. Normative specification: `docs/EVENTS.md`.
//!
//! **In scope**: the event a submitter describes ([`Event`], with the rule
//! of each field), the envelope the log builds around it ([`Envelope`]:
//! log time, submitter, tenant, the salted payload commitment, links to
//! the previous events of the same actor, action, resource and type), its
//! one byte string (RFC 8785 canonical JSON over a subset: [`canonical`]),
//! and the keys of the index ([`key`]).
//!
//! **Out of scope**: the payload itself and its storage, clocks (the log
//! passes its time), choosing the salt (the log draws it), queries.

pub mod canonical;
mod codec;
mod envelope;
mod template;

pub use envelope::{
    key, payload_commitment, Envelope, EnvelopeError, Event, EventError, KeyField, Links, Outcome,
    MAX_ATTRIBUTES, MAX_ENVELOPE, SALT_LEN, VERSION,
};
pub use template::Template;

#[cfg(test)]
mod tests;
