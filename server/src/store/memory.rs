//! An in-memory engine: the storage trait's second implementation, with
//! none of redb's layout (it keeps every node the appends complete), so the
//! conformance suite (`server/tests/storage_conformance.rs`) shows what the
//! trait promises rather than what one engine happens to do. Not durable:
//! for tests and for embedding a throwaway log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use quire_core::{Hash, HashReader, NodeId};

use super::{
    check_head, leaves_stored, Commit, Head, Payload, Storage, StorageReader, StoreError,
    StoredCheckpoint,
};

#[derive(Default)]
struct State {
    entries: Vec<Vec<u8>>,
    nodes: HashMap<NodeId, Hash>,
    leaves: HashMap<Hash, Vec<u64>>,
    checkpoints: BTreeMap<u64, StoredCheckpoint>,
    meta: BTreeMap<String, Vec<u8>>,
    head: Option<Head>,
    cosignatures: BTreeMap<u64, Vec<u8>>,
    payloads: BTreeMap<u64, Payload>,
    newest: HashMap<Hash, u64>,
    times: std::collections::BTreeSet<(u64, u64)>,
}

/// A log kept in memory.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A read view of a [`MemoryStore`]: what was committed when it was made.
/// Stored data only grows, so the view bounds what it reads by the sizes
/// of that moment.
pub struct MemoryReader {
    state: Arc<RwLock<State>>,
    entries: u64,
    latest: Option<StoredCheckpoint>,
    meta: BTreeMap<String, Vec<u8>>,
    head: Option<Head>,
}

impl Storage for MemoryStore {
    type Reader = MemoryReader;

    fn reader(&self) -> Result<MemoryReader, StoreError> {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(MemoryReader {
            state: Arc::clone(&self.state),
            entries: s.entries.len() as u64,
            latest: s.checkpoints.values().next_back().cloned(),
            meta: s.meta.clone(),
            head: s.head,
        })
    }

    fn keep_cosignatures(&self, size: u64, lines: &[u8]) -> Result<(), StoreError> {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        s.cosignatures.insert(size, lines.to_vec());
        Ok(())
    }

    fn checks_new_leaves(&self) -> bool {
        true
    }

    fn replace_event_index(
        &self,
        keys: &[(Hash, u64)],
        times: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        s.newest = keys.iter().copied().collect();
        s.times = times.iter().copied().collect();
        Ok(())
    }

    fn drop_entries(&self, dropped: crate::lifecycle::Dropped) -> Result<(), StoreError> {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !s.meta.contains_key(crate::lifecycle::LIFECYCLE_META) {
            return Err(StoreError::engine(
                "the log is not frozen in storage: its entries are kept",
            ));
        }
        for e in &mut s.entries {
            *e = Vec::new();
        }
        s.payloads.clear();
        s.meta
            .insert(crate::lifecycle::DROPPED_META.into(), dropped.encode());
        Ok(())
    }

    /// Nothing to settle: memory holds what it holds.
    fn commit_unsettled(&self, c: &Commit) -> Result<(), StoreError> {
        self.commit(c)
    }

    fn settle(&self, _size: u64) -> Result<(), StoreError> {
        Ok(())
    }

    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        check_head(s.head, c)?;
        if c.base.size != s.entries.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "a commit from index {} over {} stored entries",
                c.base.size,
                s.entries.len()
            )));
        }
        // Checked before anything changes: a refused commit writes nothing.
        if c.leaf_index.len() != c.entries.len() {
            return Err(StoreError::Corrupt(format!(
                "commit of {} entries carries {} leaf hashes",
                c.entries.len(),
                c.leaf_index.len()
            )));
        }
        if c.new_leaves {
            let stored = c
                .leaf_index
                .iter()
                .filter(|(h, _)| s.leaves.contains_key(h))
                .count();
            if stored > 0 {
                return Err(leaves_stored(stored, c.leaf_index.len()));
            }
        }
        s.entries.extend(c.entries.iter().cloned());
        for (node, h) in &c.nodes {
            s.nodes.insert(*node, *h);
        }
        for (h, i) in &c.leaf_index {
            s.leaves.entry(*h).or_default().push(*i);
        }
        for cp in c.history.iter().chain(&c.checkpoint) {
            s.checkpoints.insert(cp.size, cp.clone());
        }
        for (k, v) in &c.meta {
            s.meta.insert(k.clone(), v.clone());
        }
        for p in &c.events.payloads {
            s.payloads.insert(p.index, Payload::Stored(p.clone()));
        }
        for (index, by) in c.events.erased.iter().chain(&c.events.erased_copies) {
            s.payloads.insert(*index, Payload::Erased { by: *by });
        }
        for (k, i) in &c.events.newest {
            s.newest.insert(*k, *i);
        }
        if let Some(t) = c.events.time {
            s.times.insert(t);
        }
        s.head = Some(c.head);
        Ok(())
    }
}

