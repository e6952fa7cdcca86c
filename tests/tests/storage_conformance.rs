//! What every storage engine promises, run on redb, on PostgreSQL (a real
//! server, started by `scripts/postgres`) and on the in-memory engine
//! alike: commits land whole or not at all, a commit whose base is
//! not the store's head is refused (the compare-and-swap a replicated
//! engine needs), a read view is a snapshot, and entries, every node's hash,
//! checkpoints, leaf lookups and metadata read back as committed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::collections::HashMap;

use quire_core::node::TileId;
use quire_core::{leaf_hash, CompactRange, Hash, HashReader, NodeId};
use quire_server::store::memory::MemoryStore;
use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::redb::{RedbOptions, RedbStore};
use quire_server::store::{Commit, Head, Storage, StorageReader, StoreError, StoredCheckpoint};
use quire_tests::commits::{entries, Writer};

/// RFC 9162 §2.1.1 MTH, straight from the definition.
fn mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = n.next_power_of_two() / 2;
            quire_core::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn conformance<S: Storage>(store: &S) {
    // A new store: nothing, and its head is the empty tree's.
    let r = store.reader().unwrap();
    assert!(r.latest_checkpoint().unwrap().is_none());
    assert_eq!(r.head().unwrap().unwrap_or_default(), Head::empty());
    drop(r);

    let mut w = Writer::new();
    let mut seen_sizes = Vec::new();
    // Batches that cross bundle (256) and tile (256) boundaries.
    for (from, n) in [(0, 3), (3, 250), (253, 10), (263, 600)] {
        let (c, next) = w.commit(&entries(from, n), true);
        let before = store.reader().unwrap();
        store.commit(&c).unwrap();
        // A view opened before the commit does not see it.
        assert_eq!(
            before.latest_checkpoint().unwrap().map(|c| c.size),
            seen_sizes.last().copied()
        );
        w = next;
        seen_sizes.push(w.range.size());
    }
    let size = w.range.size();
    assert_eq!(size, 863);
    let r = store.reader().unwrap();
    assert_eq!(r.head().unwrap(), Some(w.head()));
    // Entries, over any range.
    for (a, b) in [
        (0, 1),
        (0, 863),
        (250, 260),
        (255, 257),
        (512, 863),
        (862, 863),
    ] {
        assert_eq!(r.entries(a, b).unwrap(), w.entries[a as usize..b as usize]);
        assert_eq!(
            r.checked_entries(a, b).unwrap(),
            w.entries[a as usize..b as usize]
        );
    }
    assert!(r.entries(860, 864).is_err(), "past the stored entries");
    // Every complete node's hash, at every level.
    let mut nodes: Vec<NodeId> = w.nodes.keys().copied().collect();
    nodes.sort_by_key(|n| (n.level, n.index));
    let got = r.read_hashes(&nodes).unwrap();
    for (n, h) in nodes.iter().zip(got) {
        assert_eq!(h, w.nodes[n], "node {n:?}");
    }
    assert_eq!(quire_core::root_at(&r, size).unwrap(), w.range.root());
    // Checkpoints.
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, size);
    assert_eq!(r.checkpoint_at(263).unwrap().unwrap().signed_at_ms, 2630);
    assert!(r.checkpoint_at(100).unwrap().is_none());
    let all: Vec<u64> = r
        .checkpoints(0, 100)
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(all, seen_sizes);
    let page: Vec<u64> = r
        .checkpoints(4, 2)
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(page, [253, 263]);
    // C2SP tiles: level 0 holds leaf hashes, level 1 the roots of each 256
    // leaves (RFC 9162 MTH), full or partial; entry bundles hold entries.
    let leaves = |a: usize, b: usize| -> Vec<Hash> {
        w.entries[a..b].iter().map(|e| leaf_hash(e)).collect()
    };
    assert_eq!(
        r.tile_hashes(TileId { level: 0, index: 0 }, 256).unwrap(),
        leaves(0, 256)
    );
    assert_eq!(
        r.tile_hashes(TileId { level: 0, index: 3 }, 95).unwrap(),
        leaves(768, 863)
    );
    assert_eq!(
        r.tile_hashes(TileId { level: 0, index: 3 }, 10).unwrap(),
        leaves(768, 778),
        "a narrower partial tile is a prefix"
    );
    assert_eq!(
        r.tile_hashes(TileId { level: 1, index: 0 }, 3).unwrap(),
        [0, 256, 512].map(|a| mth(&w.entries[a..a + 256]))
    );
    assert!(
        r.tile_hashes(TileId { level: 0, index: 3 }, 96).is_err(),
        "a hash not stored"
    );
    assert_eq!(r.bundle_entries(1, 256).unwrap(), w.entries[256..512]);
    assert_eq!(r.bundle_entries(3, 95).unwrap(), w.entries[768..863]);
    assert!(r.bundle_entries(3, 96).is_err(), "an entry not stored");
    // Leaf lookups, present and absent, in one call.
    let found = r
        .find_leaves(&[
            leaf_hash(&w.entries[0]),
            leaf_hash(b"never logged"),
            leaf_hash(&w.entries[700]),
        ])
        .unwrap();
    assert_eq!(found, [Some(0), None, Some(700)]);
    drop(r);

    // The compare-and-swap: a commit from a stale head, or from the right
    // size with another root, is refused and writes nothing.
    let stale = Writer {
        range: {
            let mut cr = CompactRange::new();
            for e in &w.entries[..263] {
                cr.append(leaf_hash(e), |_, _| {}).unwrap();
            }
            cr
        },
        nodes: HashMap::new(),
        entries: w.entries[..263].to_vec(),
    };
    let (c, _) = stale.commit(&entries(9000, 5), true);
    let e = store.commit(&c).unwrap_err();
    assert!(
        matches!(e, StoreError::Conflict { expected, found } if expected.size == 263 && found == w.head()),
        "{e:?}"
    );
    let (mut c, _) = w.commit(&entries(9100, 5), true);
    c.base.root = leaf_hash(b"another tree");
    assert!(matches!(store.commit(&c), Err(StoreError::Conflict { .. })));
    let r = store.reader().unwrap();
    assert_eq!(r.head().unwrap(), Some(w.head()));
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, size);
    assert!(
        r.entries(size, size + 1).is_err(),
        "nothing of a refused commit"
    );
    drop(r);

    // Leaves said new (`Commit::new_leaves`): an engine that checks them
    // refuses a commit carrying one stored already and writes nothing of
    // it, and takes one whose leaves are all new; one that does not check
    // refuses every such commit, never writing a leaf it did not check.
    let (mut c, _) = w.commit(
        &[entries(9200, 2), vec![w.entries[5].clone()]].concat(),
        true,
    );
    c.new_leaves = true;
    let e = store.commit(&c).unwrap_err();
    if store.checks_new_leaves() {
        assert!(matches!(&e, StoreError::LeafStored(_)), "{e:?}");
    }
    let r = store.reader().unwrap();
    assert_eq!(r.head().unwrap(), Some(w.head()));
    assert_eq!(
        r.find_leaves(&[leaf_hash(&entries(9200, 1)[0])]).unwrap(),
        [None],
        "nothing of a refused commit"
    );
    drop(r);
    let (mut c, next) = w.commit(&entries(9300, 4), true);
    c.new_leaves = true;
    if store.checks_new_leaves() {
        store.commit(&c).unwrap();
        w = next;
        let r = store.reader().unwrap();
        assert_eq!(r.head().unwrap(), Some(w.head()));
        assert_eq!(
            r.find_leaves(&[leaf_hash(&entries(9300, 1)[0])]).unwrap(),
            [Some(size)]
        );
    } else {
        assert!(store.commit(&c).is_err());
        assert_eq!(store.reader().unwrap().head().unwrap(), Some(w.head()));
    }
    let size = w.range.size();

    // Cosignatures kept beside checkpoints: the newest size wins, a size
    // kept again is replaced, and the tree is untouched.
    assert!(store
        .reader()
        .unwrap()
        .latest_cosignatures()
        .unwrap()
        .is_none());
    store.keep_cosignatures(253, b"- w1 abc\n").unwrap();
    store.keep_cosignatures(863, b"- w1 def\n").unwrap();
    store
        .keep_cosignatures(863, b"- w1 def\n- w2 ghi\n")
        .unwrap();
    store.keep_cosignatures(263, b"- w1 older\n").unwrap();
    let r = store.reader().unwrap();
    assert_eq!(
        r.latest_cosignatures().unwrap(),
        Some((863, b"- w1 def\n- w2 ghi\n".to_vec()))
    );
    assert_eq!(r.head().unwrap(), Some(w.head()));
    drop(r);

    // Metadata, and a commit of metadata alone.
    let c = Commit {
        base: w.head(),
        head: w.head(),
        meta: vec![("origin".into(), b"conformance.example/log".to_vec())],
        ..Commit::default()
    };
    store.commit(&c).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(
        r.meta("origin").unwrap().as_deref(),
        Some(b"conformance.example/log".as_slice())
    );
    assert!(r.meta("absent").unwrap().is_none());
    drop(r);

    // A copied stretch (`quire-server migrate`): older checkpoints within
    // the commit's entries are stored with it.
    let (mut c, _) = w.commit(&entries(2000, 3), true);
    c.history = vec![StoredCheckpoint {
        size: size + 1,
        signed_at_ms: 1,
        note: b"older".to_vec(),
    }];
    store.commit(&c).unwrap();
    let r = store.reader().unwrap();
    let got: Vec<u64> = r
        .checkpoints(size, 10)
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(got, [size, size + 1, size + 3]);
    assert_eq!(r.checkpoint_at(size + 1).unwrap().unwrap().note, b"older");
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, size + 3);
}

