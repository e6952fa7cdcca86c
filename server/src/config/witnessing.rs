//! How one log is witnessed: `[logs.witnessing]` and its witnesses, and
//! the checks that make them a [`WitnessPolicy`].

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::witnessing::{FailMode, WitnessEndpoint, WitnessPolicy};

/// How one log is witnessed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessingConfig {
    /// Witnesses to send each new checkpoint to
    /// (`[[logs.witnessing.witnesses]]`).
    #[serde(default)]
    pub witnesses: Vec<WitnessEntry>,
    /// Cosignatures that make a checkpoint witnessed (default: a majority
    /// of the witnesses).
    #[serde(default)]
    pub quorum: Option<usize>,
    /// Deadline of each call to a witness, milliseconds.
    #[serde(default = "default_witness_timeout")]
    pub timeout_ms: u64,
    /// How long a witnessed write or read waits for the quorum, milliseconds.
    #[serde(default = "default_witness_wait")]
    pub wait_ms: u64,
    /// `open`: after the wait, answer with the cosignatures there are;
    /// `closed`: fail the call instead.
    #[serde(default)]
    pub fail: FailMode,
}

impl Default for WitnessingConfig {
    fn default() -> Self {
        WitnessingConfig {
            witnesses: Vec::new(),
            quorum: None,
            timeout_ms: default_witness_timeout(),
            wait_ms: default_witness_wait(),
            fail: FailMode::Open,
        }
    }
}

/// One witness of a log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// Its address: the gRPC endpoint, or for `protocol = "http"` the URL
    /// under which C2SP `tlog-witness` serves `/add-checkpoint`.
    pub url: String,
    /// `grpc` (Quire's witness service, the default) or `http` (C2SP
    /// `tlog-witness`, as the public witness ecosystem speaks it).
    #[serde(default)]
    pub protocol: crate::witnessing::WitnessProtocol,
    /// Its cosignature/v1 verifier key.
    pub key: String,
}

fn default_witness_timeout() -> u64 {
    2000
}
fn default_witness_wait() -> u64 {
    5000
}

impl WitnessingConfig {
    /// The witness policy of log `origin`, `None` without witnesses.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a bad key, URL or quorum.
    pub fn policy(&self, origin: &str) -> Result<Option<WitnessPolicy>, ConfigError> {
        if self.witnesses.is_empty() {
            return Ok(None);
        }
        let n = self.witnesses.len();
        let quorum = self.quorum.unwrap_or(n / 2 + 1);
        if !(1..=n).contains(&quorum) {
            return Err(ConfigError::Invalid(format!(
                "log {origin:?}: witnessing quorum {quorum} must be 1 to the {n} witnesses configured"
            )));
        }
        for (what, v) in [
            ("witnessing timeout_ms", self.timeout_ms),
            ("witnessing wait_ms", self.wait_ms),
        ] {
            if !(1..=600_000).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "log {origin:?}: {what} = {v} must be 1 to 600000"
                )));
            }
        }
        let witnesses = self
            .witnesses
            .iter()
            .map(|w| {
                let key = quire_core::VerifierKey::parse(&w.key).map_err(|e| {
                    ConfigError::Invalid(format!("log {:?}: witness {}: key: {e}", origin, w.url))
                })?;
                if key.key_type() != quire_core::KeyType::CosignatureV1 {
                    return Err(ConfigError::Invalid(format!(
                        "log {:?}: witness {}: not a cosignature/v1 key",
                        origin, w.url
                    )));
                }
                if !w.url.starts_with("http://") {
                    return Err(ConfigError::Invalid(format!(
                        "log {:?}: witness address {:?} must start with http:// \
                         (TLS to witnesses is not supported yet)",
                        origin, w.url
                    )));
                }
                Ok(WitnessEndpoint {
                    url: w.url.clone(),
                    protocol: w.protocol,
                    key,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(WitnessPolicy {
            witnesses,
            quorum,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            wait: std::time::Duration::from_millis(self.wait_ms),
            fail: self.fail,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use quire_core::{LogKeyAlgorithm, LogSigner, WitnessSigner};

    use super::*;

    fn witness(url: &str) -> WitnessEntry {
        WitnessEntry {
            url: url.into(),
            protocol: crate::witnessing::WitnessProtocol::default(),
            key: WitnessSigner::generate("w.example")
                .unwrap()
                .verifier()
                .to_vkey(),
        }
    }

    fn with(n: usize) -> WitnessingConfig {
        WitnessingConfig {
            witnesses: (0..n)
                .map(|i| witness(&format!("http://127.0.0.1:{}", 7000 + i)))
                .collect(),
            ..WitnessingConfig::default()
        }
    }

    fn refused(w: &WitnessingConfig) -> String {
        match w.policy("log.example") {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn witnesses_make_a_policy_with_a_majority_quorum_by_default() {
        assert!(WitnessingConfig::default()
            .policy("log.example")
            .unwrap()
            .is_none());
        let p = with(3).policy("log.example").unwrap().unwrap();
        assert_eq!(p.witnesses.len(), 3);
        assert_eq!(p.quorum, 2);
        assert_eq!(p.timeout, std::time::Duration::from_secs(2));
        assert_eq!(p.wait, std::time::Duration::from_secs(5));
        let mut w = with(3);
        w.quorum = Some(3);
        assert_eq!(w.policy("log.example").unwrap().unwrap().quorum, 3);
    }

    #[test]
    fn each_bad_value_is_refused_by_name() {
        let mut w = with(2);
        w.quorum = Some(3);
        let m = refused(&w);
        assert!(
            m.contains("\"log.example\"") && m.contains("quorum 3 must be 1 to the 2"),
            "{m}"
        );
        w.quorum = Some(0);
        assert!(refused(&w).contains("quorum 0"));
        let mut w = with(1);
        w.timeout_ms = 0;
        assert!(refused(&w).contains("timeout_ms = 0 must be 1 to 600000"));
        let mut w = with(1);
        w.wait_ms = 600_001;
        assert!(refused(&w).contains("wait_ms = 600001"));
        let mut w = with(1);
        w.witnesses[0].key = "not a key".into();
        assert!(refused(&w).contains("witness http://127.0.0.1:7000: key"));
        // A log's key is not a witness's.
        let mut w = with(1);
        w.witnesses[0].key = LogSigner::generate(LogKeyAlgorithm::Ed25519, "l.example")
            .unwrap()
            .verifier()
            .to_vkey();
        assert!(refused(&w).contains("not a cosignature/v1 key"));
        let mut w = with(1);
        w.witnesses[0].url = "https://w.example".into();
        assert!(refused(&w).contains("must start with http://"));
    }
}
