//! Host tuning for Squall: what a host needs to hold many long-poll
//! connections with io_uring, and a checker for what it allows.
//!
//! [`sizing`] holds the arithmetic, [`host`] reads a host through a root
//! directory (so tests use fake `/proc` trees), [`check`] judges each knob,
//! [`render`] produces the files to install, [`apply`] writes sysctls, and
//! [`raise_nofile_soft_limit`] is what the gateway does at start-up.
#![warn(missing_docs)]

pub mod apply;
pub mod check;
pub mod host;
pub mod render;
pub mod sizing;

/// Raises this process's soft open-file limit to its hard limit (which an
/// unprivileged process may always do). Returns the new soft limit.
pub fn raise_nofile_soft_limit() -> std::io::Result<u64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(rl.rlim_cur)
}