/// A frozen log drops its entries and payloads, and keeps every hash,
/// checkpoint and cosignature; a log not frozen in storage keeps them.
fn drops_entries<S: Storage>(store: &S) {
    use quire_server::lifecycle::{Dropped, Frozen, DROPPED_META, LIFECYCLE_META};
    use quire_server::store::{Payload, StoredPayload};
    let w = Writer::new();
    let (mut c, w) = w.commit(&entries(0, 300), true);
    c.events.payloads = vec![StoredPayload {
        index: 7,
        salt: [7; 32],
        payload: b"alice".to_vec(),
    }];
    store.commit(&c).unwrap();
    store
        .keep_cosignatures(300, "\u{2014} w1 AAAA\n".as_bytes())
        .unwrap();
    let dropped = Dropped {
        size: 300,
        at_ms: 99,
    };
    // Not frozen: refused, nothing deleted.
    assert!(store.drop_entries(dropped).is_err());
    let r = store.reader().unwrap();
    assert_eq!(r.entries(0, 300).unwrap(), w.entries[..300]);
    assert!(matches!(r.payload(7).unwrap(), Some(Payload::Stored(_))));
    // A range of payloads is each event's that has one.
    let seven = r.payload(7).unwrap().unwrap();
    assert_eq!(r.payloads(0, 300).unwrap(), [(7, seven.clone())]);
    assert_eq!(r.payloads(7, 8).unwrap(), [(7, seven)]);
    assert!(r.payloads(8, 300).unwrap().is_empty());
    assert!(r.payloads(0, 7).unwrap().is_empty());
    assert!(r.meta(DROPPED_META).unwrap().is_none());
    drop(r);
    // Frozen (a commit of the record alone), then dropped.
    let (mut c, w) = w.commit(&[], false);
    c.meta = vec![(LIFECYCLE_META.into(), Frozen { at_ms: 50 }.encode())];
    store.commit(&c).unwrap();
    let before = store.reader().unwrap();
    store.drop_entries(dropped).unwrap();
    store.drop_entries(dropped).unwrap();
    let r = store.reader().unwrap();
    for (a, b) in [(0, 300), (256, 300), (0, 1), (299, 300)] {
        let e = r.checked_entries(a, b).unwrap_err();
        assert!(
            matches!(e, StoreError::Dropped(d) if d == dropped),
            "{a}..{b}: {e}"
        );
        assert!(
            e.to_string().contains("dropped by retention at 99 ms"),
            "{e}"
        );
    }
    assert!(r.bundle_entries(1, 44).is_err());
    assert_eq!(
        r.payload(7).unwrap(),
        None,
        "the payload went with its entry"
    );
    assert_eq!(r.meta(DROPPED_META).unwrap(), Some(dropped.encode()));
    // Every hash, checkpoint and cosignature stays.
    let mut nodes: Vec<NodeId> = w.nodes.keys().copied().collect();
    nodes.sort_by_key(|n| (n.level, n.index));
    let got = r.read_hashes(&nodes).unwrap();
    for (n, h) in nodes.iter().zip(got) {
        assert_eq!(h, w.nodes[n], "node {n:?}");
    }
    assert_eq!(quire_core::root_at(&r, 300).unwrap(), mth(&w.entries));
    assert_eq!(
        r.tile_hashes(TileId { level: 0, index: 1 }, 44).unwrap(),
        w.entries[256..300]
            .iter()
            .map(|e| leaf_hash(e))
            .collect::<Vec<_>>()
    );
    assert_eq!(r.latest_checkpoint().unwrap().unwrap().size, 300);
    assert_eq!(r.latest_cosignatures().unwrap().unwrap().0, 300);
    assert_eq!(
        r.find_leaf(&leaf_hash(&w.entries[42])).unwrap(),
        Some(42),
        "proof by leaf hash still finds its index"
    );
    drop((r, before));
}

