//! `[tls]`: serving gRPC over TLS, and client certificates (mTLS).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// TLS files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA whose client certificates are verified (mTLS), when set.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: whether every client must present a certificate
    /// (`required`, the default) or may come without one (`optional`: for
    /// bearer tokens and anonymous callers beside certificates, under an
    /// access policy).
    #[serde(default)]
    pub client_cert: ClientCert,
}

/// Whether clients must present certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCert {
    /// Every connection presents one the client CA verifies.
    #[default]
    Required,
    /// A connection may present none; one it presents must verify.
    Optional,
}

/// Largest PEM file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read_pem(path: &Path) -> Result<Vec<u8>, ConfigError> {
    Ok(quire_host::read_bounded(path, MAX_PEM_BYTES)?)
}

impl TlsConfig {
    /// Reads the files into a tonic TLS configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file that cannot be read.
    pub fn load(&self) -> Result<tonic::transport::ServerTlsConfig, ConfigError> {
        let identity =
            tonic::transport::Identity::from_pem(read_pem(&self.cert)?, read_pem(&self.key)?);
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            tls = tls
                .client_ca_root(tonic::transport::Certificate::from_pem(read_pem(ca)?))
                .client_auth_optional(self.client_cert == ClientCert::Optional);
        }
        Ok(tls)
    }
}
