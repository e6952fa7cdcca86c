//! Events on the client's side (`docs/EVENTS.md`): an event from
//! `field=value` words or from a JSON object, and the check of an event a
//! log returns (its envelope in the signed tree, its payload against the
//! envelope's commitment).

use std::collections::BTreeMap;

use quire_core::event::{payload_commitment, Envelope, Event, Outcome, SALT_LEN};
use quire_core::{leaf_hash, verify_inclusion, Checkpoint, Hash, Note};

use crate::policy::LogTrust;

/// An event to submit, with the record it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The event.
    pub event: Event,
    /// Its payload.
    pub payload: Option<Vec<u8>>,
}

impl Submission {
    /// Its wire form.
    pub fn to_wire(&self) -> quire_proto::v1::Event {
        quire_proto::event_to_wire(&self.event, self.payload.clone())
    }
}

/// The fields a submission names, in `field=value` words and JSON.
pub const FIELDS: &str = "type, actor, action, resource, outcome, source, occurred_ms, attr.NAME (attributes in JSON), payload";

/// A submission from words `type=auth.login actor=alice action=login
/// attr.method=password payload=TEXT`. `payload_file` reads `payload=@FILE`.
///
/// # Errors
/// A word without `=`, an unknown or repeated field, a field missing, or a
/// value that breaks its rule, naming the field.
pub fn from_words(
    words: &[String],
    mut payload_file: impl FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Submission, String> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut attributes = BTreeMap::new();
    let mut payload = None;
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("{w:?} is not field=value (fields: {FIELDS})"));
        };
        if let Some(name) = k.strip_prefix("attr.") {
            if attributes.insert(name.to_owned(), v.to_owned()).is_some() {
                return Err(format!("attribute {name:?} is given twice"));
            }
        } else if k == "payload" {
            if payload.is_some() {
                return Err("payload is given twice".into());
            }
            payload = Some(match v.strip_prefix('@') {
                Some(file) => payload_file(file)?,
                None => v.as_bytes().to_vec(),
            });
        } else if fields.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(format!("field {k} is given twice"));
        }
    }
    let mut event = event_of(&mut fields)?;
    event.attributes = attributes;
    event.validate().map_err(|e| e.to_string())?;
    Ok(Submission { event, payload })
}

/// The event of `fields` (each removed as it is taken); what is left is
/// refused as unknown.
fn event_of(fields: &mut BTreeMap<String, String>) -> Result<Event, String> {
    let mut need = |name: &str| {
        fields
            .remove(name)
            .ok_or_else(|| format!("event field {name} is missing"))
    };
    let (kind, actor, action) = (need("type")?, need("actor")?, need("action")?);
    let mut event = Event::new(&kind, &actor, &action);
    event.resource = fields.remove("resource");
    event.source = fields.remove("source");
    if let Some(o) = fields.remove("outcome") {
        event.outcome = Outcome::parse(&o).map_err(|e| e.to_string())?;
    }
    if let Some(t) = fields.remove("occurred_ms") {
        event.occurred_ms = Some(t.parse().map_err(|_| {
            format!("event field occurred_ms: {t:?} is not a number of milliseconds")
        })?);
    }
    if let Some(k) = fields.keys().next() {
        return Err(format!("unknown event field {k:?} (fields: {FIELDS})"));
    }
    Ok(event)
}

/// A submission from a JSON object: the fields as strings (`occurred_ms`
/// a number), `attributes` an object of strings, `payload` any JSON value
/// (a string is taken as its text, anything else as its JSON).
///
/// # Errors
/// Not an object, a field of the wrong kind, an unknown or missing field,
/// or a value that breaks its rule, naming the field.
pub fn from_json(v: &serde_json::Value) -> Result<Submission, String> {
    use serde_json::Value as J;
    let J::Object(map) = v else {
        return Err("an event is a JSON object".into());
    };
    let mut fields = BTreeMap::new();
    let mut attributes = BTreeMap::new();
    let mut payload = None;
    for (k, v) in map {
        match (k.as_str(), v) {
            ("attributes", J::Object(a)) => {
                for (name, value) in a {
                    let J::String(s) = value else {
                        return Err(format!("attribute {name:?} is not a string"));
                    };
                    attributes.insert(name.clone(), s.clone());
                }
            }
            ("attributes", _) => return Err("attributes is not an object".into()),
            ("payload", J::String(s)) => payload = Some(s.as_bytes().to_vec()),
            ("payload", other) => payload = Some(other.to_string().into_bytes()),
            ("occurred_ms", J::Number(n)) => {
                fields.insert(k.clone(), n.to_string());
            }
            (_, J::String(s)) => {
                fields.insert(k.clone(), s.clone());
            }
            (_, _) => return Err(format!("event field {k} is not a string")),
        }
    }
    let mut event = event_of(&mut fields)?;
    event.attributes = attributes;
    event.validate().map_err(|e| e.to_string())?;
    Ok(Submission { event, payload })
}

