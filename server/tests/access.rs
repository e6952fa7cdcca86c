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
