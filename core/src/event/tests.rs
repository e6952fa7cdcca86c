use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::Hash;

fn sample() -> Envelope {
    let mut event = Event::new("auth.login", "alice@example.com", "login");
    event.resource = Some("host/db-1".into());
    event.outcome = Outcome::Failure;
    event.source = Some("203.0.113.7".into());
    event.occurred_ms = Some(1_764_806_400_000);
    event.attributes = BTreeMap::from([
        ("method".to_owned(), "password".to_owned()),
        ("reason".to_owned(), "bad \"password\"\n".to_owned()),
    ]);
    let mut prev = Links::default();
    prev.0.insert(KeyField::Actor, 41);
    prev.0.insert(KeyField::Type, 7);
    Envelope {
        log_time_ms: 1_764_806_400_123,
        submitter: "token:ingest".into(),
        tenant: Some("acme".into()),
        event,
        payload: Some(payload_commitment(&[7; SALT_LEN], b"{\"raw\":1}")),
        prev,
    }
}

#[test]
fn an_envelope_decodes_to_itself() {
    let env = sample();
    let bytes = env.encode().unwrap();
    assert_eq!(Envelope::decode(&bytes).unwrap(), env);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("{\"action\":\"login\",\"actor\":\"alice@example.com\",\"attributes\":{\"method\":\"password\",\"reason\":\"bad \\\"password\\\"\\n\"},\"log_time_ms\":1764806400123,"), "{text}");
    assert!(text.ends_with(",\"prev\":{\"actor\":41,\"type\":7},\"resource\":\"host/db-1\",\"source\":\"203.0.113.7\",\"submitter\":\"token:ingest\",\"tenant\":\"acme\",\"type\":\"auth.login\",\"v\":\"quire-event/v1\"}"), "{text}");
    // The least an envelope holds.
    let bare = Envelope {
        log_time_ms: 0,
        submitter: "anonymous".into(),
        tenant: None,
        event: Event::new("t", "a", "b"),
        payload: None,
        prev: Links::default(),
    };
    let b = bare.encode().unwrap();
    assert_eq!(
        b,
        b"{\"action\":\"b\",\"actor\":\"a\",\"log_time_ms\":0,\"outcome\":\"unknown\",\"submitter\":\"anonymous\",\"type\":\"t\",\"v\":\"quire-event/v1\"}"
    );
    assert_eq!(Envelope::decode(&b).unwrap(), bare);
}

#[test]
fn each_rule_names_its_field() {
    type Breaks = Box<dyn Fn(&mut Event)>;
    let cases: Vec<(Breaks, &str)> = vec![
        (Box::new(|e| e.kind = String::new()), "type"),
        (Box::new(|e| e.kind = "a b".into()), "type"),
        (Box::new(|e| e.kind = "x".repeat(129)), "type"),
        (Box::new(|e| e.actor = String::new()), "actor"),
        (Box::new(|e| e.actor = "a\u{0}".into()), "actor"),
        (Box::new(|e| e.action = "y".repeat(129)), "action"),
        (Box::new(|e| e.resource = Some(String::new())), "resource"),
        (Box::new(|e| e.source = Some("s\n".into())), "source"),
        (Box::new(|e| e.occurred_ms = Some(1 << 53)), "occurred_ms"),
        (
            Box::new(|e| {
                e.attributes = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
            }),
            "attributes",
        ),
        (
            Box::new(|e| {
                e.attributes.insert("big".into(), "v".repeat(4097));
            }),
            "attributes.big",
        ),
    ];
    for (break_it, field) in cases {
        let mut e = sample().event;
        break_it(&mut e);
        let err = e.validate().unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("event field {field}: ")));
    }
    assert_eq!(Outcome::parse("ok").unwrap_err().field, "outcome");
}

