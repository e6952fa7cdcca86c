//! What the replicas of a formation share besides their logs' databases,
//! so that a log created on one replica (through the admin service, or by
//! a family's rollover) is served by all of them (`docs/DESIGN.md`,
//! "Formations"):
//!
//! - the **catalog** of created logs, a table in the formation's own
//!   database ([`crate::store::postgres::catalog`]): each log's settings
//!   and verifier keys, read by every replica at start and every
//!   [`CATALOG_EVERY`];
//! - the **keys** of those logs, derived on each replica from the
//!   formation's key seed and the origin (HKDF-SHA256, RFC 5869), so that
//!   no private key leaves a replica or enters the database. A replica
//!   whose derived keys are not the ones the catalog records (another
//!   seed) refuses to serve that log.
//!
//! Out of scope: importing keys for a formation's log (configure such a
//! log in every replica's `[[logs]]`, with its key files), and removing
//! logs from the catalog.

use std::path::Path;
use std::time::Duration;

use hkdf::Hkdf;
use quire_core::{LogKeyAlgorithm, LogSigner};
use sha2::Sha256;
use zeroize::Zeroizing;

/// How often a replica reads the catalog for logs created elsewhere.
pub const CATALOG_EVERY: Duration = Duration::from_secs(1);

/// Most bytes of a seed file, checked by bytes read.
pub const MAX_SEED_FILE_BYTES: u64 = 1024;

/// The HKDF salt: names the scheme and its version.
const SALT: &[u8] = b"quire formation log keys v1";

/// The formation's key seed: 32 secret bytes, the same on every replica.
pub struct KeySeed(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for KeySeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySeed(…)")
    }
}

impl KeySeed {
    /// Reads the seed file at `path`: 32 bytes as 64 hex digits or in
    /// base64, surrounding white space ignored.
    ///
    /// # Errors
    /// In words, naming the file: it cannot be read, is not a regular file,
    /// is over [`MAX_SEED_FILE_BYTES`], or is not 32 bytes so written.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = quire_host::read_bounded_text(path, MAX_SEED_FILE_BYTES)
            .map_err(|e| format!("keys_seed_file: {e}"))?;
        let text = Zeroizing::new(text);
        Self::parse(text.trim()).map_err(|e| format!("keys_seed_file {}: {e}", path.display()))
    }

    /// Parses a seed: 64 hex digits, or base64 of 32 bytes.
    ///
    /// # Errors
    /// In words: anything else.
    pub fn parse(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let bytes = Zeroizing::new(if text.len() == 64 {
            quire_core::Hash::from_hex(text)
                .ok_or_else(|| "64 characters but not hex digits".to_owned())?
                .0
                .to_vec()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "not 64 hex digits nor base64".to_owned())?
        });
        let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "{} bytes; the seed is 32 random bytes (for example `head -c 32 /dev/urandom | base64`)",
                bytes.len()
            )
        })?;
        Ok(KeySeed(Zeroizing::new(seed)))
    }

    /// The keys of the log `origin` (ECDSA P-256, then Ed25519, as
    /// [`crate::keyfile::paths`] orders them): each secret is the HKDF-SHA256
    /// expansion of the seed under `SALT` with info `alg ‖ counter ‖
    /// origin` (`alg` 1 for P-256, 2 for Ed25519; `counter` from 0, raised
    /// only while a P-256 candidate is not a valid scalar).
    ///
    /// # Errors
    /// An origin that is not a valid key name.
    pub fn derive(&self, origin: &str) -> Result<Vec<LogSigner>, String> {
        let hk = Hkdf::<Sha256>::new(Some(SALT), self.0.as_slice());
        let mut out = Vec::with_capacity(2);
        for (alg, tag) in [
            (LogKeyAlgorithm::EcdsaP256, 1u8),
            (LogKeyAlgorithm::Ed25519, 2),
        ] {
            let mut signer = None;
            for counter in 0..=u8::MAX {
                let mut info = Vec::with_capacity(2 + origin.len());
                info.extend_from_slice(&[tag, counter]);
                info.extend_from_slice(origin.as_bytes());
                let mut secret = Zeroizing::new([0u8; 32]);
                hk.expand(&info, secret.as_mut_slice())
                    .map_err(|e| format!("deriving a key: {e}"))?;
                match LogSigner::from_secret_bytes(alg, origin, &secret) {
                    Ok(s) => {
                        signer = Some(s);
                        break;
                    }
                    Err(quire_core::KeyError::BadKey(_)) => {}
                    Err(e) => return Err(format!("log {origin:?}: {e}")),
                }
            }
            out.push(
                signer
                    .ok_or_else(|| format!("log {origin:?}: no valid key among 256 derivations"))?,
            );
        }
        Ok(out)
    }
}

/// The verifier keys of `signers`, one per line, as the catalog records
/// them.
pub fn vkeys(signers: &[LogSigner]) -> String {
    signers
        .iter()
        .map(|s| s.verifier().to_vkey())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SEED: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn one_seed_one_origin_one_set_of_keys() {
        let a = KeySeed::parse(SEED).unwrap();
        let b = KeySeed::parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let ka = a.derive("example.com/log").unwrap();
        let kb = b.derive("example.com/log").unwrap();
        assert_eq!(vkeys(&ka), vkeys(&kb), "hex and base64 of one seed");
        assert_eq!(ka.len(), 2);
        assert!(ka[0].verifier().to_vkey().contains("example.com/log"));
        // Private keys too, not just the public halves.
        assert_eq!(*ka[1].to_private_text(), *kb[1].to_private_text());
        // Another origin, another seed: other keys.
        let other = a.derive("example.com/other").unwrap();
        assert_ne!(vkeys(&ka), vkeys(&other).replace("other", "log"));
        let mut flipped = SEED.to_owned();
        flipped.replace_range(0..2, "01");
        let c = KeySeed::parse(&flipped).unwrap();
        assert_ne!(vkeys(&ka), vkeys(&c.derive("example.com/log").unwrap()));
        // The keys are what a key file holds: they parse back the same.
        for k in &ka {
            let again = LogSigner::from_private_text(&k.to_private_text()).unwrap();
            assert_eq!(again.verifier().to_vkey(), k.verifier().to_vkey());
        }
    }

    #[test]
    fn a_seed_that_is_not_32_bytes_is_refused_by_name() {
        assert!(KeySeed::parse("ab!d").unwrap_err().contains("not 64 hex"));
        assert!(KeySeed::parse("abcd").unwrap_err().contains("3 bytes"));
        let bad_hex = "zz".repeat(32);
        assert!(KeySeed::parse(&bad_hex).unwrap_err().contains("not hex"));
    }
}
