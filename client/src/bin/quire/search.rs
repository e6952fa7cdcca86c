//! `quire search`: the events of a log-time range, each proven in the
//! log's tree and the answer proven complete (`docs/EVENTS.md` §8).

use quire_client::rpc::{EventsRpc, LogRpc};
use quire_client::search::TimeRangeCheck;
use quire_core::event::Envelope;
use tokio_stream::StreamExt as _;

use crate::{endpoint, print, trust_of, Failure, Net, Trust};

/// A time as `quire search` takes it: Unix milliseconds, RFC 3339
/// (`2026-12-04T10:00:00Z`), or a time before now (`-90s`, `-15m`, `-2h`,
/// `-7d`).
pub(crate) fn parse_time(s: &str, now_ms: u64) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    if let Some(ago) = s.strip_prefix('-') {
        let (n, unit) = ago.split_at(ago.len().saturating_sub(1));
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{s:?}: a time before now is -N followed by s, m, h or d"))?;
        let ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
        };
        return Ok(now_ms.saturating_sub(n.saturating_mul(ms)));
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!("{s:?} is not Unix milliseconds, an RFC 3339 time or -N[smhd]: {e}")
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("{s:?} is before 1970"))
}

/// `ms` as RFC 3339, UTC.
pub(crate) fn rfc3339(ms: u64) -> String {
    i128::from(ms)
        .checked_mul(1_000_000)
        .and_then(|n| time::OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) async fn search(
    json: bool,
    key: &crate::keyed::KeyArgs,
    before: Option<u64>,
    (from, to): (Option<String>, Option<String>),
    limit: u32,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let now = now_ms();
    let from_ms = match &from {
        Some(s) => parse_time(s, now).map_err(|e| Failure::Input(format!("--from {e}")))?,
        None => 0,
    };
    let to_ms = match &to {
        Some(s) => parse_time(s, now).map_err(|e| Failure::Input(format!("--to {e}")))?,
        None => 0,
    };
    if trust.log_keys.is_empty() {
        return Err(Failure::Input(
            "give the log's verifier key with --log-key: a search proves it is complete only against the log's key".into(),
        ));
    }
    if let Some((field, value)) = key.key() {
        let q = crate::keyed::KeySearch {
            field,
            value,
            before,
            from_ms,
            to_ms,
            limit,
        };
        return crate::keyed::search_key(json, &q, net, trust).await;
    }
    let origin = trust.origin.clone().unwrap_or_default();
    let mut rpc = EventsRpc::connect(&endpoint(net)).await?;
    let mut pages = rpc.search(&origin, from_ms, to_ms, limit).await?;
    let mut log = LogRpc::connect(&endpoint(net)).await?;
    let t = trust_of(trust, log.default_origin(&origin).await?.as_deref())?;
    let mut check = TimeRangeCheck::new(&t, from_ms, to_ms);
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|s| Failure::Unreachable(format!("SearchEvents: {}", s.message())))?;
        check
            .page(&page)
            .map_err(|e| Failure::Verify(e.to_string()))?;
    }
    // With no page, the log must show it is empty.
    let empty = if check.answered() {
        None
    } else {
        match log.checkpoint(&t.origin).await {
            Ok(bytes) => quire_core::Note::parse(&bytes)
                .ok()
                .and_then(|n| t.verify_note(&n).ok())
                .map(|(cp, _)| cp),
            Err(_) => None,
        }
    };
    let answer = check
        .finish(empty)
        .map_err(|e| Failure::Verify(e.to_string()))?;
    for (index, env) in &answer.events {
        print(json, &line(*index, env), &event_json(*index, env));
    }
    let range = format!(
        "[{}, {})",
        if from.is_some() {
            rfc3339(from_ms)
        } else {
            "the start".into()
        },
        if to.is_some() {
            rfc3339(to_ms)
        } else {
            "the checkpoint".into()
        },
    );
    let size = answer.checkpoint.size();
    let summary = match answer.more_from {
        None => format!(
            "{} events logged in {range}: complete, proven against the log's checkpoint of size {size}",
            answer.events.len()
        ),
        Some(i) => format!(
            "the first {} events logged in {range}, proven against the log's checkpoint of size {size}; more from index {i} (raise --limit, or search from the last one's time)",
            answer.events.len()
        ),
    };
    print(
        json,
        &summary,
        &serde_json::json!({
            "events": answer.events.len(),
            "complete": answer.more_from.is_none(),
            "more_from": answer.more_from.map(|i| i.to_string()),
            "checkpoint_size": size.to_string(),
            "verified": true,
        }),
    );
    Ok(())
}

pub(crate) fn line(index: u64, e: &Envelope) -> String {
    let ev = &e.event;
    format!(
        "{index:>8}  {}  {}  {}  {}  {}  {}",
        rfc3339(e.log_time_ms),
        ev.kind,
        ev.actor,
        ev.action,
        ev.resource.as_deref().unwrap_or("-"),
        ev.outcome.as_str()
    )
}

pub(crate) fn event_json(index: u64, e: &Envelope) -> serde_json::Value {
    let ev = &e.event;
    serde_json::json!({
        "index": index.to_string(),
        "log_time_ms": e.log_time_ms.to_string(),
        "submitter": e.submitter,
        "tenant": e.tenant,
        "type": ev.kind,
        "actor": ev.actor,
        "action": ev.action,
        "resource": ev.resource,
        "outcome": ev.outcome.as_str(),
        "source": ev.source,
        "attributes": ev.attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_milliseconds_rfc_3339_or_before_now() {
        assert_eq!(parse_time("1764806400000", 0), Ok(1_764_806_400_000));
        assert_eq!(parse_time("2025-12-04T00:00:00Z", 0), Ok(1_764_806_400_000));
        assert_eq!(
            parse_time("2025-12-04T01:00:00+01:00", 0),
            Ok(1_764_806_400_000)
        );
        assert_eq!(parse_time("-2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_time("-1d", 1_000), Ok(0));
        assert!(parse_time("-2w", 0).is_err());
        assert!(parse_time("yesterday", 0).is_err());
    }
}
