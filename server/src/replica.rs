//! Several servers sharing one log in PostgreSQL: each is a replica that
//! serves every read from storage, and the one holding the log's lease
//! sequences it. A write taken by any replica goes to the sequencer: its
//! own, or the lease holder's over gRPC.
//!
//! Every replica runs the log as a follower ([`crate::follow`]): it serves
//! only checkpoints proven against storage and consistent with what it
//! served before, and records each in its own high-water record before
//! serving it. A supervisor task per log renews the lease while it holds it
//! and tries to take it once it ran out otherwise; taking it opens the
//! sequencer (the same start-up checks as a single server: the stored tree
//! against this replica's record and the keys), losing it closes the
//! sequencer before the lease's time is up on this server's own clock.
//! Safety rests on the commit's checks (the lease row and the head's
//! compare-and-swap inside every transaction), not on this task's timing.
//!
//! A freeze taken by a replica goes to the holder the same way (its admin
//! service), and the replica answers once storage shows the log frozen.
//!
//! Event writes and erasures go to the holder with the submitter this
//! replica authenticated ([`ON_BEHALF_OF`]); while this replica holds the
//! lease, its follower reaches the sequencer itself (`Log::set_leader`),
//! which keeps the key map of a log in event mode and appends its heads;
//! every replica also keeps that map from storage
//! ([`crate::events::replica_map`]), so any replica answers searches by
//! key.
//!
//! Out of scope here: the replication check (synchronous standbys), TLS to
//! other replicas. An opaque write carries no submitter: a replica checks
//! its caller's access, then presents its own `token_file` to the holder.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quire_proto::v1::admin_client::AdminClient;
use quire_proto::v1::events_client::EventsClient;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::{AddEntriesRequest, AddEventsRequest, EraseEventRequest, FreezeLogRequest};
use tokio::sync::watch;

use crate::batch::{Added, EventsOp, RouteFuture, WriteError, WriteRoute};

/// The metadata key (binary) naming the submitter a replica forwards
/// events for; honoured only from a replica of the formation (its
/// `token_file` token).
pub const ON_BEHALF_OF: &str = "quire-on-behalf-of-bin";
use crate::log::{Log, LogOptions};
use crate::store::any::AnyStore;
use crate::store::postgres::{Lease, PgStore};
use crate::store::Storage as _;

/// How a replica takes part.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// This server's lease holder name: unique per process (a random
    /// suffix is added to the configured name at start).
    pub holder: String,
    /// Where other replicas send this one writes: `http://HOST:PORT`.
    pub address: String,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// How often the holder renews it, and the others look for a new one.
    pub renew_every: Duration,
    /// How often the log is followed from storage.
    pub follow_every: Duration,
    /// The bearer token presented to the lease holder with forwarded
    /// writes.
    pub token: Option<String>,
    /// The largest answer taken from the lease holder: the servers'
    /// `max_message_bytes` (the holder answers no more). An answer to a
    /// forwarded write that came through must never be refused by size:
    /// the write was made.
    pub max_message_bytes: usize,
}

/// Writes sent to the lease holder over gRPC.
struct Remote {
    origin: String,
    address: String,
    client: LogClient<tonic::transport::Channel>,
    admin: AdminClient<tonic::transport::Channel>,
    events: EventsClient<tonic::transport::Channel>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Remote {
    fn new(
        origin: &str,
        address: &str,
        timeout: Duration,
        token: Option<&str>,
        max_message_bytes: usize,
    ) -> Result<Self, String> {
        let token = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "the replication token is not printable ASCII".to_owned())
            })
            .transpose()?;
        let channel = tonic::transport::Channel::from_shared(address.to_owned())
            .map_err(|e| format!("the lease holder's address {address:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(Remote {
            origin: origin.to_owned(),
            address: address.to_owned(),
            client: LogClient::new(channel.clone()).max_decoding_message_size(max_message_bytes),
            admin: AdminClient::new(channel.clone()).max_decoding_message_size(max_message_bytes),
            events: EventsClient::new(channel)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            token,
        })
    }
}

