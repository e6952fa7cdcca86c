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
    for ((alg, _), path) in KEY_FILES.into_iter().zip(paths(dir, origin)) {
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

/// The key files of `origin` in `dir` (P-256, then Ed25519).
pub fn paths(dir: &Path, origin: &str) -> [PathBuf; 2] {
    KEY_FILES.map(|(_, ext)| dir.join(format!("{}.{ext}", slug(origin))))
}

const KEY_FILES: [(LogKeyAlgorithm, &str); 2] = [
    (LogKeyAlgorithm::EcdsaP256, "p256.key"),
    (LogKeyAlgorithm::Ed25519, "ed25519.key"),
];

/// Most bytes of one imported private key text.
pub const MAX_IMPORTED_KEY_BYTES: usize = 4096;

/// Writes imported keys of a new log `origin` into `dir`: exactly one
/// ECDSA P-256 and one Ed25519 private key text, each named `origin`, at
/// most [`MAX_IMPORTED_KEY_BYTES`]; key files already there are never
/// overwritten. Then [`load_or_create`] finds them.
///
/// # Errors
/// In words: a key that is too long, does not parse, is named otherwise,
/// a missing or repeated algorithm, a key file that exists, I/O.
pub fn import(dir: &Path, origin: &str, texts: &[String]) -> Result<(), String> {
    if texts.len() != 2 {
        return Err(format!(
            "{} keys given; import exactly two, one ECDSA P-256 and one Ed25519",
            texts.len()
        ));
    }
    let mut signers: [Option<LogSigner>; 2] = [None, None];
    for (i, text) in texts.iter().enumerate() {
        if text.len() > MAX_IMPORTED_KEY_BYTES {
            return Err(format!(
                "key {i} is {} bytes; the limit is {MAX_IMPORTED_KEY_BYTES}",
                text.len()
            ));
        }
        let signer = LogSigner::from_private_text(text.trim())
            .map_err(|e| format!("key {i} is not a private key text: {e}"))?;
        if signer.name() != origin {
            return Err(format!(
                "key {i} is named {:?}; the log is {origin:?}",
                signer.name()
            ));
        }
        let slot = match signer.verifier().key_type() {
            quire_core::KeyType::EcdsaP256 => 0,
            quire_core::KeyType::Ed25519 => 1,
            quire_core::KeyType::CosignatureV1 => {
                return Err(format!("key {i} is a witness key, not a log key"))
            }
        };
        if signers[slot].replace(signer).is_some() {
            return Err(format!(
                "two {} keys given; import one ECDSA P-256 and one Ed25519",
                alg_name(KEY_FILES[slot].0)
            ));
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("creating the key directory {}: {e}", dir.display()))?;
    let paths = paths(dir, origin);
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(format!(
            "the key file {} exists already; an imported key never replaces one",
            p.display()
        ));
    }
    for (signer, path) in signers.iter().zip(&paths) {
        let Some(signer) = signer else {
            return Err("an algorithm is missing; import one ECDSA P-256 and one Ed25519".into());
        };
        quire_host::keyfile::write_private(path, &signer.to_private_text())
            .map_err(|e| format!("writing the imported key {}: {e}", path.display()))?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(alg: LogKeyAlgorithm, name: &str) -> String {
        LogSigner::generate(alg, name)
            .unwrap()
            .to_private_text()
            .to_string()
    }

    #[test]
    fn imported_keys_are_one_of_each_named_by_the_log_and_never_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let o = "acme.example/2026-12";
        let p256 = text(LogKeyAlgorithm::EcdsaP256, o);
        let ed = text(LogKeyAlgorithm::Ed25519, o);
        let refused = |texts: &[String]| import(dir.path(), o, texts).unwrap_err();
        assert!(refused(std::slice::from_ref(&p256)).starts_with("1 keys given"));
        assert!(refused(&[p256.clone(), p256.clone()]).starts_with("two ECDSA P-256 keys"));
        let other = text(LogKeyAlgorithm::Ed25519, "beta.example/log");
        assert!(refused(&[p256.clone(), other]).contains("is named \"beta.example/log\""));
        assert!(refused(&[p256.clone(), "PRIVATE+KEY+x".into()]).starts_with("key 1 is not"));
        let long = "x".repeat(MAX_IMPORTED_KEY_BYTES + 1);
        assert!(refused(&[p256.clone(), long]).contains("the limit is 4096"));
        assert!(
            paths(dir.path(), o).iter().all(|p| !p.exists()),
            "nothing written"
        );

        import(dir.path(), o, &[ed.clone(), p256.clone()]).unwrap();
        let (signers, created) = load_or_create(dir.path(), o, false).unwrap();
        assert!(!created);
        assert_eq!(*signers[0].to_private_text(), *p256.trim());
        assert_eq!(*signers[1].to_private_text(), *ed.trim());
        assert!(refused(&[p256, ed]).contains("exists already"));
    }
}