/// An event checked against a log's keys.
#[derive(Clone, Debug)]
pub struct VerifiedEvent {
    /// Its index.
    pub index: u64,
    /// Its envelope.
    pub envelope: Envelope,
    /// Its payload, checked against the envelope's commitment.
    pub payload: Option<Vec<u8>>,
    /// The checkpoint it is included in.
    pub checkpoint: Checkpoint,
}

/// Why an event does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventVerifyError {
    /// The checkpoint is not the log's, or lacks its witnesses.
    #[error("the checkpoint: {0}")]
    Checkpoint(String),
    /// The entry is not an envelope.
    #[error("event {index}: its entry is not a quire-event/v1 envelope: {why}")]
    Envelope {
        /// The event.
        index: u64,
        /// Why.
        why: String,
    },
    /// The envelope is not in the tree.
    #[error("event {index}: not included in the checkpoint of size {size}: {why}")]
    Inclusion {
        /// The event.
        index: u64,
        /// The checkpoint's size.
        size: u64,
        /// Why.
        why: String,
    },
    /// The payload is not the one the envelope commits to.
    #[error("event {index}: {why}")]
    Payload {
        /// The event.
        index: u64,
        /// What does not match.
        why: String,
    },
}

/// Checks a `GetEvent` answer: the checkpoint against `trust`, the
/// envelope's inclusion in it, and the payload (if any) against the
/// envelope's commitment.
///
/// # Errors
/// [`EventVerifyError`] naming what does not hold.
pub fn verify_event(
    trust: &LogTrust,
    r: &quire_proto::v1::GetEventResponse,
) -> Result<VerifiedEvent, EventVerifyError> {
    let note =
        Note::parse(&r.checkpoint).map_err(|e| EventVerifyError::Checkpoint(e.to_string()))?;
    let (checkpoint, _) = trust
        .verify_note(&note)
        .map_err(|e| EventVerifyError::Checkpoint(e.to_string()))?;
    let index = r.index;
    let envelope = Envelope::decode(&r.envelope).map_err(|e| EventVerifyError::Envelope {
        index,
        why: e.to_string(),
    })?;
    let proof = quire_proto::hashes_from_wire(&r.inclusion_proof).map_err(|e| {
        EventVerifyError::Inclusion {
            index,
            size: checkpoint.size(),
            why: e.to_string(),
        }
    })?;
    verify_inclusion(
        &leaf_hash(&r.envelope),
        index,
        checkpoint.size(),
        &proof,
        checkpoint.root(),
    )
    .map_err(|e| EventVerifyError::Inclusion {
        index,
        size: checkpoint.size(),
        why: e.to_string(),
    })?;
    let payload = check_payload(index, &envelope, &r.payload, &r.salt)?;
    Ok(VerifiedEvent {
        index,
        envelope,
        payload,
        checkpoint,
    })
}

/// The payload of event `index` checked against `envelope`'s commitment
/// (none given: none, or erased, or not shown to this caller).
///
/// # Errors
/// [`EventVerifyError::Payload`] for a payload without a commitment, a
/// salt that is not 32 bytes, or a payload that is not the one committed.
pub fn check_payload(
    index: u64,
    envelope: &Envelope,
    payload: &[u8],
    salt: &[u8],
) -> Result<Option<Vec<u8>>, EventVerifyError> {
    if payload.is_empty() && salt.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| EventVerifyError::Payload {
        index,
        why: why.to_owned(),
    };
    let Some(c) = envelope.payload else {
        return Err(bad("a payload for an envelope that commits to none"));
    };
    let salt: [u8; SALT_LEN] = salt
        .try_into()
        .map_err(|_| bad("the payload's salt is not 32 bytes"))?;
    if payload_commitment(&salt, payload) != c {
        return Err(bad(
            "the payload is not the one its envelope commits to (SHA-256 of salt and payload differs)",
        ));
    }
    Ok(Some(payload.to_vec()))
}

/// What an erasure event says: who asked and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    /// Who asked (the submitter the log authenticated).
    pub by: String,
    /// Why.
    pub reason: String,
}

/// Checks that `erasure` (event `at`) is the erasure of event `index`'s
/// payload: type `quire.erasure`, `attributes.index` naming it (or, for
/// retention, `attributes.from` ≤ it < `attributes.to`), after it.
///
/// # Errors
/// [`EventVerifyError::Payload`] naming what does not hold: then the
/// payload is missing without a signed erasure, which is tampering.
pub fn check_erasure(index: u64, at: u64, erasure: &Envelope) -> Result<Erasure, EventVerifyError> {
    let bad = |why: String| EventVerifyError::Payload { index, why };
    if erasure.event.kind != "quire.erasure" {
        return Err(bad(format!(
            "its payload is said erased by event {at}, which is a {:?} event, not an erasure",
            erasure.event.kind
        )));
    }
    let attr = |name: &str| {
        erasure
            .event
            .attributes
            .get(name)
            .and_then(|v| v.parse::<u64>().ok())
    };
    // One event by request, or a range by retention.
    let names_it = attr("index") == Some(index)
        || matches!((attr("from"), attr("to")), (Some(f), Some(t)) if f <= index && index < t);
    if !names_it || at <= index {
        return Err(bad(format!(
            "its payload is said erased by event {at}, which erases another event"
        )));
    }
    Ok(Erasure {
        by: erasure.submitter.clone(),
        reason: erasure
            .event
            .attributes
            .get("reason")
            .cloned()
            .unwrap_or_default(),
    })
}

