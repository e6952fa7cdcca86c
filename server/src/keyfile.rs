//! Signing keys on disk: one private key text per file, mode 0600, created on
//! first start. Key material is never printed or logged; only verifier keys
//! are.

use std::io::Write as _;
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

/// Loads the log's P-256 (primary) and Ed25519 keys from `dir`, creating any
/// that are missing. Returns the signers and whether any key was created.
///
/// # Errors
/// I/O errors and unusable key files, with the path.
pub fn load_or_create(dir: &Path, origin: &str) -> anyhow::Result<(Vec<LogSigner>, bool)> {
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
            let meta = std::fs::metadata(&path)?;
            if meta.len() > 4096 {
                anyhow::bail!(
                    "{}: {} bytes is too large for a key file (limit 4096)",
                    path.display(),
                    meta.len()
                );
            }
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path)?);
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
        } else {
            let signer = LogSigner::generate(alg, origin)?;
            write_private(&path, &signer.to_private_text())
                .map_err(|e| anyhow::anyhow!("writing the new key {}: {e}", path.display()))?;
            created = true;
            signer
        };
        signers.push(signer);
    }
    Ok((signers, created))
}

/// Writes a new key file all at once: into a temporary file that is synced,
/// then linked to its name (which fails if the name exists), so a failed
/// write (a full disk) never leaves a truncated key behind.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
