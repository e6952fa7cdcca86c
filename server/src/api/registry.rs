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
