//! A log followed from storage: its latest checkpoint comes from the
//! store the sequencing log commits to, proven before it is served; it
//! refuses writes by name and never takes a checkpoint that does not hold up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::time::Duration;

use quire_core::{
    leaf_hash, Checkpoint, CompactRange, Hash, HashReader, LogKeyAlgorithm, LogSigner, Note,
};
use quire_server::api::{Caller, Kind, LeafRef, LogApi};
use quire_server::follow::{FollowError, FollowOptions};
use quire_server::log::{Log, LogOptions};
use quire_server::store::memory::MemoryStore;
use quire_server::store::{Commit, Head, Storage, StorageReader, StoredCheckpoint};

const ORIGIN: &str = "follow.example/log";

fn entries(from: usize, n: usize) -> Vec<Vec<u8>> {
    (from..from + n)
        .map(|i| format!("followed {i}").into_bytes())
        .collect()
}

fn note(signer: &LogSigner, size: u64, root: Hash) -> Vec<u8> {
    let text = Checkpoint::new(ORIGIN, size, root).unwrap().to_text();
    let mut n = Note::new(&text).unwrap();
    n.add_signature(signer.sign(text.as_bytes())).unwrap();
    n.to_bytes()
}

/// A commit of `new` entries onto the store's head, with a checkpoint
/// signed by `signer` that claims `claimed` as its root (the true root when
/// `None`).
fn commit_behind_the_log(
    store: &MemoryStore,
    new: &[Vec<u8>],
    signer: &LogSigner,
    claimed: Option<Hash>,
) -> u64 {
    let r = store.reader().unwrap();
    let head = r.head().unwrap().unwrap();
    let edge = r.read_hashes(&CompactRange::edge_nodes(head.size)).unwrap();
    let mut range = CompactRange::from_parts(head.size, edge).unwrap();
    let mut c = Commit {
        base: head,
        ..Commit::default()
    };
    for e in new {
        let leaf = leaf_hash(e);
        c.leaf_index.push((leaf, range.size()));
        range.append(leaf, |n, h| c.nodes.push((n, *h))).unwrap();
        c.entries.push(e.clone());
    }
    let size = range.size();
    c.head = Head {
        size,
        root: range.root(),
    };
    c.checkpoint = Some(StoredCheckpoint {
        size,
        signed_at_ms: 1,
        note: note(signer, size, claimed.unwrap_or(range.root())),
    });
    store.commit(&c).unwrap();
    size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_what_the_sequencing_log_committed_once_proven() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    let key_copy = LogSigner::from_private_text(&signer.to_private_text()).unwrap();
    let leader = Log::open(
        store.clone(),
        LogOptions::new(
            ORIGIN,
            vec![signer],
            quire_server::highwater::HighWater::at(dir.path().join("hw")),
        ),
    )
    .unwrap();
    let follower = Log::open_follower(
        store.clone(),
        FollowOptions::new(ORIGIN, leader.verifiers().to_vec()),
    )
    .unwrap();
    assert!(follower.is_follower() && !leader.is_follower());
    assert_eq!(follower.latest().stored.size, 0);

    leader.add(entries(0, 300)).await.unwrap();
    assert!(follower.refresh().unwrap(), "a newer checkpoint is taken");
    assert!(!follower.refresh().unwrap(), "and only once");
    assert_eq!(follower.latest().stored.note, leader.latest().stored.note);

    // The API over the follower serves the leader's checkpoint and proofs
    // that verify against it; writes are refused by name.
    let api = LogApi::new(vec![follower.clone()]);
    let who = Caller::default();
    let p = api
        .inclusion_proof(&who, "", LeafRef::Index(299), 0)
        .await
        .unwrap();
    quire_core::verify_inclusion(
        &leaf_hash(&entries(299, 1)[0]),
        299,
        300,
        &p.proof,
        &leader.latest().root,
    )
    .unwrap();
    let e = api
        .add(&who, "", entries(900, 1), false, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::Unavailable);
    assert_eq!(
        e.to_string(),
        format!("this server follows log {ORIGIN} from storage and does not sequence it; send writes to the server that sequences it")
    );

    // Following: what the leader commits is served within the interval.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    follower.follow(Duration::from_millis(5), stopping);
    leader.add(entries(300, 50)).await.unwrap();
    let mut tries = 0;
    while follower.latest().stored.size != 350 {
        tries += 1;
        assert!(tries < 2000, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Frozen by the leader: the follower finds the record in storage
    // (no new tree comes with it) and refuses writes by the log's state.
    let frozen = leader.freeze().await.unwrap();
    let mut tries = 0;
    while follower.state().0 != quire_server::lifecycle::LogState::Frozen {
        tries += 1;
        assert!(tries < 2000, "the follower did not see the freeze");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(follower.state().1, Some(frozen));
    let e = api
        .add(&who, "", entries(901, 1), false, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition);
    assert_eq!(follower.freeze().await.unwrap(), frozen, "already frozen");
    stop.send_replace(true);
    leader.close();

    // A checkpoint in storage signed by another key is not served.
    let stranger = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    commit_behind_the_log(&store, &entries(350, 5), &stranger, None);
    let e = follower.refresh().unwrap_err();
    assert!(matches!(e, FollowError::Invalid { size: 355, .. }), "{e}");
    assert!(
        e.to_string().contains("it is not signed by the log's key"),
        "{e}"
    );
    assert_eq!(follower.latest().stored.size, 350, "the one served stays");

    // Nor one signed by the log's key whose root the stored tree does not
    // give.
    commit_behind_the_log(
        &store,
        &entries(355, 5),
        &key_copy,
        Some(leaf_hash(b"a lie")),
    );
    let e = follower.refresh().unwrap_err();
    assert!(matches!(e, FollowError::Invalid { size: 360, .. }), "{e}");
    assert!(e.to_string().contains("stored hashes give root"), "{e}");
    assert_eq!(follower.latest().stored.size, 350);

    // An honest one after them is taken, proven consistent with 350.
    let size = commit_behind_the_log(&store, &entries(360, 5), &key_copy, None);
    assert!(follower.refresh().unwrap());
    assert_eq!(follower.latest().stored.size, size);
}

#[test]
fn a_follower_of_an_empty_store_is_refused_by_name() {
    let signer = LogSigner::generate(LogKeyAlgorithm::Ed25519, ORIGIN).unwrap();
    let e = Log::open_follower(
        MemoryStore::new(),
        FollowOptions::new(ORIGIN, vec![signer.verifier()]),
    )
    .map(drop)
    .unwrap_err();
    assert!(
        e.to_string().contains("storage holds no checkpoint of log"),
        "{e}"
    );
}
