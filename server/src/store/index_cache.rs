//! What the leaf index keeps in memory, shared by the writer and readers:
//! the memtable and a Bloom filter per run; and the thread that builds the
//! filters of runs that have none (every run after a restart, and a merge
//! that a restart interrupted). Until its filter is built a run is probed
//! directly, which is slower but never wrong.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase};

use super::bloom::Bloom;
use super::leaf_index::{self, IndexState, Memtable, Step, RUN_BLOCKS};
use super::StoreError;

/// The in-memory part of the leaf index.
pub(crate) struct IndexCache {
    pub(crate) mem: Memtable,
    blooms: HashMap<u64, Arc<Bloom>>,
    /// Runs of the last committed state.
    live: HashSet<u64>,
}

/// The cache as the store, its readers and the builder share it.
pub(crate) type SharedCache = Arc<RwLock<IndexCache>>;

impl IndexCache {
    pub(crate) fn new(mem: Memtable, state: &IndexState) -> Self {
        IndexCache {
            mem,
            blooms: HashMap::new(),
            live: state.runs.iter().map(|r| r.id).collect(),
        }
    }

    /// The filters of the runs now (cheap: shared pointers).
    pub(crate) fn blooms(&self) -> HashMap<u64, Arc<Bloom>> {
        self.blooms.clone()
    }

    /// Applies a committed step: the memtable, new and finished runs.
    /// Returns a run whose filter must be built.
    pub(crate) fn apply(&mut self, step: Step, leaves: &[(quire_core::Hash, u64)]) -> Option<u64> {
        if let Some(end) = step.flushed_to {
            self.mem = Memtable::new(end);
        } else {
            for (h, i) in leaves {
                self.mem.push(leaf_index::key(h), *i);
            }
        }
        self.live = step.state.runs.iter().map(|r| r.id).collect();
        if let Some((id, bloom)) = step.flushed {
            self.blooms.insert(id, Arc::new(bloom));
        }
        let mut build = None;
        if let Some(m) = step.merged {
            for id in m.inputs {
                self.blooms.remove(&id);
            }
            match m.bloom {
                Some(b) => {
                    self.blooms.insert(m.output, Arc::new(b));
                }
                None => build = Some(m.output),
            }
        }
        self.blooms.retain(|id, _| self.live.contains(id));
        build
    }

    /// Bytes the filters hold.
    pub(crate) fn bloom_bytes(&self) -> usize {
        self.blooms.values().map(|b| b.bytes()).sum()
    }
}

/// The thread that builds missing filters.
pub(crate) struct Builder {
    tx: Mutex<Option<mpsc::Sender<u64>>>,
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Builder {
    pub(crate) fn spawn(db: Arc<Database>, cache: SharedCache) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<u64>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("leaf index filters".into())
            .spawn(move || {
                while let Ok(id) = rx.recv() {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = build_one(&db, &cache, id, &stopping) {
                        tracing::warn!(run = id, error = %e, "leaf index filter not built; the run is probed directly");
                    }
                }
            })
            .map_err(|e| StoreError::Engine(format!("starting the filter builder: {e}")))?;
        Ok(Builder {
            tx: Mutex::new(Some(tx)),
            stop,
            handle: Mutex::new(Some(handle)),
        })
    }

    pub(crate) fn queue(&self, id: u64) {
        if let Some(tx) = self
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = tx.send(id);
        }
    }
}

impl Drop for Builder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

fn build_one(
    db: &Database,
    cache: &SharedCache,
    id: u64,
    stop: &AtomicBool,
) -> Result<(), StoreError> {
    let txn = db.begin_read().map_err(super::redb::engine)?;
    let state = super::redb::index_state(&txn)?;
    let Some(run) = state.runs.iter().find(|r| r.id == id).copied() else {
        return Ok(());
    };
    let table = txn.open_table(RUN_BLOCKS).map_err(super::redb::engine)?;
    let Some(bloom) = leaf_index::build_bloom(&table, &run, stop)? else {
        return Ok(());
    };
    let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
    if cache.live.contains(&run.id) {
        cache.blooms.insert(id, Arc::new(bloom));
    }
    Ok(())
}
