//! Access to events end to end (TLS, tokens, certificates, JWTs): a
//! writer limited to event types, the submitter and tenant the server
//! records from what it authenticated (never what the caller says), tenant
//! isolation, and the reader role for payloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "access/fixture.rs"]
mod fixture;

use fixture::*;
use quire_core::event::Envelope;
use quire_proto::v1::events_client::EventsClient;
use quire_proto::v1::{AddEventsRequest, Event, GetEventRequest};
use quire_server::config::LogConfig;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

const ACME_EVENTS: &str = "acme.example/events";
const BETA_EVENTS: &str = "beta.example/events";

const LIMITED: &str = r#"
[[grants]]
who = "token:acme-logins"
roles = ["writer"]
tenants = ["acme"]
event_types = ["auth.*", "session.start"]
"#;

async fn start() -> Fixture {
    start_audited(false).await
}

/// The fixture, with the server's audit log when `audited`.
async fn start_audited(audited: bool) -> Fixture {
    let event_log = |o: &str| {
        let mut l = LogConfig::new(o);
        l.events = true;
        // Sizes counted exactly: no map head events between the test's.
        l.key_map = false;
        l
    };
    start_logs(
        LIMITED,
        audited,
        vec![
            LogConfig::new(ACME),
            event_log(ACME_EVENTS),
            event_log(BETA_EVENTS),
        ],
    )
    .await
}

type Events = EventsClient<InterceptedService<Channel, Auth>>;

async fn events(f: &Fixture, cert: Option<&Pem>, auth: Option<String>) -> Events {
    EventsClient::with_interceptor(channel(f, cert).await, Auth(auth))
}

async fn by_token(f: &Fixture, name: &str) -> Events {
    events(f, None, Some(format!("Bearer {}", token_of(name)))).await
}

fn ev(kind: &str, actor: &str) -> Event {
    Event {
        r#type: kind.into(),
        actor: actor.into(),
        action: "act".into(),
        payload: b"the original record".to_vec(),
        ..Event::default()
    }
}

async fn add(
    c: &mut Events,
    log: &str,
    events: Vec<Event>,
) -> Result<Vec<Envelope>, tonic::Status> {
    let r = c
        .add_events(AddEventsRequest {
            log: log.into(),
            events,
        })
        .await?
        .into_inner();
    Ok(r.events
        .iter()
        .map(|s| Envelope::decode(&s.envelope).unwrap())
        .collect())
}

