//! What one access check costs a request: `AccessControl::check` for an
//! anonymous caller, a static token, a JWT (verified once, then
//! remembered) and a client certificate (its SANs parsed per request),
//! beside the default open access, in the same run.
//! `cargo bench -p quire-benches --bench access`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::pedantic
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use quire_benches::auth::{self, Auth};
use quire_server::access::AccessControl;
use quire_server::api::{Access, Action, Caller, Credential, Identity, OpenAccess};

const LOG: &str = "bench.example/log";

fn certificate() -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(vec!["writer.bench.example".into()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://bench/writer".try_into().unwrap(),
    ));
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn checks(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("access check");
    let open = OpenAccess;
    let anon = Caller::default();
    g.bench_function("open access (no policy)", |b| {
        b.iter(|| open.check(black_box(&anon), LOG, Action::Write, 1).unwrap())
    });
    for mode in [Auth::Token, Auth::Jwt] {
        let (policy, token) = auth::setup(dir.path(), mode, "").unwrap().unwrap();
        let access = AccessControl::load(&policy).unwrap();
        let caller = Caller {
            credential: Credential::Bearer(token.into()),
            ..Caller::default()
        };
        g.bench_function(format!("{mode:?}"), |b| {
            b.iter(|| {
                access
                    .check(black_box(&caller), LOG, Action::Write, 1)
                    .unwrap()
            })
        });
    }
    let policy = dir.path().join("cert.toml");
    std::fs::write(
        &policy,
        "public = []\n[[grants]]\nwho = \"uri:spiffe://bench/writer\"\nroles = [\"writer\"]\nlogs = [\"*\"]\n",
    )
    .unwrap();
    let access = AccessControl::load(&policy).unwrap();
    let chain = Arc::new(vec![tonic::transport::CertificateDer::from(certificate())]);
    let caller = Caller {
        identity: Identity::Certificate(chain),
        ..Caller::default()
    };
    g.bench_function("client certificate", |b| {
        b.iter(|| {
            access
                .check(black_box(&caller), LOG, Action::Write, 1)
                .unwrap()
        })
    });
    let anonymous_policy = dir.path().join("public.toml");
    std::fs::write(&anonymous_policy, "public = [\"writer\"]\n").unwrap();
    let access = AccessControl::load(&anonymous_policy).unwrap();
    g.bench_function("anonymous under a policy", |b| {
        b.iter(|| {
            access
                .check(black_box(&anon), LOG, Action::Write, 1)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
