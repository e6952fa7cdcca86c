//! TLS to PostgreSQL: a server of the test's own (started by
//! `scripts/postgres`) with a certificate from a test CA. The engine
//! connects over TLS, verifying the certificate against the configured CA
//! file, and refuses a certificate it cannot verify and a CA file that is
//! not one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use quire_server::store::postgres::{Create, PgOptions, PgStore};
use quire_server::store::{Storage, StorageReader};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

#[test]
fn the_engine_speaks_tls_and_verifies_the_server() {
    let pg = quire_tests::postgres::start_new().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    // The server's files, readable by the server alone.
    for (name, text) in [
        ("server.crt", cert.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        let path = pg.dir.join(name);
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let _ = std::process::Command::new("chown")
            .arg("postgres")
            .arg(&path)
            .status();
    }
    for sql in [
        "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
        "ALTER SYSTEM SET ssl_key_file = 'server.key'",
        "ALTER SYSTEM SET ssl = on",
        "SELECT pg_reload_conf()",
    ] {
        pg.psql("postgres", sql).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = format!("{}?sslmode=require", pg.url);

    // Verified against the CA file: it works, and the session is TLS.
    let mut opts = PgOptions::new(url.clone());
    opts.ca_file = Some(ca_file.clone());
    let store = PgStore::open(&opts, "tls.example/log", Create::Yes).unwrap();
    assert!(store.reader().unwrap().head().unwrap().is_none());
    let tls = pg
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'quire-server' AND s.ssl",
        )
        .unwrap();
    assert!(tls.parse::<u32>().unwrap() >= 1, "TLS sessions: {tls}");

    // The system's store does not know the test CA: refused, naming why.
    let e = PgStore::open(&PgOptions::new(url.clone()), "tls.example/log", Create::No)
        .err()
        .unwrap();
    let text = format!("{}", quire_host::error::Report(&e));
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    // A CA file that is not one.
    for (bad, why) in [
        (std::path::PathBuf::from("/dev/zero"), "not a regular file"),
        (dir.path().join("empty.pem"), "holds no certificate"),
    ] {
        if !bad.starts_with("/dev") {
            std::fs::write(&bad, "no certificate here\n").unwrap();
        }
        let mut opts = PgOptions::new(url.clone());
        opts.ca_file = Some(bad.clone());
        let e = PgStore::open(&opts, "tls.example/log", Create::No)
            .err()
            .unwrap();
        let text = format!("{}", quire_host::error::Report(&e));
        assert!(text.contains(why), "{}: {text}", bad.display());
    }
}
