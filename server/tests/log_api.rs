//! The transport-neutral log API, called directly (no gRPC): its rules, its
//! errors' kinds and messages, and the access policy asked before every
//! request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use std::sync::{Arc, Mutex};

use quire_core::{leaf_hash, node_hash, Hash};
use quire_server::api::{Access, Action, ApiError, Caller, Kind, LeafRef, LogApi, PAGE_ENTRIES};
use tokio_stream::StreamExt as _;

#[path = "log_api/memory_log.rs"]
mod memory_log;

use memory_log::open;

const A: &str = "a.example/log";
const B: &str = "b.example/log";

/// RFC 9162 §2.1.1 MTH, straight from the definition.
fn mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = n.next_power_of_two() / 2;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Refuses everything on log B; records every question.
#[derive(Clone, Default)]
struct OnlyA(Arc<Mutex<Vec<(String, Action)>>>);

impl Access for OnlyA {
    fn check(
        &self,
        caller: &Caller,
        origin: &str,
        action: Action,
        _entries: u64,
    ) -> Result<(), ApiError> {
        self.0.lock().unwrap().push((origin.to_owned(), action));
        if origin == B {
            return Err(ApiError::Denied {
                caller: caller.to_string(),
                action: action.words(),
                origin: origin.to_owned(),
                why: "no role on this log".into(),
            });
        }
        Ok(())
    }
}

/// Holds writes to log B to a quota that is used up; admits the rest.
struct QuotaOnB;

impl Access for QuotaOnB {
    fn check(&self, _: &Caller, origin: &str, action: Action, n: u64) -> Result<(), ApiError> {
        if origin == B && action == Action::Write && n > 0 {
            return Err(ApiError::Quota {
                message: "a quota of the test holds log B".into(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            });
        }
        Ok(())
    }
}

/// A write refused for a quota paces its log's commits (`pacing`); other
/// logs, reads and other refusals pace nothing.
#[tokio::test]
async fn a_write_refused_for_a_quota_paces_only_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path(), A), open(dir.path(), B));
    let api = LogApi::new(vec![a.clone(), b.clone()]).with_access(QuotaOnB);
    let who = Caller::default();
    api.add(&who, A, entries(2), false, false).await.unwrap();
    api.checkpoint(&who, B, false).await.unwrap();
    assert!(!a.commits_paced() && !b.commits_paced());
    let e = api
        .add(&who, B, entries(1), false, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::ResourceExhausted, "{e}");
    assert!(b.commits_paced(), "the log over its quota");
    assert!(!a.commits_paced(), "another log");
    // A paced log still takes what is admitted: A's writes go on, B's
    // reads too.
    api.add(&who, A, entries(3), false, false).await.unwrap();
    assert_eq!(api.list(&who).unwrap().len(), 2);
    // A refusal of another kind paces nothing.
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path(), B);
    let api = LogApi::new(vec![c.clone()]).with_access(OnlyA::default());
    api.add(&who, B, entries(1), false, false)
        .await
        .unwrap_err();
    assert!(!c.commits_paced());
}

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
}

#[tokio::test]
async fn every_request_asks_the_policy_with_its_action_and_a_refusal_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = OnlyA::default();
    let api =
        LogApi::new(vec![open(dir.path(), A), open(dir.path(), B)]).with_access(policy.clone());
    let who = Caller::default();
    api.add(&who, A, entries(3), false, false).await.unwrap();

    let denied = |r: Result<(), ApiError>, action: Action| {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), Kind::PermissionDenied, "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "an anonymous caller may not {} log \"{B}\": no role on this log",
                action.words()
            )
        );
    };
    denied(
        api.add(&who, B, entries(1), false, false).await.map(drop),
        Action::Write,
    );
    denied(
        api.checkpoint(&who, B, false).await.map(drop),
        Action::Audit,
    );
    denied(
        api.inclusion_proof(&who, B, LeafRef::Index(0), 0)
            .await
            .map(drop),
        Action::Audit,
    );
    denied(
        api.consistency_proof(&who, B, 1, 0, false).await.map(drop),
        Action::Audit,
    );
    denied(
        api.entry_with_proof(&who, B, 0).await.map(drop),
        Action::ReadEntries,
    );
    denied(api.entries(&who, B, 0, 0).map(drop), Action::ReadEntries);
    denied(api.tail(&who, B, 0).map(drop), Action::ReadEntries);
    denied(
        api.watch_checkpoints(&who, B, false).map(drop),
        Action::Audit,
    );
    denied(api.tile(&who, B, 0, 0, Some(1)).map(drop), Action::Audit);
    denied(
        api.entry_bundle(&who, B, 0, Some(1)).await.map(drop),
        Action::ReadEntries,
    );
    // Every question about B carried the action of its request.
    let asked: Vec<Action> = policy
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(o, _)| o == B)
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        asked,
        [
            Action::Write,
            Action::Audit,
            Action::Audit,
            Action::Audit,
            Action::ReadEntries,
            Action::ReadEntries,
            Action::ReadEntries,
            Action::Audit,
            Action::Audit,
            Action::ReadEntries
        ]
    );
    // The list shows only what the caller may audit.
    let listed: Vec<String> = api
        .list(&who)
        .unwrap()
        .into_iter()
        .map(|l| l.origin)
        .collect();
    assert_eq!(listed, [A]);
    // And log A answers as usual.
    assert_eq!(api.list(&who).unwrap()[0].size, 3);
}