impl WriteRoute for Remote {
    fn add(&self, entries: Vec<Vec<u8>>) -> RouteFuture<Vec<Added>> {
        let mut client = self.client.clone();
        let (origin, address) = (self.origin.clone(), self.address.clone());
        let mut request = tonic::Request::new(AddEntriesRequest {
            log: origin.clone(),
            entries,
            with_proof: false,
            witnessed: false,
        });
        if let Some(t) = &self.token {
            request.metadata_mut().insert("authorization", t.clone());
        }
        Box::pin(async move {
            let resp = client
                .add_entries(request)
                .await
                .map_err(|s| WriteError::Remote {
                    origin,
                    to: address,
                    code: s.code() as i32,
                    message: s.message().to_owned(),
                })?;
            Ok(resp
                .into_inner()
                .entries
                .into_iter()
                .map(|e| Added {
                    index: e.index,
                    duplicate: e.duplicate,
                })
                .collect())
        })
    }

    fn events(&self, op: EventsOp, submitter: String) -> RouteFuture<Vec<crate::events::Sealed>> {
        let mut client = self.events.clone();
        let (origin, address) = (self.origin.clone(), self.address.clone());
        let token = self.token.clone();
        let mark = |meta: &mut tonic::metadata::MetadataMap| {
            if let Some(t) = &token {
                meta.insert("authorization", t.clone());
            }
            meta.insert_bin(
                ON_BEHALF_OF,
                tonic::metadata::MetadataValue::from_bytes(submitter.as_bytes()),
            );
        };
        let call = match op {
            EventsOp::Add(events) => {
                let mut request = tonic::Request::new(AddEventsRequest {
                    log: origin.clone(),
                    events: events
                        .into_iter()
                        .map(|e| quire_proto::event_to_wire(&e.event, e.payload))
                        .collect(),
                });
                mark(request.metadata_mut());
                Box::pin(async move { client.add_events(request).await })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
            }
            EventsOp::Erase { index, reason } => {
                let mut request = tonic::Request::new(EraseEventRequest {
                    log: origin.clone(),
                    index,
                    reason,
                });
                mark(request.metadata_mut());
                Box::pin(async move { client.erase_event(request).await })
            }
        };
        Box::pin(async move {
            let resp = call.await.map_err(|s| WriteError::Remote {
                origin: origin.clone(),
                to: address,
                code: s.code() as i32,
                message: s.message().to_owned(),
            })?;
            resp.into_inner()
                .events
                .into_iter()
                .map(|e| {
                    let salt = match e.salt.len() {
                        0 => None,
                        _ => Some(
                            <[u8; quire_core::event::SALT_LEN]>::try_from(e.salt.as_slice())
                                .map_err(|_| WriteError::Remote {
                                    origin: origin.clone(),
                                    to: "the lease holder".into(),
                                    code: tonic::Code::DataLoss as i32,
                                    message: format!(
                                        "event {}: a salt of {} bytes",
                                        e.index,
                                        e.salt.len()
                                    ),
                                })?,
                        ),
                    };
                    Ok(crate::events::Sealed {
                        index: e.index,
                        envelope: e.envelope,
                        salt,
                    })
                })
                .collect()
        })
    }

    fn freeze(&self) -> RouteFuture<()> {
        let mut client = self.admin.clone();
        let (origin, address) = (self.origin.clone(), self.address.clone());
        let mut request = tonic::Request::new(FreezeLogRequest {
            log: origin.clone(),
        });
        if let Some(t) = &self.token {
            request.metadata_mut().insert("authorization", t.clone());
        }
        Box::pin(async move {
            client
                .freeze_log(request)
                .await
                .map(|_| ())
                .map_err(|s| WriteError::Remote {
                    origin,
                    to: address,
                    code: s.code() as i32,
                    message: s.message().to_owned(),
                })
        })
    }

    fn describe(&self) -> String {
        self.address.clone()
    }
}

/// What the supervisor holds while this replica sequences the log.
struct Leading {
    log: Log<AnyStore>,
    lease: Lease,
    /// Stops the key map follower of a log in event mode.
    map_stop: watch::Sender<bool>,
}

