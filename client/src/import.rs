//! Audit records that teams already produce, mapped to Quire events
//! (`docs/EVENTS.md` §10): Kubernetes API server audit events
//! (`audit.k8s.io/v1` `Event`, the log backend's JSON lines), AWS
//! `CloudTrail` records (a log file's `Records`, or one record a line) and
//! OCSF API Activity events (class 6003). Each record becomes one event
//! whose payload is the record itself, byte for byte as read, so that the
//! original stays provable and erasable.

use std::collections::BTreeMap;

use quire_core::event::{Event, Outcome, MAX_ATTRIBUTES};
use serde_json::Value;

use crate::events::Submission;

/// The formats `quire event import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Kubernetes audit events, one JSON object a line.
    K8s,
    /// AWS `CloudTrail` records: a log file (`{"Records": [...]}`) or one
    /// record a line.
    CloudTrail,
    /// OCSF API Activity events (class 6003), one JSON object a line.
    Ocsf,
}

impl Format {
    /// The format named `s` (`k8s`, `cloudtrail`, `ocsf`).
    ///
    /// # Errors
    /// Any other name, with the names.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "k8s" | "kubernetes" => Ok(Format::K8s),
            "cloudtrail" => Ok(Format::CloudTrail),
            "ocsf" => Ok(Format::Ocsf),
            _ => Err(format!("unknown format {s:?}: k8s, cloudtrail or ocsf")),
        }
    }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = v;
    for p in path {
        at = at.get(*p)?;
    }
    at.as_str().filter(|s| !s.is_empty())
}

fn number(v: &Value, path: &[&str]) -> Option<i64> {
    let mut at = v;
    for p in path {
        at = at.get(*p)?;
    }
    at.as_i64()
}

