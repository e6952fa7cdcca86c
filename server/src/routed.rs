//! A follower's way to its log's sequencer (replicas, [`crate::replica`]):
//! where its writes, freezes and event operations go (this server's own
//! sequencer while it holds the lease, [`Log::set_leader`]; otherwise the
//! route to the holder, [`Log::set_route`]),
//! and how each answer is read back from storage before it is given, so
//! that what the answer says and what this server serves agree.

use std::sync::Arc;

use crate::batch::{Added, Latest, WriteError, WriteRoute};
use crate::lifecycle::{Frozen, LogState};
use crate::log::Log;
use crate::store::Storage;

/// How messages name this server's own sequencer.
const THIS_SERVER: &str = "this server";

/// Reads of storage a follower makes for a freeze it forwarded.
pub const FROZEN_POLLS: u32 = 100;

impl<S: Storage> Log<S> {
    /// Where this follower sends the writes it takes (`None`: it refuses
    /// them). A replica sets it to its own sequencer while it holds the
    /// log's lease, and to the holder's address otherwise.
    pub fn set_route(&self, route: Option<Arc<dyn WriteRoute>>) {
        *self
            .inner
            .route
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = route;
    }

    /// This replica's own sequencer of the log while it holds the lease
    /// (set by the replica with the route): what event writes, erasures
    /// and keyed queries use there.
    pub fn set_leader(&self, leader: Option<Log<S>>) {
        *self
            .inner
            .leader
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = leader;
    }

    /// The sequencer of this log in this server: the log itself, unless it
    /// is a follower (then its replica's sequencer while it leads).
    pub fn sequencer_here(&self) -> Option<Log<S>> {
        if self.inner.follower.is_none() {
            return Some(self.clone());
        }
        self.leader()
    }

    /// Where this follower sends writes, for messages (`None`: nowhere).
    pub fn route_description(&self) -> Option<String> {
        self.route().ok().map(|r| r.describe())
    }

    /// Reads storage once if this follower's checkpoint does not cover
    /// index `last` yet (written by the sequencer), so that an answer and
    /// the reads after it agree here.
    pub(crate) async fn catch_up(&self, last: u64) {
        if self.inner.follower.is_none() || self.latest().stored.size > last {
            return;
        }
        self.refresh_now("a forwarded write not read back yet")
            .await;
    }

    /// Reads storage once, off the runtime's workers; a failure is logged
    /// as `what` (the caller checks what the follower shows after).
    async fn refresh_now(&self, what: &'static str) {
        let log = self.clone();
        match tokio::task::spawn_blocking(move || log.refresh()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "{what}"),
            Err(e) => tracing::warn!(error = %e, "follower read failed"),
            Ok(Ok(_)) => {}
        }
    }

    /// Where this follower sends writes and freezes.
    fn route(&self) -> Result<Arc<dyn WriteRoute>, WriteError> {
        self.inner
            .route
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| WriteError::NotSequencing {
                origin: self.inner.origin.clone(),
            })
    }

    /// A follower's write: sent on its route, then read back from storage
    /// (which holds whatever the sequencer acknowledged) before it is
    /// answered, so that the answer's checkpoint covers it here too.
    pub(crate) async fn add_routed(
        &self,
        entries: Vec<Vec<u8>>,
    ) -> Result<(Vec<Added>, Arc<Latest>), WriteError> {
        // Boxed: the sequencer is a log too (it never routes again).
        let (added, to) = if let Some(seq) = self.leader() {
            (Box::pin(seq.add(entries)).await?.0, THIS_SERVER.to_owned())
        } else {
            let route = self.route()?;
            (route.add(entries).await?, route.describe())
        };
        let last = added.iter().map(|a| a.index).max().unwrap_or(0);
        let latest = self.read_back(last, to).await?;
        Ok((added, latest))
    }

    /// This replica's own sequencer, while it holds the lease (only a
    /// follower has one).
    fn leader(&self) -> Option<Log<S>> {
        self.inner
            .leader
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads storage until this follower covers index `last`, sent to
    /// `to`: the checkpoint that answers it.
    async fn read_back(&self, last: u64, to: String) -> Result<Arc<Latest>, WriteError> {
        self.catch_up(last).await;
        let latest = self.latest();
        if latest.stored.size <= last {
            return Err(WriteError::Forwarded {
                origin: self.inner.origin.clone(),
                to,
                size: latest.stored.size,
                last,
            });
        }
        Ok(latest)
    }

    /// A follower's event operation, sent to the lease holder on behalf
    /// of `submitter`, then read back from storage as [`Self::add`]'s
    /// forwarded writes are.
    ///
    /// # Errors
    /// [`WriteError::NotSequencing`] with no route; the holder's refusal;
    /// [`WriteError::Forwarded`] when storage does not show the events yet.
    pub async fn forward_events(
        &self,
        op: crate::batch::EventsOp,
        submitter: String,
    ) -> Result<(Vec<crate::events::Sealed>, Arc<Latest>), WriteError> {
        let route = self.route()?;
        let sealed = route.events(op, submitter).await?;
        let last = sealed.iter().map(|e| e.index).max().unwrap_or(0);
        let latest = self.read_back(last, route.describe()).await?;
        Ok((sealed, latest))
    }

    /// A follower's freeze: made by the sequencer on its route, then
    /// awaited in storage (at most [`FROZEN_POLLS`] reads, 50 ms apart) so
    /// that this server answers with the log frozen here too.
    pub(crate) async fn freeze_routed(&self) -> Result<Frozen, WriteError> {
        let to = if let Some(seq) = self.leader() {
            Box::pin(seq.freeze()).await?;
            THIS_SERVER.to_owned()
        } else {
            let route = self.route()?;
            route.freeze().await?;
            route.describe()
        };
        for _ in 0..FROZEN_POLLS {
            self.refresh_now("a forwarded freeze not read back yet")
                .await;
            if let (LogState::Frozen, Some(f)) = self.state() {
                return Ok(f);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(WriteError::Remote {
            origin: self.inner.origin.clone(),
            to,
            code: tonic::Code::Unavailable as i32,
            message: format!(
                "the sequencer froze the log, but its record was not in storage after {FROZEN_POLLS} reads; ask again"
            ),
        })
    }
}
