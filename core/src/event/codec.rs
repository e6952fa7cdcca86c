//! The envelope's bytes, fast: written member by member in RFC 8785 order
//! (the envelope's member names are ASCII, fixed and known, so their order
//! is fixed; only attribute names are sorted, by UTF-16 code units), and
//! read into a typed form, then written again and compared, so that only
//! canonical bytes are taken. The general encoder of [`super::canonical`]
//! is the reference it is tested against.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use super::canonical::write_str;
use super::envelope::{Envelope, EnvelopeError, Event, KeyField, Links, Outcome, VERSION};
use crate::Hash;

fn member(out: &mut String, first: &mut bool, name: &str) {
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

/// Writes `e`'s canonical JSON to `out` (the caller checked its rules).
pub(super) fn write(e: &Envelope, out: &mut String) {
    write_head(&e.event, out);
    write_int(out, e.log_time_ms);
    write_middle(e, out);
    write_prev(&e.prev, out);
    write_tail(e, out);
}

/// The members before the log time's value: `{"action":…,"actor":…,
/// ["attributes":{…},]"log_time_ms":`. Every member after it follows a
/// comma, as the envelope always has these.
pub(super) fn write_head(ev: &Event, out: &mut String) {
    let mut first = true;
    out.push('{');
    member(out, &mut first, "action");
    write_str(out, &ev.action);
    member(out, &mut first, "actor");
    write_str(out, &ev.actor);
    if !ev.attributes.is_empty() {
        member(out, &mut first, "attributes");
        let mut names: Vec<(&String, &String)> = ev.attributes.iter().collect();
        // A BTreeMap orders by UTF-8 bytes; RFC 8785 by UTF-16 code
        // units, which differ only past U+D7FF.
        if names.iter().any(|(k, _)| k.chars().any(|c| c > '\u{d7ff}')) {
            names.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        }
        out.push('{');
        for (i, (k, v)) in names.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            write_str(out, v);
        }
        out.push('}');
    }
    member(out, &mut first, "log_time_ms");
}

/// A number as RFC 8785 writes an integer.
pub(super) fn write_int(out: &mut String, n: u64) {
    let _ = write!(out, "{n}");
}

/// The members between the log time and the links: `occurred_ms`,
/// `outcome`, `payload_sha256`.
pub(super) fn write_middle(e: &Envelope, out: &mut String) {
    let ev = &e.event;
    let mut first = false;
    if let Some(t) = ev.occurred_ms {
        member(out, &mut first, "occurred_ms");
        write_int(out, t);
    }
    member(out, &mut first, "outcome");
    write_str(out, ev.outcome.as_str());
    if let Some(p) = &e.payload {
        member(out, &mut first, "payload_sha256");
        out.push('"');
        out.push_str(&p.to_hex());
        out.push('"');
    }
}

/// The member `prev`, when there are links.
pub(super) fn write_prev(prev: &Links, out: &mut String) {
    if prev.0.is_empty() {
        return;
    }
    let mut first = false;
    member(out, &mut first, "prev");
    out.push('{');
    let mut first_link = true;
    // KeyField::ALL is in the order of the names.
    for f in KeyField::ALL {
        if let Some(i) = prev.get(f) {
            member(out, &mut first_link, f.name());
            write_int(out, i);
        }
    }
    out.push('}');
}

/// The members after the links, to the closing brace.
pub(super) fn write_tail(e: &Envelope, out: &mut String) {
    let ev = &e.event;
    let mut first = false;
    for (name, v) in [("resource", &ev.resource), ("source", &ev.source)] {
        if let Some(v) = v {
            member(out, &mut first, name);
            write_str(out, v);
        }
    }
    member(out, &mut first, "submitter");
    write_str(out, &e.submitter);
    if let Some(t) = &e.tenant {
        member(out, &mut first, "tenant");
        write_str(out, t);
    }
    member(out, &mut first, "type");
    write_str(out, &ev.kind);
    member(out, &mut first, "v");
    write_str(out, VERSION);
    out.push('}');
}

/// The envelope as JSON gives it, before its rules are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    v: Cow<'a, str>,
    log_time_ms: u64,
    #[serde(borrow)]
    submitter: Cow<'a, str>,
    #[serde(borrow, default)]
    tenant: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    actor: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow, default)]
    resource: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow, default)]
    source: Option<Cow<'a, str>>,
    #[serde(default)]
    occurred_ms: Option<u64>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
    #[serde(borrow, default)]
    payload_sha256: Option<Cow<'a, str>>,
    #[serde(default)]
    prev: Option<BTreeMap<Cow<'a, str>, u64>>,
}

/// The envelope of `b`, its fields as given (its rules and canonical form
/// are checked by the caller).
pub(super) fn read(b: &[u8]) -> Result<Envelope, EnvelopeError> {
    let w: Wire<'_> = serde_json::from_slice(b).map_err(|e| EnvelopeError::Shape(e.to_string()))?;
    if w.v != VERSION {
        return Err(EnvelopeError::Shape(format!(
            "v is {:?}, not {VERSION:?}",
            w.v
        )));
    }
    let payload = w
        .payload_sha256
        .map(|h| {
            Hash::from_hex(&h)
                .filter(|_| !h.bytes().any(|c| c.is_ascii_uppercase()))
                .ok_or_else(|| {
                    EnvelopeError::Shape("payload_sha256 is not 64 lowercase hex digits".into())
                })
        })
        .transpose()?;
    let mut prev = Links::default();
    if let Some(links) = w.prev {
        if links.is_empty() {
            return Err(EnvelopeError::Shape(
                "prev is not an object of links with at least one member".into(),
            ));
        }
        for (k, i) in links {
            let f = KeyField::parse(&k).ok_or_else(|| {
                EnvelopeError::Shape(format!(
                    "prev.{k} is not a link of a keyed field to an index"
                ))
            })?;
            prev.0.insert(f, i);
        }
    }
    let attributes = match w.attributes {
        Some(a) if a.is_empty() => {
            return Err(EnvelopeError::Shape(
                "attributes is not an object of strings with at least one member".into(),
            ))
        }
        a => a.unwrap_or_default(),
    };
    Ok(Envelope {
        log_time_ms: w.log_time_ms,
        submitter: w.submitter.into_owned(),
        tenant: w.tenant.map(Cow::into_owned),
        event: Event {
            kind: w.kind.into_owned(),
            actor: w.actor.into_owned(),
            action: w.action.into_owned(),
            resource: w.resource.map(Cow::into_owned),
            outcome: Outcome::parse(&w.outcome)?,
            source: w.source.map(Cow::into_owned),
            occurred_ms: w.occurred_ms,
            attributes,
        },
        payload,
        prev,
    })
}
