//! Best-effort dedup's memory: the leaf hashes of recent commits.

use crate::store::leaf_index::LeafMap;

use quire_core::Hash;

/// A bounded map of recent leaf hashes (first in, first out).
pub(crate) struct RecentLeaves {
    map: LeafMap<Hash, u64>,
    order: std::collections::VecDeque<Hash>,
    cap: usize,
}

impl RecentLeaves {
    pub(crate) fn new(cap: usize) -> Self {
        RecentLeaves {
            map: LeafMap::with_capacity_and_hasher(
                cap.min(1 << 20),
                foldhash::fast::RandomState::default(),
            ),
            order: std::collections::VecDeque::with_capacity(cap.min(1 << 20)),
            cap,
        }
    }

    pub(super) fn get(&self, h: &Hash) -> Option<u64> {
        self.map.get(h).copied()
    }

    pub(super) fn insert(&mut self, h: Hash, index: u64) {
        if self.cap == 0 {
            return;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.map.insert(h, index);
        self.order.push_back(h);
    }
}