async fn size(f: &Fixture, log: &str) -> u64 {
    let mut c = connect_token(f, "acme-reader").await;
    let r = c
        .get_checkpoint(quire_proto::v1::GetCheckpointRequest {
            log: log.into(),
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner();
    let note = quire_core::Note::parse(&r.checkpoint).unwrap();
    quire_core::Checkpoint::parse(note.text().as_bytes())
        .unwrap()
        .size()
}

#[tokio::test]
async fn a_writer_limited_to_event_types_writes_only_those() {
    let f = start().await;
    let mut c = by_token(&f, "acme-logins").await;
    let ok = add(
        &mut c,
        ACME_EVENTS,
        vec![ev("auth.login", "alice"), ev("session.start", "alice")],
    )
    .await
    .unwrap();
    assert_eq!(ok.len(), 2);
    // The submitter and tenant are what the server authenticated.
    assert_eq!(ok[0].submitter, "token:acme-logins");
    assert_eq!(ok[0].tenant.as_deref(), Some("acme"));
    let before = size(&f, ACME_EVENTS).await;
    // One event of another type refuses the whole request, naming it.
    let e = add(
        &mut c,
        ACME_EVENTS,
        vec![ev("auth.logout", "alice"), ev("k8s.audit", "alice")],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(
        e.message(),
        "token \"acme-logins\" may not write to log \"acme.example/events\": the writer role for event type \"k8s.audit\" is missing (this principal may write only events of the types auth.*, session.start)"
    );
    // "session.start" is exact, not a prefix.
    let e = add(&mut c, ACME_EVENTS, vec![ev("session.started", "a")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(size(&f, ACME_EVENTS).await, before);
    // No opaque entries: a limited writer is not a writer of them.
    let mut log = connect_token(&f, "acme-logins").await;
    let e = log
        .add_entry(quire_proto::v1::AddEntryRequest {
            log: ACME.into(),
            entry: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("the writer role is missing"),
        "{}",
        e.message()
    );
    // Nor another tenant's events.
    let e = add(&mut c, BETA_EVENTS, vec![ev("auth.login", "a")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
}

#[tokio::test]
async fn the_submitter_is_the_authenticated_identity_of_each_kind() {
    let f = start().await;
    let mut by_tok = by_token(&f, "acme-writer").await;
    let env = add(&mut by_tok, ACME_EVENTS, vec![ev("any.type", "x")])
        .await
        .unwrap();
    assert_eq!(env[0].submitter, "token:acme-writer");
    let mut by_cert = events(&f, Some(&f.pki.writer), None).await;
    let env = add(&mut by_cert, ACME_EVENTS, vec![ev("any.type", "x")])
        .await
        .unwrap();
    assert_eq!(env[0].submitter, "uri:spiffe://acme/writer");
    let token = jwt(&f.jwks.key, ISS, "quire", "alice", now() + 600, "j1");
    let mut by_jwt = events(&f, None, Some(format!("Bearer {token}"))).await;
    let env = add(&mut by_jwt, ACME_EVENTS, vec![ev("any.type", "x")])
        .await
        .unwrap();
    assert_eq!(env[0].submitter, "jwt:corp:alice");
    assert!(env.iter().all(|e| e.tenant.as_deref() == Some("acme")));
    // Tenant isolation: acme's writer cannot write beta's events.
    let e = add(&mut by_tok, BETA_EVENTS, vec![ev("any.type", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Beta's writer records beta as the tenant.
    let mut beta = by_token(&f, "beta-writer").await;
    let env = add(&mut beta, BETA_EVENTS, vec![ev("any.type", "y")])
        .await
        .unwrap();
    assert_eq!(env[0].submitter, "token:beta-writer");
    assert_eq!(env[0].tenant.as_deref(), Some("beta"));
    // No credentials: refused, as for entries.
    let mut anon = events(&f, None, None).await;
    let e = add(&mut anon, ACME_EVENTS, vec![ev("any.type", "x")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
}

#[tokio::test]
async fn payloads_need_the_reader_role() {
    let f = start().await;
    let mut w = by_token(&f, "acme-writer").await;
    add(&mut w, ACME_EVENTS, vec![ev("any.type", "x")])
        .await
        .unwrap();
    let mut reader = by_token(&f, "acme-reader").await;
    let r = reader
        .get_event(GetEventRequest {
            log: ACME_EVENTS.into(),
            index: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.payload, b"the original record");
    assert_eq!(r.salt.len(), 32);
    let env = Envelope::decode(&r.envelope).unwrap();
    assert_eq!(
        env.payload,
        Some(quire_core::event::payload_commitment(
            &r.salt.clone().try_into().unwrap(),
            &r.payload
        ))
    );
    // An auditor (anonymous here) reads checkpoints and proofs, not
    // contents.
    let mut anon = events(&f, None, None).await;
    let e = anon
        .get_event(GetEventRequest {
            log: ACME_EVENTS.into(),
            index: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains("the reader role is needed"),
        "{}",
        e.message()
    );
}

/// An erasure is an admin action: the server's audit trail records who
/// erased which event's payload, by which erasure event and why; a
/// refused erasure is recorded as a refusal.
#[tokio::test]
async fn an_erasure_is_recorded_in_the_servers_audit_trail() {
    use quire_proto::v1::EraseEventRequest;
    let f = start_audited(true).await;
    let mut audit = connect_token(&f, "acme-admin").await;
    until(&mut audit, 1).await;
    let mut writer = by_token(&f, "acme-writer").await;
    add(&mut writer, ACME_EVENTS, vec![ev("k8s.audit", "alice")])
        .await
        .unwrap();
    let refused = writer
        .erase_event(EraseEventRequest {
            log: ACME_EVENTS.into(),
            index: 0,
            reason: "not mine to erase".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let mut admin = by_token(&f, "acme-admin").await;
    let erased = admin
        .erase_event(EraseEventRequest {
            log: ACME_EVENTS.into(),
            index: 0,
            reason: "GDPR art. 17 request 7".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let by = erased.events[0].index;
    let got = until(&mut audit, 3).await;
    let (denied, done) = (&got[1], &got[2]);
    assert_denied(denied, &refused);
    assert_eq!(
        (&done["event"], &done["log"], &done["principal"]),
        (
            &"admin".into(),
            &ACME_EVENTS.into(),
            &"token \"acme-admin\"".into()
        ),
        "{done}"
    );
    assert_eq!(
        done["message"],
        format!("erased the payload of event 0 by erasure event {by}: GDPR art. 17 request 7")
    );
    f.server.stop().await;
}