impl HashReader for MemoryReader {
    type Error = StoreError;

    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        nodes
            .iter()
            .map(|n| {
                let end = (n.index + 1)
                    .checked_shl(u32::from(n.level))
                    .unwrap_or(u64::MAX);
                if end > self.entries {
                    return Err(StoreError::Missing(format!("node {n:?}")));
                }
                s.nodes
                    .get(n)
                    .copied()
                    .ok_or_else(|| StoreError::Missing(format!("node {n:?}")))
            })
            .collect()
    }
}

impl StorageReader for MemoryReader {
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self.latest.clone())
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let max = self.latest.as_ref().map_or(0, |c| c.size);
        if size > max {
            return Ok(None);
        }
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(s.checkpoints.get(&size).cloned())
    }

    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let Some(max) = self.latest.as_ref().map(|c| c.size) else {
            return Ok(Vec::new());
        };
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(s.checkpoints
            .range(from..=max.max(from))
            .filter(|(k, _)| **k <= max)
            .take(limit)
            .map(|(_, c)| c.clone())
            .collect())
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        if start > end || end > self.entries {
            return Err(StoreError::Missing(format!("entries {start}..{end}")));
        }
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        // Every entry of a log that dropped them is gone.
        if start < end && s.meta.contains_key(crate::lifecycle::DROPPED_META) {
            return Err(StoreError::Missing(format!("entries {start}..{end}")));
        }
        let (a, b) = (
            usize::try_from(start).unwrap_or(usize::MAX),
            usize::try_from(end).unwrap_or(usize::MAX),
        );
        s.entries
            .get(a..b)
            .map(<[Vec<u8>]>::to_vec)
            .ok_or_else(|| StoreError::Missing(format!("entries {start}..{end}")))
    }

    fn find_leaves(&self, leaves: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let size = self.latest.as_ref().map_or(0, |c| c.size);
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(leaves
            .iter()
            .map(|h| {
                s.leaves
                    .get(h)
                    .and_then(|is| is.iter().copied().filter(|i| *i < size).min())
            })
            .collect())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        Ok(self.head)
    }

    fn payload(&self, index: u64) -> Result<Option<Payload>, StoreError> {
        if index >= self.entries {
            return Ok(None);
        }
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(s.payloads.get(&index).cloned())
    }

    fn newest_events(&self, keys: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(keys.iter().map(|k| s.newest.get(k).copied()).collect())
    }

    fn stored_payloads(&self, from: u64, to: u64, limit: usize) -> Result<Vec<u64>, StoreError> {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(s.payloads
            .range(from..to.max(from))
            .filter(|(_, p)| matches!(p, Payload::Stored(_)))
            .map(|(i, _)| *i)
            .take(limit)
            .collect())
    }

    fn event_index(&self) -> Result<(Vec<(Hash, u64)>, Vec<(u64, u64)>), StoreError> {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok((
            s.newest.iter().map(|(k, i)| (*k, *i)).collect(),
            s.times.iter().copied().collect(),
        ))
    }

    fn first_logged_at(&self, time_ms: u64) -> Result<Option<u64>, StoreError> {
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(s.times
            .range((time_ms, 0)..)
            .next()
            .map(|(_, i)| *i)
            .filter(|i| *i < self.entries))
    }

    fn latest_cosignatures(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        // Cosignatures are not part of the snapshot: the newest kept.
        let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Ok(s.cosignatures
            .iter()
            .next_back()
            .map(|(k, v)| (*k, v.clone())))
    }
}