#[test]
fn redb_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("log.redb"), RedbOptions::default()).unwrap();
    conformance(&store);
    let store = RedbStore::open(&dir.path().join("drop.redb"), RedbOptions::default()).unwrap();
    drops_entries(&store);
}

#[test]
fn postgres_conforms() {
    let origin = quire_tests::postgres::unique("conformance.example/log");
    conformance(&quire_tests::postgres::store(&origin, Create::Yes).unwrap());
    // Opened again (a restart, another replica): the same log, and a
    // second log in the same database is apart from it.
    let again = quire_tests::postgres::store(&origin, Create::No).unwrap();
    let r = again.reader().unwrap();
    // 863 entries, 4 said new (PostgreSQL checks them inside the
    // commit), 3 copied.
    assert_eq!(r.head().unwrap().unwrap().size, 870);
    assert_eq!(r.entries(862, 866).unwrap()[..1], entries(862, 1)[..]);
    let other = quire_tests::postgres::store(
        &quire_tests::postgres::unique("other.example/log"),
        Create::Yes,
    )
    .unwrap();
    assert!(other.reader().unwrap().head().unwrap().is_none());
    drops_entries(
        &quire_tests::postgres::store(
            &quire_tests::postgres::unique("dropped.example/log"),
            Create::Yes,
        )
        .unwrap(),
    );
}

