//! The log API: the rules of every request, whatever the transport.
//!
//! [`LogApi`] holds the logs of a server by origin and answers each request
//! of the `quire.v1.Log` service in domain terms: which log (an empty origin
//! names the only one), "0 means the latest size", page bounds, the seed of
//! a consistency proof, entries checked against their leaf hashes, proofs
//! checked against the signed root before they are served (RFC 9162
//! §2.1.3.2, §2.1.4.2), the follow loops of the streams, and witnessed or
//! signed-only answers, and the C2SP `tlog-tiles` tiles and entry bundles
//! a tiles face will serve. A request naming a log family goes to the
//! family's shard of the moment (`registry.rs`); logs created while the
//! server runs join the registry ([`LogApi::add_log`]). Every call takes
//! the [`Caller`] and asks the
//! server's [`Access`] whether it may; every failure is an [`ApiError`] of
//! a transport-neutral [`Kind`].
//!
//! Out of scope: wire encodings and statuses (the gRPC face, `grpc.rs`,
//! maps requests in and errors out; an HTTP tiles face will do the same),
//! authentication (a face builds the [`Caller`] from what its transport
//! proved) and the access policy itself (the default [`OpenAccess`] lets
//! everyone write and read, and only this machine administer).

pub mod budget;
mod caller;
mod dropped;
mod error;
mod events;
mod keyed;
mod reads;
mod registry;
mod search;
mod streams;
mod tiles;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::lifecycle::LogState;
pub use caller::{Access, Action, Caller, Credential, Identity, OpenAccess};
pub use dropped::DropError;
pub use error::{ApiError, Kind};
pub use events::{EventInput, EventRecord, WrittenEvents, RETENTION_BATCH};
pub use keyed::{KeyPage, KeyQuery, ProvenEvent, KEY_PAGE, MAX_KEY_VALUE};
pub use reads::{Consistency, EntryWithProof, Inclusion, LeafRef, LogSummary, Written};
pub use search::{EventRun, MAX_SEARCH_EVENTS};
pub use streams::{CheckpointStream, EntryPage, TailPage};
pub use tiles::MAX_TILE_LEVEL;

use crate::log::Log;
use crate::store::Storage;
use crate::witnessing::Witnessing;
use budget::{ResponseBudget, StreamSlots};
use registry::Registry;

/// Most entries per page of an entry stream (one bundle); pages are also at
/// most [`crate::api::budget::PAGE_BYTES`].
pub const PAGE_ENTRIES: u64 = 256;

/// The default budget of bytes in flight: request bodies being received
/// and entry pages read and queued for clients.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// The default cap on open entry streams.
pub const DEFAULT_ENTRY_STREAMS: usize = 1024;

/// The log API over the logs of one server. Cheap to clone.
pub struct LogApi<S: Storage> {
    registry: Arc<std::sync::RwLock<Arc<Registry<S>>>>,
    /// The clock families are routed by (Unix milliseconds).
    clock: crate::log::Clock,
    access: Arc<dyn Access>,
    /// Turns true when the server shuts down: follow streams end then.
    stopping: tokio::sync::watch::Receiver<bool>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Bytes of entry pages in flight to clients, server-wide.
    budget: ResponseBudget,
    /// Open entry streams, server-wide.
    slots: StreamSlots,
    /// One erasure at a time: its check of the payload and its write.
    erasing: Arc<tokio::sync::Mutex<()>>,
    /// The SHA-256 of the formation's replica token (`[replication]
    /// token_file`): a caller presenting it may write events on behalf of
    /// the submitter its replica authenticated.
    replica_token: Option<[u8; 32]>,
}

impl<S: Storage> Clone for LogApi<S> {
    fn clone(&self) -> Self {
        LogApi {
            registry: Arc::clone(&self.registry),
            clock: Arc::clone(&self.clock),
            access: Arc::clone(&self.access),
            stopping: self.stopping.clone(),
            stop: Arc::clone(&self.stop),
            budget: self.budget.clone(),
            slots: self.slots.clone(),
            erasing: Arc::clone(&self.erasing),
            replica_token: self.replica_token,
        }
    }
}

