//! `squall-tune check`: what the running host allows, knob by knob.

use crate::host::{Host, Limit};
use crate::sizing::{Target, FD_RESERVE};
use std::fmt::Write;

/// Outcome of one knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Enough for the target.
    Pass,
    /// Works, but worse than it should (slower reconnects, epoll, ...).
    Warn,
    /// The target cannot be reached as configured.
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One knob's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Knob name (`nofile`, `net.core.somaxconn`, ...).
    pub knob: &'static str,
    /// Verdict.
    pub status: Status,
    /// What the host has.
    pub value: String,
    /// What the target needs.
    pub needed: String,
    /// What to do (empty on pass unless there is something to know).
    pub advice: String,
}

impl Finding {
    /// Whether the knob matters to the server process (the ephemeral port
    /// range only limits client hosts).
    pub fn concerns_server(&self) -> bool {
        self.knob != "net.ipv4.ip_local_port_range"
    }
}

/// All findings for a target.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target checked.
    pub target: Target,
    /// One finding per knob.
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when nothing failed: the target is reachable.
    pub fn reachable(&self) -> bool {
        self.findings.iter().all(|f| f.status != Status::Fail)
    }

    /// Findings that are not a pass.
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.status != Status::Pass)
    }

    /// A human-readable table, then advice for each problem.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ =
            writeln!(out, "Target: {} connections on {} gateway core(s)\n", self.target.connections, self.target.cores);
        let _ = writeln!(out, "{:<6} {:<30} {:<28} needed", "", "knob", "value");
        for f in &self.findings {
            let _ = writeln!(out, "{:<6} {:<30} {:<28} {}", f.status.label(), f.knob, f.value, f.needed);
        }
        for f in &self.findings {
            if !f.advice.is_empty() {
                let _ = writeln!(out, "\n{} {}:\n  {}", f.status.label(), f.knob, f.advice.replace('\n', "\n  "));
            }
        }
        let _ = writeln!(
            out,
            "\n{}",
            if self.reachable() {
                "The target is reachable on this host."
            } else {
                "The target is NOT reachable on this host as configured (see FAIL above)."
            }
        );
        out
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".into(), |n| n.to_string())
}

fn unreadable(knob: &'static str, needed: String) -> Finding {
    Finding {
        knob,
        status: Status::Warn,
        value: "unreadable".into(),
        needed,
        advice: "Could not read this value; check it by hand.".into(),
    }
}

/// Checks `host` against `target`.
pub fn check(host: &Host, target: Target) -> Report {
    let findings = vec![
        nofile(host, target),
        nr_open(host, target),
        at_least(host, "fs.file-max", target.file_max(), Status::Fail,
            "System-wide open files: the server's sockets plus a co-located load generator's. sysctl -w fs.file-max={n}"),
        at_least(host, "net.core.somaxconn", target.somaxconn(), Status::Warn,
            "Accept queue: after a restart every client reconnects at once; a short queue drops SYNs and clients retry a second later. sysctl -w net.core.somaxconn={n}"),
        at_least(host, "net.ipv4.tcp_max_syn_backlog", target.somaxconn(), Status::Warn,
            "Half-open connections waiting for the handshake during a reconnect storm. sysctl -w net.ipv4.tcp_max_syn_backlog={n}"),
        port_range(host, target),
        tw_reuse(host),
        at_least(host, "net.core.netdev_max_backlog", target.netdev_max_backlog(), Status::Warn,
            "Packets queued per CPU before the stack processes them; fan-out bursts overflow the default. sysctl -w net.core.netdev_max_backlog={n}"),
        tcp_mem(host, target),
        memlock(host, target),
        io_uring(host),
    ];
    Report { target, findings }
}

fn at_least(host: &Host, knob: &'static str, needed: u64, below: Status, advice: &str) -> Finding {
    let Some(v) = host.sysctl_int(knob) else { return unreadable(knob, format!(">= {needed}")) };
    let ok = v >= needed;
    Finding {
        knob,
        status: if ok { Status::Pass } else { below },
        value: v.to_string(),
        needed: format!(">= {needed}"),
        advice: if ok { String::new() } else { advice.replace("{n}", &needed.to_string()) },
    }
}

