//! Signatures. Verification, the CPU cost of a witness's add-checkpoint:
//! ECDSA P-256 (a Quire log's primary key) with RustCrypto `p256` (what
//! quire-core uses to verify) beside `ring` on the same key and signature,
//! and Ed25519 (`ed25519-dalek`, log keys and cosignatures) for scale.
//! Signing, a fixed cost of every commit (each checkpoint carries both of
//! a log's signatures): both implementations of P-256 on one key, Ed25519,
//! and quire-core's `LogSigner` for each. Same run, same machine.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::pedantic
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use quire_core::{LogKeyAlgorithm, LogSigner, Note};

const TEXT: &[u8] =
    b"bench.example/witnessed-17\n123456789\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    // ECDSA P-256: one key and one DER signature for both implementations.
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let vk = *sk.verifying_key();
    let sig: p256::ecdsa::DerSignature = sk.sign(TEXT);
    let der = sig.as_bytes().to_vec();
    let point = vk.to_encoded_point(false).as_bytes().to_vec();
    g.bench_function("p256_rustcrypto", |b| {
        b.iter(|| {
            let s = p256::ecdsa::Signature::from_der(black_box(&der)).unwrap();
            vk.verify(black_box(TEXT), &s).unwrap();
        })
    });
    let ring_key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &point);
    g.bench_function("p256_ring", |b| {
        b.iter(|| ring_key.verify(black_box(TEXT), black_box(&der)).unwrap())
    });
    // The whole note check a witness makes, as quire-core does it.
    for (name, alg) in [
        ("note_p256_quire_core", LogKeyAlgorithm::EcdsaP256),
        ("note_ed25519_quire_core", LogKeyAlgorithm::Ed25519),
    ] {
        let signer = LogSigner::generate(alg, "bench.example/log").unwrap();
        let text = "bench.example/log\n123456789\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let mut note = Note::new(text).unwrap();
        note.add_signature(signer.sign(text.as_bytes())).unwrap();
        let bytes = note.to_bytes();
        let keys = [signer.verifier()];
        g.bench_function(name, |b| {
            b.iter(|| {
                let n = Note::parse(black_box(&bytes)).unwrap();
                n.verify(&keys).unwrap();
            })
        });
    }
    g.finish();
}

fn sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("sign");
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    g.bench_function("p256_rustcrypto", |b| {
        b.iter(|| {
            let s: p256::ecdsa::DerSignature = sk.sign(black_box(TEXT));
            s
        })
    });
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    g.bench_function("p256_ring", |b| {
        b.iter(|| pair.sign(&rng, black_box(TEXT)).unwrap())
    });
    for (name, alg) in [
        ("log_signer_p256_quire_core", LogKeyAlgorithm::EcdsaP256),
        ("log_signer_ed25519_quire_core", LogKeyAlgorithm::Ed25519),
    ] {
        let signer = LogSigner::generate(alg, "bench.example/log").unwrap();
        g.bench_function(name, |b| b.iter(|| signer.sign(black_box(TEXT))));
    }
    g.finish();
}

criterion_group!(benches, bench, sign);
criterion_main!(benches);