#[test]
fn malformed_envelopes_are_refused_by_name() {
    let good = String::from_utf8(sample().encode().unwrap()).unwrap();
    let cases = [
        (
            good.replace("\"v\":\"quire-event/v1\"", "\"v\":\"quire-event/v2\""),
            "quire-event/v2",
        ),
        (
            good.replace(
                "\"tenant\":\"acme\",",
                "\"tenant\":\"acme\",\"tenat\":\"x\",",
            ),
            "unknown field `tenat`",
        ),
        (
            good.replace("\"submitter\":\"token:ingest\",", ""),
            "missing field `submitter`",
        ),
        (
            good.replace("\"outcome\":\"failure\"", "\"outcome\":\"fail\""),
            "outcome",
        ),
        (
            good.replace("\"log_time_ms\":1764806400123", "\"log_time_ms\":\"1\""),
            "expected u64",
        ),
        (good.replace("\"actor\":41", "\"actro\":41"), "prev.actro"),
        (
            good.replace("\"prev\":{\"actor\":41,\"type\":7}", "\"prev\":{}"),
            "prev is not an object",
        ),
        (
            good.replace(
                "\"attributes\":{\"method\":\"password\",\"reason\":\"bad \\\"password\\\"\\n\"}",
                "\"attributes\":{}",
            ),
            "attributes is not an object",
        ),
        (
            good.replace("\"type\":\"auth.login\"", "\"type\":\"auth login\""),
            "event field type",
        ),
    ];
    for (bytes, words) in cases {
        let err = Envelope::decode(bytes.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(words), "{words}: {err}");
    }
    let hex = sample().payload.unwrap().to_hex();
    let upper = good.replace(&hex, &hex.to_uppercase());
    assert!(Envelope::decode(upper.as_bytes()).is_err());
    // A link of a field the event lacks.
    let mut e = sample();
    e.event.resource = None;
    e.prev.0.insert(KeyField::Resource, 3);
    assert!(e.encode().unwrap_err().to_string().contains("resource"));
    // Whitespace or another order is another byte string: refused.
    let spaced = good.replacen(':', ": ", 1);
    assert!(Envelope::decode(spaced.as_bytes()).is_err());
    assert!(matches!(
        Envelope::decode(&vec![b' '; MAX_ENVELOPE + 1]),
        Err(EnvelopeError::TooLong(_))
    ));
}

#[test]
fn keys_and_commitments_are_the_specified_hashes() {
    use sha2::{Digest, Sha256};
    let k = key(KeyField::Actor, "alice");
    let want: [u8; 32] = Sha256::digest(b"quire-event-key/v1\nactor\nalice").into();
    assert_eq!(k, Hash(want));
    assert_ne!(key(KeyField::Action, "alice"), k);
    let c = payload_commitment(&[1; SALT_LEN], b"p");
    let mut input = vec![1u8; SALT_LEN];
    input.push(b'p');
    let want: [u8; 32] = Sha256::digest(&input).into();
    assert_eq!(c, Hash(want));
    // An event's keys: one per keyed field it has, in the order of
    // `KeyField::ALL` (that of the names).
    let mut e = Event::new("auth.login", "alice", "login");
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        vec![
            (KeyField::Action, key(KeyField::Action, "login")),
            (KeyField::Actor, k),
            (KeyField::Type, key(KeyField::Type, "auth.login")),
        ]
    );
    e.resource = Some("doc/1".into());
    assert_eq!(e.keys().count(), 4);
    assert!(e
        .keys()
        .any(|(f, h)| f == KeyField::Resource && h == key(f, "doc/1")));
}

