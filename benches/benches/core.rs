//! quire-core beside peer crates, in one run: leaf hashing, appends, proof
//! building at 2^10, 2^20 and 2^30 leaves, proof verification and signed
//! checkpoint verification. `cargo bench -p quire-benches --bench core`.
//!
//! Both sides of each proof comparison read the same kind of store: for 2^10
//! and 2^20 a real tree held densely in a `Vec` at post-order positions (Go's
//! stored-hash index, which both crates use); for 2^30 a sparse map, keyed by
//! that index, holding only the nodes the measured proofs need, each a
//! pseudo-random hash. Verification is measured against the roots the
//! proofs imply.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::pedantic
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use quire_core::verify::consistency_roots;
use quire_core::{
    consistency_plan, inclusion_plan, leaf_hash, prove_consistency, prove_inclusion,
    root_from_inclusion_proof, verify_consistency, verify_inclusion, Checkpoint, CompactRange,
    Hash, LogKeyAlgorithm, LogSigner, NodeId, Note, WitnessSigner,
};
use rand::{Rng, SeedableRng};
use sha2::Digest;

const QUERIES: usize = 256;

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(2026)
}

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn leaf_hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("leaf_hash_256B");
    let entry = [0x5au8; 256];
    g.throughput(Throughput::Elements(1));
    g.bench_function("quire", |b| b.iter(|| leaf_hash(black_box(&entry))));
    g.bench_function("tlog_tiles", |b| {
        b.iter(|| tlog_tiles::record_hash(black_box(&entry)))
    });
    g.bench_function("sha2_streaming_baseline", |b| {
        b.iter(|| {
            let mut h = sha2::Sha256::new();
            h.update([0u8]);
            h.update(black_box(&entry));
            h.finalize()
        })
    });
    g.finish();
}

struct MapReader(HashMap<u64, tlog_tiles::Hash>);

impl tlog_tiles::HashReader for MapReader {
    fn read_hashes(&self, idx: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        idx.iter()
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .ok_or(tlog_tiles::Error::InvalidProof)
            })
            .collect()
    }
}

fn appends(c: &mut Criterion) {
    const N: usize = 4096;
    let hashes = leaves(N);
    let entries: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
    let mut g = c.benchmark_group("append_4096");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("quire_compact_range", |b| {
        b.iter(|| {
            let mut cr = CompactRange::new();
            for h in &hashes {
                cr.append(*h, |_, _| {}).unwrap();
            }
            cr.root()
        })
    });
    g.bench_function("quire_compact_range_into_map", |b| {
        b.iter(|| {
            let mut cr = CompactRange::new();
            let mut store = HashMap::with_capacity(2 * N);
            for h in &hashes {
                cr.append(*h, |n, h| {
                    store.insert(n.storage_index().unwrap_or_default(), *h);
                })
                .unwrap();
            }
            (cr.root(), store.len())
        })
    });
    g.bench_function("tlog_tiles_stored_hashes_into_map", |b| {
        b.iter(|| {
            let mut r = MapReader(HashMap::with_capacity(2 * N));
            for (i, h) in hashes.iter().enumerate() {
                let new =
                    tlog_tiles::stored_hashes_for_record_hash(i as u64, tlog_tiles::Hash(h.0), &r)
                        .unwrap();
                let base = tlog_tiles::stored_hash_count(i as u64);
                for (k, h) in new.into_iter().enumerate() {
                    r.0.insert(base + k as u64, h);
                }
            }
            r.0.len()
        })
    });
    // ct-merkle and rs_merkle hash their leaves themselves; ours does too here.
    g.bench_function("quire_leaf_hash_and_append_32B", |b| {
        b.iter(|| {
            let mut cr = CompactRange::new();
            for e in &entries {
                cr.append(leaf_hash(e), |_, _| {}).unwrap();
            }
            cr.root()
        })
    });
    g.bench_function("ct_merkle_push_32B", |b| {
        b.iter_batched(
            ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2_011::Sha256, [u8; 32]>::new,
            |mut t| {
                for e in &entries {
                    t.push(*e);
                }
                t.root()
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("rs_merkle_from_leaf_hashes", |b| {
        b.iter(|| rs_merkle::MerkleTree::<Rfc9162>::from_leaves(&entries).root())
    });
    g.finish();
}

#[derive(Clone)]
struct Rfc9162;

impl rs_merkle::Hasher for Rfc9162 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => quire_core::node_hash(&Hash(*left), &Hash(*r)).0,
            None => *left,
        }
    }
}

/// quire-side sparse store: a map keyed by post-order number, as tlog_tiles'.
struct SparseReader(HashMap<u64, Hash>);

impl quire_core::HashReader for SparseReader {
    type Error = ();
    fn read_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, ()> {
        nodes
            .iter()
            .map(|n| {
                n.storage_index()
                    .and_then(|i| self.0.get(&i).copied())
                    .ok_or(())
            })
            .collect()
    }
}

/// tlog_tiles-side dense store.
struct VecReader(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for VecReader {
    fn read_hashes(&self, idx: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        idx.iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::InvalidProof)
            })
            .collect()
    }
}

