//! Giving freed memory back to the system. glibc keeps what is freed in its
//! per-thread arenas: a burst of registrations (each building a large
//! initial state) or of password hashes leaves hundreds of MB resident that
//! nothing uses. Measured in a 10,000-client fan-out soak: 582 MB resident,
//! 93 MB after one `malloc_trim` (BENCHMARKS.md).

use std::time::Duration;

/// How often resident memory is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Growth since the last trim that makes the next one worth it.
const TRIM_AFTER_GROWTH: u64 = 32 << 20;

/// Makes glibc serve blocks of 1 MiB and more with their own mappings,
/// given back when freed. Without it the threshold adapts upwards and a
/// password hash's 19 MiB of Argon2 memory stays in a per-thread arena for
/// good: 300 `fetch_api_key` calls at concurrency 8 left the process at
/// 1,169 MB (29 MB with this; mimalloc: 206 MB).
pub fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Starts a thread that trims the allocator's free memory whenever resident
/// memory has grown by [`TRIM_AFTER_GROWTH`] since the last trim (checked
/// every [`CHECK_EVERY`]). A trim takes milliseconds and happens only after
/// growth, so a steady server is not disturbed.
pub fn start_trimming() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("squall-trim".into()).spawn(|| {
            let mut baseline = resident_bytes().unwrap_or(0);
            loop {
                std::thread::sleep(CHECK_EVERY);
                let Some(now) = resident_bytes() else { continue };
                if now < baseline + TRIM_AFTER_GROWTH {
                    baseline = baseline.min(now);
                    continue;
                }
                // SAFETY: malloc_trim only returns free pages to the system.
                unsafe {
                    libc::malloc_trim(0);
                }
                let after = resident_bytes().unwrap_or(now);
                tracing::debug!(before_mb = now >> 20, after_mb = after >> 20, "gave free memory back");
                baseline = after;
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the memory trimmer");
        }
    }
}

/// This process's resident memory, from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read() {
        let rss = super::resident_bytes().expect("statm");
        assert!(rss > 1 << 20, "a running test process holds more than 1 MiB: {rss}");
    }
}