/// The vectors of `docs/events/vectors.json`, made by another
/// implementation (Python's json and hashlib, `docs/events/vectors.py`).
#[test]
fn the_published_vectors_hold() {
    let text = include_str!("../../../docs/events/vectors.json");
    let vectors: serde_json::Value = serde_json::from_str(text).unwrap();
    let vectors = vectors.as_array().unwrap();
    assert!(vectors.len() >= 5);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let canonical = v["canonical"].as_str().unwrap().as_bytes();
        let env = Envelope::decode(canonical).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(env.encode().unwrap(), canonical, "{name}");
        let leaf = crate::leaf_hash(canonical).to_hex();
        assert_eq!(leaf, v["leaf_hash"].as_str().unwrap(), "{name}");
        // The envelope as written in the vector (any member order) is the
        // same value.
        let value = canonical::from_json(&v["envelope"], 0).unwrap();
        assert_eq!(canonical::encode(&value).unwrap(), canonical, "{name}");
        if let Some(salt) = v.get("salt_hex") {
            let salt: [u8; SALT_LEN] = hex_bytes(salt.as_str().unwrap()).try_into().unwrap();
            let payload = v["payload"].as_str().unwrap().as_bytes();
            assert_eq!(
                env.payload,
                Some(payload_commitment(&salt, payload)),
                "{name}"
            );
        }
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn text(max: usize) -> impl Strategy<Value = String> {
    // Any scalar values but controls: astral characters, U+E000 and up,
    // quotes and backslashes included, so that ordering and escaping are
    // both exercised.
    proptest::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\\'),
            Just('\u{ff5e}'),
            Just('\u{1f600}'),
            Just('\u{e000}'),
            Just('/'),
            proptest::char::range('a', 'z'),
            any::<char>().prop_filter("no controls", |c| !c.is_control()),
        ],
        1..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn attribute_value() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..24).prop_map(|v| v.into_iter().collect())
}

prop_compose! {
    fn envelopes()(
        kind in "[a-z][a-z0-9._:/-]{0,20}",
        actor in text(24),
        action in text(12),
        resource in proptest::option::of(text(24)),
        outcome in prop_oneof![Just(Outcome::Success), Just(Outcome::Failure), Just(Outcome::Unknown)],
        source in proptest::option::of(text(12)),
        occurred_ms in proptest::option::of(0..=canonical::MAX_INT),
        attributes in proptest::collection::btree_map(text(12), attribute_value(), 0..6),
        log_time_ms in 0..=canonical::MAX_INT,
        submitter in text(24),
        tenant in proptest::option::of(text(12)),
        payload in proptest::option::of(any::<[u8; 32]>()),
        links in proptest::collection::btree_map(0usize..4, 0..=canonical::MAX_INT, 0..4),
    ) -> Envelope {
        let mut prev = Links::default();
        for (f, i) in links {
            let f = KeyField::ALL[f];
            if f != KeyField::Resource || resource.is_some() {
                prev.0.insert(f, i);
            }
        }
        Envelope {
            log_time_ms,
            submitter,
            tenant,
            event: Event { kind, actor, action, resource, outcome, source, occurred_ms, attributes },
            payload: payload.map(Hash),
            prev,
        }
    }
}

/// The same envelope built as plain JSON, without this module's encoder.
fn as_json(e: &Envelope) -> serde_json::Value {
    use serde_json::json;
    let mut m = serde_json::Map::new();
    m.insert("v".into(), json!("quire-event/v1"));
    m.insert("log_time_ms".into(), json!(e.log_time_ms));
    m.insert("submitter".into(), json!(e.submitter));
    m.insert("type".into(), json!(e.event.kind));
    m.insert("actor".into(), json!(e.event.actor));
    m.insert("action".into(), json!(e.event.action));
    m.insert("outcome".into(), json!(e.event.outcome.as_str()));
    if let Some(t) = &e.tenant {
        m.insert("tenant".into(), json!(t));
    }
    if let Some(r) = &e.event.resource {
        m.insert("resource".into(), json!(r));
    }
    if let Some(s) = &e.event.source {
        m.insert("source".into(), json!(s));
    }
    if let Some(t) = e.event.occurred_ms {
        m.insert("occurred_ms".into(), json!(t));
    }
    if !e.event.attributes.is_empty() {
        m.insert("attributes".into(), json!(e.event.attributes));
    }
    if let Some(p) = &e.payload {
        m.insert("payload_sha256".into(), json!(p.to_hex()));
    }
    if !e.prev.0.is_empty() {
        let links: serde_json::Map<String, serde_json::Value> = e
            .prev
            .0
            .iter()
            .map(|(f, i)| (f.name().to_owned(), json!(i)))
            .collect();
        m.insert("prev".into(), serde_json::Value::Object(links));
    }
    serde_json::Value::Object(m)
}