#[test]
fn postgres_leases_fence_every_commit() {
    use std::time::Duration;
    let origin = quire_tests::postgres::unique("lease.example/log");
    let (a, b, c) = (
        quire_tests::postgres::store(&origin, Create::Yes).unwrap(),
        quire_tests::postgres::store(&origin, Create::No).unwrap(),
        quire_tests::postgres::store(&origin, Create::No).unwrap(),
    );
    let long = Duration::from_secs(60);
    let la = a.acquire("a", "http://a", long).unwrap().unwrap();
    assert_eq!(la.epoch, 1);
    assert!(b.acquire("b", "http://b", long).unwrap().is_none(), "held");
    let h = b.holder().unwrap().unwrap();
    assert_eq!(
        (h.holder.as_str(), h.address.as_str(), h.epoch),
        ("a", "http://a", 1)
    );
    let mut w = Writer::new();
    let (commit, next) = w.commit(&entries(0, 3), true);
    a.commit(&commit).unwrap();
    w = next;
    assert_eq!(a.renew(&la, long).unwrap().map(|l| l.epoch), Some(1));

    // Released: taken over at once, in a new epoch; the old holder commits
    // nothing, and says why.
    a.release(&la).unwrap();
    let lb = b
        .acquire("b", "http://b", Duration::from_millis(300))
        .unwrap()
        .unwrap();
    assert_eq!(lb.epoch, 2);
    let (commit, _) = w.commit(&entries(3, 1), true);
    assert!(matches!(a.writable(), Err(StoreError::NotLeader(_))));
    let e = a.commit(&commit).unwrap_err();
    assert!(matches!(e, StoreError::NotLeader(_)), "{e:?}");
    assert!(
        a.renew(&la, long).unwrap().is_none(),
        "a lost lease stays lost"
    );

    // Not renewed: it runs out on the database's clock, and by then on the
    // holder's own clock too.
    let mut polls = 0;
    while b.holder().unwrap().is_some() {
        polls += 1;
        assert!(polls < 500, "the lease never ran out");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(b.writable(), Err(StoreError::NotLeader(_))));
    assert!(matches!(b.commit(&commit), Err(StoreError::NotLeader(_))));
    let lc = c.acquire("c", "http://c", long).unwrap().unwrap();
    assert_eq!(lc.epoch, 3);

    // A holder that missed a takeover (paused past its lease) believes it
    // still holds the lease; the check inside the commit refuses it.
    let pg = quire_tests::postgres::shared();
    pg.psql(
        "postgres",
        &format!(
            "UPDATE quire_leases SET expires = clock_timestamp() WHERE log = (SELECT id FROM quire_logs WHERE origin = '{origin}')"
        ),
    )
    .unwrap();
    let ld = b.acquire("d", "http://d", long).unwrap().unwrap();
    assert_eq!(ld.epoch, 4);
    assert!(c.writable().is_ok(), "c's own clock says it still holds it");
    let e = c.commit(&commit).unwrap_err();
    assert!(matches!(e, StoreError::NotLeader(_)), "{e:?}");
    // Nothing of the refused commits was written; the holder writes on.
    b.commit(&commit).unwrap();
    assert_eq!(b.reader().unwrap().head().unwrap().unwrap().size, 4);
}

