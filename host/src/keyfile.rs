//! Key files, written and read the one way every Quire process does it: a
//! private key is created all at once with mode 0600 (never overwritten,
//! never left truncated), read only from a regular file of the owner alone,
//! bounded by the bytes read, and kept in memory that is zeroed after use.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why a private key file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Opening or reading failed, or it is not a regular file.
    #[error(transparent)]
    Read(#[from] crate::ReadError),
    /// Others may read or write it.
    #[error(
        "{path}: a private key readable or writable by others (mode {mode:o}); run chmod 600 on it"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Over the limit.
    #[error("{path}: too large for a key file (limit {limit} bytes)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("{path}: not a key file (not UTF-8 text)")]
    NotText {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a private key file: a regular file of at most `limit` bytes,
/// counted as read (not by its metadata), readable by its owner only.
///
/// # Errors
/// [`KeyFileError`] naming the file.
pub fn read_private(path: &Path, limit: u64) -> Result<Zeroizing<String>, KeyFileError> {
    let file = crate::open_regular(path, false)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = file
            .metadata()
            .map_err(|source| crate::ReadError::Io {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed {
                path: path.to_owned(),
                mode: mode & 0o777,
            });
        }
    }
    let bytes = Zeroizing::new(crate::read_all_bounded(file, limit).map_err(|e| match e {
        crate::Bounded::Io(source) => KeyFileError::Read(crate::ReadError::Io {
            path: path.to_owned(),
            source,
        }),
        crate::Bounded::TooLarge => KeyFileError::TooLarge {
            path: path.to_owned(),
            limit,
        },
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| KeyFileError::NotText {
        path: path.to_owned(),
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Writes a verifier key file (public), synced.
///
/// # Errors
/// I/O.
pub fn write_public(path: &Path, vkey: &str) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(vkey.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Writes a new private key file all at once, mode 0600: into a temporary
/// file that is synced, then linked to its name (which fails if the name
/// exists: a key is never overwritten), so a failed write (a full disk)
/// never leaves a truncated key behind. The directory is synced after.
///
/// # Errors
/// I/O; [`std::io::ErrorKind::AlreadyExists`] when the file exists.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
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
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_private_key_is_written_once_for_its_owner_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        write_private(&p, "secret").unwrap();
        assert_eq!(read_private(&p, 100).unwrap().as_str(), "secret\n");
        let again = write_private(&p, "other").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(read_private(&p, 100).unwrap().as_str(), "secret\n");
        assert!(matches!(
            read_private(&p, 3),
            Err(KeyFileError::TooLarge { limit: 3, .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_private(&p, 100).unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
    }
}