fn nofile(host: &Host, t: Target) -> Finding {
    let needed = t.fds_per_process();
    let needed_s = format!(">= {needed} per process");
    let Some(Limit { soft, hard }) = host.limit("Max open files") else {
        return unreadable("nofile (open files)", needed_s);
    };
    let value = format!("soft {}, hard {}", show(soft), show(hard));
    let hard_n = hard.unwrap_or(u64::MAX);
    if hard_n >= needed {
        let note = if soft.unwrap_or(u64::MAX) < needed {
            "The soft limit is lower, but squall raises its soft limit to the hard limit at start."
        } else {
            ""
        };
        return Finding {
            knob: "nofile (open files)",
            status: Status::Pass,
            value,
            needed: needed_s,
            advice: note.into(),
        };
    }
    let per_process = hard_n.saturating_sub(FD_RESERVE);
    let procs = t.processes_needed(hard_n);
    let mut advice = format!(
        "One process may hold at most {hard_n} open files, so at most {per_process} connections \
         ({hard_n} minus {FD_RESERVE} for listeners, rings, database and logs): {} connections do not fit in one process.",
        t.connections
    );
    let nr_open = host.sysctl_int("fs.nr_open");
    if host.can_raise_hard_limits() {
        if nr_open.is_some_and(|n| n >= needed) {
            let _ = write!(
                advice,
                "\nFix: raise it where squall starts: LimitNOFILE={} in its systemd unit \
                 (kernel-tuning/files/squall.service.d/90-limits.conf), or `ulimit -Hn {0}; ulimit -n {0}` in its shell.",
                t.nofile_limit()
            );
        } else {
            let _ = write!(
                advice,
                "\nFix: fs.nr_open ({}) caps the limit: sysctl -w fs.nr_open={}, then LimitNOFILE={}.",
                show(nr_open),
                t.nr_open(),
                t.nofile_limit()
            );
        }
    } else {
        let _ = write!(
            advice,
            "\nThis process cannot raise its own hard limit: it lacks CAP_SYS_RESOURCE (a container, or an \
             unprivileged user), even though fs.nr_open is {}. Only whoever starts squall can raise it: \
             systemd LimitNOFILE={}, `docker run --ulimit nofile={1}:{1}`, or /etc/security/limits.d \
             (kernel-tuning/files/squall-limits.conf).\nOtherwise spread the connections over {procs} processes \
             of at most {per_process} connections each: squall serve starts that many gateway processes by \
             itself when expected_connections needs them (SQUALL_GATEWAY_PROCESSES to set it).",
            show(nr_open),
            t.nofile_limit()
        );
    }
    Finding { knob: "nofile (open files)", status: Status::Fail, value, needed: needed_s, advice }
}

fn nr_open(host: &Host, t: Target) -> Finding {
    let needed = t.fds_per_process();
    let Some(v) = host.sysctl_int("fs.nr_open") else { return unreadable("fs.nr_open", format!(">= {needed}")) };
    let hard_ok = host.limit("Max open files").is_some_and(|l| l.hard.unwrap_or(u64::MAX) >= needed);
    let (status, advice) = if v >= needed || hard_ok {
        (Status::Pass, String::new())
    } else {
        (Status::Fail, format!("No process may have more than {v} open files. sysctl -w fs.nr_open={}", t.nr_open()))
    };
    Finding { knob: "fs.nr_open", status, value: v.to_string(), needed: format!(">= {needed}"), advice }
}

fn port_range(host: &Host, t: Target) -> Finding {
    let knob = "net.ipv4.ip_local_port_range";
    let Some(v) = host.sysctl_ints(knob).filter(|v| v.len() == 2) else {
        return unreadable(knob, format!("{} ports per source address", t.connections));
    };
    let ports = (v[1] + 1).saturating_sub(v[0]);
    let sources = t.source_addresses_needed(ports);
    let ok = sources <= 1;
    Finding {
        knob,
        status: if ok { Status::Pass } else { Status::Warn },
        value: format!("{}-{} ({ports} ports)", v[0], v[1]),
        needed: format!("{} ports per source address", t.connections),
        advice: if ok {
            String::new()
        } else {
            let widen = if ports < 64_512 {
                ", or a wider range: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\""
            } else {
                " (the range is already as wide as it goes)"
            };
            format!(
                "Only matters on the client side (a load generator; the server uses only its listening port). \
                 To open {} connections to one server address and port, a client host needs {sources} source \
                 addresses (e.g. 127.0.0.1-127.0.0.{sources}, the client spreading its connections over them){widen}.",
                t.connections
            )
        },
    }
}