/// One log's replica: its follower, and its sequencer while it holds the
/// lease.
pub struct Replica {
    follower: Log<AnyStore>,
    store: PgStore,
    opts: ReplicaOptions,
    /// The sequencer's options, made anew each time it opens.
    sequencer: Box<dyn Fn() -> anyhow::Result<LogOptions> + Send + Sync>,
    leading: Mutex<Option<Leading>>,
    /// The lease holder writes go to, when it is another server.
    routed_to: Mutex<Option<String>>,
    /// The database failure of the rounds going on, if any.
    failing: Mutex<crate::repeats::Repeats>,
}

impl Replica {
    /// A replica of the log that `follower` follows in `store`.
    pub fn new(
        follower: Log<AnyStore>,
        store: PgStore,
        opts: ReplicaOptions,
        sequencer: Box<dyn Fn() -> anyhow::Result<LogOptions> + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Replica {
            follower,
            store,
            opts,
            sequencer,
            leading: Mutex::new(None),
            routed_to: Mutex::new(None),
            failing: Mutex::default(),
        })
    }

    /// The log as this replica serves it.
    pub fn log(&self) -> &Log<AnyStore> {
        &self.follower
    }

    /// Whether this replica sequences the log now, and in which epoch.
    pub fn epoch(&self) -> Option<i64> {
        self.leading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|l| l.lease.epoch)
    }

    /// Runs the replica until `stop` turns true: follows storage, renews or
    /// takes the lease, routes writes. On stop, a held lease is given up at
    /// once so that another replica takes over without waiting.
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        self.follower.follow(self.opts.follow_every, stop.clone());
        crate::events::replica_map::start(&self.follower, self.opts.follow_every, stop.clone());
        let me = Arc::clone(self);
        tokio::spawn(async move { me.supervise(stop).await })
    }

    async fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let me = Arc::clone(&self);
            if let Err(e) = tokio::task::spawn_blocking(move || me.step()).await {
                tracing::error!(error = %e, "replica supervisor step failed");
            }
            tokio::select! {
                () = tokio::time::sleep(self.opts.renew_every) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let me = Arc::clone(&self);
        let _ = tokio::task::spawn_blocking(move || me.step_down("the server is stopping")).await;
    }

    /// One round: renew (or lose) the lease held, or try to take it.
    fn step(&self) {
        let origin = self.follower.origin().to_owned();
        let label = [("log", origin.clone())];
        // The lease held, and why its sequencer stopped writing if it did.
        let held = self
            .leading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|l| (l.lease.clone(), l.log.writes_stopped()));
        if let Some((lease, stopped)) = held {
            if let Some(why) = stopped {
                // A commit of unknown outcome (the primary lost), a
                // conflict: a new sequencer reads the head again.
                self.step_down(&format!("its sequencer stopped writing ({why})"));
                return;
            }
            match self.store.renew(&lease, self.opts.lease) {
                Ok(Some(renewed)) => {
                    self.reached(&origin);
                    metrics::counter!("quire_lease_renewals_total", &label).increment(1);
                    if let Some(l) = self
                        .leading
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .as_mut()
                    {
                        l.lease = renewed;
                    }
                }
                Ok(None) => {
                    metrics::counter!("quire_lease_losses_total", &label).increment(1);
                    self.step_down("its lease was taken over or ran out");
                }
                Err(e) => {
                    // Not renewed: the commit-time checks stop the
                    // sequencer once the lease runs out on this clock.
                    self.warn(&origin, "lease not renewed", &e);
                    if self.store.writable().is_err() {
                        metrics::counter!("quire_lease_losses_total", &label).increment(1);
                        self.step_down("its lease ran out before it could be renewed");
                    }
                }
            }
            return;
        }
        match self
            .store
            .acquire(&self.opts.holder, &self.opts.address, self.opts.lease)
        {
            Ok(Some(lease)) => self.lead(lease),
            Ok(None) => self.route_to_holder(),
            Err(e) => self.warn(&origin, "cannot read the lease", &e),
        }
    }

    /// Logs a failed round once while it repeats (a round that opened a
    /// sequencer, renewed, or read the holder ends it).
    fn warn(&self, origin: &str, what: &str, e: &dyn std::fmt::Display) {
        if let Some(repeats) = self.repeats(what, e) {
            tracing::warn!(origin = %origin, error = %e, repeats, "{what}");
        }
    }

    /// Whether a failed round is to be logged, and after how many repeats.
    fn repeats(&self, what: &str, e: &dyn std::fmt::Display) -> Option<u64> {
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed(&format!("{what}: {e}"))
    }

    /// A round reached the database again.
    fn reached(&self, origin: &str) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if failing.recovered() {
            tracing::warn!(origin = %origin, "the database answers the replica again");
        }
    }

    /// Opens the sequencer under `lease` and routes writes to it.
    fn lead(&self, lease: Lease) {
        let origin = self.follower.origin().to_owned();
        let opened = (self.sequencer)()
            .and_then(|opts| Ok(Log::open(AnyStore::Postgres(self.store.clone()), opts)?));
        match opened {
            Ok(log) => {
                self.reached(&origin);
                tracing::info!(origin = %origin, epoch = lease.epoch, holder = %lease.holder, "this replica sequences the log");
                metrics::counter!("quire_failovers_total", "log" => origin.clone()).increment(1);
                metrics::gauge!("quire_leader", "log" => origin.clone()).set(1.0);
                metrics::gauge!("quire_epoch", "log" => origin).set(crate::metrics::value(
                    u64::try_from(lease.epoch).unwrap_or(0),
                ));
                // A log in event mode: the sequencer keeps the key map and
                // appends its heads, as a single server's does.
                let (map_stop, map_stopped) = watch::channel(false);
                crate::events::map::start(&log, map_stopped);
                // Writes, freezes and event operations taken here go to
                // this sequencer; no route to another server is kept.
                self.follower.set_leader(Some(log.clone()));
                self.follower.set_route(None);
                *self
                    .routed_to
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                *self.leading.lock().unwrap_or_else(PoisonError::into_inner) = Some(Leading {
                    log,
                    lease,
                    map_stop,
                });
            }
            Err(e) => {
                if let Some(repeats) = self.repeats("cannot sequence", &e) {
                    tracing::error!(origin = %origin, error = %e, repeats, "took the lease but cannot sequence: giving it up");
                }
                let _ = self.store.release(&lease);
            }
        }
    }

    /// Closes the sequencer, if any, and gives its lease up.
    fn step_down(&self, why: &str) {
        let Some(leading) = self
            .leading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let origin = self.follower.origin().to_owned();
        tracing::warn!(origin = %origin, epoch = leading.lease.epoch, why, "this replica no longer sequences the log");
        metrics::gauge!("quire_leader", "log" => origin).set(0.0);
        self.follower.set_route(None);
        self.follower.set_leader(None);
        let _ = leading.map_stop.send(true);
        leading.log.close();
        let _ = self.store.release(&leading.lease);
    }

    /// Sends writes to the lease holder, wherever it is now.
    fn route_to_holder(&self) {
        let origin = self.follower.origin().to_owned();
        let holder = match self.store.holder() {
            Ok(h) => h,
            Err(e) => {
                self.warn(&origin, "cannot read the lease", &e);
                return;
            }
        };
        self.reached(&origin);
        let mut routed = self
            .routed_to
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let address = holder.map(|h| h.address);
        if *routed == address {
            return;
        }
        let route: Option<Arc<dyn WriteRoute>> = match &address {
            Some(a) => match Remote::new(
                &origin,
                a,
                self.opts.lease.max(Duration::from_secs(5)),
                self.opts.token.as_deref(),
                self.opts.max_message_bytes,
            ) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    tracing::warn!(origin = %origin, error = %e, "cannot route writes");
                    None
                }
            },
            None => None,
        };
        tracing::info!(origin = %origin, to = ?address, "writes go to the lease holder");
        self.follower.set_route(route);
        *routed = address;
    }
}
