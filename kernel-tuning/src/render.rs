//! The files to install, rendered for a target: a `sysctl.d` file, a
//! `limits.d` file and a systemd drop-in. `files/` holds them rendered for
//! one million connections; a test keeps those copies identical to this
//! code's output.

use crate::sizing::{Target, BURST_BYTES_PER_CONNECTION, FD_RESERVE, URING_BYTES_PER_CORE};
use std::fmt::Write;

/// One kernel setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Dotted sysctl name.
    pub name: &'static str,
    /// Value as written to `/proc/sys` (space-separated for vectors).
    pub value: String,
    /// Why, in one line.
    pub why: String,
}

/// The sysctl settings for `t` (page size 4 KiB).
pub fn sysctls(t: Target) -> Vec<Setting> {
    let s = |name, value: String, why: String| Setting { name, value, why };
    let mem = t.tcp_mem(4096);
    vec![
        s("fs.file-max", t.file_max().to_string(),
          format!("system-wide open files: {} server sockets + as many for a co-located load generator + 65,536", t.connections)),
        s("fs.nr_open", t.nr_open().to_string(),
          format!("ceiling for a process's open-file limit; the gateway needs {} + {FD_RESERVE} reserve", t.connections)),
        s("net.core.somaxconn", t.somaxconn().to_string(),
          "accept queue: absorbs the reconnect storm after a restart (connections/16, 4,096..65,535)".into()),
        s("net.ipv4.tcp_max_syn_backlog", t.somaxconn().to_string(),
          "half-open handshakes during that storm; as long as the accept queue".into()),
        s("net.core.netdev_max_backlog", t.netdev_max_backlog().to_string(),
          "packets queued per CPU before the stack runs; fan-out bursts overflow the default 1,000".into()),
        s("net.ipv4.ip_local_port_range", "1024 65535".into(),
          format!("client side: 64,512 ports per source address, so {} connections need {} source addresses", t.connections, t.source_addresses_needed(64_512))),
        s("net.ipv4.tcp_tw_reuse", "1".into(),
          "reconnecting clients may reuse ports in TIME_WAIT".into()),
        s("net.ipv4.tcp_mem", format!("{} {} {}", mem[0], mem[1], mem[2]),
          format!("pages; a message to every connection holds ~{BURST_BYTES_PER_CONNECTION} B each in buffers = {} MiB: pressure there, hard limit at twice", t.burst_bytes() >> 20)),
    ]
}

fn header(out: &mut String, path: &str, t: Target, how: &str) {
    let _ = writeln!(
        out,
        "# {path}: Squall host settings for {} long-poll connections on {} gateway cores.",
        t.connections, t.cores
    );
    let _ =
        writeln!(out, "# Rendered by `squall-tune render --connections {} --cores {}`. {how}", t.connections, t.cores);
    let _ = writeln!(out, "# These are minimums: where the host already has a larger value, keep the larger one.");
    let _ = writeln!(out, "#");
    let _ = writeln!(out, "# Per connection the gateway holds one socket: 1 file descriptor, 1 struct file,");
    let _ = writeln!(out, "# ~3 KiB of kernel memory idle and up to ~{BURST_BYTES_PER_CONNECTION} B of TCP buffers while an event is in flight.");
    let _ = writeln!(out, "# A client host needs one ephemeral port per connection per source address.");
    let _ = writeln!(out, "# Each gateway core pins ~{} KiB for its io_uring rings.", URING_BYTES_PER_CORE / 1024);
}

/// `/etc/sysctl.d/99-squall.conf`
pub fn sysctl_conf(t: Target) -> String {
    let mut out = String::new();
    header(&mut out, "/etc/sysctl.d/99-squall.conf", t, "Load with `sysctl --system`.");
    for s in sysctls(t) {
        let _ = writeln!(out, "\n# {}\n{} = {}", s.why, s.name, s.value);
    }
    out
}

/// `/etc/security/limits.d/squall.conf` (for squall started from a login
/// shell as user `squall`).
pub fn limits_conf(t: Target) -> String {
    let mut out = String::new();
    header(&mut out, "/etc/security/limits.d/squall.conf", t, "Applies to new login sessions of user squall.");
    let n = t.nofile_limit();
    let m = t.memlock_bytes().div_ceil(1024);
    let _ = writeln!(
        out,
        "\n# open files: {} connections + {FD_RESERVE} reserve, rounded up to a power of two",
        t.connections
    );
    let _ = writeln!(out, "squall  soft  nofile   {n}\nsquall  hard  nofile   {n}");
    let _ = writeln!(
        out,
        "\n# locked memory (KiB) for io_uring rings: {} cores x {} KiB + 1 MiB (enforced before Linux 5.12)",
        t.cores,
        URING_BYTES_PER_CORE / 1024
    );
    let _ = writeln!(out, "squall  soft  memlock  {m}\nsquall  hard  memlock  {m}");
    out
}

/// `/etc/systemd/system/squall.service.d/90-limits.conf`
pub fn systemd_dropin(t: Target) -> String {
    let mut out = String::new();
    header(&mut out, "/etc/systemd/system/squall.service.d/90-limits.conf", t, "Then `systemctl daemon-reload`.");
    let _ = writeln!(out, "\n[Service]");
    let _ = writeln!(
        out,
        "# open files: {} connections + {FD_RESERVE} reserve, rounded up to a power of two (needs fs.nr_open >= it)",
        t.connections
    );
    let _ = writeln!(out, "LimitNOFILE={}", t.nofile_limit());
    let _ = writeln!(
        out,
        "# io_uring rings: {} cores x {} KiB + 1 MiB (enforced before Linux 5.12)",
        t.cores,
        URING_BYTES_PER_CORE / 1024
    );
    let _ = writeln!(out, "LimitMEMLOCK={}", t.memlock_bytes());
    let _ =
        writeln!(out, "# one thread per gateway core plus the backend's; never the limit, but no surprise cap either");
    let _ = writeln!(out, "TasksMax=infinity");
    out
}

/// The shipped files are rendered for this target.
pub const SHIPPED: Target = Target { connections: 1_000_000, cores: 16 };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_files_match_the_renderer() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/files");
        let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap_or_default();
        assert_eq!(read("99-squall.conf"), sysctl_conf(SHIPPED), "rerun: squall-tune render --write files/");
        assert_eq!(read("squall-limits.conf"), limits_conf(SHIPPED));
        assert_eq!(read("squall.service.d/90-limits.conf"), systemd_dropin(SHIPPED));
    }

    #[test]
    fn sysctl_file_carries_each_value_with_a_reason() {
        let text = sysctl_conf(SHIPPED);
        for s in sysctls(SHIPPED) {
            let line = format!("{} = {}", s.name, s.value);
            let at = text.find(&line).unwrap_or_else(|| panic!("missing {line}"));
            let before = &text[..at];
            assert!(before.trim_end().lines().last().is_some_and(|l| l.starts_with("# ")), "{line} has no reason");
        }
        assert!(text.contains("fs.nr_open = 1048576"));
        assert!(text.contains("net.ipv4.tcp_mem = 500000 1000000 2000000"));
    }

    #[test]
    fn limits_for_one_million() {
        assert!(limits_conf(SHIPPED).contains("squall  hard  nofile   1048576"));
        let unit = systemd_dropin(SHIPPED);
        assert!(unit.contains("LimitNOFILE=1048576"));
        assert!(unit.contains(&format!("LimitMEMLOCK={}", 16 * 256 * 1024 + 1024 * 1024)));
    }
}