/// The first signature of a new log shared by replicas, placed by
/// counting, not timing: b signs the empty tree and gives the lease up
/// after a had looked and found nothing; a then takes the lease and must
/// follow the signed log, not sign it again (it would have no high-water
/// record for the tree b published). And a replica that finds the lease
/// held leaves the log alone.
#[test]
fn postgres_a_new_log_is_signed_once_by_the_first_replica_to_take_its_lease() {
    use quire_server::open::sign_new_log;
    use std::cell::Cell;
    use std::time::Duration;
    let origin = quire_tests::postgres::unique("first.example/log");
    let (a, b) = (
        quire_tests::postgres::store(&origin, Create::Yes).unwrap(),
        quire_tests::postgres::store(&origin, Create::No).unwrap(),
    );
    let long = Duration::from_secs(60);
    // a looks: a new log.
    assert!(a.reader().unwrap().latest_checkpoint().unwrap().is_none());
    // b signs it first (as Log::open does: the empty tree's checkpoint).
    let signed_by_b = Cell::new(0);
    let sign_b = || -> anyhow::Result<()> {
        let w = Writer::new();
        let (commit, _) = w.commit(&[], true);
        b.commit(&commit)?;
        signed_by_b.set(signed_by_b.get() + 1);
        Ok(())
    };
    assert_eq!(
        sign_new_log(&b, "b", "http://b", long, sign_b).unwrap(),
        Some(true)
    );
    assert_eq!(signed_by_b.get(), 1);
    assert!(b.holder().unwrap().is_none(), "b gave the lease up");
    // a takes the lease now, on its stale look: it must not sign.
    let signed_by_a = Cell::new(0);
    let sign_a = || -> anyhow::Result<()> {
        signed_by_a.set(signed_by_a.get() + 1);
        Ok(())
    };
    assert_eq!(
        sign_new_log(&a, "a", "http://a", long, sign_a).unwrap(),
        Some(false)
    );
    assert_eq!(signed_by_a.get(), 0, "a signed over b's tree");
    assert!(a.holder().unwrap().is_none(), "a gave the lease up");
    // While another replica holds the lease, nothing is signed or taken.
    let held = b.acquire("b", "http://b", long).unwrap().unwrap();
    let never = || -> anyhow::Result<()> { panic!("signed under another's lease") };
    assert_eq!(
        sign_new_log(&a, "a", "http://a", long, never).unwrap(),
        None
    );
    assert_eq!(b.holder().unwrap().unwrap().epoch, held.epoch);
}

