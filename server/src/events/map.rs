//! The key map of a log in event mode (`docs/EVENTS.md` §11), kept by a
//! follower of the log: the sequencer hands each durable commit's newest
//! event per key to a [`MapFeed`]; the follower folds them into the
//! persistent [`KeyMap`] and, at most once per [`EVERY`], commits to its
//! root by a **map head event** (`quire.map`, written by the server like
//! any event, so the log's own signed and witnessed tree holds it). Once
//! the head's checkpoint is signed the map is published for keyed queries
//! ([`KeyMaps::head`]). Ingestion never waits on the map.
//!
//! At start the map is read from the stored index of keys (the newest
//! event of each key, written in the commits of the events). When the
//! log's last event is a head that commits to the map of every earlier
//! event, that head is published again (a frozen log keeps answering);
//! otherwise a new head is appended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use quire_core::event::{Envelope, Event, Outcome};
use quire_core::map::{head_of, KeyMap, HEAD_TYPE, LOG_SUBMITTER};
use quire_core::Hash;

use super::{Draft, Submitter};
use crate::log::{Inner, Log};
use crate::store::{Storage, StorageReader, StoreError};

/// How often at most the follower commits to a new map.
pub const EVERY: Duration = Duration::from_secs(1);

/// What the sequencer committed since the follower last took it: the
/// newest event of each key, and the tree size after the last commit.
#[derive(Debug, Default)]
pub struct MapFeed {
    pending: Mutex<(HashMap<Hash, u64>, u64)>,
    wake: tokio::sync::Notify,
}

impl MapFeed {
    /// A durable commit: `newest` of its keys, the tree now of `size`.
    pub(crate) fn committed(&self, newest: &HashMap<Hash, u64>, size: u64) {
        {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (k, i) in newest {
                let e = p.0.entry(*k).or_insert(*i);
                *e = (*e).max(*i);
            }
            p.1 = p.1.max(size);
        }
        self.wake.notify_one();
    }

    fn take(&self) -> (HashMap<Hash, u64>, u64) {
        let mut p = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let size = p.1;
        (std::mem::take(&mut p.0), size)
    }
}

/// A map the log committed to by a head event that a signed checkpoint
/// covers.
#[derive(Clone, Debug)]
pub struct MapHead {
    /// The head event's index.
    pub index: u64,
    /// Its envelope (the entry), so that searches do not read it again.
    pub envelope: Vec<u8>,
    /// The map is of events `[0, size)`.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The map.
    pub map: KeyMap,
}

/// A log's key map: the feed from its sequencer and the head published
/// for queries.
#[derive(Debug)]
pub struct KeyMaps {
    pub(crate) feed: Arc<MapFeed>,
    head: RwLock<Option<Arc<MapHead>>>,
    /// Whether the follower runs.
    running: tokio::sync::watch::Sender<bool>,
}

impl Default for KeyMaps {
    fn default() -> Self {
        KeyMaps {
            feed: Arc::default(),
            head: RwLock::new(None),
            running: tokio::sync::watch::channel(false).0,
        }
    }
}

/// Marks the follower stopped when it ends, however it ends.
struct Running(Arc<KeyMaps>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.send_replace(false);
    }
}

impl KeyMaps {
    /// Waits until the follower has stopped (after the stop signal), so
    /// that the log's storage can close.
    pub async fn finished(&self) {
        let mut rx = self.running.subscribe();
        let _ = rx.wait_for(|running| !running).await;
    }

