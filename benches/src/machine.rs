//! The machine's own limits, measured in the same run as the figures they
//! bound: durable appends per second (4 KiB write + `fdatasync`, what one
//! group commit costs at least), sequential write bandwidth to the data
//! directory's disk, and SHA-256 throughput (RFC 9162 leaf hashes of
//! 256-byte entries, and bulk).

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::Digest as _;

/// What the machine can do.
#[derive(Clone, Debug, Serialize)]
pub struct Limits {
    /// Cores this process may use.
    pub cores: usize,
    /// 4 KiB appends each followed by `fdatasync`, per second.
    pub fsyncs_per_s: f64,
    /// Sequential writes in 1 MiB blocks, then one `fsync`, bytes per second.
    pub write_bytes_per_s: f64,
    /// RFC 9162 leaf hashes of 256-byte entries per second, one core.
    pub leaf_hashes_per_s: f64,
    /// SHA-256 over 64 MiB, bytes per second, one core.
    pub sha256_bytes_per_s: f64,
}

/// The number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Measures the limits, with files in `dir` (removed after), spending about
/// `seconds` on each of the timed loops.
///
/// # Errors
/// I/O errors in `dir`.
pub fn measure(dir: &Path, seconds: f64) -> std::io::Result<Limits> {
    std::fs::create_dir_all(dir)?;
    let budget = Duration::from_secs_f64(seconds);

    let path = dir.join("quire-bench-fsync.tmp");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5a_u8; 4096];
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let fsyncs_per_s = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;

    let path = dir.join("quire-bench-write.tmp");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![0xa5_u8; 1 << 20];
    let (mut bytes, start) = (0u64, Instant::now());
    // At least 256 MiB, so the page cache does not hide the disk.
    while bytes < 256 << 20 || start.elapsed() < budget {
        f.write_all(&block)?;
        bytes += block.len() as u64;
        if bytes >= 2 << 30 {
            break;
        }
    }
    f.sync_all()?;
    let write_bytes_per_s = bytes as f64 / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;

    let entry = [7u8; 256];
    let (mut n, start) = (0u64, Instant::now());
    let mut acc = 0u8;
    while start.elapsed() < budget {
        for _ in 0..1024 {
            acc ^= quire_core::leaf_hash(&entry).0[0];
        }
        n += 1024;
    }
    let leaf_hashes_per_s = n as f64 / start.elapsed().as_secs_f64();
    std::hint::black_box(acc);

    let bulk = vec![3u8; 64 << 20];
    let (mut bytes, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        std::hint::black_box(sha2::Sha256::digest(&bulk));
        bytes += bulk.len() as u64;
    }
    let sha256_bytes_per_s = bytes as f64 / start.elapsed().as_secs_f64();

    Ok(Limits {
        cores: cores(),
        fsyncs_per_s,
        write_bytes_per_s,
        leaf_hashes_per_s,
        sha256_bytes_per_s,
    })
}