proptest! {
    /// Cross-checked against an independent RFC 8785 implementation
    /// (the `serde_json_canonicalizer` crate).
    #[test]
    fn the_encoding_is_rfc_8785_as_another_implementation_writes_it(e in envelopes()) {
        let ours = e.encode().unwrap();
        let theirs = serde_json_canonicalizer::to_vec(&as_json(&e)).unwrap();
        prop_assert_eq!(&ours, &theirs);
        // The fast writer agrees with the general encoder too.
        prop_assert_eq!(&ours, &canonical::encode(&e.to_value()).unwrap());
        prop_assert_eq!(Envelope::decode(&ours).unwrap(), e);
    }
}

proptest! {
    /// A template sealed with the log time and links gives the bytes and
    /// the leaf hash of the whole envelope's encoding, and says their
    /// length before writing them.
    #[test]
    fn a_sealed_template_is_the_envelope_byte_for_byte(e in envelopes(), other_time in 0..=canonical::MAX_INT) {
        let ours = e.encode().unwrap();
        let mut bare = e.clone();
        bare.log_time_ms = other_time;
        bare.prev = Links::default();
        let t = bare.template().unwrap();
        prop_assert_eq!(t.sealed_len(e.log_time_ms, &e.prev), ours.len());
        let (bytes, leaf) = t.seal(e.log_time_ms, &e.prev).unwrap();
        prop_assert_eq!(&bytes, &ours);
        prop_assert_eq!(leaf, crate::leaf_hash(&ours));
        // Sealed again, other numbers: the template is not used up.
        let (again, _) = t.seal(other_time, &Links::default()).unwrap();
        prop_assert_eq!(again, bare.encode().unwrap());
    }
}

#[test]
fn a_template_refuses_what_encode_refuses() {
    let mut e = Envelope {
        log_time_ms: 0,
        submitter: "alice".into(),
        tenant: None,
        event: Event::new("login", "alice", "login"),
        payload: None,
        prev: Links::default(),
    };
    let t = e.template().unwrap();
    let mut resource_link = Links::default();
    resource_link.0.insert(KeyField::Resource, 3);
    let err = t.seal(5, &resource_link).unwrap_err();
    assert!(
        err.to_string().contains("a link of resource (to 3)"),
        "{err}"
    );
    let too_big = canonical::MAX_INT + 1;
    assert!(t
        .seal(too_big, &Links::default())
        .unwrap_err()
        .to_string()
        .contains("log_time_ms"));
    let mut big_link = Links::default();
    big_link.0.insert(KeyField::Actor, too_big);
    assert!(t
        .seal(1, &big_link)
        .unwrap_err()
        .to_string()
        .contains("above 2^53 - 1"));
    // An envelope one byte over the limit once its numbers are in.
    for i in 0..16 {
        e.event
            .attributes
            .insert(format!("a{i:02}"), "y".repeat(4000));
    }
    let t = e.template().unwrap();
    // The last attribute adds its name, quotes, colon and comma: 8 bytes.
    let fill = MAX_ENVELOPE + 1 - t.sealed_len(1, &Links::default()) - 8;
    e.event.attributes.insert("zz".into(), "y".repeat(fill));
    let t = e.template().unwrap();
    assert_eq!(t.sealed_len(1, &Links::default()), MAX_ENVELOPE + 1);
    assert!(
        matches!(t.seal(1, &Links::default()), Err(EnvelopeError::TooLong(n)) if n == MAX_ENVELOPE + 1)
    );
    // The rules of the fixed members are checked when the template is made.
    e.submitter = String::new();
    assert!(e.template().is_err());
    assert!(e.encode().is_err());
}