    /// The newest map head a signed checkpoint covers, once there is one.
    pub fn head(&self) -> Option<Arc<MapHead>> {
        self.head
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Publishes `head`, unless a newer one is published (the freeze's
    /// final head, ahead of a follower's answered after it).
    pub(crate) fn publish(&self, head: MapHead) {
        let mut slot = self
            .head
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_ref().is_some_and(|h| h.index > head.index) {
            return;
        }
        *slot = Some(Arc::new(head));
    }
}

/// The head event committing to the map `root` of events `[0, size)`:
/// type `quire.map`, actor and submitter `server`, action `map`,
/// attributes `size` (decimal) and `root` (lowercase hex).
///
/// # Errors
/// [`super::DraftError`] (not for any size and root).
pub fn head_draft(size: u64, root: &Hash) -> Result<Draft, super::DraftError> {
    let mut event = Event::new(HEAD_TYPE, LOG_SUBMITTER, "map");
    event.outcome = Outcome::Success;
    event.attributes.insert("size".into(), size.to_string());
    event.attributes.insert("root".into(), root.to_hex());
    Draft::new(
        event,
        Submitter {
            name: LOG_SUBMITTER.into(),
            tenant: None,
        },
        None,
    )
}

/// Freezes `log` (DRAINING already: it admits no writes) on a final map
/// head: once every admitted write is integrated, the map of every stored
/// event is read from the stored index of keys, and its head is sealed in
/// the commit that records the freeze, then published. A log whose last
/// event is already such a head, or that holds no event, is frozen
/// without one.
///
/// # Errors
/// The sequencer's [`WriteError`] (nothing was frozen then), or a storage
/// failure reading the index.
pub(crate) async fn freeze_with_head<S: Storage>(
    log: &Log<S>,
    maps: &KeyMaps,
    frozen: crate::lifecycle::Frozen,
) -> Result<(), crate::log::WriteError> {
    use crate::log::WriteError;
    log.flush().await?;
    let failed = |e: String| WriteError::Store(format!("the final key map: {e}"));
    let (f, last) = open_settled(Arc::clone(&log.inner.store))
        .await
        .map_err(|e| failed(e.to_string()))?;
    if f.size == 0 || last.is_some() {
        return log.barrier(frozen, Vec::new()).await.map(|_| ());
    }
    let root = f.map.root();
    let draft = head_draft(f.size, &root).map_err(|e| failed(e.to_string()))?;
    let sealed = log.barrier(frozen, vec![draft]).await?;
    if let Some(s) = sealed.into_iter().next() {
        if s.index != f.size {
            // Nothing else is admitted while draining; were it otherwise,
            // this head would not be of the events before it.
            tracing::error!(origin = %log.origin(), index = s.index, size = f.size, "the final map head is not at the size it covers; not published");
            return Ok(());
        }
        maps.publish(MapHead {
            index: s.index,
            envelope: s.envelope,
            size: f.size,
            root,
            map: f.map,
        });
    }
    Ok(())
}

/// Starts the key map follower of `log` (a sequencing log in event mode)
/// on the current runtime, until `stop` turns true or the log is gone.
/// Nothing outside a runtime, for other logs.
pub fn start<S: Storage>(log: &Log<S>, stop: tokio::sync::watch::Receiver<bool>) {
    let Some(maps) = log.inner.keymap.clone() else {
        return;
    };
    if log.inner.follower.is_some() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let origin = log.origin().to_owned();
    let weak = Arc::downgrade(&log.inner);
    maps.running.send_replace(true);
    let guard = Running(Arc::clone(&maps));
    rt.spawn(async move {
        let _guard = guard;
        if let Err(e) = run(weak, maps, origin.clone(), stop).await {
            tracing::warn!(origin = %origin, error = %e, "the key map stopped; keyed queries are refused");
        }
    });
}

/// The follower's state: the map of events `[0, size)`, and the last
/// head it published (the size of its map and its index).
pub(crate) struct Follower {
    map: KeyMap,
    size: u64,
    covered: Option<(u64, u64)>,
}

/// The log's last event, when it is a map head: its index, envelope's
/// bytes and the envelope.
pub(crate) struct LastHead(u64, Vec<u8>, Envelope);

impl Follower {
    /// Whether events past the last head's map are more than that head.
    fn behind(&self) -> bool {
        match self.covered {
            None => self.size > 0,
            Some((covered, index)) => {
                self.size > covered && !(covered == index && self.size == index + 1)
            }
        }
    }

    fn take(&mut self, feed: &MapFeed) {
        let (newest, size) = feed.take();
        let from = self.size;
        let updates: Vec<(Hash, u64)> = newest.into_iter().filter(|(_, i)| *i >= from).collect();
        self.map.update(updates);
        self.size = self.size.max(size);
    }
}

async fn run<S: Storage>(
    log: Weak<Inner<S>>,
    maps: Arc<KeyMaps>,
    origin: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let lag = metrics::gauge!("quire_event_index_lag_events", "log" => origin);
    let Some(inner) = log.upgrade() else {
        return Ok(());
    };
    let store = Arc::clone(&inner.store);
    drop(inner);
    let (mut f, last) = open_settled(store).await?;
    if let Some(head) = last {
        f.covered = publish_last(&maps, &f.map, head);
    }
    loop {
        f.take(&maps.feed);
        // Events durable but in no published map yet: what a search by
        // key shows without proving them complete.
        lag.set(crate::metrics::value(
            f.size - f.covered.map_or(0, |(covered, _)| covered),
        ));
        if f.behind() {
            let Some(inner) = log.upgrade() else {
                return Ok(());
            };
            let log = Log { inner };
            if log.state().0 == crate::lifecycle::LogState::Frozen {
                // A frozen log takes no head: its map stays as published.
                return Ok(());
            }
            let root = f.map.root();
            let draft = head_draft(f.size, &root).map_err(|e| StoreError::engine(e.to_string()))?;
            match log.add_events(vec![draft]).await {
                Ok((sealed, _)) => {
                    if let Some(s) = sealed.into_iter().next() {
                        maps.publish(MapHead {
                            index: s.index,
                            envelope: s.envelope,
                            size: f.size,
                            root,
                            map: f.map.clone(),
                        });
                        f.covered = Some((f.size, s.index));
                    }
                }
                Err(e) => {
                    tracing::warn!(origin = %log.origin(), error = %e, "the key map could not commit its head; trying again on the next commit");
                }
            }
            drop(log);
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                _ = stop.changed() => return Ok(()),
            }
        } else {
            tokio::select! {
                () = maps.feed.wake.notified() => {}
                _ = stop.changed() => return Ok(()),
            }
        }
        if *stop.borrow() {
            return Ok(());
        }
    }
}

impl Follower {
    /// The map read.
    pub(crate) fn map(&self) -> &KeyMap {
        &self.map
    }

