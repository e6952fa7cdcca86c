//! Key sets fetched from an issuer's URL (`jwks_url`): each issuer's JWKS
//! is fetched over HTTPS (or plain HTTP, for loopback set-ups) every
//! `jwks_refresh_s`, checked to parse as a JWKS (RFC 7517 §5), at most
//! [`MAX_JWKS_BYTES`] by bytes read, and written to the issuer's
//! `jwks_file` when it changed. The file is the cache: the policy's reload
//! takes the new keys from it like any edit (checked whole, recorded in the
//! audit log), and a restart while the issuer is unreachable starts from
//! the keys fetched last. A fetch that fails keeps the keys in force, says
//! why once in the log and counts in `quire_jwks_fetches_total{result}`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::MAX_POLICY_BYTES;

/// Largest key set read, by bytes read.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

/// How long one fetch may take, connection and TLS included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One issuer's key set to keep fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSource {
    /// The issuer's name in the policy.
    pub issuer: String,
    /// Where the key set is fetched.
    pub url: String,
    /// Where it is kept (the issuer's `jwks_file`).
    pub file: PathBuf,
    /// How often.
    pub every: Duration,
    /// The CA (PEM) the server's certificate must chain to; default: the
    /// system's store.
    pub ca_file: Option<PathBuf>,
}

/// A URL split for one request.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "jwks_url {url:?} must start with https:// (or http://)"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let number = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("jwks_url {url:?}: port {p:?} is not a number"))
    };
    let default = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| format!("jwks_url {url:?}: an IPv6 address without its ']'"))?;
        match rest.strip_prefix(':') {
            Some(p) => (h, number(p)?),
            None if rest.is_empty() => (h, default),
            None => return Err(format!("jwks_url {url:?}: {rest:?} after the address")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, number(p)?),
            None => (authority, default),
        }
    };
    if host.is_empty() || authority.contains('@') {
        return Err(format!("jwks_url {url:?} needs a host (and no user info)"));
    }
    Ok(Target {
        tls,
        host: host.to_owned(),
        port,
        path: path.to_owned(),
    })
}

fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem =
                quire_host::read_bounded(path, MAX_POLICY_BYTES).map_err(|e| e.to_string())?;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate to check the issuer's certificate against".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn get<T>(io: T, target: &Target) -> Result<(u16, Vec<u8>), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let req = http::Request::get(&target.path)
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    crate::http1::request(io, req, MAX_JWKS_BYTES).await
}

/// Fetches the key set at `url`, checked to parse as a JWKS.
///
/// # Errors
/// In words: the URL, the connection, TLS, a status other than 200, a
/// body over [`MAX_JWKS_BYTES`] or one that is not a JWKS, no answer
/// within [`FETCH_TIMEOUT`].
pub async fn fetch(url: &str, ca_file: Option<&Path>) -> Result<Vec<u8>, String> {
    let target = parse_url(url)?;
    let fetched = tokio::time::timeout(FETCH_TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", target.host, target.port))?;
        if target.tls {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("{:?}: {e}", target.host))?;
            let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(ca_file)?));
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", target.host))?;
            get(tls, &target).await
        } else {
            get(tcp, &target).await
        }
    })
    .await
    .map_err(|_| format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))??;
    let (status, body) = fetched;
    if status != 200 {
        return Err(format!("the issuer answered HTTP {status}"));
    }
    serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(&body)
        .map_err(|e| format!("the answer is not a JWKS: {e}"))?;
    Ok(body)
}

/// When each source is due next, and what its last fetch said.
#[derive(Default)]
pub(crate) struct Schedule {
    due: std::collections::HashMap<(String, PathBuf), Instant>,
    failing: std::collections::HashSet<(String, PathBuf)>,
}