/// The leaf hash of each sealed event a log returned, with its envelope
/// decoded: what a writer keeps to prove later what it logged.
///
/// # Errors
/// [`EventVerifyError::Envelope`] for an entry that is not an envelope.
pub fn sealed(
    events: &[quire_proto::v1::SealedEvent],
) -> Result<Vec<(u64, Envelope, Hash)>, EventVerifyError> {
    events
        .iter()
        .map(|s| {
            let env = Envelope::decode(&s.envelope).map_err(|e| EventVerifyError::Envelope {
                index: s.index,
                why: e.to_string(),
            })?;
            Ok((s.index, env, leaf_hash(&s.envelope)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn words_and_json_make_the_same_submission() {
        let a = from_words(
            &words(&[
                "type=auth.login",
                "actor=alice",
                "action=login",
                "outcome=failure",
                "resource=db-1",
                "occurred_ms=5",
                "attr.method=password",
                "payload=@raw.json",
            ]),
            |f| {
                assert_eq!(f, "raw.json");
                Ok(b"{\"x\":1}".to_vec())
            },
        )
        .unwrap();
        let b = from_json(&serde_json::json!({
            "type": "auth.login", "actor": "alice", "action": "login",
            "outcome": "failure", "resource": "db-1", "occurred_ms": 5,
            "attributes": {"method": "password"}, "payload": {"x": 1}
        }))
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.event.outcome, Outcome::Failure);
    }

    #[test]
    fn bad_words_name_the_field() {
        let none = |_: &str| -> Result<Vec<u8>, String> { unreachable!() };
        for (w, want) in [
            (&["actor=a", "action=b"][..], "event field type is missing"),
            (
                &["type=t", "actor=a", "action=b", "colour=red"][..],
                "unknown event field \"colour\"",
            ),
            (
                &["type=t", "actor=a", "action=b", "outcome=maybe"][..],
                "event field outcome",
            ),
            (
                &["type=t", "actor=", "action=b"][..],
                "event field actor: must be 1 to 256 bytes, is 0",
            ),
            (
                &["type=t", "actor=a", "action=b", "occurred_ms=soon"][..],
                "occurred_ms",
            ),
            (
                &["type=t", "actor=a", "action=b", "type=u"][..],
                "field type is given twice",
            ),
            (&["type t"][..], "is not field=value"),
        ] {
            let e = from_words(&words(w), none).unwrap_err();
            assert!(e.contains(want), "{w:?}: {e}");
        }
        let e =
            from_json(&serde_json::json!({"type": 1, "actor": "a", "action": "b"})).unwrap_err();
        assert!(e.contains("event field type is not a string"), "{e}");
        assert!(from_json(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn an_erasure_must_name_the_event_it_erased() {
        let mut e = Event::new("quire.erasure", "admin", "erase");
        e.attributes.insert("index".into(), "4".into());
        let env = |event: Event| Envelope {
            log_time_ms: 1,
            submitter: "token:admin".into(),
            tenant: None,
            event,
            payload: None,
            prev: quire_core::event::Links::default(),
        };
        assert_eq!(
            check_erasure(4, 9, &env(e.clone())).unwrap().by,
            "token:admin"
        );
        assert!(check_erasure(5, 9, &env(e.clone())).is_err());
        assert!(
            check_erasure(4, 3, &env(e.clone())).is_err(),
            "an erasure comes after"
        );
        // Retention names a range.
        let mut r = Event::new("quire.erasure", "server", "retain");
        r.attributes.insert("from".into(), "0".into());
        r.attributes.insert("to".into(), "3".into());
        assert!(check_erasure(2, 9, &env(r.clone())).is_ok());
        assert!(check_erasure(3, 9, &env(r)).is_err());
        let mut other = e;
        other.kind = "auth.login".into();
        assert!(check_erasure(4, 9, &env(other)).is_err());
    }

    #[test]
    fn a_payload_must_be_the_committed_one() {
        let salt = [9u8; SALT_LEN];
        let env = Envelope {
            log_time_ms: 1,
            submitter: "anonymous".into(),
            tenant: None,
            event: Event::new("t", "a", "b"),
            payload: Some(payload_commitment(&salt, b"p")),
            prev: quire_core::event::Links::default(),
        };
        assert_eq!(
            check_payload(0, &env, b"p", &salt).unwrap(),
            Some(b"p".to_vec())
        );
        assert!(check_payload(0, &env, b"q", &salt).is_err());
        assert!(check_payload(0, &env, b"p", &[9u8; 31]).is_err());
        assert_eq!(check_payload(0, &env, b"", b"").unwrap(), None);
        let bare = Envelope {
            payload: None,
            ..env
        };
        assert!(check_payload(0, &bare, b"p", &salt).is_err());
    }
}