    /// The tree size it is the map of.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
}

/// Publishes the log's last event `head`, a head of the map of everything
/// before it, from `map` (of everything up to and including it), once it
/// is checked; returns what it covers (its size and index).
pub(crate) fn publish_last(maps: &KeyMaps, map: &KeyMap, head: LastHead) -> Option<(u64, u64)> {
    let LastHead(index, envelope, env) = head;
    match map_before(map, index, &env) {
        Ok((map, size, root)) => {
            maps.publish(MapHead {
                index,
                envelope,
                size,
                root,
                map,
            });
            Some((size, index))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the key map's last head is not taken again; a new one follows");
            None
        }
    }
}

/// [`open`], read again while it shows an index newer than the size read
/// before it: an engine whose reads are not one snapshot (PostgreSQL) may,
/// while events are written; a few times, 100 ms apart.
///
/// # Errors
/// [`StoreError`] from the engine, or when the index stayed ahead.
pub(crate) async fn open_settled<S: Storage>(
    store: Arc<S>,
) -> Result<(Follower, Option<LastHead>), StoreError> {
    for _ in 0..=10 {
        let s = Arc::clone(&store);
        let read = tokio::task::spawn_blocking(move || open(&*s))
            .await
            .map_err(|e| StoreError::engine(format!("reading the key map: {e}")))?;
        if let Some(opened) = read? {
            return Ok(opened);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StoreError::engine(
        "the index of keys stayed ahead of the tree size read before it",
    ))
}

/// The map of what `store` holds: its index of keys at its tree size,
/// and the last event when it is a head of the map of every event before
/// it (not yet checked). `None` when the index names an event past the
/// size read before it (events written between the two reads, on an
/// engine whose reads are not one snapshot): read again.
fn open<S: Storage>(store: &S) -> Result<Option<(Follower, Option<LastHead>)>, StoreError> {
    let r = store.reader()?;
    let size = r.head()?.map_or(0, |h| h.size);
    let (keys, _) = r.event_index()?;
    if keys.iter().any(|(_, i)| *i >= size) {
        return Ok(None);
    }
    let mut map = KeyMap::new();
    map.update(keys);
    let mut last = None;
    if let Some(index) = size.checked_sub(1) {
        // A log that dropped its entries has no last event to read.
        let read = match r.checked_entries(index, size) {
            Err(StoreError::Dropped(_)) => Vec::new(),
            other => other?,
        };
        if let Some(bytes) = read.into_iter().next_back() {
            if let Ok(env) = Envelope::decode(&bytes) {
                if head_of(&env).is_some_and(|(s, _)| s == index) {
                    last = Some(LastHead(index, bytes, env));
                }
            }
        }
    }
    let f = Follower {
        map,
        size,
        covered: None,
    };
    Ok(Some((f, last)))
}

/// Sets each key of the event of `env` in `map` back to the event before
/// it (its link), or removes it when it has none: `map` is then as it was
/// before that event, if that event was the newest of each of its keys.
pub(crate) fn set_back(map: &mut KeyMap, env: &Envelope) {
    for (f, k) in env.event.keys() {
        match env.prev.get(f) {
            Some(p) => map.update(vec![(k, p)]),
            None => {
                map.remove(&k);
            }
        }
    }
}

/// The map the head `env` at `index` commits to, from `map` (of events up
/// to and including the head): the head's own keys back to its links;
/// with its size and root, checked to be the head's.
fn map_before(map: &KeyMap, index: u64, env: &Envelope) -> Result<(KeyMap, u64, Hash), StoreError> {
    let Some((size, root)) = head_of(env) else {
        return Err(StoreError::Corrupt(format!(
            "event {index} is not a map head"
        )));
    };
    let mut map = map.clone();
    set_back(&mut map, env);
    if map.root() != root {
        return Err(StoreError::Corrupt(format!(
            "map head {index} commits to root {root}, but the stored index of keys gives {}",
            map.root()
        )));
    }
    Ok((map, size, root))
}
