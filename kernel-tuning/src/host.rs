//! Reading a host's settings through a root directory.
//!
//! Every value comes from a file under `root` (`/` on a real host), so tests
//! point the checker at a fake `/proc` tree. Nothing here writes.

use std::path::{Path, PathBuf};

/// A resource limit as `/proc/<pid>/limits` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Soft limit; `None` = unlimited.
    pub soft: Option<u64>,
    /// Hard limit; `None` = unlimited.
    pub hard: Option<u64>,
}

/// A host (or a fake one) seen through `root`.
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

/// Linux capability number of `CAP_SYS_RESOURCE` (raise hard rlimits).
pub const CAP_SYS_RESOURCE: u32 = 24;

impl Host {
    /// The host whose files live under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Host { root: root.into() }
    }

    /// Whether this is the real root (`/`), where live probes make sense.
    pub fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(rel)).ok().map(|s| s.trim().to_owned())
    }

    /// A sysctl by its dotted name (`net.core.somaxconn`), raw text.
    pub fn sysctl(&self, name: &str) -> Option<String> {
        self.read(&sysctl_path(name))
    }

    /// A sysctl's whitespace-separated integers.
    pub fn sysctl_ints(&self, name: &str) -> Option<Vec<u64>> {
        let s = self.sysctl(name)?;
        s.split_whitespace().map(|t| t.parse().ok()).collect()
    }

    /// A single-integer sysctl.
    pub fn sysctl_int(&self, name: &str) -> Option<u64> {
        self.sysctl_ints(name)?.first().copied()
    }

    /// A limit of this process (`proc/self/limits`), by its row title
    /// (`Max open files`).
    pub fn limit(&self, title: &str) -> Option<Limit> {
        let text = self.read("proc/self/limits")?;
        let line = text.lines().find(|l| l.starts_with(title))?;
        let mut fields = line[title.len()..].split_whitespace();
        let parse = |t: &str| if t == "unlimited" { Some(None) } else { t.parse().ok().map(Some) };
        Some(Limit { soft: parse(fields.next()?)?, hard: parse(fields.next()?)? })
    }

    /// Effective capability bits of this process (`CapEff`).
    pub fn effective_caps(&self) -> Option<u64> {
        let text = self.read("proc/self/status")?;
        let line = text.lines().find(|l| l.starts_with("CapEff:"))?;
        u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
    }

    /// Whether this process may raise its hard limits.
    pub fn can_raise_hard_limits(&self) -> bool {
        self.effective_caps().is_some_and(|c| c & (1 << CAP_SYS_RESOURCE) != 0)
    }

    /// Kernel version (major, minor) from `kernel.osrelease`.
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        let rel = self.sysctl("kernel.osrelease")?;
        let mut parts = rel.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// Page size in bytes (for `tcp_mem`, which counts pages).
    pub fn page_size(&self) -> u64 {
        if self.is_real() {
            // SAFETY: sysconf has no preconditions.
            let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if n > 0 {
                return n as u64;
            }
        }
        4096
    }
}

/// `net.core.somaxconn` → `proc/sys/net/core/somaxconn`.
pub fn sysctl_path(name: &str) -> String {
    format!("proc/sys/{}", name.replace('.', "/"))
}

#[cfg(test)]
pub(crate) mod fake {
    //! Fake `/proc` trees for tests.
    use std::path::PathBuf;

    /// A temporary root directory, removed on drop.
    pub struct FakeRoot(pub PathBuf);

    impl FakeRoot {
        pub fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("squall-tune-{}-{}", std::process::id(), unique()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            FakeRoot(dir)
        }

        pub fn write(&self, rel: &str, text: &str) -> &Self {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().expect("has parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
            self
        }

        pub fn sysctl(&self, name: &str, value: &str) -> &Self {
            self.write(&super::sysctl_path(name), &format!("{value}\n"))
        }

        pub fn nofile(&self, soft: &str, hard: &str) -> &Self {
            self.write(
                "proc/self/limits",
                &format!(
                    "Limit                     Soft Limit           Hard Limit           Units     \n\
                     Max open files            {soft:<20} {hard:<20} files     \n\
                     Max locked memory         8388608              8388608              bytes     \n"
                ),
            )
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn unique() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeRoot;
    use super::*;

    #[test]
    fn reads_limits_caps_and_sysctls() {
        let root = FakeRoot::new();
        root.nofile("1024", "unlimited")
            .sysctl("net.ipv4.ip_local_port_range", "32768\t60999")
            .sysctl("kernel.osrelease", "6.18.44-fc-v782")
            .write("proc/self/status", "Name:\tx\nCapEff:\t000001fffeffffff\n");
        let host = Host::new(&root.0);
        assert_eq!(host.limit("Max open files"), Some(Limit { soft: Some(1024), hard: None }));
        assert_eq!(host.sysctl_ints("net.ipv4.ip_local_port_range"), Some(vec![32768, 60999]));
        assert_eq!(host.kernel_version(), Some((6, 18)));
        assert!(!host.can_raise_hard_limits(), "bit 24 is clear in ...fe ffffff");
        root.write("proc/self/status", "CapEff:\t000001ffffffffff\n");
        assert!(host.can_raise_hard_limits());
        assert_eq!(host.sysctl("net.core.somaxconn"), None);
    }
}
