//! The server's own audit trail: every refused request, every change of
//! the access policy and every admin action, appended to one of the server's logs (the
//! configuration's `audit_log`), so that the log audits its own use and
//! anyone may verify that record like any other log.
//!
//! Each entry is one JSON object (`quire-access-event/v1`). Events go
//! through a bounded queue to a task that appends them in batches; a queue
//! that is full (a flood of refusals) drops events rather than holding
//! requests up, counts them in `quire_audit_events_dropped_total`, and the
//! next event written says how many were dropped before it, so a gap is
//! visible in the log itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::log::Log;
use crate::store::Storage;

/// Events queued before new ones are dropped.
pub const QUEUE: usize = 4096;

/// Most events appended in one batch.
const BATCH: usize = 256;

/// One event of the trail.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Event {
    /// Always `quire-access-event/v1`.
    pub kind: &'static str,
    /// Milliseconds since the Unix epoch, on the server's clock.
    pub time_ms: u64,
    /// `refused`, `policy` or `admin` (an admin action done).
    pub event: &'static str,
    /// Who asked (refusals, admin actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// From where (refusals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The log asked about (refusals, admin actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The gRPC status name of a refusal, or `ok`/`error` of a policy
    /// change.
    pub code: &'static str,
    /// The refusal's message, what the policy change was, or what the
    /// admin action did.
    pub message: String,
    /// Events dropped (queue full) since the previous one written.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_before: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's signature
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Event {
    /// An event of `event` now.
    pub fn new(event: &'static str, code: &'static str, message: String) -> Self {
        Event {
            kind: "quire-access-event/v1",
            time_ms: crate::batch::now_ms(),
            event,
            principal: None,
            peer: None,
            log: None,
            code,
            message,
            dropped_before: 0,
        }
    }
}

/// Where events are sent. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// A sink appending to `log`, and the task that does it (it ends when
    /// every sink is dropped, after appending what was queued).
    pub fn new<S: Storage>(log: Log<S>) -> (Self, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = AuditSink {
            tx,
            dropped: Arc::clone(&dropped),
        };
        (sink, drain(log, rx, dropped))
    }

    /// Queues `event`, or counts it dropped when the queue is full.
    pub fn record(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("quire_audit_events_dropped_total").increment(1);
        }
    }
}

async fn drain<S: Storage>(log: Log<S>, mut rx: mpsc::Receiver<Event>, dropped: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Some(first) = batch.first_mut() {
            first.dropped_before = dropped.swap(0, Ordering::Relaxed);
        }
        let entries: Vec<Vec<u8>> = batch
            .drain(..)
            .filter_map(|e| serde_json::to_vec(&e).ok())
            .collect();
        let n = entries.len() as u64;
        if let Err(e) = log.add(entries).await {
            metrics::counter!("quire_audit_events_dropped_total").increment(n);
            tracing::error!(error = %e, origin = log.origin(), "access events not appended to the audit log");
        }
    }
}