impl<S: Storage> LogApi<S> {
    /// The API over `logs`, open to everyone, without witnesses, with the
    /// default stream bounds.
    pub fn new(logs: Vec<Log<S>>) -> Self {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        for l in &logs {
            crate::events::map::start(l, stopping.clone());
        }
        LogApi {
            registry: Arc::new(std::sync::RwLock::new(Arc::new(Registry {
                logs: logs
                    .into_iter()
                    .map(|l| (l.origin().to_owned(), l))
                    .collect(),
                witnessing: BTreeMap::new(),
                families: BTreeMap::new(),
            }))),
            clock: crate::log::system_clock(),
            access: Arc::new(OpenAccess),
            stopping,
            stop: Arc::new(stop),
            budget: ResponseBudget::new(DEFAULT_MEMORY_BUDGET),
            slots: StreamSlots::new(DEFAULT_ENTRY_STREAMS),
            erasing: Arc::default(),
            replica_token: None,
        }
    }

    /// Sets who may do what.
    #[must_use]
    pub fn with_access(mut self, access: impl Access) -> Self {
        self.access = Arc::new(access);
        self
    }

    /// Sets the cap on open entry streams.
    #[must_use]
    pub fn with_entry_streams(mut self, max: usize) -> Self {
        self.slots = StreamSlots::new(max);
        self
    }

    /// Callers presenting `token` (the formation's replica token) may
    /// write events on behalf of another submitter: the one their replica
    /// authenticated.
    #[must_use]
    pub fn with_replica_token(mut self, token: &str) -> Self {
        use sha2::Digest as _;
        self.replica_token = Some(sha2::Sha256::digest(token.as_bytes()).into());
        self
    }

    /// Whether `caller` is a replica of this formation (it presents the
    /// formation's token).
    pub(crate) fn is_replica(&self, caller: &Caller) -> bool {
        use sha2::Digest as _;
        match (&caller.credential, &self.replica_token) {
            (Credential::Bearer(t), Some(want)) => {
                <[u8; 32]>::from(sha2::Sha256::digest(t.as_bytes())) == *want
            }
            _ => false,
        }
    }

    /// The submitter `name` a replica of the formation vouches for.
    ///
    /// # Errors
    /// [`ApiError::Denied`] for a caller that is not such a replica, or a
    /// name that is empty or over 1 KiB.
    pub(crate) fn vouched(
        &self,
        caller: &Caller,
        origin: &str,
        name: String,
    ) -> Result<String, ApiError> {
        if !self.is_replica(caller) {
            return Err(ApiError::Denied {
                caller: caller.to_string(),
                action: "write on behalf of another submitter to",
                origin: origin.to_owned(),
                why: format!(
                    "only a replica of this formation (presenting its [replication] token_file token) may send {}",
                    crate::replica::ON_BEHALF_OF
                ),
            });
        }
        if name.is_empty() || name.len() > 1024 {
            return Err(ApiError::Invalid(format!(
                "{}: a submitter of {} bytes; it must be 1 to 1024",
                crate::replica::ON_BEHALF_OF,
                name.len()
            )));
        }
        Ok(name)
    }

    /// Entry pages in flight to clients reserve from `budget`, the server's
    /// budget of bytes in flight (see [`budget`]).
    #[must_use]
    pub fn with_budget(mut self, budget: quire_host::budget::ByteBudget) -> Self {
        self.budget = ResponseBudget::of(budget);
        self
    }

    /// Starts witness collection for each `(origin, policy)` of a log
    /// served here (on the current runtime; it stops with the streams).
    ///
    /// # Errors
    /// A witness address that is not a valid URL.
    pub fn start_witnessing(
        self,
        policies: impl IntoIterator<Item = (String, crate::witnessing::WitnessPolicy)>,
    ) -> Result<Self, String> {
        let registry = self.registry();
        let mut map = BTreeMap::new();
        for (origin, policy) in policies {
            let Some(log) = registry.logs.get(&origin) else {
                continue;
            };
            let w = Witnessing::start(log, policy, self.stopping.clone())?;
            map.insert(origin, w);
        }
        self.replace(|r| Registry {
            logs: r.logs.clone(),
            witnessing: map,
            families: r.families.clone(),
        });
        Ok(self)
    }

