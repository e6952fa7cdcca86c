//! The fixture of the access tests: a TLS server with two tenants' logs
//! under a policy, its PKI and JWT issuer, clients and calls of every RPC.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use quire_proto::v1::get_inclusion_proof_request::Leaf;
use quire_proto::v1::log_client::LogClient;
use quire_proto::v1::{
    AddEntriesRequest, AddEntryRequest, GetCheckpointRequest, GetConsistencyProofRequest,
    GetEntriesRequest, GetEntryWithProofRequest, GetInclusionProofRequest, TailEntriesRequest,
};
use quire_server::access::token_hash_hex;
use quire_server::config::{ClientCert, Config, LogConfig, TlsConfig};
use quire_server::local::LocalServer;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Status;

pub const ACME: &str = "acme.example/audit";
pub const BETA: &str = "beta.example/audit";
pub const ISS: &str = "https://login.corp.example";

/// A client certificate and key, PEM.
pub type Pem = (String, String);

pub struct Pki {
    pub ca: String,
    pub server: Pem,
    pub writer: Pem,
    pub reader: Pem,
    pub stranger: Pem,
}

pub fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |san: SanType| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names.push(san);
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let dns = |n: &str| SanType::DnsName(n.try_into().unwrap());
    Pki {
        ca: ca.pem(),
        server: leaf(dns("localhost")),
        writer: leaf(SanType::URI("spiffe://acme/writer".try_into().unwrap())),
        reader: leaf(dns("reader.acme.example")),
        stranger: leaf(dns("stranger.example")),
    }
}

/// The JWT issuer of the test: an Ed25519 key and its JWKS.
pub struct Jwks {
    pub key: jsonwebtoken::EncodingKey,
    pub other: jsonwebtoken::EncodingKey,
    pub jwks: String,
}

pub fn jwks() -> Jwks {
    let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let other = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
    Jwks {
        key: jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
        other: jsonwebtoken::EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).unwrap(),
        jwks: format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","kid":"k1","x":"{x}"}}]}}"#
        ),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn jwt(
    key: &jsonwebtoken::EncodingKey,
    iss: &str,
    aud: &str,
    sub: &str,
    exp: i64,
    jti: &str,
) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let claims = serde_json::json!({"iss": iss, "aud": aud, "sub": sub, "exp": exp, "jti": jti});
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

pub fn policy(tokens: &[(&str, &str, bool)], extra: &str) -> String {
    let mut p = String::from(
        r#"
public = []
[[tenants]]
name = "acme"
logs = ["acme.example/*"]
[[tenants]]
name = "beta"
logs = ["beta.example/*"]
[[issuers]]
name = "corp"
issuer = "https://login.corp.example"
audiences = ["quire"]
jwks_file = "jwks.json"
revoked_ids = ["stolen"]
[[grants]]
who = "anonymous"
roles = ["auditor"]
tenants = ["acme"]
[[grants]]
who = "authenticated"
roles = ["auditor"]
tenants = ["acme"]
[[grants]]
who = "token:acme-writer"
roles = ["writer"]
tenants = ["acme"]
[[grants]]
who = "token:acme-reader"
roles = ["reader"]
tenants = ["acme"]
[[grants]]
who = "token:beta-writer"
roles = ["writer", "reader"]
tenants = ["beta"]
[[grants]]
who = "token:acme-admin"
roles = ["admin"]
tenants = ["acme"]
[[grants]]
who = "token:seeder"
roles = ["writer"]
logs = ["*"]
[[grants]]
who = "uri:spiffe://acme/writer"
roles = ["writer"]
tenants = ["acme"]
[[grants]]
who = "dns:reader.acme.example"
roles = ["reader"]
tenants = ["acme"]
[[grants]]
who = "jwt:corp:alice"
roles = ["writer"]
tenants = ["acme"]
[[grants]]
who = "jwt:corp:bob"
roles = ["reader"]
tenants = ["acme"]
[[grants]]
who = "jwt:corp:carol"
roles = ["reader"]
tenants = ["beta"]
"#,
    );
    for (name, token, revoked) in tokens {
        p.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrevoked = {revoked}\n",
            token_hash_hex(token)
        ));
    }
    p.push_str(extra);
    p
}

pub const TOKENS: [&str; 7] = [
    "acme-writer",
    "acme-logins",
    "acme-reader",
    "beta-writer",
    "acme-admin",
    "seeder",
    "old",
];

pub fn token_of(name: &str) -> String {
    format!("quire_test-token-{name}")
}

