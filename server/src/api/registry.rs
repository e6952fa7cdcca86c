//! The logs of a server by origin, with their witness collection and the
//! families whose names route to a shard ([`crate::family`]): one value,
//! replaced whole when a log is added, so that each request reads one
//! consistent snapshot.

use std::collections::BTreeMap;

use crate::log::Log;
use crate::store::Storage;
use crate::witnessing::Witnessing;

/// The logs of a server, by origin, with the witness collection of those
/// that have witnesses: replaced whole when a log is added.
pub(super) struct Registry<S: Storage> {
    pub(super) logs: BTreeMap<String, Log<S>>,
    pub(super) witnessing: BTreeMap<String, Witnessing>,
    /// The families whose origins name their current shard, with their
    /// periods ([`crate::family`]).
    pub(super) families: BTreeMap<String, crate::family::Period>,
}

impl<S: Storage> Registry<S> {
    /// The shard a write or read naming `family` goes to at `now`: the
    /// latest shard whose period began, or, when that one takes no writes
    /// (its period ended and it was frozen, or an admin froze it early),
    /// the first active shard after it.
    pub(super) fn shard(
        &self,
        family: &str,
        period: crate::family::Period,
        now: u64,
    ) -> Option<Log<S>> {
        let prefix = format!("{family}/");
        let upto = format!("{prefix}{}", period.label(now));
        let shards = || {
            self.logs
                .range(prefix.clone()..)
                .take_while(|(o, _)| o.starts_with(&prefix))
                .filter(|(o, _)| crate::family::shard_span(family, period, o).is_some())
        };
        let current = shards().take_while(|(o, _)| **o <= upto).last();
        let (origin, log) = current.or_else(|| shards().next())?;
        if log.state().0 == crate::lifecycle::LogState::Active {
            return Some(log.clone());
        }
        Some(
            shards()
                .filter(|(o, _)| *o > origin)
                .find(|(_, l)| l.state().0 == crate::lifecycle::LogState::Active)
                .map_or_else(|| log.clone(), |(_, l)| l.clone()),
        )
    }
}

impl<S: Storage> super::LogApi<S> {
    /// Sends a write to `log`, the log found for `origin`. When `origin`
    /// named a family (the log's own origin is another) and its shard froze
    /// between the routing and the write (its period ended), the write is
    /// routed again and sent once more, at most twice, after `recheck` of
    /// the caller on the new shard: a writer never sees the boundary.
    /// `write` gets the log and whether the write may go again (then it
    /// must keep what it sends). Returns the log that took the write.
    ///
    /// # Errors
    /// What `write` fails with; the shard still frozen after routing; the
    /// caller refused on the new shard.
    pub(super) async fn write_routed<T, Fut>(
        &self,
        caller: &super::Caller,
        origin: &str,
        mut log: Log<S>,
        recheck: impl Fn(&str) -> Result<(), super::ApiError>,
        mut write: impl FnMut(Log<S>, bool) -> Fut,
    ) -> Result<(Log<S>, T), super::ApiError>
    where
        Fut: std::future::Future<Output = Result<T, super::ApiError>>,
    {
        use crate::log::WriteError;
        let routed = !origin.is_empty() && log.origin() != origin;
        let mut tries = 0;
        loop {
            match write(log.clone(), routed).await {
                Err(super::ApiError::Write(WriteError::Frozen { .. })) if routed && tries < 2 => {
                    tries += 1;
                    let next = self.find(caller, origin)?;
                    if next.origin() == log.origin() {
                        return Err(super::ApiError::Write(WriteError::Frozen {
                            origin: log.origin().to_owned(),
                            state: log.state().0,
                        }));
                    }
                    recheck(next.origin())?;
                    log = next;
                }
                r => return r.map(|t| (log, t)),
            }
        }
    }
}