    /// Routes requests naming each `(origin, period)` family to its shard
    /// of the moment.
    #[must_use]
    pub fn with_families(
        self,
        families: impl IntoIterator<Item = (String, crate::family::Period)>,
    ) -> Self {
        let families: BTreeMap<_, _> = families.into_iter().collect();
        self.replace(|r| Registry {
            logs: r.logs.clone(),
            witnessing: r.witnessing.clone(),
            families,
        });
        self
    }

    /// Routes families by `clock` instead of the system's.
    #[must_use]
    pub fn with_clock(mut self, clock: crate::log::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The family `origin` is a shard of, with the shard's period
    /// `[start, end)`.
    pub fn family_of(&self, origin: &str) -> Option<(String, u64, u64)> {
        self.registry().families.iter().find_map(|(f, p)| {
            crate::family::shard_span(f, *p, origin).map(|(s, e)| (f.clone(), s, e))
        })
    }

    /// Serves `log` from now on, witnessed by `witnesses` when given
    /// (collection starts on the current runtime).
    ///
    /// # Errors
    /// [`ApiError::Exists`] when a log of its origin is served already; a
    /// witness address that is not a valid URL.
    pub fn add_log(
        &self,
        log: Log<S>,
        witnesses: Option<crate::witnessing::WitnessPolicy>,
    ) -> Result<(), ApiError> {
        let origin = log.origin().to_owned();
        let mut guard = self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.logs.contains_key(&origin) {
            return Err(ApiError::Exists(format!(
                "log {origin:?} is served already"
            )));
        }
        let mut witnessing = guard.witnessing.clone();
        if let Some(policy) = witnesses {
            let w = Witnessing::start(&log, policy, self.stopping.clone())
                .map_err(ApiError::Internal)?;
            witnessing.insert(origin.clone(), w);
        }
        crate::events::map::start(&log, self.stopping.clone());
        let mut logs = guard.logs.clone();
        logs.insert(origin, log);
        *guard = Arc::new(Registry {
            logs,
            witnessing,
            families: guard.families.clone(),
        });
        Ok(())
    }

    /// The registry now.
    fn registry(&self) -> Arc<Registry<S>> {
        Arc::clone(
            &self
                .registry
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn replace(&self, with: impl FnOnce(&Registry<S>) -> Registry<S>) {
        let mut guard = self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(with(&guard));
    }

    /// Ends every follow stream and witness collection (the server is
    /// shutting down).
    pub fn stop_streams(&self) {
        self.stop.send_replace(true);
    }

    /// After [`Self::stop_streams`]: waits until witness collection and
    /// key map followers have let go of every log, so that their storage
    /// can close.
    pub async fn stopped(&self) {
        let registry = self.registry();
        for w in registry.witnessing.values() {
            w.finished().await;
        }
        for m in registry.logs.values().filter_map(Log::keymap) {
            m.finished().await;
        }
    }

    /// The logs served now.
    pub fn logs(&self) -> Vec<Log<S>> {
        self.registry().logs.values().cloned().collect()
    }

    /// The log named `origin`, whoever asks (for the server's own use).
    pub fn get(&self, origin: &str) -> Option<Log<S>> {
        self.registry().logs.get(origin).cloned()
    }

    /// The log named `origin` (empty: the only one), once `caller` may
    /// administer it.
    ///
    /// # Errors
    /// As the reads: an unknown log, a refusal of the access policy.
    pub fn administered(&self, caller: &Caller, origin: &str) -> Result<Log<S>, ApiError> {
        self.log(caller, origin, Action::Administer)
    }

    /// Whether `caller` may administer `origin`, which need not be served
    /// (a log to create; `*`: every log, the server's policy).
    ///
    /// # Errors
    /// The access policy's refusal.
    pub fn may_administer(&self, caller: &Caller, origin: &str) -> Result<(), ApiError> {
        self.access.check(caller, origin, Action::Administer, 0)
    }

    /// The log named `origin` (empty: the only one), once `caller` may do
    /// `action` to it.
    fn log(&self, caller: &Caller, origin: &str, action: Action) -> Result<Log<S>, ApiError> {
        self.log_for(caller, origin, action, 0)
    }

    /// [`Self::log`] for a request carrying `entries` entries to write.
    fn log_for(
        &self,
        caller: &Caller,
        origin: &str,
        action: Action,
        entries: u64,
    ) -> Result<Log<S>, ApiError> {
        let log = self.find(caller, origin)?;
        self.access
            .check(caller, log.origin(), action, entries)
            .inspect_err(|e| paced_if_over_quota(&log, e))?;
        Ok(log)
    }

    /// The log named `origin`; a refusal names only the logs `caller` may
    /// see (audit), so that nobody learns another tenant's origins.
    fn find(&self, caller: &Caller, origin: &str) -> Result<Log<S>, ApiError> {
        let registry = self.registry();
        if origin.is_empty() && registry.logs.len() == 1 {
            if let Some(l) = registry.logs.values().next() {
                return Ok(l.clone());
            }
        }
        if let Some(l) = registry.logs.get(origin) {
            return Ok(l.clone());
        }
        if let Some(period) = registry.families.get(origin) {
            if let Some(l) = registry.shard(origin, *period, (self.clock)()) {
                return Ok(l);
            }
        }
        self.access.authenticate(caller)?;
        Err({
            let visible: Vec<&str> = registry
                .logs
                .keys()
                .filter(|o| self.access.may(caller, o, Action::Audit))
                .map(String::as_str)
                .collect();
            let known = visible.join(", ");
            if origin.is_empty() {
                ApiError::NoLogNamed {
                    count: visible.len(),
                    known,
                }
            } else {
                ApiError::UnknownLog {
                    origin: origin.chars().take(256).collect(),
                    known,
                }
            }
        })
    }

    fn witnessing_of(&self, log: &Log<S>) -> Result<Witnessing, ApiError> {
        self.registry()
            .witnessing
            .get(log.origin())
            .cloned()
            .ok_or_else(|| ApiError::NotWitnessed {
                origin: log.origin().to_owned(),
            })
    }
}

/// Resolves a requested size (0 = latest) against the latest size.
fn tree_size(requested: u64, latest: u64) -> Result<u64, ApiError> {
    match requested {
        0 => Ok(latest),
        n if n > latest => Err(ApiError::OutOfRange(format!(
            "tree size {n} is beyond the latest checkpoint size {latest}"
        ))),
        n => Ok(n),
    }
}

/// Runs a long storage read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

/// Runs a short storage read inline on an embedded engine (a few cached
/// pages: cheaper than a hand-off), and on the blocking pool when the
/// engine's reads wait on the network.
async fn short_read<S: Storage, T: Send + 'static>(
    log: &Log<S>,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if log.store().reads_wait_on_network() {
        blocking(f).await
    } else {
        f()
    }
}

/// A read view of the log's storage at its published checkpoint (which
/// storage holds: it is published only once committed), every read the
/// API makes being bounded by it anyway.
fn read_view<S: Storage>(log: &Log<S>) -> Result<S::Reader, ApiError> {
    let latest = log.latest();
    let head = crate::store::Head {
        size: latest.stored.size,
        root: latest.root,
    };
    Ok(log.store().reader_at(head, &latest.stored)?)
}

/// A write refused for a quota paces its log's commits ([`crate::pacing`]).
pub(crate) fn paced_if_over_quota<S: crate::store::Storage>(log: &Log<S>, e: &ApiError) {
    if matches!(e, ApiError::Quota { .. }) {
        log.quota_refused();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn without_a_policy_only_this_machine_administers() {
        let from = |peer: Option<&str>| Caller {
            peer: peer.map(|p| p.parse().unwrap()),
            ..Caller::default()
        };
        let open = OpenAccess;
        for action in [Action::Write, Action::ReadEntries, Action::Audit] {
            open.check(&from(Some("192.0.2.7:4000")), "a.example/log", action, 1)
                .unwrap();
        }
        for local in ["127.0.0.1:4000", "[::1]:4000"] {
            open.check(&from(Some(local)), "*", Action::Administer, 0)
                .unwrap();
        }
        for remote in [Some("192.0.2.7:4000"), None] {
            let e = open
                .check(&from(remote), "a.example/log", Action::Administer, 0)
                .unwrap_err();
            assert_eq!(e.kind(), Kind::PermissionDenied);
            assert!(
                e.to_string().contains(
                    "only callers on this machine (a loopback address) may administer logs"
                ),
                "{e}"
            );
        }
    }
}
