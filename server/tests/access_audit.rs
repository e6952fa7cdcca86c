//! The server's own audit trail: refused requests and policy changes are
//! appended to the configured audit log, in order, with the status the
//! caller got; showing a caller only the logs it may see records nothing;
//! and the trail verifies like any other log (its entries recomputed
//! against a checkpoint the log signed, as `quire audit` does with a dump).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "access/fixture.rs"]
mod fixture;

use fixture::*;
use quire_proto::v1::ListLogsRequest;
use tonic::Code;

#[tokio::test]
async fn refusals_and_policy_changes_are_recorded_and_verify() {
    let f = start_configured("", true).await;
    let mut admin = connect_token(&f, "acme-admin").await;
    // At start: the policy in force.
    let start = until(&mut admin, 1).await;
    assert_eq!(start[0]["event"], "policy");
    assert_eq!(start[0]["code"], "ok");
    assert!(
        start[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("in force: "),
        "{start:?}"
    );

    let mut anon = connect(&f, None, None).await;
    let mut unknown = connect(&f, None, Some("Bearer quire_unknown".into())).await;
    let mut writer = connect_token(&f, "acme-writer").await;
    // Shown only what it may see: not a refusal, nothing recorded.
    let listed = anon
        .list_logs(ListLogsRequest {})
        .await
        .unwrap()
        .into_inner()
        .logs;
    assert_eq!(listed.len(), 1);
    let refusals = [
        (
            call(&mut anon, Rpc::AddEntry, ACME, 1).await.unwrap_err(),
            "UNAUTHENTICATED",
            Some("an anonymous caller"),
            ACME,
        ),
        (
            call(&mut unknown, Rpc::GetCheckpoint, ACME, 2)
                .await
                .unwrap_err(),
            "UNAUTHENTICATED",
            None,
            ACME,
        ),
        (
            call(&mut writer, Rpc::AddEntry, BETA, 3).await.unwrap_err(),
            "PERMISSION_DENIED",
            Some("token \"acme-writer\""),
            BETA,
        ),
    ];
    assert_eq!(refusals[0].0.code(), Code::Unauthenticated);
    assert_eq!(refusals[2].0.code(), Code::PermissionDenied);
    let got = until(&mut admin, 4).await;
    assert_eq!(got.len(), 4, "{got:#?}");
    for ((status, code, principal, log), e) in refusals.iter().zip(&got[1..]) {
        assert_eq!(e["kind"], "quire-access-event/v1");
        assert_eq!(e["event"], "refused");
        assert_eq!(e["code"], *code);
        assert_eq!(e["message"], status.message(), "{e}");
        assert_eq!(e["log"], *log);
        assert_eq!(e["principal"].as_str(), *principal, "{e}");
        assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
    }
    assert!(got.iter().all(|e| e.get("dropped_before").is_none()));

    // A policy change is recorded; so is one refused for being invalid.
    let text = std::fs::read_to_string(&f.policy).unwrap();
    let dir = f.policy.parent().unwrap();
    let swap = |t: String| {
        let tmp = dir.join("access.toml.new");
        std::fs::write(&tmp, t).unwrap();
        std::fs::rename(&tmp, &f.policy).unwrap();
    };
    swap(format!("{text}\n# a comment is a change\n"));
    let got = until(&mut admin, 5).await;
    assert_eq!(
        (&got[4]["event"], &got[4]["code"]),
        (&"policy".into(), &"ok".into()),
        "{got:#?}"
    );
    assert!(got[4]["message"]
        .as_str()
        .unwrap()
        .starts_with("reloaded: "));
    swap(format!("{text}\nnot toml at all ["));
    let got = until(&mut admin, 6).await;
    assert_eq!(got[5]["code"], "error", "{got:#?}");
    assert!(
        got[5]["message"]
            .as_str()
            .unwrap()
            .starts_with("not reloaded, the previous one stays in force: "),
        "{got:#?}"
    );

    // The trail verifies like any other log: every entry recomputed into
    // the root of a checkpoint the log signed.
    let (note, size) = checkpoint(&mut admin).await;
    let entries = raw_entries(&mut admin, size).await;
    let log = f.server.logs.iter().find(|l| l.origin() == AUDIT).unwrap();
    let root = |entries: &[Vec<u8>]| {
        let mut range = quire_core::CompactRange::new();
        for e in entries {
            range.append(quire_core::leaf_hash(e), |_, _| {}).unwrap();
        }
        range.root()
    };
    let parsed = quire_core::Note::parse(&note).unwrap();
    parsed.verify(log.verifiers()).unwrap();
    let cp = quire_core::Checkpoint::parse(parsed.text().as_bytes()).unwrap();
    assert_eq!((cp.size(), &root(&entries)), (size, cp.root()));
    // An entry dropped, or altered, is seen.
    assert_ne!(&root(&entries[1..]), cp.root());
    let mut altered = entries.clone();
    altered[1] = b"{}".to_vec();
    assert_ne!(&root(&altered), cp.root());
    f.server.stop().await;
}

/// Every admin action is recorded with who did it, from where and to
/// which log; so is an admin call refused; and the audit log itself is not
/// frozen (it must take the records).
#[tokio::test]
async fn admin_actions_are_recorded() {
    use quire_proto::v1::{CreateLogRequest, FreezeLogRequest};
    const NEXT: &str = "acme.example/2027-02";
    let f = start_configured(
        "[[grants]]\nwho = \"token:seeder\"\nroles = [\"admin\"]\nlogs = [\"*\"]\n",
        true,
    )
    .await;
    let mut admin = connect_token(&f, "acme-admin").await;
    let mut service = connect_admin(&f, Some("acme-admin")).await;
    let mut writer = connect_admin(&f, Some("acme-writer")).await;
    until(&mut admin, 1).await;
    service
        .create_log(CreateLogRequest {
            origin: NEXT.into(),
            like: String::new(),
            private_keys: Vec::new(),
        })
        .await
        .unwrap();
    let refused = writer
        .freeze_log(FreezeLogRequest { log: NEXT.into() })
        .await
        .unwrap_err();
    service
        .freeze_log(FreezeLogRequest { log: NEXT.into() })
        .await
        .unwrap();
    let got = until(&mut admin, 4).await;
    assert_eq!(got.len(), 4, "{got:#?}");
    let (created, denied, frozen) = (&got[1], &got[2], &got[3]);
    assert_eq!(
        (
            &created["event"],
            &created["code"],
            &created["log"],
            &created["principal"]
        ),
        (
            &"admin".into(),
            &"ok".into(),
            &NEXT.into(),
            &"token \"acme-admin\"".into()
        ),
        "{created}"
    );
    assert_eq!(
        created["message"],
        format!("created log {NEXT:?} (default settings, keys generated)")
    );
    assert!(created["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_denied(denied, &refused);
    assert_eq!(
        (&frozen["event"], &frozen["log"]),
        (&"admin".into(), &NEXT.into())
    );
    assert!(
        frozen["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("froze log {NEXT:?} at size 0 (frozen at ")),
        "{frozen}"
    );
    let mut root = connect_admin(&f, Some("seeder")).await;
    let s = root
        .freeze_log(FreezeLogRequest { log: AUDIT.into() })
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (
            tonic::Code::FailedPrecondition,
            format!("log {AUDIT:?} is this server's audit log and must take its records: set another audit_log first").as_str()
        )
    );
    f.server.stop().await;
}
