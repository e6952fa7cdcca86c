//! An issuer's JWT key set kept fetched from its URL over HTTPS, and a
//! rotation taken without restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "access/fixture.rs"]
mod fixture;

use fixture::*;
use tonic::Code;

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