pub fn write_policy(dir: &Path, extra: &str, revoked_old: bool) -> PathBuf {
    let tokens: Vec<(String, String, bool)> = TOKENS
        .iter()
        .map(|n| (n.to_string(), token_of(n), *n == "old" && revoked_old))
        .collect();
    let refs: Vec<(&str, &str, bool)> = tokens
        .iter()
        .map(|(n, t, r)| (n.as_str(), t.as_str(), *r))
        .collect();
    let path = dir.join("access.toml");
    let tmp = dir.join("access.toml.new");
    std::fs::write(&tmp, policy(&refs, extra)).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub server: LocalServer,
    pub pki: Pki,
    pub jwks: Jwks,
    pub policy: PathBuf,
}

pub async fn start() -> Fixture {
    start_with("").await
}

/// [`start`] with `extra` appended to the policy.
pub async fn start_with(extra: &str) -> Fixture {
    start_configured(extra, false).await
}

/// The log where a server started with `audited` records refusals and
/// policy changes; `acme-admin` may read it.
pub const AUDIT: &str = "quire.example/access-events";

/// [`start_with`], and with `audited` an audit log ([`AUDIT`]).
pub async fn start_configured(extra: &str, audited: bool) -> Fixture {
    start_logs(
        extra,
        audited,
        vec![LogConfig::new(ACME), LogConfig::new(BETA)],
    )
    .await
}

/// [`start_configured`] serving `logs` (and the audit log with `audited`).
pub async fn start_logs(extra: &str, audited: bool, mut logs: Vec<LogConfig>) -> Fixture {
    let extra = if audited {
        format!("{extra}[[grants]]\nwho = \"token:acme-admin\"\nroles = [\"reader\"]\nlogs = [\"{AUDIT}\"]\n")
    } else {
        extra.to_owned()
    };
    let extra = extra.as_str();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let jwks = jwks();
    let put = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    std::fs::write(dir.path().join("jwks.json"), &jwks.jwks).unwrap();
    let policy = write_policy(dir.path(), extra, true);
    let config = Config {
        tls: Some(TlsConfig {
            cert: put("server.pem", &pki.server.0),
            key: put("server.key", &pki.server.1),
            client_ca: Some(put("ca.pem", &pki.ca)),
            client_cert: ClientCert::Optional,
        }),
        access: Some(policy.clone()),
        audit_log: audited.then(|| AUDIT.to_owned()),
        ..Config::default()
    };
    if audited {
        logs.push(LogConfig::new(AUDIT));
    }
    let server = LocalServer::start(&dir.path().join("data"), logs, config)
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        server,
        pki,
        jwks,
        policy,
    }
}

#[derive(Clone)]
pub struct Auth(pub Option<String>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut()
                .insert("authorization", v.parse().unwrap());
        }
        Ok(req)
    }
}

pub type Client = LogClient<InterceptedService<Channel, Auth>>;

pub type Admin = quire_proto::v1::admin_client::AdminClient<InterceptedService<Channel, Auth>>;

/// An admin client presenting `token` (none: anonymous).
pub async fn connect_admin(f: &Fixture, token: Option<&str>) -> Admin {
    let ch = channel(f, None).await;
    quire_proto::v1::admin_client::AdminClient::with_interceptor(
        ch,
        Auth(token.map(|t| format!("Bearer {}", token_of(t)))),
    )
}