fn tw_reuse(host: &Host) -> Finding {
    let knob = "net.ipv4.tcp_tw_reuse";
    let Some(v) = host.sysctl_int(knob) else { return unreadable(knob, ">= 1".into()) };
    let ok = v >= 1;
    Finding {
        knob,
        status: if ok { Status::Pass } else { Status::Warn },
        value: v.to_string(),
        needed: ">= 1 (2 = loopback only)".into(),
        advice: if ok {
            String::new()
        } else {
            "Clients that reconnect reuse ports stuck in TIME_WAIT only with this on. sysctl -w net.ipv4.tcp_tw_reuse=1"
                .into()
        },
    }
}

fn tcp_mem(host: &Host, t: Target) -> Finding {
    let knob = "net.ipv4.tcp_mem";
    let page = host.page_size();
    let needed_pages = t.burst_bytes().div_ceil(page);
    let needed = format!("pressure >= {needed_pages} pages");
    let Some(v) = host.sysctl_ints(knob).filter(|v| v.len() == 3) else { return unreadable(knob, needed) };
    let (status, advice) = if v[1] >= needed_pages {
        (Status::Pass, String::new())
    } else if v[2] >= needed_pages {
        (Status::Warn, format!(
            "A message to every connection puts ~{} MiB in TCP buffers at once; above the pressure threshold the kernel \
             shrinks buffers and slows delivery. sysctl -w net.ipv4.tcp_mem=\"{}\"",
            t.burst_bytes() >> 20, t.tcp_mem(page).map(|n| n.to_string()).join(" ")
        ))
    } else {
        (
            Status::Fail,
            format!(
                "A message to every connection needs ~{} MiB of TCP buffers, above the kernel's hard limit ({} MiB): \
             sends fail and connections are dropped. sysctl -w net.ipv4.tcp_mem=\"{}\"",
                t.burst_bytes() >> 20,
                (v[2] * page) >> 20,
                t.tcp_mem(page).map(|n| n.to_string()).join(" ")
            ),
        )
    };
    Finding { knob, status, value: format!("{} {} {}", v[0], v[1], v[2]), needed, advice }
}

fn memlock(host: &Host, t: Target) -> Finding {
    let knob = "memlock (io_uring rings)";
    let needed = t.memlock_bytes();
    let needed_s = format!(">= {} KiB (before Linux 5.12)", needed / 1024);
    let limit = host.limit("Max locked memory");
    let value =
        limit.map_or_else(|| "unreadable".into(), |l| format!("soft {}", show(l.soft.map(|b| b / 1024)) + " KiB"));
    if host.kernel_version().is_some_and(|v| v >= (5, 12)) {
        return Finding { knob, status: Status::Pass, value, needed: needed_s, advice: String::new() };
    }
    match limit {
        Some(l) if l.soft.unwrap_or(u64::MAX) >= needed => {
            Finding { knob, status: Status::Pass, value, needed: needed_s, advice: String::new() }
        }
        _ => Finding {
            knob,
            status: Status::Warn,
            value,
            needed: needed_s,
            advice: format!(
                "Before Linux 5.12 io_uring rings count against RLIMIT_MEMLOCK; below {} KiB ring setup fails and \
                 squall falls back to epoll. LimitMEMLOCK={} in the unit.",
                needed / 1024,
                needed
            ),
        },
    }
}

fn io_uring(host: &Host) -> Finding {
    let knob = "io_uring";
    let disabled = host.sysctl_int("kernel.io_uring_disabled");
    let (mut status, mut value, mut advice) = match disabled {
        Some(0) | None => (Status::Pass, "enabled".to_owned(), String::new()),
        Some(1) => (
            Status::Warn,
            "kernel.io_uring_disabled=1".to_owned(),
            "Only members of kernel.io_uring_group may use io_uring; squall falls back to epoll otherwise. \
             sysctl -w kernel.io_uring_disabled=0, or run squall in that group."
                .to_owned(),
        ),
        Some(n) => (
            Status::Warn,
            format!("kernel.io_uring_disabled={n}"),
            "io_uring is disabled; squall falls back to epoll. sysctl -w kernel.io_uring_disabled=0".to_owned(),
        ),
    };
    if status == Status::Pass && host.is_real() {
        // A live probe catches seccomp filters and container policies the
        // sysctl cannot show.
        match io_uring::IoUring::new(8) {
            Ok(_) => value = "enabled (probed)".into(),
            Err(e) => {
                status = Status::Warn;
                value = format!("setup failed: {e}");
                advice = "io_uring_setup is refused (seccomp or container policy); squall falls back to epoll.".into();
            }
        }
    }
    Finding { knob, status, value, needed: "available".into(), advice }
}

#[cfg(test)]
mod tests;
