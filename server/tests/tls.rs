//! gRPC over TLS, and mTLS: a client without a certificate from the
//! configured CA is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::GetCheckpointRequest;
use quire_server::api::{Access, Action, ApiError, Caller, LogApi};
use quire_server::config::{Config, LogConfig, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::sync::{Arc, Mutex};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    /// The client certificate, DER.
    client_der: Vec<u8>,
    stranger: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>, name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    };
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_ca =
        CertifiedIssuer::self_signed(other_params, KeyPair::generate().unwrap()).unwrap();
    let pair = |(c, k, _): (String, String, Vec<u8>)| (c, k);
    let client = leaf(&ca, "client.example");
    Pki {
        ca: ca.pem(),
        server: pair(leaf(&ca, "localhost")),
        client_der: client.2.clone(),
        client: pair(client),
        stranger: pair(leaf(&other_ca, "stranger.example")),
    }
}

async fn connect(
    addr: std::net::SocketAddr,
    ca: &str,
    id: Option<&(String, String)>,
) -> Result<LogClient<Channel>, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((c, k)) = id {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    let ch = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(LogClient::new(ch))
}

#[tokio::test]
async fn mtls_admits_only_clients_of_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let config = Config {
        tls: Some(TlsConfig {
            cert: write("server.pem", &p.server.0),
            key: write("server.key", &p.server.1),
            client_ca: Some(write("ca.pem", &p.ca)),
            client_cert: quire_server::config::ClientCert::Required,
        }),
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let cfg = LogConfig::new("tls.example/log");
    let (log, _) =
        quire_server::open_redb_log(&config, &dir.path().join("high-water"), &cfg, true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by_access = Recorder(Arc::clone(&seen));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let api = LogApi::new(vec![log]).with_access(seen_by_access);
        quire_server::serve(listener, api, &config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    let mut ok = connect(addr, &p.ca, Some(&p.client)).await.unwrap();
    let cp = ok
        .get_checkpoint(GetCheckpointRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!cp.checkpoint.is_empty());
    // The access policy saw the caller the handshake proved: the client's
    // own certificate, and its address.
    {
        let seen = seen.lock().unwrap();
        let (caller, origin, action) = seen.last().unwrap();
        assert_eq!(origin, "tls.example/log");
        assert_eq!(*action, Action::Audit);
        match &caller.identity {
            quire_server::api::Identity::Certificate(chain) => {
                assert_eq!(chain.first().unwrap().as_ref(), p.client_der.as_slice())
            }
            other => panic!("the caller reached the policy as {other:?}"),
        }
        assert_eq!(caller.peer.unwrap().ip(), addr.ip());
    }
    // A refusal of the policy is PERMISSION_DENIED naming what was refused.
    let e = ok
        .add_entry(quire_proto::v1::AddEntryRequest {
            entry: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message()
            .contains("may not write to log \"tls.example/log\": the test grants no writer role"),
        "{e:?}"
    );

    for id in [None, Some(&p.stranger)] {
        let refused = match connect(addr, &p.ca, id).await {
            Err(_) => true,
            Ok(mut c) => c
                .get_checkpoint(GetCheckpointRequest::default())
                .await
                .is_err(),
        };
        assert!(
            refused,
            "a client without a certificate from the CA got through"
        );
    }
    // Plain text is refused too.
    let plain = LogClient::connect(format!("http://{addr}")).await;
    if let Ok(mut c) = plain {
        assert!(c
            .get_checkpoint(GetCheckpointRequest::default())
            .await
            .is_err());
    }
    let _ = stop.send(());
    server.await.unwrap();
}

/// Records every question put to it; refuses writes.
struct Recorder(Arc<Mutex<Vec<(Caller, String, Action)>>>);

impl Access for Recorder {
    fn check(
        &self,
        caller: &Caller,
        origin: &str,
        action: Action,
        _entries: u64,
    ) -> Result<(), ApiError> {
        self.0
            .lock()
            .unwrap()
            .push((caller.clone(), origin.to_owned(), action));
        if action == Action::Write {
            return Err(ApiError::Denied {
                caller: caller.to_string(),
                action: action.words(),
                origin: origin.to_owned(),
                why: "the test grants no writer role".into(),
            });
        }
        Ok(())
    }
}