/// A TLS channel to the fixture's server, with `cert` when given.
pub async fn channel(f: &Fixture, cert: Option<&Pem>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&f.pki.ca))
        .domain_name("localhost");
    if let Some((c, k)) = cert {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Channel::from_shared(format!("https://localhost:{}", f.server.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A log client presenting the test token of `name`.
pub async fn connect_token(f: &Fixture, name: &str) -> Client {
    connect(f, None, Some(format!("Bearer {}", token_of(name)))).await
}

pub async fn connect(f: &Fixture, cert: Option<&Pem>, authorization: Option<String>) -> Client {
    LogClient::with_interceptor(channel(f, cert).await, Auth(authorization))
}

#[derive(Clone, Copy, Debug)]
pub enum Rpc {
    AddEntry,
    AddEntries,
    GetCheckpoint,
    GetInclusionProof,
    GetConsistencyProof,
    GetEntries,
    GetEntryWithProof,
    WatchCheckpoints,
    TailEntries,
}

pub const RPCS: [Rpc; 9] = [
    Rpc::AddEntry,
    Rpc::AddEntries,
    Rpc::GetCheckpoint,
    Rpc::GetInclusionProof,
    Rpc::GetConsistencyProof,
    Rpc::GetEntries,
    Rpc::GetEntryWithProof,
    Rpc::WatchCheckpoints,
    Rpc::TailEntries,
];

impl Rpc {
    pub fn role(self) -> (&'static str, &'static str) {
        match self {
            Rpc::AddEntry | Rpc::AddEntries => ("writer", "write to"),
            Rpc::GetCheckpoint
            | Rpc::GetInclusionProof
            | Rpc::GetConsistencyProof
            | Rpc::WatchCheckpoints => ("auditor", "read checkpoints and proofs of"),
            Rpc::GetEntries | Rpc::GetEntryWithProof | Rpc::TailEntries => {
                ("reader", "read the entries of")
            }
        }
    }
}

/// Calls `rpc` on `log`; a stream's status is its first item's.
pub async fn call(c: &mut Client, rpc: Rpc, log: &str, n: u64) -> Result<(), Status> {
    let log = log.to_owned();
    let entry = format!("entry {n} of {log}").into_bytes();
    match rpc {
        Rpc::AddEntry => c
            .add_entry(AddEntryRequest {
                log,
                entry,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        Rpc::AddEntries => c
            .add_entries(AddEntriesRequest {
                log,
                entries: vec![entry],
                ..Default::default()
            })
            .await
            .map(|_| ()),
        Rpc::GetCheckpoint => c
            .get_checkpoint(GetCheckpointRequest {
                log,
                witnessed: false,
            })
            .await
            .map(|_| ()),
        Rpc::GetInclusionProof => c
            .get_inclusion_proof(GetInclusionProofRequest {
                log,
                leaf: Some(Leaf::Index(0)),
                tree_size: 0,
            })
            .await
            .map(|_| ()),
        Rpc::GetConsistencyProof => c
            .get_consistency_proof(GetConsistencyProofRequest {
                log,
                old_size: 1,
                new_size: 0,
                with_seed: false,
            })
            .await
            .map(|_| ()),
        Rpc::GetEntryWithProof => c
            .get_entry_with_proof(GetEntryWithProofRequest { log, index: 0 })
            .await
            .map(|_| ()),
        Rpc::GetEntries => {
            let mut s = c
                .get_entries(GetEntriesRequest {
                    log,
                    start: 0,
                    end: 1,
                })
                .await?
                .into_inner();
            s.message().await.map(|_| ())
        }
        Rpc::WatchCheckpoints => {
            let mut s = c
                .watch_checkpoints(GetCheckpointRequest {
                    log,
                    witnessed: false,
                })
                .await?
                .into_inner();
            s.message().await.map(|_| ())
        }
        Rpc::TailEntries => {
            let mut s = c
                .tail_entries(TailEntriesRequest { log, start: 0 })
                .await?
                .into_inner();
            s.message().await.map(|_| ())
        }
    }
}

/// The audit log's latest checkpoint note and its size.
pub async fn checkpoint(admin: &mut Client) -> (Vec<u8>, u64) {
    let note = admin
        .get_checkpoint(GetCheckpointRequest {
            log: AUDIT.into(),
            witnessed: false,
        })
        .await
        .unwrap()
        .into_inner()
        .checkpoint;
    let size = std::str::from_utf8(&note)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (note, size)
}

/// The audit log's entries, as JSON.
pub async fn events(admin: &mut Client) -> Vec<serde_json::Value> {
    let (_, size) = checkpoint(admin).await;
    raw_entries(admin, size)
        .await
        .iter()
        .map(|e| serde_json::from_slice(e).unwrap())
        .collect()
}

pub async fn raw_entries(admin: &mut Client, size: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if size == 0 {
        return out;
    }
    let mut s = admin
        .get_entries(GetEntriesRequest {
            log: AUDIT.into(),
            start: 0,
            end: size,
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(page) = s.message().await.unwrap() {
        out.extend(page.entries);
    }
    out
}

/// Polls the audit log until it holds `n` events.
pub async fn until(admin: &mut Client, n: usize) -> Vec<serde_json::Value> {
    for _ in 0..400 {
        let e = events(admin).await;
        if e.len() >= n {
            return e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the audit log did not reach {n} events within 400 polls");
}

/// `record` of the audit trail is the refusal `status` the caller got.
pub fn assert_denied(record: &serde_json::Value, status: &tonic::Status) {
    assert_eq!(
        (&record["event"], &record["code"], &record["message"]),
        (
            &"refused".into(),
            &"PERMISSION_DENIED".into(),
            &status.message().into()
        ),
        "{record}"
    );
}

/// Polls `ok` every 25 ms, at most 400 times; returns how long it took.
pub async fn poll_until(what: &str, mut ok: impl AsyncFnMut() -> bool) -> std::time::Duration {
    let t0 = std::time::Instant::now();
    for _ in 0..400 {
        if ok().await {
            return t0.elapsed();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 400 polls");
}
