//! # quire-host
//!
//! What Quire's processes (server, witness, client) need from the machine
//! they run on, written once:
//! - [`read_bounded`]: a file read whole, but only a regular file, and never
//!   more than a limit, counted by the bytes actually read (a file's
//!   metadata can lie: `/dev/zero` has length 0, a FIFO blocks an ordinary
//!   open, a file can grow while it is read);
//! - [`open_regular`]: the non-blocking open and the regular-file check
//!   behind it;
//! - [`budget`]: one budget of bytes in flight, and the layer that puts
//!   request bodies under it and under a stall timeout;
//! - [`config`]: configuration files, bounded and parsed as TOML;
//! - [`error`]: an error and its causes, each said once;
//! - [`keyfile`]: private keys written once, mode 0600, read only from
//!   their owner's regular files;
//! - [`grpc`]: a layer answering malformed requests `INVALID_ARGUMENT`;
//! - [`logging`]: the binaries' log set-up, which never panics;
//! - [`memory`]: transparent huge pages off, for steady tail latency;
//! - [`net`]: listeners with a connection cap, handshake and idle
//!   timeouts, and accept errors that back off instead of spinning.
//!
//! Out of scope: parsing (each caller parses what it reads, after this
//! bound) and anything asynchronous.

pub mod budget;
pub mod config;
pub mod error;
pub mod grpc;
pub mod keyfile;
pub mod logging;
pub mod memory;
pub mod net;

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a FIFO, a device, a directory).
    #[error("{path}: not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// More bytes than the limit.
    #[error("{path}: more than {limit} bytes, the limit for this file")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
}

/// `O_NONBLOCK` on Linux: opening a FIFO for reading with it does not wait
/// for a writer. (The value on every Linux architecture Quire builds for.)
const O_NONBLOCK: i32 = 0o4000;

/// Opens `path` for reading (and writing, with `write`) without blocking
/// and refuses anything but a regular file.
///
/// # Errors
/// [`ReadError::Io`] when it cannot be opened; [`ReadError::NotRegular`].
pub fn open_regular(path: &Path, write: bool) -> Result<File, ReadError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    if !f.metadata().map_err(io)?.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_owned(),
        });
    }
    Ok(f)
}

/// Reads the regular file at `path` whole, refusing it once more than
/// `limit` bytes have been read.
///
/// # Errors
/// As [`open_regular`], and [`ReadError::TooLarge`].
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let f = open_regular(path, false)?;
    read_all_bounded(f, limit).map_err(|e| match e {
        Bounded::Io(source) => ReadError::Io {
            path: path.to_owned(),
            source,
        },
        Bounded::TooLarge => ReadError::TooLarge {
            path: path.to_owned(),
            limit,
        },
    })
}

/// [`read_bounded`] as UTF-8 text.
///
/// # Errors
/// As [`read_bounded`]; text that is not UTF-8 is [`ReadError::Io`] with
/// kind `InvalidData`.
pub fn read_bounded_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|_| ReadError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// Why [`read_all_bounded`] stopped.
#[derive(Debug)]
pub enum Bounded {
    /// Reading failed.
    Io(std::io::Error),
    /// More than the limit.
    TooLarge,
}

/// Reads `r` to its end, but at most `limit` bytes: one more is an error.
///
/// # Errors
/// [`Bounded`].
pub fn read_all_bounded(r: impl std::io::Read, limit: u64) -> Result<Vec<u8>, Bounded> {
    let mut out = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(Bounded::Io)?;
    if out.len() as u64 > limit {
        return Err(Bounded::TooLarge);
    }
    Ok(out)
}

/// Replaces the file at `path` with `bytes` all at once, mode 0600: into
/// a temporary file beside it that is synced, then renamed over it, and
/// the directory synced; a failed write (a full disk) leaves the old file
/// whole.
///
/// # Errors
/// I/O, naming nothing: the caller names the file.
pub fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_bytes_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.toml");
        super::write_replacing(&p, b"one").unwrap();
        super::write_replacing(&p, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two, longer");
        assert!(!dir.path().join("f.toml.tmp").exists());
    }

    #[test]
    fn devices_fifos_and_large_files_are_refused_by_bytes_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"abc").unwrap();
        assert_eq!(read_bounded(&ok, 3).unwrap(), b"abc");
        assert!(matches!(
            read_bounded(&ok, 2),
            Err(ReadError::TooLarge { limit: 2, .. })
        ));
        assert!(matches!(
            read_bounded(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular { .. })
        ));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        // Returns at once (no writer is waited for).
        assert!(matches!(
            read_bounded(&fifo, 10),
            Err(ReadError::NotRegular { .. })
        ));
        assert!(matches!(
            read_bounded(dir.path(), 10),
            Err(ReadError::NotRegular { .. })
        ));
        assert!(matches!(
            read_bounded(&dir.path().join("absent"), 10),
            Err(ReadError::Io { .. })
        ));
        assert!(matches!(
            read_all_bounded(std::io::repeat(0), 1 << 20),
            Err(Bounded::TooLarge)
        ));
    }
}
