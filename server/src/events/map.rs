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

use quire_core::event::{Envelope, Event, KeyField, Outcome};
use quire_core::map::KeyMap;
use quire_core::Hash;

use super::{Draft, Submitter};
use crate::log::{Inner, Log};
use crate::store::{Storage, StorageReader, StoreError};

/// The type of a map head event.
pub const HEAD_TYPE: &str = "quire.map";

/// The submitter (and actor) of the log's own events.
pub const SERVER: &str = "server";

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

    fn publish(&self, head: MapHead) {
        *self
            .head
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(head));
    }
}

/// The head event committing to the map `root` of events `[0, size)`:
/// type `quire.map`, actor and submitter `server`, action `map`,
/// attributes `size` (decimal) and `root` (lowercase hex).
///
/// # Errors
/// [`super::DraftError`] (not for any size and root).
pub fn head_draft(size: u64, root: &Hash) -> Result<Draft, super::DraftError> {
    let mut event = Event::new(HEAD_TYPE, SERVER, "map");
    event.outcome = Outcome::Success;
    event.attributes.insert("size".into(), size.to_string());
    event.attributes.insert("root".into(), root.to_hex());
    Draft::new(
        event,
        Submitter {
            name: SERVER.into(),
            tenant: None,
        },
        None,
    )
}

/// The map `size` and root a head event commits to, when `envelope` is
/// one (written by the server, of type `quire.map`, with both attributes
/// well formed).
pub fn head_of(envelope: &Envelope) -> Option<(u64, Hash)> {
    if envelope.submitter != SERVER || envelope.event.kind != HEAD_TYPE {
        return None;
    }
    let size = envelope.event.attributes.get("size")?;
    let root = envelope.event.attributes.get("root")?;
    if size.starts_with('0') && size != "0" {
        return None;
    }
    let size = size.parse().ok()?;
    let root = Hash::from_hex(root)?;
    (root.to_hex() == *envelope.event.attributes.get("root")?).then_some((size, root))
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
struct Follower {
    map: KeyMap,
    size: u64,
    covered: Option<(u64, u64)>,
}

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
    // An engine whose reads are not one snapshot (PostgreSQL) may show an
    // index newer than the size read before it while events are written:
    // read again, a few times.
    let mut tries = 0;
    let mut f = loop {
        let s = Arc::clone(&store);
        let read = tokio::task::spawn_blocking(move || open(&*s))
            .await
            .map_err(|e| StoreError::engine(format!("the key map's start: {e}")))?;
        match read? {
            Some(f) => break f,
            None if tries < 10 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => {
                return Err(StoreError::engine(
                    "the index of keys stayed ahead of the tree size read before it",
                ))
            }
        }
    };
    drop(store);
    if let Some((size, index)) = f.covered.take() {
        // The last event is a head of the map of everything before it.
        let mut before = f.map.clone();
        match revert_head(&mut before, &*log_store(&log)?, index) {
            Ok(()) => {
                maps.publish(MapHead {
                    index,
                    size,
                    root: before.root(),
                    map: before,
                });
                f.covered = Some((size, index));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the key map's last head is not taken again; a new one follows");
            }
        }
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
            let root = f.map.root();
            let draft = head_draft(f.size, &root).map_err(|e| StoreError::engine(e.to_string()))?;
            match log.add_events(vec![draft]).await {
                Ok((sealed, _)) => {
                    if let Some(s) = sealed.first() {
                        maps.publish(MapHead {
                            index: s.index,
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

fn log_store<S: Storage>(log: &Weak<Inner<S>>) -> Result<Arc<S>, StoreError> {
    log.upgrade()
        .map(|i| Arc::clone(&i.store))
        .ok_or_else(|| StoreError::engine("the log closed"))
}

/// The map of what `store` holds: its index of keys at its tree size,
/// and, when its last event is a head of the map of every event before
/// it, that head (as the `covered` of the follower, not yet checked).
/// `None` when the index names an event past the size read before it
/// (events written between the two reads, on an engine whose reads are
/// not one snapshot): read again.
fn open<S: Storage>(store: &S) -> Result<Option<Follower>, StoreError> {
    let r = store.reader()?;
    let size = r.head()?.map_or(0, |h| h.size);
    let (keys, _) = r.event_index()?;
    if keys.iter().any(|(_, i)| *i >= size) {
        return Ok(None);
    }
    let mut map = KeyMap::new();
    map.update(keys);
    let mut covered = None;
    if let Some(last) = size.checked_sub(1) {
        let env = r.checked_entries(last, size)?;
        if let Some(env) = env.first().and_then(|e| Envelope::decode(e).ok()) {
            if let Some((s, _)) = head_of(&env).filter(|(s, _)| *s == last) {
                covered = Some((s, last));
            }
        }
    }
    Ok(Some(Follower { map, size, covered }))
}

/// Turns `map` (of events up to and including the head at `index`) into
/// the map the head commits to: its own keys back to its links. Checks
/// that the root is the head's.
fn revert_head<S: Storage>(map: &mut KeyMap, store: &S, index: u64) -> Result<(), StoreError> {
    let r = store.reader()?;
    let bytes = r
        .checked_entries(index, index + 1)?
        .pop()
        .ok_or_else(|| StoreError::Corrupt(format!("event {index} is missing")))?;
    let env =
        Envelope::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("event {index}: {e}")))?;
    let Some((_, root)) = head_of(&env) else {
        return Err(StoreError::Corrupt(format!(
            "event {index} is not a map head"
        )));
    };
    for f in KeyField::ALL {
        if let Some(v) = env.event.value(f) {
            let k = quire_core::event::key(f, v);
            match env.prev.get(f) {
                Some(p) => map.update(vec![(k, p)]),
                None => {
                    map.remove(&k);
                }
            }
        }
    }
    if map.root() != root {
        return Err(StoreError::Corrupt(format!(
            "map head {index} commits to root {root}, but the stored index of keys gives {}",
            map.root()
        )));
    }
    Ok(())
}