#[tokio::test]
async fn a_log_is_found_by_origin_and_an_empty_origin_only_names_the_only_log() {
    let dir = tempfile::tempdir().unwrap();
    let who = Caller::default();
    let two = LogApi::new(vec![open(dir.path(), A), open(dir.path(), B)]);
    let e = two.checkpoint(&who, "", false).await.unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument);
    assert_eq!(
        e.to_string(),
        format!("this server hosts 2 logs: name one by origin ({A}, {B})")
    );
    let e = two
        .checkpoint(&who, "c.example/typo", false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);
    assert!(
        e.to_string()
            .contains("known: a.example/log, b.example/log"),
        "{e}"
    );
    let e = two.checkpoint(&who, A, true).await.unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition);
    assert!(e.to_string().contains("no witnesses configured"), "{e}");

    let one = LogApi::new(vec![open(&dir.path().join("one"), A)]);
    let note = one.checkpoint(&who, "", false).await.unwrap();
    assert!(note.starts_with(format!("{A}\n0\n").as_bytes()));
}

#[tokio::test]
async fn sizes_default_to_the_latest_and_proofs_verify_against_the_rfc_root() {
    let dir = tempfile::tempdir().unwrap();
    let who = Caller::default();
    let api = LogApi::new(vec![open(dir.path(), A)]);
    let all = entries(10);
    let w = api.add(&who, A, all.clone(), true, false).await.unwrap();
    assert_eq!(w.entries.len(), 10);
    assert_eq!(w.proofs.len(), 10);
    let root = mth(&all);
    for (i, p) in w.proofs.iter().enumerate() {
        quire_core::verify_inclusion(&leaf_hash(&all[i]), i as u64, 10, p, &root).unwrap();
    }
    assert!(w
        .checkpoint
        .unwrap()
        .starts_with(format!("{A}\n10\n").as_bytes()));

    // 0 is the latest size, and its checkpoint comes with the proof.
    let p = api
        .inclusion_proof(&who, A, LeafRef::Hash(leaf_hash(&all[3])), 0)
        .await
        .unwrap();
    assert_eq!((p.index, p.tree_size), (3, 10));
    assert!(p.checkpoint.is_some());
    quire_core::verify_inclusion(&leaf_hash(&all[3]), 3, 10, &p.proof, &root).unwrap();
    // An older size: proven against that size's root, no checkpoint.
    let p = api
        .inclusion_proof(&who, A, LeafRef::Index(3), 5)
        .await
        .unwrap();
    assert!(p.checkpoint.is_none());
    quire_core::verify_inclusion(&leaf_hash(&all[3]), 3, 5, &p.proof, &mth(&all[..5])).unwrap();
    for e in [
        api.inclusion_proof(&who, A, LeafRef::Index(3), 11)
            .await
            .unwrap_err(),
        api.inclusion_proof(&who, A, LeafRef::Index(10), 0)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), Kind::OutOfRange, "{e}");
    }
    let e = api
        .inclusion_proof(&who, A, LeafRef::Hash(leaf_hash(b"never added")), 0)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound);

    // Consistency: the seed is the old root for a power-of-two old size
    // (RFC 9162 leaves it out of the proof), else the proof's first hash.
    let c = api.consistency_proof(&who, A, 4, 0, true).await.unwrap();
    assert_eq!((c.old_size, c.new_size), (4, 10));
    assert_eq!(c.seed, Some(mth(&all[..4])));
    quire_core::verify_consistency(4, 10, &c.proof, &mth(&all[..4]), &root).unwrap();
    let c = api.consistency_proof(&who, A, 3, 0, true).await.unwrap();
    assert_eq!(c.seed, c.proof.first().copied());
    assert!(api
        .consistency_proof(&who, A, 3, 0, false)
        .await
        .unwrap()
        .seed
        .is_none());
    let e = api
        .consistency_proof(&who, A, 6, 5, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");

    let e = api.entry_with_proof(&who, A, 7).await.unwrap();
    assert_eq!(e.entry, all[7]);
    quire_core::verify_inclusion(&leaf_hash(&all[7]), 7, 10, &e.proof, &root).unwrap();
}

#[tokio::test]
async fn entry_streams_page_at_bundle_bounds_and_refuse_empty_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let who = Caller::default();
    let api = LogApi::new(vec![open(dir.path(), A)]);
    let n = PAGE_ENTRIES as usize + 44;
    let all = entries(n);
    api.add(&who, A, all.clone(), false, false).await.unwrap();

    let mut pages = api.entries(&who, A, 200, 0).unwrap();
    let mut got = Vec::new();
    let mut starts = Vec::new();
    while let Some(p) = pages.next().await {
        let p = p.unwrap();
        starts.push(p.start);
        got.extend(p.entries);
    }
    // The first page ends at the bundle boundary, 256.
    assert_eq!(starts, [200, PAGE_ENTRIES]);
    assert_eq!(got, all[200..]);

    let e = api.entries(&who, A, 5, 5).map(drop).unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument);
    assert_eq!(e.to_string(), "start 5 is not below the end 5 asked for");
    let e = api.entries(&who, A, n as u64, 0).map(drop).unwrap_err();
    assert_eq!(e.kind(), Kind::OutOfRange);
    let e = api.tail(&who, A, n as u64 + 1).map(drop).unwrap_err();
    assert_eq!(e.kind(), Kind::OutOfRange);

    // A tail page carries a checkpoint that covers it.
    let mut tail = api.tail(&who, A, n as u64 - 2).unwrap();
    let p = tail.next().await.unwrap().unwrap();
    assert_eq!(p.entries, all[n - 2..]);
    assert!(p.checkpoint.starts_with(format!("{A}\n{n}\n").as_bytes()));
}
