//! The key map of a replica that does not sequence its log (a formation's
//! log in event mode, `docs/EVENTS.md` §11): the lease holder commits to
//! its map by head events, and every other replica keeps the same map from
//! what storage holds, so that any replica answers searches by key.
//!
//! At start the map is read from the stored index of keys at the tree
//! size ([`super::map`]'s reading). Then, as the follower's checkpoints
//! grow, the new envelopes are read in order and folded in; for the last
//! head among them (size `s`, root `r`, at index `h`), the map of events
//! `[0, s)` is the map of everything read with the keys of every event
//! from `s` on set back to their links (each envelope links every key to
//! its previous event), walked from the newest down to `s`. It is published only when its root
//! is `r`: a replica never answers from a map the log did not commit to.
//!
//! While the replica holds the lease, its sequencer's map answers and this
//! one waits; it catches up from where it stopped once the lease is gone.

use std::sync::{Arc, Weak};

use quire_core::event::Envelope;
use quire_core::map::{head_of, KeyMap};

use super::map::{KeyMaps, MapHead};
use crate::log::{Inner, Log};
use crate::store::{Storage, StorageReader, StoreError};

/// Most envelopes read in one step.
pub const READ_CHUNK: u64 = 4096;

/// Starts the map of the follower `log` (in event mode, with a key map),
/// reading every `every` until `stop` turns true or the log is gone.
pub fn start<S: Storage>(
    log: &Log<S>,
    every: std::time::Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(maps) = log.inner.keymap.clone() else {
        return;
    };
    if !log.is_follower() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let origin = log.origin().to_owned();
    let weak = Arc::downgrade(&log.inner);
    rt.spawn(async move {
        if let Err(e) = run(weak, &maps, every, stop).await {
            tracing::warn!(origin = %origin, error = %e, "the replica's key map stopped; this replica answers searches by key from the last map head it checked");
        }
    });
}

/// The map of events `[0, size)`.
struct Folded {
    map: KeyMap,
    size: u64,
}

async fn run<S: Storage>(
    log: Weak<Inner<S>>,
    maps: &KeyMaps,
    every: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StoreError> {
    // The storage is taken from the log at each step, never held between
    // them: a closed log is not kept open by its map.
    let Some(store) = log.upgrade().map(|inner| Arc::clone(&inner.store)) else {
        return Ok(());
    };
    let (opened, last) = super::map::open_settled(store).await?;
    let mut folded = Folded {
        map: opened.map().clone(),
        size: opened.size(),
    };
    if let Some(head) = last {
        super::map::publish_last(maps, &folded.map, head);
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return Ok(()),
        }
        if *stop.borrow() {
            return Ok(());
        }
        let Some(inner) = log.upgrade() else {
            return Ok(());
        };
        let store = Arc::clone(&inner.store);
        let follower = Log { inner };
        // While this replica sequences the log, its sequencer's map
        // answers; this one catches up once it no longer does.
        if follower.sequencer_here().is_some() {
            continue;
        }
        let size = follower.latest().stored.size;
        drop(follower);
        if size <= folded.size {
            continue;
        }
        let (next, head) = tokio::task::spawn_blocking(move || fold(&*store, folded, size))
            .await
            .map_err(|e| StoreError::engine(format!("reading the key map: {e}")))??;
        folded = next;
        if let Some(h) = head {
            maps.publish(h);
        }
    }
}

/// `folded` brought to `size` from the envelopes in `store`, and the map
/// head of the last head event among them, when its map is the one this
/// replica holds.
fn fold<S: Storage>(
    store: &S,
    mut folded: Folded,
    size: u64,
) -> Result<(Folded, Option<MapHead>), StoreError> {
    let r = store.reader()?;
    // The last head among the new events: its index, bytes, and the size
    // and root of the map it commits to.
    let mut last: Option<(u64, Vec<u8>, u64, quire_core::Hash)> = None;
    let mut at = folded.size;
    while at < size {
        let end = size.min(at + READ_CHUNK);
        for (i, bytes) in (at..end).zip(r.checked_entries(at, end)?) {
            let env = envelope(i, &bytes)?;
            folded
                .map
                .update(env.event.keys().map(|(_, k)| (k, i)).collect());
            if let Some((head_size, root)) = head_of(&env) {
                last = Some((i, bytes, head_size, root));
            }
        }
        at = end;
    }
    folded.size = size;
    let Some((index, bytes, head_size, root)) = last else {
        return Ok((folded, None));
    };
    if head_size > index {
        return Err(StoreError::Corrupt(format!(
            "map head {index} claims a map of {head_size} events, past itself"
        )));
    }
    // Back from the map of [0, size) to the head's size: each key of
    // events [head_size, size) to its link, the newest first.
    let mut map = folded.map.clone();
    let mut j = size;
    while j > head_size {
        let start = head_size.max(j.saturating_sub(READ_CHUNK));
        let envs = r.checked_entries(start, j)?;
        for (k, bytes) in envs.iter().enumerate().rev() {
            super::map::set_back(&mut map, &envelope(start + k as u64, bytes)?);
        }
        j = start;
    }
    if map.root() != root {
        tracing::error!(
            index,
            size = head_size,
            "this replica's key map is not the one map head {index} commits to; not published"
        );
        return Ok((folded, None));
    }
    Ok((
        folded,
        Some(MapHead {
            index,
            envelope: bytes,
            size: head_size,
            root,
            map,
        }),
    ))
}

