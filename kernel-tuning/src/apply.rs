//! `squall-tune apply`: write the sysctl settings to the running kernel.
//!
//! Never lowers a value: a setting whose current value already meets the
//! target is left alone. Writes go to `<root>/proc/sys/...`, so tests use a
//! fake root; on the real root it requires root privileges.

use crate::host::{sysctl_path, Host};
use crate::render::{sysctls, Setting};
use crate::sizing::Target;

/// What happened to one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already at least the target.
    Kept(String),
    /// Written (or, in a dry run, would be).
    Set {
        /// The value before.
        from: String,
    },
    /// The write failed.
    Failed(String),
}

fn meets(name: &str, current: &[u64], wanted: &[u64]) -> bool {
    match (name, current, wanted) {
        ("net.ipv4.ip_local_port_range", [lo, hi], [wlo, whi]) => hi.saturating_sub(*lo) >= whi.saturating_sub(*wlo),
        ("net.ipv4.tcp_mem", [_, p, h], [_, wp, wh]) => p >= wp && h >= wh,
        (_, [c], [w]) => c >= w,
        _ => false,
    }
}

fn ints(s: &str) -> Vec<u64> {
    s.split_whitespace().filter_map(|t| t.parse().ok()).collect()
}

/// Applies the settings for `t` under `host`; `dry_run` only reports.
pub fn apply(host: &Host, root: &std::path::Path, t: Target, dry_run: bool) -> Vec<(Setting, Outcome)> {
    sysctls(t)
        .into_iter()
        .map(|s| {
            let current = host.sysctl(s.name).unwrap_or_default();
            let outcome = if meets(s.name, &ints(&current), &ints(&s.value)) {
                Outcome::Kept(current)
            } else if dry_run {
                Outcome::Set { from: current }
            } else {
                match std::fs::write(root.join(sysctl_path(s.name)), format!("{}\n", s.value)) {
                    Ok(()) => Outcome::Set { from: current },
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            };
            (s, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeRoot;

    #[test]
    fn raises_but_never_lowers() {
        let root = FakeRoot::new();
        root.sysctl("fs.file-max", "9223372036854775807")
            .sysctl("fs.nr_open", "1048576")
            .sysctl("net.core.somaxconn", "128")
            .sysctl("net.ipv4.ip_local_port_range", "32768\t60999")
            .sysctl("net.ipv4.tcp_mem", "1\t2\t3");
        let host = Host::new(&root.0);
        let t = Target { connections: 100_000, cores: 2 };
        let dry = apply(&host, &root.0, t, true);
        assert_eq!(host.sysctl("net.core.somaxconn").as_deref(), Some("128"), "dry run writes nothing");
        let get =
            |r: &[(Setting, Outcome)], n: &str| r.iter().find(|(s, _)| s.name == n).map(|(_, o)| o.clone()).unwrap();
        assert_eq!(get(&dry, "fs.file-max"), Outcome::Kept("9223372036854775807".into()));
        assert_eq!(get(&dry, "net.core.somaxconn"), Outcome::Set { from: "128".into() });

        let done = apply(&host, &root.0, t, false);
        assert_eq!(host.sysctl("net.core.somaxconn").as_deref(), Some("6250"));
        assert_eq!(host.sysctl("fs.file-max").as_deref(), Some("9223372036854775807"));
        assert_eq!(host.sysctl("net.ipv4.ip_local_port_range").as_deref(), Some("1024 65535"));
        assert_eq!(host.sysctl("net.ipv4.tcp_mem").as_deref(), Some("50000 100000 200000"));
        assert!(matches!(get(&done, "fs.nr_open"), Outcome::Kept(_)));
        // A setting whose file cannot be written is reported, not ignored.
        assert!(done.iter().all(|(_, o)| !matches!(o, Outcome::Failed(_))));
        std::fs::remove_dir_all(root.0.join("proc/sys/net/core")).unwrap();
        std::fs::create_dir_all(root.0.join("proc/sys/net/core/somaxconn/x")).unwrap();
        let failed = apply(&host, &root.0, Target { connections: 2_000_000, cores: 2 }, false);
        assert!(matches!(get(&failed, "net.core.somaxconn"), Outcome::Failed(_)));
    }
}