/// The stores and queries of one tree size.
struct Sparse {
    size: u64,
    /// Every node (dense) or the queried ones (sparse), by NodeId: for setup.
    nodes: HashMap<NodeId, Hash>,
    quire_dense: Option<Vec<Hash>>,
    quire_sparse: SparseReader,
    tlog_dense: Option<VecReader>,
    by_index: MapReader,
    inclusion: Vec<u64>,
    consistency: Vec<u64>,
}

fn synthetic(node: NodeId) -> Hash {
    let mut h = sha2::Sha256::new();
    h.update([node.level]);
    h.update(node.index.to_be_bytes());
    Hash(h.finalize().into())
}

fn sparse(size: u64) -> Sparse {
    let mut r = rng();
    let inclusion: Vec<u64> = (0..QUERIES).map(|_| r.gen_range(0..size)).collect();
    let consistency: Vec<u64> = (0..QUERIES).map(|_| r.gen_range(1..size)).collect();
    let mut nodes = HashMap::new();
    let plans = inclusion
        .iter()
        .map(|&i| inclusion_plan(i, size).unwrap())
        .chain(
            consistency
                .iter()
                .map(|&m| consistency_plan(m, size).unwrap()),
        );
    for plan in plans {
        for &n in plan.nodes() {
            nodes.insert(n, synthetic(n));
        }
    }
    // Consistency from a power of two needs the seed to verify.
    for &m in &consistency {
        if m.is_power_of_two() {
            let n = NodeId::new(m.trailing_zeros() as u8, 0);
            nodes.insert(n, synthetic(n));
        }
    }
    let (quire_dense, tlog_dense) = if size <= 1 << 20 {
        // A real tree, densely stored.
        let mut dense = Vec::with_capacity(2 * size as usize);
        let mut cr = CompactRange::new();
        for i in 0..size {
            cr.append(leaf_hash(&i.to_be_bytes()), |_, h| dense.push(*h))
                .unwrap();
        }
        for (i, h) in dense.iter().enumerate() {
            nodes.insert(NodeId::from_storage_index(i as u64).unwrap(), *h);
        }
        let t = VecReader(dense.iter().map(|h| tlog_tiles::Hash(h.0)).collect());
        (Some(dense), Some(t))
    } else {
        (None, None)
    };
    let by_index = MapReader(
        nodes
            .iter()
            .map(|(n, h)| (n.storage_index().unwrap(), tlog_tiles::Hash(h.0)))
            .collect(),
    );
    let quire_sparse = SparseReader(by_index.0.iter().map(|(i, h)| (*i, Hash(h.0))).collect());
    Sparse {
        size,
        nodes,
        quire_dense,
        quire_sparse,
        tlog_dense,
        by_index,
        inclusion,
        consistency,
    }
}

fn bench_quire<R: quire_core::HashReader + ?Sized>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    r: &R,
    s: &Sparse,
) where
    R::Error: std::fmt::Debug,
{
    let mut q = 0usize;
    g.bench_function("quire_inclusion", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            prove_inclusion(r, s.inclusion[q], s.size).unwrap()
        })
    });
    g.bench_function("quire_consistency", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            prove_consistency(r, s.consistency[q], s.size).unwrap()
        })
    });
}

