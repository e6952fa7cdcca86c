//! The admin service over gRPC with TLS: who may create and freeze logs
//! and read or replace the access policy, and that its changes are in
//! force when the call returns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "access/fixture.rs"]
mod fixture;

use fixture::*;
use quire_proto::v1::ListLogsRequest;
use quire_server::access::token_hash_hex;
use tonic::Code;

/// The admin service: each call needs the admin role on what it changes
/// (a tenant's admin creates and freezes its own logs, only a grant on
/// every log reads or replaces the policy); a created log is usable at
/// once under the tenant's grants; a frozen log refuses writes by name and
/// keeps serving reads; a policy replaced through the service is in force
/// when the call returns, and a stale or invalid one changes nothing.
#[tokio::test]
async fn the_admin_service_needs_the_admin_role_and_its_changes_take_effect_at_once() {
    use quire_proto::v1::{
        CreateLogRequest, FreezeLogRequest, GetAccessRequest, GetCheckpointRequest,
        SetAccessRequest,
    };
    use sha2::Digest as _;
    const NEXT: &str = "acme.example/2027-01";
    let f = start_with("[[grants]]\nwho = \"token:seeder\"\nroles = [\"admin\"]\nlogs = [\"*\"]\n")
        .await;
    let mut anon = connect_admin(&f, None).await;
    let mut writer_admin = connect_admin(&f, Some("acme-writer")).await;
    let mut acme_admin = connect_admin(&f, Some("acme-admin")).await;
    let mut revoked = connect_admin(&f, Some("old")).await;
    let mut root = connect_admin(&f, Some("seeder")).await;
    let create = |origin: &str, like: &str| CreateLogRequest {
        origin: origin.into(),
        like: like.into(),
        private_keys: Vec::new(),
    };
    fn refused<T>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
        match r {
            Ok(_) => panic!("the call was not refused"),
            Err(s) => (s.code(), s.message().to_owned()),
        }
    }

    // Refusals, each naming what is missing.
    assert_eq!(
        refused(anon.create_log(create(NEXT, "")).await),
        (
            Code::Unauthenticated,
            format!("unauthenticated: no credentials were presented, and anonymous callers may not administer log {NEXT:?} (the admin role is needed)")
        )
    );
    assert_eq!(
        refused(revoked.create_log(create(NEXT, "")).await),
        (
            Code::Unauthenticated,
            "unauthenticated: token \"old\" is revoked".into()
        )
    );
    assert_eq!(
        refused(writer_admin.create_log(create(NEXT, "")).await),
        (
            Code::PermissionDenied,
            format!("token \"acme-writer\" may not administer log {NEXT:?}: the admin role is missing (roles held on this log: writer, auditor)")
        )
    );
    let (code, message) = refused(
        acme_admin
            .create_log(create("beta.example/2027-01", ""))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("the admin role is missing"), "{message}");
    let (code, _) = refused(
        acme_admin
            .freeze_log(FreezeLogRequest { log: BETA.into() })
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    let (code, message) = refused(acme_admin.get_access(GetAccessRequest {}).await);
    assert_eq!(code, Code::PermissionDenied);
    assert!(
        message.contains("may not administer log \"*\""),
        "{message}"
    );

    // A tenant's admin creates the tenant's next log, like its current one;
    // the tenant's writer writes to it at once; twice is ALREADY_EXISTS.
    let created = acme_admin
        .create_log(create(NEXT, ACME))
        .await
        .unwrap()
        .into_inner();
    assert!(created.keys_generated);
    let info = created.log.unwrap();
    assert_eq!(
        (info.origin.as_str(), info.state.as_str(), info.size),
        (NEXT, "ACTIVE", 0)
    );
    assert_eq!(info.verifier_keys.len(), 2);
    let (code, message) = refused(acme_admin.create_log(create(NEXT, "")).await);
    assert_eq!(
        (code, message),
        (
            Code::AlreadyExists,
            format!("log {NEXT:?} exists already on this server")
        )
    );
    let mut writer = connect_token(&f, "acme-writer").await;
    let mut reader = connect_token(&f, "acme-reader").await;
    call(&mut writer, Rpc::AddEntry, NEXT, 1).await.unwrap();
    call(&mut writer, Rpc::AddEntries, NEXT, 2).await.unwrap();
    let listed = reader
        .list_logs(ListLogsRequest {})
        .await
        .unwrap()
        .into_inner()
        .logs;
    let shown = listed.iter().find(|l| l.origin == NEXT).unwrap();
    assert_eq!((shown.state.as_str(), shown.size), ("ACTIVE", 2));

    // Frozen: writes refused by name, reads go on.
    let frozen = acme_admin
        .freeze_log(FreezeLogRequest { log: NEXT.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(frozen.changed);
    let info = frozen.log.unwrap();
    assert_eq!((info.state.as_str(), info.size), ("FROZEN", 2));
    assert!(info.frozen_at_ms > 0);
    let s = call(&mut writer, Rpc::AddEntry, NEXT, 3).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::FailedPrecondition,
            format!("log {NEXT} is FROZEN: it takes no more writes (reads and proofs go on); write to its successor").as_str()
        )
    );
    for rpc in [Rpc::GetCheckpoint, Rpc::GetInclusionProof, Rpc::GetEntries] {
        call(&mut reader, rpc, NEXT, 4).await.unwrap();
    }
    let note = reader
        .get_checkpoint(GetCheckpointRequest {
            log: NEXT.into(),
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    assert!(String::from_utf8(note)
        .unwrap()
        .starts_with(&format!("{NEXT}\n2\n")));
    let again = acme_admin
        .freeze_log(FreezeLogRequest { log: NEXT.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);

    // The policy, read and replaced by an admin of every log.
    let got = root
        .get_access(GetAccessRequest {})
        .await
        .unwrap()
        .into_inner();
    let on_disk = std::fs::read(&f.policy).unwrap();
    assert_eq!(got.policy, on_disk);
    assert_eq!(got.sha256, sha2::Sha256::digest(&on_disk).to_vec());
    let text = String::from_utf8(on_disk.clone()).unwrap();
    let writer_hash = token_hash_hex(&token_of("acme-writer"));
    let revoking = text.replace(
        &format!("sha256 = \"{writer_hash}\"\nrevoked = false"),
        &format!("sha256 = \"{writer_hash}\"\nrevoked = true"),
    );
    assert_ne!(revoking, text);
    let set = |policy: &str, replaces: Vec<u8>| SetAccessRequest {
        policy: policy.as_bytes().to_vec(),
        replaces_sha256: replaces,
    };
    let (code, message) = refused(root.set_access(set(&revoking, vec![7; 32])).await);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(
        message.starts_with("the policy changed since it was read"),
        "{message}"
    );
    let (code, message) = refused(
        root.set_access(set("public = [\"nobody\"]", got.sha256.clone()))
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.contains("unknown role \"nobody\""), "{message}");
    let (code, _) = refused(root.set_access(set(&revoking, vec![1; 5])).await);
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(
        std::fs::read(&f.policy).unwrap(),
        on_disk,
        "nothing written"
    );
    call(&mut writer, Rpc::AddEntry, ACME, 5).await.unwrap();
    let done = root
        .set_access(set(&revoking, got.sha256.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.sha256,
        sha2::Sha256::digest(revoking.as_bytes()).to_vec()
    );
    // In force when the call returned: no wait.
    let s = call(&mut writer, Rpc::AddEntry, ACME, 6).await.unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::Unauthenticated,
            "unauthenticated: token \"acme-writer\" is revoked"
        )
    );
    f.server.stop().await;
}
