//! Access control end to end over gRPC with TLS: every RPC of the log
//! service × every kind of identity (none, client certificates, static
//! tokens, JWTs, and each way a credential is invalid) × two tenants' logs,
//! each answer's status and message checked against the roles this test
//! declares for each identity (not against the policy code's own view).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "access/fixture.rs"]
mod fixture;

use fixture::*;
use quire_proto::v1::ListLogsRequest;
use quire_server::access::{token_hash_hex, AccessControl};
use quire_server::api::{Access, Action, Caller, Credential};
use quire_server::config::{Config, LogConfig};
use tonic::Code;

/// What an identity is expected to get.
enum Expect {
    /// Valid credentials: who the server calls it, and its roles on each
    /// log as the policy above grants them.
    Roles {
        who: &'static str,
        anonymous: bool,
        acme: &'static [&'static str],
        beta: &'static [&'static str],
    },
    /// Invalid credentials: this message on every RPC.
    Unauthenticated(String),
}

/// Valid credentials of a principal that is not anonymous.
fn valid(
    who: &'static str,
    acme: &'static [&'static str],
    beta: &'static [&'static str],
) -> Expect {
    Expect::Roles {
        who,
        anonymous: false,
        acme,
        beta,
    }
}

fn allows(held: &[&str], role: &str) -> bool {
    held.contains(&role) || (role == "auditor" && held.contains(&"reader"))
}

fn expect_on(e: &Expect, rpc: Rpc, log: &str) -> Result<(), (Code, String)> {
    expect_role(e, rpc.role(), log, log)
}

/// What `e` gets asking for what needs `(role, words)` on `log`, where its
/// roles are those it holds on `tenant_log` (a log of the same tenant).
fn expect_role(
    e: &Expect,
    (role, words): (&str, &str),
    tenant_log: &str,
    log: &str,
) -> Result<(), (Code, String)> {
    match e {
        Expect::Unauthenticated(msg) => Err((Code::Unauthenticated, msg.clone())),
        Expect::Roles {
            who,
            anonymous,
            acme,
            beta,
        } => {
            let held = if tenant_log == ACME { acme } else { beta };
            if allows(held, role) {
                Ok(())
            } else if *anonymous {
                Err((
                    Code::Unauthenticated,
                    format!(
                        "unauthenticated: no credentials were presented, and anonymous callers may not {words} log {log:?} (the {role} role is needed)"
                    ),
                ))
            } else {
                let names = if held.is_empty() {
                    "none".to_owned()
                } else {
                    held.join(", ")
                };
                Err((
                    Code::PermissionDenied,
                    format!(
                        "{who} may not {words} log {log:?}: the {role} role is missing (roles held on this log: {names})"
                    ),
                ))
            }
        }
    }
}

