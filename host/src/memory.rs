//! The process's memory: transparent huge pages off.
//!
//! mimalloc asks the kernel for huge pages on its arenas (`madvise`), and
//! the kernel zeroes a whole 2 MiB page in the page fault that first
//! touches it. When the allocator has returned memory and takes it again,
//! that fault lands on whichever thread allocates next: a sequencer in the
//! middle of a commit, a request's task. On the benchmark machine, 64
//! single-entry writers saw their p99 fall from about 11 ms to 7 ms and
//! their worst call from 50–78 ms to 13–16 ms with huge pages off, at the
//! same throughput (`docs/PERFORMANCE.md`).

/// Turns transparent huge pages off for this process
/// (`prctl(PR_SET_THP_DISABLE)`); on other systems, does nothing.
///
/// # Errors
/// The kernel refused (a kernel older than 3.15).
pub fn no_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_off_once_turned_off() {
        super::no_transparent_huge_pages().unwrap();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
    }
}
