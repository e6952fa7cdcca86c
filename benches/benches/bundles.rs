//! Offline verification of proof bundles (C2SP tlog-proof files carrying a
//! 256-byte entry) with quire-client's `BundleVerifier`: parse, leaf hash,
//! inclusion proof; the checkpoint's signatures (a log key and two witness
//! cosignatures, quorum 2) are checked once per distinct checkpoint.
//! `cargo bench -p quire-benches --bench bundles`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::pedantic
)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use quire_client::bundle::{BundleVerifier, Subject};
use quire_client::policy::LogTrust;
use quire_core::tlog_proof::TlogProof;
use quire_core::{
    leaf_hash, prove_inclusion, Checkpoint, CompactRange, LogKeyAlgorithm, LogSigner, Note,
    WitnessSigner,
};
use rand::{Rng, SeedableRng};

const ORIGIN: &str = "bench.example/log";
const LEAVES: u64 = 1 << 20;

fn setup() -> (LogTrust, Vec<Vec<u8>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let log = LogSigner::generate_with(LogKeyAlgorithm::Ed25519, ORIGIN, &mut rng).unwrap();
    let witnesses: Vec<WitnessSigner> = (0..2)
        .map(|i| WitnessSigner::generate_with(&format!("w{i}.example"), &mut rng).unwrap())
        .collect();
    // A tree of 2^20 256-byte entries; the bundles sample 1000 of them.
    let mut nodes = HashMap::new();
    let mut range = CompactRange::new();
    let mut entries = Vec::new();
    for i in 0..LEAVES {
        let mut e = vec![0u8; 256];
        rng.fill(&mut e[..]);
        if i % 1024 == 7 {
            entries.push((i, e.clone()));
        }
        range
            .append(leaf_hash(&e), |id, h| {
                nodes.insert(id, *h);
            })
            .unwrap();
    }
    let text = Checkpoint::new(ORIGIN, LEAVES, range.root())
        .unwrap()
        .to_text();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(log.sign(text.as_bytes())).unwrap();
    for w in &witnesses {
        note.add_signature(w.cosign(text.as_bytes(), 1_800_000_000).unwrap())
            .unwrap();
    }
    let bundles = entries
        .into_iter()
        .map(|(i, e)| {
            TlogProof {
                extra: Some(e),
                index: i,
                proof: prove_inclusion(&nodes, i, LEAVES).unwrap(),
                checkpoint: note.clone(),
            }
            .to_bytes()
        })
        .collect();
    let trust = LogTrust {
        origin: ORIGIN.into(),
        log_keys: vec![log.verifier()],
        witnesses: witnesses.iter().map(WitnessSigner::verifier).collect(),
        quorum: 2,
    };
    (trust, bundles)
}

fn bundles(c: &mut Criterion) {
    let (trust, bundles) = setup();
    let mut g = c.benchmark_group("bundles");
    g.throughput(Throughput::Elements(bundles.len() as u64));
    g.bench_function("verify 1024 bundles, one checkpoint", |b| {
        b.iter(|| {
            let mut v = BundleVerifier::new(trust.clone());
            for bytes in &bundles {
                black_box(v.verify(bytes, Subject::Carried).unwrap());
            }
        });
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify 1 bundle, checkpoint not seen before", |b| {
        b.iter(|| {
            let mut v = BundleVerifier::new(trust.clone());
            black_box(v.verify(&bundles[0], Subject::Carried).unwrap());
        });
    });
    g.finish();
}

criterion_group!(benches, bundles);
criterion_main!(benches);