fn bench_tlog<R: tlog_tiles::HashReader>(g: &mut BenchmarkGroup<'_, WallTime>, r: &R, s: &Sparse) {
    let mut q = 0usize;
    g.bench_function("tlog_tiles_inclusion", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            tlog_tiles::prove_record(s.size, s.inclusion[q], r).unwrap()
        })
    });
    g.bench_function("tlog_tiles_consistency", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            tlog_tiles::prove_tree(s.size, s.consistency[q], r).unwrap()
        })
    });
}

fn proofs(c: &mut Criterion) {
    for log2 in [10u32, 20, 30] {
        let s = sparse(1 << log2);
        let size = s.size;
        let mut g = c.benchmark_group(format!("prove_2^{log2}"));
        g.throughput(Throughput::Elements(1));
        let mut q = 0usize;
        match (&s.quire_dense, &s.tlog_dense) {
            (Some(qd), Some(td)) => {
                bench_quire(&mut g, qd.as_slice(), &s);
                bench_tlog(&mut g, td, &s);
            }
            _ => {
                bench_quire(&mut g, &s.quire_sparse, &s);
                bench_tlog(&mut g, &s.by_index, &s);
            }
        }
        if log2 <= 20 {
            // ct-merkle proves from a whole tree in memory.
            let mut t =
                ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2_011::Sha256, [u8; 8]>::new();
            for i in 0..size {
                t.push(i.to_be_bytes());
            }
            g.bench_function("ct_merkle_inclusion", |b| {
                b.iter(|| {
                    q = (q + 1) % QUERIES;
                    t.prove_inclusion(s.inclusion[q] as usize)
                })
            });
            g.bench_function("ct_merkle_consistency", |b| {
                b.iter(|| {
                    q = (q + 1) % QUERIES;
                    t.prove_consistency((size - s.consistency[q]) as usize)
                })
            });
        }
        g.finish();
        verification(c, &s, log2);
    }
}

fn verification(c: &mut Criterion, s: &Sparse, log2: u32) {
    let size = s.size;
    let leaf = leaf_hash(b"bench leaf");
    // (index, proof, root) with the root the proof implies.
    let incl: Vec<(u64, Vec<Hash>, Hash)> = s
        .inclusion
        .iter()
        .map(|&i| {
            let p = prove_inclusion(&s.nodes, i, size).unwrap();
            let root = root_from_inclusion_proof(&leaf, i, size, &p).unwrap();
            (i, p, root)
        })
        .collect();
    let cons: Vec<(u64, Vec<Hash>, Hash, Hash)> = s
        .consistency
        .iter()
        .map(|&m| {
            let p = prove_consistency(&s.nodes, m, size).unwrap();
            let (old, new) = if m.is_power_of_two() {
                let seed = s.nodes[&NodeId::new(m.trailing_zeros() as u8, 0)];
                consistency_roots(m, size, &seed, &p).unwrap()
            } else {
                consistency_roots(m, size, &p[0], &p[1..]).unwrap()
            };
            (m, p, old, new)
        })
        .collect();
    let mut g = c.benchmark_group(format!("verify_2^{log2}"));
    g.throughput(Throughput::Elements(1));
    let mut q = 0usize;
    g.bench_function("quire_inclusion", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            let (i, p, root) = &incl[q];
            verify_inclusion(&leaf, *i, size, p, root).unwrap()
        })
    });
    let tl: Vec<(u64, Vec<tlog_tiles::Hash>, tlog_tiles::Hash)> = incl
        .iter()
        .map(|(i, p, r)| {
            (
                *i,
                p.iter().map(|h| tlog_tiles::Hash(h.0)).collect(),
                tlog_tiles::Hash(r.0),
            )
        })
        .collect();
    g.bench_function("tlog_tiles_inclusion", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            let (i, p, root) = &tl[q];
            tlog_tiles::check_record(p, size, *root, *i, tlog_tiles::Hash(leaf.0)).unwrap()
        })
    });
    g.bench_function("quire_consistency", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            let (m, p, old, new) = &cons[q];
            verify_consistency(*m, size, p, old, new).unwrap()
        })
    });
    let tc: Vec<(
        u64,
        Vec<tlog_tiles::Hash>,
        tlog_tiles::Hash,
        tlog_tiles::Hash,
    )> = cons
        .iter()
        .map(|(m, p, o, n)| {
            (
                *m,
                p.iter().map(|h| tlog_tiles::Hash(h.0)).collect(),
                tlog_tiles::Hash(o.0),
                tlog_tiles::Hash(n.0),
            )
        })
        .collect();
    g.bench_function("tlog_tiles_consistency", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            let (m, p, old, new) = &tc[q];
            tlog_tiles::check_tree(p, size, *new, *m, *old).unwrap()
        })
    });
    // ct-merkle checks against a root hash object; the proof is bytes.
    type Ct = sha2_011::Sha256;
    let ct_incl: Vec<_> = incl
        .iter()
        .map(|(i, p, r)| {
            (
                *i,
                ct_merkle::InclusionProof::<Ct>::from_bytes(p.iter().flat_map(|h| h.0).collect()),
                ct_merkle::RootHash::<Ct>::new(r.0.into(), size),
            )
        })
        .collect();
    // ct-merkle hashes the leaf value itself: give it the value whose leaf
    // hash is `leaf`... it cannot, so both sides hash a value here.
    let value = b"bench leaf".to_vec();
    g.bench_function("quire_inclusion_with_leaf_hash", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            let (i, p, root) = &incl[q];
            verify_inclusion(&leaf_hash(&value), *i, size, p, root).unwrap()
        })
    });
    g.bench_function("ct_merkle_inclusion_with_leaf_hash", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            let (i, p, root) = &ct_incl[q];
            root.verify_inclusion(&value, *i, p).unwrap()
        })
    });
    let ct_cons: Vec<_> = cons
        .iter()
        .map(|(m, p, o, n)| {
            (
                ct_merkle::ConsistencyProof::<Ct>::try_from_bytes(
                    p.iter().flat_map(|h| h.0).collect(),
                )
                .unwrap(),
                ct_merkle::RootHash::<Ct>::new(o.0.into(), *m),
                ct_merkle::RootHash::<Ct>::new(n.0.into(), size),
            )
        })
        .collect();
    g.bench_function("ct_merkle_consistency", |b| {
        b.iter(|| {
            q = (q + 1) % QUERIES;
            let (p, old, new) = &ct_cons[q];
            new.verify_consistency(old, p).unwrap()
        })
    });
    g.finish();
}

