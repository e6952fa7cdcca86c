//! Quotas end to end: a principal held to its bucket with
//! `RESOURCE_EXHAUSTED` and a retry hint while others write on, a batch
//! larger than the bucket refused as such, a bucket shared per log, and
//! anonymous callers limited per address. Rates are one per 1000 s, so
//! that nothing refills while a test runs: the counts decide, not time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "access/fixture.rs"]
mod fixture;

use fixture::*;
use quire_proto::v1::AddEntriesRequest;
use tonic::Code;

const QUOTAS: &str = r#"
[[quotas]]
who = "token:acme-writer"
entries_per_s = 0.001
burst = 5
[[quotas]]
logs = ["beta.example/*"]
requests_per_s = 0.001
burst = 3
per = "log"
[[quotas]]
who = "anonymous"
requests_per_s = 0.001
burst = 2
[[grants]]
who = "token:acme-reader"
roles = ["writer"]
tenants = ["acme"]
"#;

fn bearer(name: &str) -> Option<String> {
    Some(format!("Bearer {}", token_of(name)))
}

async fn batch(c: &mut Client, log: &str, n: usize, tag: &str) -> Result<(), tonic::Status> {
    c.add_entries(AddEntriesRequest {
        log: log.to_owned(),
        entries: (0..n).map(|i| format!("{tag} {i}").into_bytes()).collect(),
        ..Default::default()
    })
    .await
    .map(|_| ())
}

#[tokio::test]
async fn a_principal_is_held_to_its_quota_and_others_are_not() {
    let f = start_with(QUOTAS).await;
    let mut noisy = connect(&f, None, bearer("acme-writer")).await;
    let mut quiet = connect(&f, None, bearer("acme-reader")).await;
    // A batch larger than the bucket can never pass: said so, not "retry".
    let s = batch(&mut noisy, ACME, 6, "big").await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert_eq!(
        s.message(),
        "a batch of 6 entries is more than quota 1's bucket holds: send smaller batches"
    );
    // Five entries fit the bucket: a batch of three and two single ones.
    batch(&mut noisy, ACME, 3, "a").await.unwrap();
    call(&mut noisy, Rpc::AddEntry, ACME, 1).await.unwrap();
    call(&mut noisy, Rpc::AddEntries, ACME, 2).await.unwrap();
    for n in 0..3 {
        let s = call(&mut noisy, Rpc::AddEntry, ACME, 10 + n)
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        assert!(
            s.message().starts_with(
                "quota 1 of the access policy holds token \"acme-writer\" to 0.001 entries per second on log \"acme.example/audit\"; retry in "
            ),
            "{}",
            s.message()
        );
        let hint: u64 = s
            .metadata()
            .get("retry-after-ms")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // One entry is due a thousand seconds after the last.
        assert!((990_000..=1_000_000).contains(&hint), "{hint}");
    }
    // Reads are not entries: the quota counts entries only.
    call(&mut noisy, Rpc::GetCheckpoint, ACME, 0).await.unwrap();
    // Another principal on the same log writes on.
    for n in 0..20 {
        call(&mut quiet, Rpc::AddEntry, ACME, 100 + n)
            .await
            .unwrap();
    }
    f.server.stop().await;
}

#[tokio::test]
async fn a_quota_per_log_is_shared_and_anonymous_callers_count_per_address() {
    let f = start_with(QUOTAS).await;
    let mut a = connect(&f, None, bearer("beta-writer")).await;
    let mut b = connect(&f, None, bearer("seeder")).await;
    // Three requests to the beta log in all, whoever sends them.
    call(&mut a, Rpc::AddEntry, BETA, 1).await.unwrap();
    call(&mut b, Rpc::AddEntry, BETA, 2).await.unwrap();
    call(&mut a, Rpc::GetEntries, BETA, 3).await.unwrap();
    for c in [&mut a, &mut b] {
        let s = call(c, Rpc::AddEntry, BETA, 4).await.unwrap_err();
        assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
        assert!(
            s.message()
                .starts_with("quota 2 of the access policy holds everyone it names to 0.001 requests per second on log \"beta.example/audit\""),
            "{}",
            s.message()
        );
    }
    // Not the acme log.
    call(&mut b, Rpc::AddEntry, ACME, 5).await.unwrap();
    // Anonymous callers: two requests per address, any log.
    let mut anon = connect(&f, None, None).await;
    call(&mut anon, Rpc::GetCheckpoint, ACME, 0).await.unwrap();
    call(&mut anon, Rpc::GetInclusionProof, ACME, 0)
        .await
        .unwrap();
    let s = call(&mut anon, Rpc::GetCheckpoint, ACME, 0)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message()
            .contains("holds an anonymous caller to 0.001 requests per second"),
        "{}",
        s.message()
    );
    // A refusal for want of a role takes nothing from a bucket: the
    // access check comes first.
    let mut other = connect(&f, None, bearer("acme-reader")).await;
    let s = call(&mut other, Rpc::AddEntry, BETA, 6).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    f.server.stop().await;
}
