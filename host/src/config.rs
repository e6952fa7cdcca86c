//! Configuration files, read the one way both servers read them: a regular
//! file of at most a limit (counted by bytes read), as UTF-8 TOML, into the
//! caller's type (whose own checks come after).

use std::path::{Path, PathBuf};

/// Why a configuration file cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be read: missing, not a regular file, or over its
    /// size limit.
    #[error("reading {0}")]
    Read(#[from] crate::ReadError),
    /// Not valid TOML for this configuration.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the hint of the caller's
        /// `moved` table when a key has moved.
        message: String,
    },
}

/// Reads `path` (at most `limit` bytes) and parses it as `T`. A parse error
/// that names a key of `moved` (old key, where it is now) says where the
/// key went.
///
/// # Errors
/// [`FileError`] naming the file and the problem.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    limit: u64,
    moved: &[(&str, &str)],
) -> Result<T, FileError> {
    let text = crate::read_bounded_text(path, limit)?;
    toml::from_str(&text).map_err(|e| {
        let mut message = e.to_string();
        for (old, new) in moved {
            if message.contains(&format!("unknown field `{old}`")) {
                message = format!("{message}\n`{old}` has moved: {new}");
            }
        }
        FileError::Parse {
            path: path.to_owned(),
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Small {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn a_moved_key_is_said_where_it_went() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "name = \"x\"\nold_key = 1\n").unwrap();
        let e = load_toml::<Small>(&p, 1024, &[("old_key", "to [new] key")]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("unknown field `old_key`"), "{text}");
        assert!(text.contains("`old_key` has moved: to [new] key"), "{text}");
        std::fs::write(&p, "name = \"x\"\n").unwrap();
        assert!(load_toml::<Small>(&p, 1024, &[]).is_ok());
        let e = load_toml::<Small>(&p, 4, &[]).unwrap_err();
        assert!(matches!(e, FileError::Read(_)), "{e}");
    }
}