fn checkpoints(c: &mut Criterion) {
    let mut r = rng();
    let text = Checkpoint::new("audit.example.com/prod/2026", 123_456_789, leaf_hash(b"r"))
        .unwrap()
        .to_text();
    let mut g = c.benchmark_group("verify_signed_checkpoint");
    g.throughput(Throughput::Elements(1));
    for alg in [LogKeyAlgorithm::Ed25519, LogKeyAlgorithm::EcdsaP256] {
        let key = LogSigner::generate_with(alg, "audit.example.com/prod/2026", &mut r).unwrap();
        let mut note = Note::new(&text).unwrap();
        note.add_signature(key.sign(text.as_bytes())).unwrap();
        let bytes = note.to_bytes();
        let keys = [key.verifier()];
        g.bench_function(BenchmarkId::new("quire", format!("{alg:?}")), |b| {
            b.iter(|| {
                Note::parse(black_box(&bytes))
                    .unwrap()
                    .verify(&keys)
                    .unwrap()
            })
        });
        if alg == LogKeyAlgorithm::Ed25519 {
            let v = signed_note::StandardVerifier::new(&key.verifier().to_vkey()).unwrap();
            let list = signed_note::VerifierList::new(vec![Box::new(v)]);
            g.bench_function(BenchmarkId::new("signed_note", "Ed25519"), |b| {
                b.iter(|| {
                    signed_note::Note::from_bytes(black_box(&bytes))
                        .unwrap()
                        .verify(&list)
                        .unwrap()
                })
            });
        }
    }
    let w = WitnessSigner::generate_with("witness.example/w1", &mut r).unwrap();
    let mut note = Note::new(&text).unwrap();
    note.add_signature(w.cosign(text.as_bytes(), 1_700_000_000).unwrap())
        .unwrap();
    let bytes = note.to_bytes();
    let keys = [w.verifier()];
    g.bench_function(BenchmarkId::new("quire", "CosignatureV1"), |b| {
        b.iter(|| {
            Note::parse(black_box(&bytes))
                .unwrap()
                .verify(&keys)
                .unwrap()
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = leaf_hashing, appends, proofs, checkpoints
}
criterion_main!(benches);