/// Unix milliseconds of an RFC 3339 time.
fn rfc3339_ms(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A text cut to `max` bytes at a character boundary (fields have limits;
/// the payload keeps the whole).
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Control characters replaced, so that an identifier keeps its rule.
fn plain(s: &str, max: usize) -> String {
    cut(&s.replace(char::is_control, " "), max)
}

fn attributes(pairs: &[(&str, Option<String>)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| ((*k).to_owned(), cut(v, 4096))))
        .take(MAX_ATTRIBUTES)
        .collect()
}

/// The event of a Kubernetes audit event.
///
/// # Errors
/// Not an `audit.k8s.io` `Event`, or one without a user or verb.
pub fn from_k8s(v: &Value, raw: &[u8]) -> Result<Submission, String> {
    if text(v, &["kind"]) != Some("Event")
        || !text(v, &["apiVersion"]).is_some_and(|a| a.starts_with("audit.k8s.io/"))
    {
        return Err("not a Kubernetes audit event (kind Event, apiVersion audit.k8s.io/…)".into());
    }
    // An impersonated request is the impersonated user's act, done by the
    // user who impersonated: both are kept.
    let user = text(v, &["user", "username"]).ok_or("user.username is missing")?;
    let actor = text(v, &["impersonatedUser", "username"]).unwrap_or(user);
    let verb = text(v, &["verb"]).ok_or("verb is missing")?;
    let resource = match (
        text(v, &["objectRef", "namespace"]),
        text(v, &["objectRef", "resource"]),
        text(v, &["objectRef", "name"]),
    ) {
        (Some(ns), Some(r), Some(n)) => Some(format!("namespaces/{ns}/{r}/{n}")),
        (Some(ns), Some(r), None) => Some(format!("namespaces/{ns}/{r}")),
        (None, Some(r), Some(n)) => Some(format!("{r}/{n}")),
        (None, Some(r), None) => Some(r.to_owned()),
        _ => text(v, &["requestURI"]).map(str::to_owned),
    };
    let code = number(v, &["responseStatus", "code"]);
    let mut event = Event::new("k8s.audit", &plain(actor, 256), &plain(verb, 128));
    event.resource = resource.map(|r| plain(&r, 1024));
    event.outcome = match code {
        Some(c) if c < 400 => Outcome::Success,
        Some(_) => Outcome::Failure,
        None => Outcome::Unknown,
    };
    event.source = v
        .get("sourceIPs")
        .and_then(|s| s.get(0))
        .and_then(Value::as_str)
        .map(|s| plain(s, 256));
    event.occurred_ms = text(v, &["requestReceivedTimestamp"]).and_then(rfc3339_ms);
    event.attributes = attributes(&[
        ("auditID", text(v, &["auditID"]).map(str::to_owned)),
        ("stage", text(v, &["stage"]).map(str::to_owned)),
        ("level", text(v, &["level"]).map(str::to_owned)),
        ("code", code.map(|c| c.to_string())),
        ("userAgent", text(v, &["userAgent"]).map(str::to_owned)),
        (
            "subresource",
            text(v, &["objectRef", "subresource"]).map(str::to_owned),
        ),
        (
            "apiGroup",
            text(v, &["objectRef", "apiGroup"]).map(str::to_owned),
        ),
        ("impersonatedBy", (actor != user).then(|| user.to_owned())),
        (
            "decision",
            text(v, &["annotations", "authorization.k8s.io/decision"]).map(str::to_owned),
        ),
    ]);
    event.validate().map_err(|e| e.to_string())?;
    Ok(Submission {
        event,
        payload: Some(raw.to_vec()),
    })
}

/// The event of a `CloudTrail` record.
///
/// # Errors
/// A record without an event name, source or identity.
pub fn from_cloudtrail(v: &Value, raw: &[u8]) -> Result<Submission, String> {
    let name = text(v, &["eventName"]).ok_or("eventName is missing")?;
    let source = text(v, &["eventSource"]).ok_or("eventSource is missing")?;
    let actor = text(v, &["userIdentity", "arn"])
        .or_else(|| text(v, &["userIdentity", "principalId"]))
        .or_else(|| text(v, &["userIdentity", "invokedBy"]))
        .or_else(|| text(v, &["userIdentity", "type"]))
        .ok_or("userIdentity names no one (arn, principalId, invokedBy or type)")?;
    let resource = v
        .get("resources")
        .and_then(|r| r.get(0))
        .and_then(|r| text(r, &["ARN"]).or_else(|| text(r, &["arn"])))
        .map(str::to_owned);
    let error = text(v, &["errorCode"]);
    let mut event = Event::new(
        "aws.cloudtrail",
        &plain(actor, 256),
        &plain(&format!("{source}:{name}"), 128),
    );
    event.resource = resource.map(|r| plain(&r, 1024));
    event.outcome = if error.is_some() {
        Outcome::Failure
    } else {
        Outcome::Success
    };
    event.source = text(v, &["sourceIPAddress"]).map(|s| plain(s, 256));
    event.occurred_ms = text(v, &["eventTime"]).and_then(rfc3339_ms);
    event.attributes = attributes(&[
        ("eventID", text(v, &["eventID"]).map(str::to_owned)),
        ("awsRegion", text(v, &["awsRegion"]).map(str::to_owned)),
        (
            "recipientAccountId",
            text(v, &["recipientAccountId"]).map(str::to_owned),
        ),
        ("eventType", text(v, &["eventType"]).map(str::to_owned)),
        ("userAgent", text(v, &["userAgent"]).map(str::to_owned)),
        ("errorCode", error.map(str::to_owned)),
        (
            "errorMessage",
            text(v, &["errorMessage"]).map(str::to_owned),
        ),
    ]);
    event.validate().map_err(|e| e.to_string())?;
    Ok(Submission {
        event,
        payload: Some(raw.to_vec()),
    })
}

/// The event of an OCSF API Activity event.
///
/// # Errors
/// Another OCSF class, or one without an actor or operation.
pub fn from_ocsf(v: &Value, raw: &[u8]) -> Result<Submission, String> {
    if number(v, &["class_uid"]) != Some(6003) {
        return Err(format!(
            "OCSF class_uid {}: only API Activity (6003) is read",
            number(v, &["class_uid"]).map_or_else(|| "missing".to_owned(), |c| c.to_string())
        ));
    }
    let actor = text(v, &["actor", "user", "name"])
        .or_else(|| text(v, &["actor", "user", "uid"]))
        .ok_or("actor.user names no one (name or uid)")?;
    let operation = text(v, &["api", "operation"]).ok_or("api.operation is missing")?;
    let resource = v
        .get("resources")
        .and_then(|r| r.get(0))
        .and_then(|r| text(r, &["uid"]).or_else(|| text(r, &["name"])))
        .or_else(|| text(v, &["api", "service", "name"]))
        .map(str::to_owned);
    let mut event = Event::new(
        "ocsf.api_activity",
        &plain(actor, 256),
        &plain(operation, 128),
    );
    event.resource = resource.map(|r| plain(&r, 1024));
    event.outcome = match number(v, &["status_id"]) {
        Some(1) => Outcome::Success,
        Some(2) => Outcome::Failure,
        _ => Outcome::Unknown,
    };
    event.source = text(v, &["src_endpoint", "ip"]).map(|s| plain(s, 256));
    event.occurred_ms = number(v, &["time"]).and_then(|t| u64::try_from(t).ok());
    event.attributes = attributes(&[
        (
            "activity_id",
            number(v, &["activity_id"]).map(|n| n.to_string()),
        ),
        (
            "severity_id",
            number(v, &["severity_id"]).map(|n| n.to_string()),
        ),
        (
            "metadata.uid",
            text(v, &["metadata", "uid"]).map(str::to_owned),
        ),
        (
            "metadata.product",
            text(v, &["metadata", "product", "name"]).map(str::to_owned),
        ),
        (
            "cloud.provider",
            text(v, &["cloud", "provider"]).map(str::to_owned),
        ),
        (
            "api.service",
            text(v, &["api", "service", "name"]).map(str::to_owned),
        ),
        ("status", text(v, &["status"]).map(str::to_owned)),
    ]);
    event.validate().map_err(|e| e.to_string())?;
    Ok(Submission {
        event,
        payload: Some(raw.to_vec()),
    })
}

/// The events of one line (or one file) of `format`: a `CloudTrail` log
/// file's `Records` give one event each, with the record's own JSON as
/// its payload.
///
/// # Errors
/// Not JSON, or a record that cannot be mapped, naming why.
pub fn events(format: Format, bytes: &[u8]) -> Result<Vec<Submission>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match format {
        Format::K8s => Ok(vec![from_k8s(&v, bytes)?]),
        Format::Ocsf => Ok(vec![from_ocsf(&v, bytes)?]),
        Format::CloudTrail => match v.get("Records").and_then(Value::as_array) {
            Some(records) => records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    from_cloudtrail(r, r.to_string().as_bytes())
                        .map_err(|e| format!("record {i}: {e}"))
                })
                .collect(),
            None => Ok(vec![from_cloudtrail(&v, bytes)?]),
        },
    }
}