#[tokio::test]
async fn every_rpc_by_every_identity_gets_its_exact_answer() {
    let f = start().await;
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    // Two entries in each log, so that every read has something to read.
    let mut seeder = connect(&f, None, bearer(&token_of("seeder"))).await;
    for log in [ACME, BETA] {
        for n in 0..2 {
            call(&mut seeder, Rpc::AddEntry, log, 1000 + n)
                .await
                .unwrap();
        }
    }
    let hour = now() + 3600;
    let alice = jwt(&f.jwks.key, ISS, "quire", "alice", hour, "a1");
    let cases: Vec<(&str, Option<&Pem>, Option<String>, Expect)> = vec![
        (
            "none",
            None,
            None,
            Expect::Roles {
                who: "an anonymous caller",
                anonymous: true,
                acme: &["auditor"],
                beta: &[],
            },
        ),
        (
            "mTLS writer (SPIFFE URI)",
            Some(&f.pki.writer),
            None,
            valid("client certificate uri:spiffe://acme/writer", &["writer", "auditor"], &[]),
        ),
        (
            "mTLS reader (DNS)",
            Some(&f.pki.reader),
            None,
            valid("client certificate dns:reader.acme.example", &["reader", "auditor"], &[]),
        ),
        (
            "mTLS with no grant",
            Some(&f.pki.stranger),
            None,
            valid("client certificate dns:stranger.example", &["auditor"], &[]),
        ),
        (
            "static token, writer",
            None,
            bearer(&token_of("acme-writer")),
            valid("token \"acme-writer\"", &["writer", "auditor"], &[]),
        ),
        (
            "static token, reader",
            None,
            bearer(&token_of("acme-reader")),
            valid("token \"acme-reader\"", &["reader", "auditor"], &[]),
        ),
        (
            "static token, other tenant",
            None,
            bearer(&token_of("beta-writer")),
            valid("token \"beta-writer\"", &["auditor"], &["writer", "reader"]),
        ),
        (
            "static token, admin",
            None,
            bearer(&token_of("acme-admin")),
            valid("token \"acme-admin\"", &["auditor", "admin"], &[]),
        ),
        (
            "a token beside a certificate: the token is the identity",
            Some(&f.pki.reader),
            bearer(&token_of("acme-writer")),
            valid("token \"acme-writer\"", &["writer", "auditor"], &[]),
        ),
        (
            "JWT writer",
            None,
            bearer(&alice),
            valid("subject \"alice\" of issuer \"corp\"", &["writer", "auditor"], &[]),
        ),
        (
            "JWT reader",
            None,
            bearer(&jwt(&f.jwks.key, ISS, "quire", "bob", hour, "b1")),
            valid("subject \"bob\" of issuer \"corp\"", &["reader", "auditor"], &[]),
        ),
        (
            "JWT of the other tenant",
            None,
            bearer(&jwt(&f.jwks.key, ISS, "quire", "carol", hour, "c1")),
            valid("subject \"carol\" of issuer \"corp\"", &["auditor"], &["reader"]),
        ),
        (
            "expired JWT",
            None,
            bearer(&jwt(&f.jwks.key, ISS, "quire", "alice", now() - 600, "a2")),
            Expect::Unauthenticated("unauthenticated: the JWT has expired".into()),
        ),
        (
            "JWT for another audience",
            None,
            bearer(&jwt(&f.jwks.key, ISS, "billing", "alice", hour, "a3")),
            Expect::Unauthenticated(
                "unauthenticated: the JWT is not for this server: its audience is none of quire"
                    .into(),
            ),
        ),
        (
            "JWT of an unknown issuer",
            None,
            bearer(&jwt(&f.jwks.key, "https://evil.example", "quire", "alice", hour, "a4")),
            Expect::Unauthenticated(
                "unauthenticated: the JWT's issuer \"https://evil.example\" is not one this server trusts"
                    .into(),
            ),
        ),
        (
            "JWT signed by a key not the issuer's",
            None,
            bearer(&jwt(&f.jwks.other, ISS, "quire", "alice", hour, "a5")),
            Expect::Unauthenticated(
                "unauthenticated: the JWT's signature does not verify with the keys of issuer \"corp\""
                    .into(),
            ),
        ),
        (
            "revoked JWT",
            None,
            bearer(&jwt(&f.jwks.key, ISS, "quire", "alice", hour, "stolen")),
            Expect::Unauthenticated("unauthenticated: the JWT \"stolen\" is revoked".into()),
        ),
        (
            "revoked static token",
            None,
            bearer(&token_of("old")),
            Expect::Unauthenticated("unauthenticated: token \"old\" is revoked".into()),
        ),
        (
            "unknown static token",
            Some(&f.pki.writer),
            bearer("quire_not-a-token-of-this-server"),
            Expect::Unauthenticated(
                "unauthenticated: the API token is not known to this server".into(),
            ),
        ),
        (
            "not a bearer token",
            None,
            Some("Basic YWxpY2U6c2VjcmV0".into()),
            Expect::Unauthenticated(
                "unauthenticated: the authorization header is not `Bearer <token>` (the only scheme accepted)"
                    .into(),
            ),
        ),
        (
            "a token over the size limit",
            None,
            bearer(&"x".repeat(9000)),
            Expect::Unauthenticated(
                "unauthenticated: the bearer token is 9000 bytes, over the 8192-byte limit".into(),
            ),
        ),
    ];
    let mut n = 0;
    let mut checked = 0;
    let mut created: Vec<String> = Vec::new();
    for (label, cert, auth, expect) in &cases {
        let mut c = connect(&f, *cert, auth.clone()).await;
        for rpc in RPCS {
            for log in [ACME, BETA] {
                n += 1;
                let got = call(&mut c, rpc, log, n).await;
                let want = expect_on(expect, rpc, log);
                match (&got, &want) {
                    (Ok(()), Ok(())) => {}
                    (Err(s), Err((code, msg))) => {
                        assert_eq!(s.code(), *code, "{label}, {rpc:?} on {log}: {s:?}");
                        assert_eq!(s.message(), msg, "{label}, {rpc:?} on {log}");
                    }
                    _ => panic!("{label}, {rpc:?} on {log}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        // The admin service: creating a log in each tenant needs the admin
        // role there (only the tenant's admin has it; its log is made).
        let mut admin = quire_proto::v1::admin_client::AdminClient::with_interceptor(
            channel(&f, *cert).await,
            Auth(auth.clone()),
        );
        for (tenant_log, prefix) in [(ACME, "acme.example"), (BETA, "beta.example")] {
            n += 1;
            let origin = format!("{prefix}/matrix-{n}");
            let got = admin
                .create_log(quire_proto::v1::CreateLogRequest {
                    origin: origin.clone(),
                    like: String::new(),
                    private_keys: Vec::new(),
                })
                .await
                .map(drop);
            let want = expect_role(expect, ("admin", "administer"), tenant_log, &origin);
            match (&got, &want) {
                (Ok(()), Ok(())) => {}
                (Err(s), Err((code, msg))) => {
                    assert_eq!(s.code(), *code, "{label}, CreateLog {origin}: {s:?}");
                    assert_eq!(s.message(), msg, "{label}, CreateLog {origin}");
                }
                _ => panic!("{label}, CreateLog {origin}: got {got:?}, want {want:?}"),
            }
            if got.is_ok() {
                created.push(origin);
            }
        }
        // ListLogs: the logs it may audit; invalid credentials refused.
        let listed = c.list_logs(ListLogsRequest {}).await;
        match expect {
            Expect::Unauthenticated(msg) => {
                let s = listed.unwrap_err();
                assert_eq!(
                    (s.code(), s.message()),
                    (Code::Unauthenticated, msg.as_str()),
                    "{label}"
                );
            }
            Expect::Roles { acme, beta, .. } => {
                let got: Vec<String> = listed
                    .unwrap()
                    .into_inner()
                    .logs
                    .into_iter()
                    .map(|l| l.origin)
                    .collect();
                // Every log served, the ones made above included, that
                // its tenant's roles let it audit, in origin order.
                let mut want: Vec<String> = [ACME, BETA]
                    .into_iter()
                    .map(str::to_owned)
                    .chain(created.iter().cloned())
                    .filter(|o| {
                        let held = if o.starts_with("acme.example/") {
                            acme
                        } else {
                            beta
                        };
                        allows(held, "auditor")
                    })
                    .collect();
                want.sort();
                assert_eq!(got, want, "{label}: ListLogs");
                // An unknown log's refusal names only the logs it may see.
                let s = call(&mut c, Rpc::GetCheckpoint, "nope.example/log", 0)
                    .await
                    .unwrap_err();
                assert_eq!(s.code(), Code::NotFound, "{label}");
                assert_eq!(
                    s.message(),
                    format!(
                        "no log with origin \"nope.example/log\" here; known: {}",
                        want.join(", ")
                    ),
                    "{label}"
                );
            }
        }
    }
    assert_eq!(checked, cases.len() * RPCS.len() * 2);
    // Only the acme tenant's admin created a log, and only in its tenant.
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(created[0].starts_with("acme.example/matrix-"));
    f.server.stop().await;
}

async fn poll_until(what: &str, mut ok: impl AsyncFnMut() -> bool) -> std::time::Duration {
    let t0 = std::time::Instant::now();
    for _ in 0..400 {
        if ok().await {
            return t0.elapsed();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 400 polls");
}

#[tokio::test]
async fn a_changed_policy_takes_effect_without_restart() {
    let f = start().await;
    let dir = f.policy.parent().unwrap().to_owned();
    let mut writer = connect_token(&f, "acme-writer").await;
    let mut reader = connect_token(&f, "acme-reader").await;
    call(&mut writer, Rpc::AddEntry, ACME, 1).await.unwrap();
    assert_eq!(
        call(&mut reader, Rpc::AddEntry, ACME, 2)
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    // Revoke the writer's token and grant the reader writing, in one edit.
    let text = std::fs::read_to_string(&f.policy).unwrap();
    let writer_hash = token_hash_hex(&token_of("acme-writer"));
    let revoked = text.replace(
        &format!("sha256 = \"{writer_hash}\"\nrevoked = false"),
        &format!("sha256 = \"{writer_hash}\"\nrevoked = true"),
    ) + "[[grants]]\nwho = \"token:acme-reader\"\nroles = [\"writer\"]\nlogs = [\"acme.example/audit\"]\n";
    assert_ne!(revoked, text);
    let tmp = dir.join("access.toml.new");
    std::fs::write(&tmp, &revoked).unwrap();
    std::fs::rename(&tmp, &f.policy).unwrap();
    let took = poll_until("the revoked token refused", async || {
        call(&mut writer, Rpc::AddEntry, ACME, 3)
            .await
            .is_err_and(|s| s.message() == "unauthenticated: token \"acme-writer\" is revoked")
    })
    .await;
    eprintln!("revocation took effect after {took:?}");
    // The same edit granted the reader writing: usable at once.
    call(&mut reader, Rpc::AddEntry, ACME, 4).await.unwrap();
    f.server.stop().await;
}

#[test]
fn an_invalid_policy_keeps_the_last_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks().jwks).unwrap();
    let path = write_policy(dir.path(), "", false);
    let access = AccessControl::load(&path).unwrap();
    let old = Caller {
        credential: Credential::Bearer(token_of("old").into()),
        ..Caller::default()
    };
    assert!(access.check(&old, ACME, Action::Audit, 0).is_ok());
    assert!(!access.reload().unwrap(), "nothing changed");
    // A revocation written with a mistake in the same file: refused whole.
    write_policy(
        dir.path(),
        "[[grants]]\nwho = \"token:nobody\"\nroles = [\"reader\"]\nlogs = [\"*\"]\n",
        true,
    );
    let e = access.reload().unwrap_err();
    assert!(e.contains("no token is named \"nobody\""), "{e}");
    assert!(
        access.check(&old, ACME, Action::Audit, 0).is_ok(),
        "the old policy stays"
    );
    // Unchanged since refused: not parsed again.
    assert_eq!(
        access.reload().unwrap_err(),
        "unchanged since it was refused"
    );
    // Fixed: taken.
    write_policy(dir.path(), "", true);
    assert!(access.reload().unwrap());
    let e = access.check(&old, ACME, Action::Audit, 0).unwrap_err();
    assert_eq!(e.to_string(), "unauthenticated: token \"old\" is revoked");
    // A JWKS file that changes is a new policy too.
    let jwks_path = dir.path().join("jwks.json");
    let good_jwks = std::fs::read(&jwks_path).unwrap();
    std::fs::write(&jwks_path, "{\"keys\": []}").unwrap();
    let e = access.reload().unwrap_err();
    assert!(e.contains("its JWKS holds no key"), "{e}");
    // One gone is refused, not retried while it stays gone, and taken
    // once it is back.
    std::fs::remove_file(&jwks_path).unwrap();
    assert!(access.reload().is_err());
    assert_eq!(
        access.reload().unwrap_err(),
        "unchanged since it was refused"
    );
    // Back as it was in force: nothing to swap; back with other bytes (a
    // trailing newline): a new policy, taken.
    std::fs::write(&jwks_path, &good_jwks).unwrap();
    assert!(!access.reload().unwrap());
    std::fs::write(&jwks_path, [good_jwks.as_slice(), b"\n"].concat()).unwrap();
    assert!(access.reload().unwrap());
    // Files over the limit are refused by bytes read.
    std::fs::write(&path, vec![b'#'; 1024 * 1024 + 1]).unwrap();
    assert!(access.reload().is_err());
}

#[test]
fn an_invalid_policy_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.toml");
    std::fs::write(
        &path,
        "[[grants]]\nwho = \"root\"\nroles = [\"admin\"]\nlogs = [\"*\"]\n",
    )
    .unwrap();
    let config = Config {
        access: Some(path),
        data_dir: dir.path().join("data"),
        logs: vec![LogConfig::new(ACME)],
        ..Config::default()
    };
    let e = match quire_server::Server::open(config, &dir.path().join("hw")) {
        Ok(_) => panic!("a server started with an invalid policy"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("\"root\" is not a principal"), "{e}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing was created: {e}"
    );
}

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

/// The HTTPS server of an issuer's key set: serves what `served` holds now
/// at any path, with the certificate `cert` (PEM), and counts the fetches.
async fn serve_jwks(
    cert: &Pem,
    served: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    use rustls_pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, served, fetches) = (acceptor.clone(), served.clone(), fetches.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// An issuer's key set kept fetched from its URL over HTTPS (checked
/// against the configured CA): tokens of its keys are taken once the
/// first fetch is in, and a rotation of its keys is taken without a
/// restart: the new key's tokens are accepted, the old one's refused.
#[tokio::test]
async fn an_issuers_key_set_is_fetched_from_its_url_and_a_rotation_is_taken() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let issuer_pki = pki();
    let (old, new) = (jwks(), jwks());
    let served = Arc::new(Mutex::new(old.jwks.clone()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let port = serve_jwks(&issuer_pki.server, served.clone(), fetches.clone()).await;
    let f = start_with(&format!(
        r#"[[issuers]]
name = "rotating"
issuer = "https://rotating.example"
audiences = ["quire"]
jwks_file = "rotating-jwks.json"
jwks_url = "https://localhost:{port}/.well-known/jwks.json"
jwks_ca_file = "rotating-ca.pem"
jwks_refresh_s = 1
[[grants]]
who = "jwt:rotating:*"
roles = ["writer"]
tenants = ["acme"]
"#
    ))
    .await;
    let dir = f.policy.parent().unwrap().to_owned();
    std::fs::write(dir.join("rotating-ca.pem"), &issuer_pki.ca).unwrap();
    let token = |key: &jsonwebtoken::EncodingKey| {
        Some(format!(
            "Bearer {}",
            jwt(
                key,
                "https://rotating.example",
                "quire",
                "svc",
                now() + 600,
                "j1"
            )
        ))
    };
    let mut with_old = connect(&f, None, token(&old.key)).await;
    let mut with_new = connect(&f, None, token(&new.key)).await;
    let mut n = 0;
    poll_until("the first key set fetched and taken", async || {
        n += 1;
        call(&mut with_old, Rpc::AddEntry, ACME, 1000 + n)
            .await
            .is_ok()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(dir.join("rotating-jwks.json")).unwrap(),
        old.jwks,
        "the fetched key set is kept in its file"
    );
    // The issuer rotates its key.
    *served.lock().unwrap() = new.jwks.clone();
    poll_until("the rotated key set fetched and taken", async || {
        n += 1;
        call(&mut with_new, Rpc::AddEntry, ACME, 2000 + n)
            .await
            .is_ok()
    })
    .await;
    let s = call(&mut with_old, Rpc::AddEntry, ACME, 3000)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    assert!(fetches.load(Ordering::SeqCst) >= 2);
    // The issuer's certificate is checked: against another CA, no keys.
    let url = format!("https://localhost:{port}/.well-known/jwks.json");
    std::fs::write(dir.join("other-ca.pem"), &f.pki.ca).unwrap();
    let e = quire_server::access::jwks_fetch::fetch(&url, Some(&dir.join("other-ca.pem")))
        .await
        .unwrap_err();
    assert!(e.starts_with("TLS with localhost: "), "{e}");
    let got = quire_server::access::jwks_fetch::fetch(&url, Some(&dir.join("rotating-ca.pem")))
        .await
        .unwrap();
    assert_eq!(got, new.jwks.as_bytes());
    f.server.stop().await;
}