#[test]
fn postgres_refuses_a_log_it_does_not_hold_unless_asked_to_create_it() {
    let origin = quire_tests::postgres::unique("absent.example/log");
    let e = quire_tests::postgres::store(&origin, Create::No)
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::Missing(_)), "{e:?}");
    assert!(e.to_string().contains(&origin), "{e}");
    let opts = PgOptions::new(quire_tests::postgres::shared().url.clone());
    assert!(!PgStore::origins(&opts).unwrap().contains(&origin));
    quire_tests::postgres::store(&origin, Create::Yes).unwrap();
    assert!(PgStore::origins(&opts).unwrap().contains(&origin));
}

#[test]
fn postgres_unreachable_is_an_error_naming_the_host() {
    // A port nothing listens on: the listener is bound, never accepted.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let mut opts = PgOptions::new(format!("postgres://quire@127.0.0.1:{port}/postgres"));
    opts.connect_timeout = std::time::Duration::from_secs(2);
    let e = PgStore::open(&opts, "x.example/log", Create::Yes)
        .err()
        .unwrap();
    // Where it tried and why it failed, in the error's own text.
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[test]
fn the_memory_engine_conforms() {
    conformance(&MemoryStore::new());
    drops_entries(&MemoryStore::new());
}

#[tokio::test]
async fn a_commit_by_another_writer_stops_the_sequencer_without_signing() {
    use quire_core::{LogKeyAlgorithm, LogSigner};
    use quire_server::log::{Log, LogOptions, WriteError};
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let log = Log::open(
        store.clone(),
        LogOptions::new(
            "cas.example/log",
            vec![LogSigner::generate(LogKeyAlgorithm::Ed25519, "cas.example/log").unwrap()],
            quire_server::highwater::HighWater::at(dir.path().join("hw")),
        ),
    )
    .unwrap();
    log.add(entries(0, 5)).await.unwrap();
    // Another writer extends the same store behind the sequencer's back.
    let r = store.reader().unwrap();
    let mut w = Writer::new();
    w.entries = r.entries(0, 5).unwrap();
    for e in &w.entries {
        let nodes = &mut w.nodes;
        w.range
            .append(leaf_hash(e), |n, h| {
                nodes.insert(n, *h);
            })
            .unwrap();
    }
    assert_eq!(Some(w.head()), r.head().unwrap());
    let (c, _) = w.commit(&entries(100, 3), false);
    store.commit(&c).unwrap();
    // The sequencer's next commit no longer extends the store's head.
    let e = log.add(entries(200, 1)).await.unwrap_err();
    assert!(matches!(e, WriteError::Store(_)), "{e:?}");
    assert!(e.to_string().contains("another writer committed"), "{e}");
    // Nothing was signed over it, and writes stay stopped.
    assert_eq!(log.latest().stored.size, 5);
    let e = log.add(entries(300, 1)).await.unwrap_err();
    assert!(matches!(e, WriteError::Stopped { .. }), "{e:?}");
    // The writer is told what resumes writes on this engine.
    assert!(e.to_string().ends_with(store.resume_after_stop()), "{e}");
    log.close();
}
