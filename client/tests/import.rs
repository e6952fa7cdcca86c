//! The importers on real-shaped samples (`tests/fixtures/`): a Kubernetes
//! audit log, a CloudTrail log file and OCSF API Activity events, each
//! field mapped, the record kept whole as the payload.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_client::import::{events, Format};
use quire_core::event::Outcome;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

fn lines(name: &str) -> Vec<Vec<u8>> {
    fixture(name)
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn kubernetes_audit_events_map_field_by_field() {
    let lines = lines("k8s-audit.jsonl");
    let all: Vec<_> = lines
        .iter()
        .map(|l| events(Format::K8s, l).unwrap().pop().unwrap())
        .collect();
    let e = &all[0].event;
    assert_eq!(e.kind, "k8s.audit");
    assert_eq!(e.actor, "alice@corp.example");
    assert_eq!(e.action, "create");
    assert_eq!(
        e.resource.as_deref(),
        Some("namespaces/payments/pods/api-7f9c")
    );
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.source.as_deref(), Some("203.0.113.7"));
    assert_eq!(e.occurred_ms, Some(1_796_378_400_123));
    assert_eq!(
        e.attributes["auditID"],
        "9a1e2b3c-0d4e-4f5a-8b6c-7d8e9f0a1b2c"
    );
    assert_eq!(e.attributes["code"], "201");
    assert_eq!(e.attributes["stage"], "ResponseComplete");
    assert_eq!(e.attributes["decision"], "allow");
    assert_eq!(all[0].payload.as_deref(), Some(lines[0].as_slice()));
    // A forbidden read of a secret by a service account.
    let e = &all[1].event;
    assert_eq!(e.actor, "system:serviceaccount:ci:deployer");
    assert_eq!(e.outcome, Outcome::Failure);
    assert_eq!(
        e.resource.as_deref(),
        Some("namespaces/payments/secrets/db-password")
    );
    assert_eq!(e.attributes["decision"], "forbid");
    // Impersonation: the impersonated user acts; who impersonated is kept.
    let e = &all[2].event;
    assert_eq!(e.actor, "system:admin");
    assert_eq!(e.attributes["impersonatedBy"], "bob@corp.example");
    assert_eq!(e.resource.as_deref(), Some("nodes"));
    assert_eq!(e.source.as_deref(), Some("198.51.100.23"));
    // Not an audit event.
    let err = events(Format::K8s, br#"{"kind":"Pod","apiVersion":"v1"}"#).unwrap_err();
    assert!(err.contains("not a Kubernetes audit event"), "{err}");
    let err = events(Format::K8s, b"{").unwrap_err();
    assert!(err.starts_with("not JSON"), "{err}");
}

#[test]
fn cloudtrail_records_map_field_by_field() {
    let all = events(Format::CloudTrail, &fixture("cloudtrail.json")).unwrap();
    assert_eq!(all.len(), 3);
    let e = &all[0].event;
    assert_eq!(e.kind, "aws.cloudtrail");
    assert_eq!(e.actor, "arn:aws:iam::111122223333:user/alice");
    assert_eq!(e.action, "signin.amazonaws.com:ConsoleLogin");
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.source.as_deref(), Some("203.0.113.7"));
    assert_eq!(e.occurred_ms, Some(1_796_378_292_000));
    assert_eq!(
        e.attributes["eventID"],
        "3fcfb8b5-0a6e-4f1c-9a5e-2b8e4f0c1d2a"
    );
    assert_eq!(e.attributes["awsRegion"], "us-east-1");
    // A refused call: failure, with the error.
    let e = &all[1].event;
    assert_eq!(
        e.actor,
        "arn:aws:sts::111122223333:assumed-role/ci-deployer/ci"
    );
    assert_eq!(e.action, "iam.amazonaws.com:CreateUser");
    assert_eq!(e.outcome, Outcome::Failure);
    assert_eq!(e.attributes["errorCode"], "AccessDenied");
    // A service's call on a resource.
    let e = &all[2].event;
    assert_eq!(e.actor, "s3.amazonaws.com");
    assert_eq!(
        e.resource.as_deref(),
        Some("arn:aws:s3:::audit-archive/2026/12/04/log.gz")
    );
    // Each payload is its record.
    let record: serde_json::Value =
        serde_json::from_slice(all[1].payload.as_ref().unwrap()).unwrap();
    assert_eq!(record["eventID"], "7a2d9c41-58e3-4b7f-a0c6-1e9d3b5f2c84");
    // One record a line works too.
    let one = serde_json::to_vec(&record).unwrap();
    assert_eq!(
        events(Format::CloudTrail, &one).unwrap()[0].event,
        all[1].event
    );
    let err = events(Format::CloudTrail, br#"{"eventSource":"x"}"#).unwrap_err();
    assert!(err.contains("eventName is missing"), "{err}");
}

#[test]
fn ocsf_api_activity_maps_field_by_field() {
    let lines = lines("ocsf-api-activity.jsonl");
    let a = events(Format::Ocsf, &lines[0]).unwrap().pop().unwrap();
    let e = &a.event;
    assert_eq!(e.kind, "ocsf.api_activity");
    assert_eq!(e.actor, "alice@corp.example");
    assert_eq!(e.action, "CreateBucket");
    assert_eq!(e.resource.as_deref(), Some("arn:aws:s3:::audit-archive"));
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.source.as_deref(), Some("203.0.113.7"));
    assert_eq!(e.occurred_ms, Some(1_796_378_400_123));
    assert_eq!(e.attributes["metadata.uid"], "ocsf-0001");
    assert_eq!(e.attributes["cloud.provider"], "AWS");
    let b = events(Format::Ocsf, &lines[1]).unwrap().pop().unwrap();
    assert_eq!(b.event.actor, "svc-backup");
    assert_eq!(b.event.outcome, Outcome::Failure);
    assert_eq!(b.event.resource.as_deref(), Some("ec2"));
    let err = events(Format::Ocsf, br#"{"class_uid":3002}"#).unwrap_err();
    assert!(err.contains("only API Activity (6003)"), "{err}");
    assert_eq!(Format::parse("cloudtrail"), Ok(Format::CloudTrail));
    assert!(Format::parse("syslog").is_err());
}
