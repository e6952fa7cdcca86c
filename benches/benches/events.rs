//! The sequencer's share of one audit event. Sealing an envelope (log time
//! and links set, canonical bytes, leaf hash) is the work a log in event
//! mode does on its one sequencing thread: the whole envelope encoded and
//! hashed there, against a template written and half-hashed on the
//! writer's task, sealed there. And the payload's salt: one system call an
//! event, against a user-space generator reseeded from the OS. Same run,
//! same machine; a Kubernetes-shaped event as `quire-bench --scenario
//! events` writes.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::pedantic
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use quire_core::event::{Envelope, Event, KeyField, Links, Outcome};
use quire_core::Hash;
use rand_core::RngCore;

fn envelope() -> Envelope {
    let mut event = Event::new("k8s.audit", "system:serviceaccount:ns-17:deployer", "patch");
    event.resource = Some("namespaces/ns-17/pods/pod-42".into());
    event.source = Some("10.12.200.7".into());
    event.outcome = Outcome::Success;
    event.occurred_ms = Some(1_796_371_200_000);
    for (k, v) in [
        ("auditID", "9f2d61c0a4b34a8e8e0c5b7d1f3a2e44"),
        (
            "userAgent",
            "kubectl/v1.31.0 (linux/amd64) kubernetes/9edcffc",
        ),
        ("code", "200"),
    ] {
        event.attributes.insert(k.into(), v.into());
    }
    Envelope {
        log_time_ms: 0,
        submitter: "CN=ingest.corp.example".into(),
        tenant: Some("payments".into()),
        event,
        payload: Some(Hash([7; 32])),
        prev: Links::default(),
    }
}

fn bench(c: &mut Criterion) {
    let bare = envelope();
    let mut prev = Links::default();
    for (i, f) in KeyField::ALL.into_iter().enumerate() {
        prev.0.insert(f, 12_345_678 + i as u64);
    }
    let time = 1_796_371_200_123;
    let mut g = c.benchmark_group("envelope_seal");
    g.bench_function("encode_and_leaf_hash", |b| {
        b.iter(|| {
            let mut e = bare.clone();
            e.log_time_ms = black_box(time);
            e.prev = prev.clone();
            let bytes = e.encode().unwrap();
            let leaf = quire_core::leaf_hash(&bytes);
            (bytes, leaf)
        })
    });
    let template = bare.template().unwrap();
    g.bench_function("template_seal", |b| {
        b.iter(|| template.seal(black_box(time), &prev).unwrap())
    });
    g.bench_function("template_write", |b| {
        b.iter(|| black_box(&bare).template().unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("salt_32B");
    g.bench_function("os_rng", |b| {
        b.iter(|| {
            let mut salt = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut salt);
            salt
        })
    });
    g.bench_function("thread_rng", |b| {
        b.iter(|| {
            let mut salt = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut salt);
            salt
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
