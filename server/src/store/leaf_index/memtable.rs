//! The leaves the leaf index keeps in memory before they are written as a
//! run (the memtable), and the worker thread its background work runs on.
//! The filters of the runs are in `cache.rs`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::store::StoreError;

/// Keys are leaf-hash prefixes.
type KeyMap<V> = super::LeafMap<u64, V>;

/// Leaves `[start, end)` not yet written as a run. On PostgreSQL its
/// older part may be frozen ([`Memtable::freeze`]) while it is written as
/// a run beside the commits; newer leaves go to the active part.
#[derive(Default)]
pub(crate) struct Memtable {
    pub(crate) start: u64,
    pub(crate) end: u64,
    frozen: Option<Arc<Frozen>>,
    active: Part,
}

/// The keys of some leaves and their indexes.
#[derive(Default)]
struct Part {
    first: KeyMap<u64>,
    /// Further indexes of a key (a shared prefix, or a duplicate under a
    /// policy that appends duplicates). Rare.
    more: KeyMap<Vec<u64>>,
}

impl Part {
    fn push(&mut self, key: u64, index: u64) {
        match self.first.entry(key) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(index);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.more.entry(key).or_default().push(index);
            }
        }
    }

    fn get(&self, key: u64, out: &mut Vec<u64>) {
        if let Some(i) = self.first.get(&key) {
            out.push(*i);
            if let Some(more) = self.more.get(&key) {
                out.extend_from_slice(more);
            }
        }
    }

    fn pairs(&self, out: &mut Vec<(u64, u64)>) {
        out.extend(self.first.iter().map(|(k, i)| (*k, *i)));
        for (k, more) in &self.more {
            out.extend(more.iter().map(|i| (*k, *i)));
        }
    }
}

/// The frozen leaves `[start, end)` of a memtable: what one run will hold.
pub(crate) struct Frozen {
    pub(crate) start: u64,
    pub(crate) end: u64,
    part: Part,
}

impl Frozen {
    /// The pairs, sorted.
    pub(crate) fn sorted_pairs(&self) -> Vec<(u64, u64)> {
        let mut pairs = Vec::with_capacity(usize::try_from(self.end - self.start).unwrap_or(0));
        self.part.pairs(&mut pairs);
        pairs.sort_unstable();
        pairs
    }
}

impl Memtable {
    pub(crate) fn new(start: u64) -> Self {
        Memtable {
            start,
            end: start,
            ..Memtable::default()
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Adds the next leaf; `index` must be `end`.
    pub(crate) fn push(&mut self, key: u64, index: u64) {
        debug_assert_eq!(index, self.end);
        self.active.push(key, index);
        self.end = index + 1;
    }

    /// Indexes stored under `key`, lowest first.
    pub(crate) fn get(&self, key: u64, out: &mut Vec<u64>) {
        if let Some(f) = &self.frozen {
            f.part.get(key, out);
        }
        self.active.get(key, out);
    }

    /// Every pair, frozen or not, sorted.
    pub(crate) fn sorted_pairs(&self) -> Vec<(u64, u64)> {
        let mut pairs = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        if let Some(f) = &self.frozen {
            f.part.pairs(&mut pairs);
        }
        self.active.pairs(&mut pairs);
        pairs.sort_unstable();
        pairs
    }

    /// Freezes every leaf held, unless some are frozen already or none
    /// are held: they are then the frozen part, and later leaves the
    /// active one.
    pub(crate) fn freeze(&mut self) -> Option<Arc<Frozen>> {
        if self.frozen.is_some() || self.len() == 0 {
            return None;
        }
        let frozen = Arc::new(Frozen {
            start: self.start,
            end: self.end,
            part: std::mem::take(&mut self.active),
        });
        self.frozen = Some(Arc::clone(&frozen));
        Some(frozen)
    }

    /// The frozen part, if any.
    pub(crate) fn frozen(&self) -> Option<&Arc<Frozen>> {
        self.frozen.as_ref()
    }

    /// The frozen leaves, up to `end`, are now a run: the memtable starts
    /// at `end`. False (nothing changed) unless the frozen part ends at
    /// `end`.
    pub(crate) fn drop_frozen(&mut self, end: u64) -> bool {
        if self.frozen.as_ref().map(|f| f.end) != Some(end) {
            return false;
        }
        self.frozen = None;
        self.start = end;
        true
    }
}

/// A thread that takes jobs in the order queued, until its job function
/// says stop or it is dropped; dropping it waits for the job under way,
/// unless the thread itself drops it (its job held the last reference to
/// what owns it).
pub(crate) struct Worker<J> {
    tx: Mutex<Option<mpsc::Sender<J>>>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl<J: Send + 'static> Worker<J> {
    /// Starts the thread `name`, running `work` on each job; `work`
    /// returns false to stop.
    ///
    /// # Errors
    /// [`StoreError::Engine`] when the thread cannot start.
    pub(crate) fn spawn(
        name: &str,
        mut work: impl FnMut(J) -> bool + Send + 'static,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<J>();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    if !work(job) {
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::engine(format!("starting the thread {name:?}: {e}")))?;
        Ok(Worker {
            tx: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
        })
    }

    pub(crate) fn queue(&self, job: J) {
        if let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(job);
        }
    }
}

impl<J> Drop for Worker<J> {
    fn drop(&mut self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle.filter(|h| h.thread().id() != std::thread::current().id()) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtable_keeps_every_index_of_a_key() {
        let mut m = Memtable::new(10);
        m.push(7, 10);
        m.push(3, 11);
        m.push(7, 12);
        let mut got = Vec::new();
        m.get(7, &mut got);
        assert_eq!(got, vec![10, 12]);
        assert_eq!(m.sorted_pairs(), vec![(3, 11), (7, 10), (7, 12)]);
        assert_eq!(m.len(), 3);
    }

    /// A frozen part answers with the active one, lowest index first, and
    /// only it goes when its run is taken.
    #[test]
    fn a_frozen_part_answers_until_its_run_is_taken() {
        let mut m = Memtable::new(10);
        m.push(7, 10);
        m.push(3, 11);
        let frozen = m.freeze().unwrap();
        assert_eq!((frozen.start, frozen.end), (10, 12));
        assert_eq!(frozen.sorted_pairs(), vec![(3, 11), (7, 10)]);
        // Frozen once: a second freeze gives nothing.
        assert!(m.freeze().is_none());
        m.push(7, 12);
        m.push(5, 13);
        let mut got = Vec::new();
        m.get(7, &mut got);
        assert_eq!(got, vec![10, 12]);
        assert_eq!(m.sorted_pairs(), vec![(3, 11), (5, 13), (7, 10), (7, 12)]);
        assert_eq!(m.len(), 4);
        // Only the frozen part's own end drops it.
        assert!(!m.drop_frozen(13));
        assert!(m.drop_frozen(12));
        assert!(m.frozen().is_none());
        assert_eq!((m.start, m.end, m.len()), (12, 14, 2));
        let mut got = Vec::new();
        m.get(7, &mut got);
        assert_eq!(got, vec![12]);
        got.clear();
        m.get(3, &mut got);
        assert!(got.is_empty());
        assert_eq!(m.sorted_pairs(), vec![(5, 13), (7, 12)]);
    }
}
