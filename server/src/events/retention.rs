//! Retention of event payloads: a task per log with `retention_days`
//! (and one per log family whose shards have it, over its shards that
//! take writes) that erases, by erasure events, the payloads of events
//! logged longer ago than that ([`crate::api::LogApi::retain`]), at start
//! and then every [`TICK`]. A frozen shard takes no erasure event: its
//! payloads go with its entries (`drop_entries_after_days`, which is at
//! least `retention_days`).

use std::time::Duration;

use crate::api::LogApi;
use crate::store::Storage;

/// How often retention looks for payloads to erase.
pub const TICK: Duration = Duration::from_secs(60);

/// Erases what retention asks of the logs `origins` names (asked again
/// before each pass) until `stop` turns true: as long as a pass erases
/// something, the next follows at once; then every `every`. Failures (a
/// frozen log, storage) are logged and tried again.
pub async fn run<S: Storage>(
    api: LogApi<S>,
    origins: impl Fn(&LogApi<S>) -> Vec<String> + Send + 'static,
    days: u64,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut wait = true;
        for origin in origins(&api) {
            match api.retain(&origin, crate::batch::now_ms(), days).await {
                Ok(Some(w)) => {
                    if let Some(e) = w.events.first() {
                        tracing::info!(origin = %origin, erasure = e.index, "retention erased payloads");
                    }
                    wait = false;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(origin = %origin, error = %e, "retention: a pass failed; trying again");
                }
            }
        }
        if wait {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
        if *stop.borrow() {
            return;
        }
    }
}