impl Schedule {
    /// The sources of `all` due at `now`, each then set due after its
    /// interval (so a slow or failing issuer is not asked more often).
    pub(crate) fn take_due(&mut self, all: &[JwksSource], now: Instant) -> Vec<JwksSource> {
        let mut out = Vec::new();
        for s in all {
            let key = (s.url.clone(), s.file.clone());
            let due = self.due.entry(key).or_insert(now);
            if *due <= now {
                *due = now + s.every;
                out.push(s.clone());
            }
        }
        out
    }

    /// Records a fetch's outcome; returns whether it is news (the first
    /// failure of a run, or the first success after failures).
    pub(crate) fn record(&mut self, s: &JwksSource, ok: bool) -> bool {
        let key = (s.url.clone(), s.file.clone());
        if ok {
            self.failing.remove(&key)
        } else {
            self.failing.insert(key)
        }
    }
}

/// Fetches `s` and writes its file when the key set changed; returns
/// whether it wrote.
///
/// # Errors
/// As [`fetch`]; writing the file.
pub async fn refresh(s: &JwksSource) -> Result<bool, String> {
    let body = fetch(&s.url, s.ca_file.as_deref()).await?;
    let file = s.file.clone();
    tokio::task::spawn_blocking(move || {
        let now = quire_host::read_bounded(&file, MAX_POLICY_BYTES).unwrap_or_default();
        if now == body {
            return Ok(false);
        }
        quire_host::write_replacing(&file, &body)
            .map(|()| true)
            .map_err(|e| format!("writing {}: {e}", file.display()))
    })
    .await
    .map_err(|e| format!("worker failed: {e}"))?
}

/// [`refresh`] of a source `schedule` found due: counted in
/// `quire_jwks_fetches_total{result}`, logged when it is news.
pub(crate) async fn refresh_scheduled(source: JwksSource, schedule: Arc<Mutex<Schedule>>) {
    let outcome = refresh(&source).await;
    let news = schedule
        .lock()
        .map_or(true, |mut s| s.record(&source, outcome.is_ok()));
    let result = match &outcome {
        Ok(true) => "changed",
        Ok(false) => "same",
        Err(_) => "error",
    };
    metrics::counter!("quire_jwks_fetches_total", "result" => result).increment(1);
    match outcome {
        Ok(changed) if changed || news => {
            tracing::info!(issuer = %source.issuer, url = %source.url, changed, "key set fetched");
        }
        Err(e) if news => {
            tracing::error!(issuer = %source.issuer, url = %source.url, error = %e, "key set not fetched; the keys in force stay");
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_split_and_bad_ones_named() {
        assert_eq!(
            parse_url("https://login.corp.example/.well-known/jwks.json").unwrap(),
            Target {
                tls: true,
                host: "login.corp.example".into(),
                port: 443,
                path: "/.well-known/jwks.json".into()
            }
        );
        let t = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.tls, t.port, t.path.as_str()), (false, 8080, "/"));
        let t = parse_url("https://[::1]:8443/k").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        for bad in [
            "ftp://x/y",
            "https://",
            "https://:443/x",
            "https://u@h/x",
            "https://h:x/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_source_is_due_once_per_interval() {
        let s = JwksSource {
            issuer: "corp".into(),
            url: "https://h/k".into(),
            file: "k.json".into(),
            every: Duration::from_secs(60),
            ca_file: None,
        };
        let mut sched = Schedule::default();
        let t0 = Instant::now();
        assert_eq!(sched.take_due(std::slice::from_ref(&s), t0).len(), 1);
        assert!(sched
            .take_due(std::slice::from_ref(&s), t0 + Duration::from_secs(59))
            .is_empty());
        assert_eq!(
            sched
                .take_due(std::slice::from_ref(&s), t0 + Duration::from_secs(60))
                .len(),
            1
        );
        assert!(sched.record(&s, false), "the first failure is news");
        assert!(!sched.record(&s, false), "a repeat is not");
        assert!(
            sched.record(&s, true),
            "nor is a success, unless after failures"
        );
        assert!(!sched.record(&s, true));
    }
}
