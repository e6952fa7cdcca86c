//! The witness's key file: `witness.key` (mode 0600, C2SP private key text)
//! in the data directory, created on first start, and `witness.vkey`, its
//! public verifier key, for operators to hand to logs and clients.

use std::path::Path;

use quire_core::WitnessSigner;

/// Largest key file read, checked before parsing.
const MAX_KEY_BYTES: u64 = 4096;

/// Loads the key from `dir`, or creates it (named `name`) when absent.
/// Returns the key and whether it was created.
///
/// # Errors
/// An unreadable or invalid key file, a key of another name, or I/O.
pub fn load_or_create(dir: &Path, name: &str) -> anyhow::Result<(WitnessSigner, bool)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("creating the data directory {}: {e}", dir.display()))?;
    let path = dir.join("witness.key");
    if path.exists() {
        // A regular file, bounded by the bytes read (a key that is
        // /dev/zero or a FIFO is refused, not read forever).
        let text = quire_host::keyfile::read_private(&path, MAX_KEY_BYTES)?;
        let signer = WitnessSigner::from_private_text(text.trim())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if signer.name() != name {
            anyhow::bail!(
                "{} holds the key of {:?}, but the configured name is {name:?}",
                path.display(),
                signer.name()
            );
        }
        write_vkey(dir, &signer)?;
        return Ok((signer, false));
    }
    let signer = WitnessSigner::generate(name)?;
    quire_host::keyfile::write_private(&path, &signer.to_private_text())
        .map_err(|e| anyhow::anyhow!("writing the new key {}: {e}", path.display()))?;
    write_vkey(dir, &signer)?;
    Ok((signer, true))
}

fn write_vkey(dir: &Path, signer: &WitnessSigner) -> std::io::Result<()> {
    quire_host::keyfile::write_public(&dir.join("witness.vkey"), &signer.verifier().to_vkey())
}
