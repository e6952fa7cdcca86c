//! `quire search --actor|--action|--resource|--type VALUE`: the events of
//! one key, newest first, each proven in the log's tree and the answer
//! proven complete by the log's key map (`docs/EVENTS.md` §11).

use quire_client::keyed::KeyCheck;
use quire_client::rpc::{EventsRpc, LogRpc};
use quire_core::event::KeyField;
use tokio_stream::StreamExt as _;

use crate::search::{event_json, line, rfc3339};
use crate::{endpoint, print, trust_of, Failure, Net, Trust};

/// Which key a search follows: at most one of these.
#[derive(clap::Args, Debug)]
#[group(id = "key", multiple = false)]
pub(crate) struct KeyArgs {
    /// The events of this actor, newest first, proven complete by the
    /// log's key map.
    #[arg(long)]
    actor: Option<String>,
    /// The events of this action.
    #[arg(long)]
    action: Option<String>,
    /// The events of this resource.
    #[arg(long)]
    resource: Option<String>,
    /// The events of this type.
    #[arg(long = "type")]
    kind: Option<String>,
}

impl KeyArgs {
    /// The field and value asked for, if any.
    pub(crate) fn key(&self) -> Option<(KeyField, &str)> {
        [
            (KeyField::Actor, &self.actor),
            (KeyField::Action, &self.action),
            (KeyField::Resource, &self.resource),
            (KeyField::Type, &self.kind),
        ]
        .into_iter()
        .find_map(|(f, v)| v.as_deref().map(|v| (f, v)))
    }
}

/// What a keyed search asks.
pub(crate) struct KeySearch<'a> {
    pub(crate) field: KeyField,
    pub(crate) value: &'a str,
    pub(crate) before: Option<u64>,
    pub(crate) from_ms: u64,
    pub(crate) to_ms: u64,
    pub(crate) limit: u32,
}

pub(crate) async fn search_key(
    json: bool,
    q: &KeySearch<'_>,
    net: &Net,
    trust: &Trust,
) -> Result<(), Failure> {
    let origin = trust.origin.clone().unwrap_or_default();
    let mut rpc = EventsRpc::connect(&endpoint(net)).await?;
    let mut pages = rpc
        .search_key(&origin, q.field, q.value, q.before, q.from_ms, q.limit)
        .await?;
    let mut log = LogRpc::connect(&endpoint(net)).await?;
    let t = trust_of(trust, log.default_origin(&origin).await?.as_deref())?;
    let mut check = KeyCheck::new(&t, q.field, q.value, q.before, q.from_ms);
    while let Some(page) = pages.next().await {
        let page = page.map_err(|s| Failure::Unreachable(format!("SearchKey: {}", s.message())))?;
        check
            .page(&page)
            .map_err(|e| Failure::Verify(e.to_string()))?;
    }
    let answer = check.finish().map_err(|e| Failure::Verify(e.to_string()))?;
    let shown: Vec<_> = answer
        .events
        .iter()
        .filter(|(_, e)| e.log_time_ms >= q.from_ms && (q.to_ms == 0 || e.log_time_ms < q.to_ms))
        .collect();
    for (index, env) in &shown {
        print(json, &line(*index, env), &event_json(*index, env));
    }
    let (head, covered) = answer.head;
    let after = shown.iter().filter(|(i, _)| *i >= covered).count();
    let what = format!("{} {:?}", q.field.name(), q.value);
    let window = match (q.from_ms, q.to_ms) {
        (0, 0) => String::new(),
        (f, 0) => format!(" logged from {}", rfc3339(f)),
        (0, t) => format!(" logged before {}", rfc3339(t)),
        (f, t) => format!(" logged in [{}, {})", rfc3339(f), rfc3339(t)),
    };
    let size = answer.checkpoint.size();
    let summary = match answer.more_from {
        None => format!(
            "{} events of {what}{window}: none left out among the log's first {covered} events (the key map of event {head}); {after} of them newer, not yet in a map; proven against the log's checkpoint of size {size}",
            shown.len()
        ),
        Some(i) => format!(
            "the newest {} events of {what}{window}, proven against the log's checkpoint of size {size}; more from event {i} (--before {i})",
            shown.len()
        ),
    };
    print(
        json,
        &summary,
        &serde_json::json!({
            "events": shown.len(),
            "field": q.field.name(),
            "value": q.value,
            "complete_below": covered.to_string(),
            "map_head": head.to_string(),
            "more_from": answer.more_from.map(|i| i.to_string()),
            "checkpoint_size": size.to_string(),
            "verified": true,
        }),
    );
    Ok(())
}
