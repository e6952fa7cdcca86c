//! Signing keys on disk: one private key text per file, mode 0600, created on
//! first start. Key material is never printed or logged; only verifier keys
//! are.

use std::path::{Path, PathBuf};

use quire_core::{LogKeyAlgorithm, LogSigner};

/// The file name stem for a log's keys: its origin with every character
/// outside `[A-Za-z0-9._-]` replaced by `_`.
pub fn slug(origin: &str) -> String {
    origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Loads the log's P-256 (primary) and Ed25519 keys from `dir`, creating
/// them when `may_create` (a log that has never signed). Returns the signers
/// and whether any key was created. Each new key's verifier key is written
/// beside it (`.vkey`), for `quire --log-key @FILE`.
///
/// # Errors
/// I/O errors and unusable key files, with the path; a missing key of a log
/// that has signed (`may_create` false): a new key would be a new identity
/// under the old name.
pub fn load_or_create(
    dir: &Path,
    origin: &str,
    may_create: bool,
) -> anyhow::Result<(Vec<LogSigner>, bool)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("creating the key directory {}: {e}", dir.display()))?;
    let mut created = false;
    let mut signers = Vec::new();
    for (alg, ext) in [
        (LogKeyAlgorithm::EcdsaP256, "p256.key"),
        (LogKeyAlgorithm::Ed25519, "ed25519.key"),
    ] {
        let path: PathBuf = dir.join(format!("{}.{ext}", slug(origin)));
        let signer = if path.exists() {
            let text = quire_host::keyfile::read_private(&path, MAX_KEY_BYTES)?;
            let signer = LogSigner::from_private_text(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if signer.name() != origin {
                anyhow::bail!(
                    "{}: key is named {:?}, the log is {origin:?}",
                    path.display(),
                    signer.name()
                );
            }
            signer
        } else if !may_create {
            anyhow::bail!(
                "{}: the {} key of log {origin:?} is missing, and this log has signed checkpoints with it; \
                 a new key would give the log a new identity under the same name, so none is created. \
                 Restore the key file from your backup",
                path.display(),
                alg_name(alg)
            );
        } else {
            let signer = LogSigner::generate(alg, origin)?;
            quire_host::keyfile::write_private(&path, &signer.to_private_text())
                .map_err(|e| anyhow::anyhow!("writing the new key {}: {e}", path.display()))?;
            created = true;
            signer
        };
        let vkey = path.with_extension("vkey");
        if !vkey.exists() {
            quire_host::keyfile::write_public(&vkey, &signer.verifier().to_vkey())
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", vkey.display()))?;
        }
        signers.push(signer);
    }
    Ok((signers, created))
}

/// The algorithm's name as users see it.
pub fn alg_name(alg: LogKeyAlgorithm) -> &'static str {
    match alg {
        LogKeyAlgorithm::EcdsaP256 => "ECDSA P-256",
        LogKeyAlgorithm::Ed25519 => "Ed25519",
    }
}

/// Largest private key file read.
const MAX_KEY_BYTES: u64 = 4096;