/// Event `i`'s envelope, decoded from its stored `bytes`.
fn envelope(i: u64, bytes: &[u8]) -> Result<Envelope, StoreError> {
    Envelope::decode(bytes)
        .map_err(|e| StoreError::Corrupt(format!("event {i}: not an envelope: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::events::{Draft, Submitter};
    use crate::store::memory::MemoryStore;
    use quire_core::event::Event;
    use quire_core::{LogKeyAlgorithm, LogSigner};

    const ORIGIN: &str = "map.example/log";

    fn draft(actor: &str) -> Draft {
        let submitter = Submitter {
            name: "token:t".into(),
            tenant: None,
        };
        Draft::new(Event::new("test.event", actor, "read"), submitter, None).unwrap()
    }

    /// The map of the events written with `actors`, at indexes 0, 1, ….
    fn map_of(actors: &[&str]) -> KeyMap {
        let mut map = KeyMap::new();
        for (i, a) in actors.iter().enumerate() {
            let e = Event::new("test.event", a, "read");
            let updates = e.keys().map(|(_, k)| (k, i as u64)).collect();
            map.update(updates);
        }
        map
    }

    #[tokio::test]
    async fn a_head_of_an_earlier_size_is_taken_back_through_the_links() {
        let dir = tempfile::tempdir().unwrap();
        let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
        let mut opts = crate::log::LogOptions::new(
            ORIGIN,
            vec![signer],
            crate::highwater::HighWater::at(dir.path().join("hw")),
        );
        opts.events = true;
        opts.key_map = false;
        let log = Log::open(MemoryStore::new(), opts).unwrap();
        // Events 0 and 1; then, written before the head as happens under
        // load, event 2 (alice again, linking back to 0); then the head at
        // index 3 of the map of events [0, 2).
        for a in ["alice", "bob", "alice"] {
            log.add_events(vec![draft(a)]).await.unwrap();
        }
        let root = map_of(&["alice", "bob"]).root();
        let head = crate::events::map::head_draft(2, &root).unwrap();
        log.add_events(vec![head]).await.unwrap();
        let start = Folded {
            map: KeyMap::new(),
            size: 0,
        };
        let (folded, head) = fold(log.store(), start, 4).unwrap();
        let head = head.expect("the head, checked");
        assert_eq!((head.index, head.size, head.root), (3, 2, root));
        assert_eq!(head.map.root(), root);
        assert_eq!(folded.size, 4);
        // The map folded on is of all four events, the head's own keys too.
        assert_ne!(folded.map.root(), root);

        // A head whose root is not the map of its size is not published.
        let wrong = crate::events::map::head_draft(3, &root).unwrap();
        log.add_events(vec![wrong]).await.unwrap();
        let (folded, none) = fold(log.store(), folded, 5).unwrap();
        assert!(none.is_none(), "a root that is not the map's");

        // A head of the map of [0, 5) (as folded forward), then an event
        // after it read in the same step: taken back through that event.
        let root5 = folded.map.root();
        let head5 = crate::events::map::head_draft(5, &root5).unwrap();
        log.add_events(vec![head5, draft("carol")]).await.unwrap();
        let (folded, head) = fold(log.store(), folded, 7).unwrap();
        let head = head.expect("the head of size 5, checked");
        assert_eq!((head.index, head.size, head.root), (5, 5, root5));
        assert_eq!(folded.size, 7);
        log.close();
    }
}
