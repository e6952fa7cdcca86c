//! What `quire-bench` checks in everything it receives: checkpoint
//! signatures, consistency between successive checkpoints (RFC 9162
//! §2.1.4) and inclusion proofs (§2.1.3), with errors that say what failed.

use quire_core::{verify_consistency, verify_inclusion, Checkpoint, Hash, VerifierKey};
use quire_proto::v1::{GetCheckpointRequest, ListLogsRequest};

use crate::Client;

/// The verifier keys of the log `origin` (empty: the server's first), as
/// the server lists them.
///
/// # Errors
/// The call fails.
pub async fn log_keys(c: &mut Client, origin: &str) -> anyhow::Result<Vec<VerifierKey>> {
    let logs = c.list_logs(ListLogsRequest {}).await?.into_inner().logs;
    Ok(logs
        .iter()
        .find(|l| origin.is_empty() || l.origin == origin)
        .map(|l| {
            l.verifier_keys
                .iter()
                .filter_map(|k| VerifierKey::parse(k).ok())
                .collect()
        })
        .unwrap_or_default())
}

/// The latest checkpoint, its signature verified.
///
/// # Errors
/// The call fails or the checkpoint does not verify.
pub async fn verified_checkpoint(
    c: &mut Client,
    origin: &str,
    keys: &[VerifierKey],
) -> anyhow::Result<Checkpoint> {
    let note = c
        .get_checkpoint(GetCheckpointRequest {
            log: origin.to_owned(),
            witnessed: false,
        })
        .await?
        .into_inner()
        .checkpoint;
    let n = quire_core::Note::parse(&note)?;
    n.verify(keys)?;
    Ok(Checkpoint::parse(n.text().as_bytes())?)
}

/// Checks an inclusion proof (as received) of `leaf` at `index` in `cp`.
///
/// # Errors
/// What failed, with the index and size.
pub fn check_inclusion(
    leaf: &Hash,
    index: u64,
    cp: &Checkpoint,
    proof: &[Vec<u8>],
) -> Result<(), String> {
    quire_proto::hashes_from_wire(proof)
        .map_err(|e| e.to_string())
        .and_then(|proof| {
            verify_inclusion(leaf, index, cp.size(), &proof, cp.root()).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("inclusion of {index} in {}: {e}", cp.size()))
}

/// Checks that `cp` extends `prev`: never smaller, one root per size, and
/// for a larger size the consistency proof (as received) between them.
///
/// # Errors
/// What failed, with both sizes.
pub fn check_extends(prev: &Checkpoint, cp: &Checkpoint, proof: &[Vec<u8>]) -> Result<(), String> {
    if cp.size() < prev.size() {
        return Err(format!(
            "checkpoint went back from {} to {}",
            prev.size(),
            cp.size()
        ));
    }
    if cp.size() == prev.size() {
        if cp.root() != prev.root() {
            return Err(format!("two roots for size {}", cp.size()));
        }
        return Ok(());
    }
    if prev.size() == 0 {
        return Ok(());
    }
    let proof = quire_proto::hashes_from_wire(proof).map_err(|e| e.to_string())?;
    verify_consistency(prev.size(), cp.size(), &proof, prev.root(), cp.root())
        .map_err(|e| format!("consistency {} -> {}: {e}", prev.size(), cp.size()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]
    use super::*;
    use quire_core::leaf_hash;
    use quire_tests::memlog::MemLog;

    fn cp(log: &MemLog, size: u64) -> Checkpoint {
        Checkpoint::parse(log.text(size).as_bytes()).unwrap()
    }

    #[test]
    fn the_harness_refuses_what_does_not_verify() {
        let mut log = MemLog::new("bench.example/check");
        log.append(2, "e");
        let two = cp(&log, 2);
        log.append(5, "f");
        let (seven, other) = (cp(&log, 7), cp(&MemLog::new("x"), 0));
        let wire = quire_proto::hashes_to_wire(&log.proof(2, 7));
        assert_eq!(check_extends(&two, &seven, &wire), Ok(()));
        assert_eq!(check_extends(&two, &two, &[]), Ok(()));
        assert_eq!(check_extends(&other, &seven, &[]), Ok(()));
        // A flipped bit, a missing hash, a hash of the wrong length.
        let mut bad = wire.clone();
        bad[0][0] ^= 1;
        assert!(check_extends(&two, &seven, &bad).is_err());
        assert!(check_extends(&two, &seven, &wire[1..]).is_err());
        let mut short = wire.clone();
        short[0].pop();
        assert!(check_extends(&two, &seven, &short).is_err());
        // Going back, and another root for the same size.
        assert!(check_extends(&seven, &two, &wire)
            .unwrap_err()
            .contains("went back"));
        let mut fork = MemLog::new("bench.example/check");
        fork.append(2, "other");
        assert!(check_extends(&two, &cp(&fork, 2), &[])
            .unwrap_err()
            .contains("two roots"));

        // Inclusion: entry 0 of a two-entry tree is proven by leaf 1.
        let (a, b) = (b"a".as_slice(), b"b".as_slice());
        let root = quire_core::hash::node_hash(&leaf_hash(a), &leaf_hash(b));
        let text = format!("bench.example/check\n2\n{}\n", root.to_base64());
        let two = Checkpoint::parse(text.as_bytes()).unwrap();
        let proof = vec![leaf_hash(b).as_bytes().to_vec()];
        assert_eq!(check_inclusion(&leaf_hash(a), 0, &two, &proof), Ok(()));
        assert!(check_inclusion(&leaf_hash(b), 0, &two, &proof).is_err());
        assert!(check_inclusion(&leaf_hash(a), 1, &two, &proof).is_err());
        assert!(check_inclusion(&leaf_hash(a), 0, &two, &[]).is_err());
        assert!(check_inclusion(&leaf_hash(a), 0, &two, &[vec![0; 31]]).is_err());
    }
}
