//! The checker against fake `/proc` trees (every knob: pass, warn, fail)
//! and once against the real host.

use super::*;
use crate::host::fake::FakeRoot;

const T100K: Target = Target { connections: 100_000, cores: 2 };

/// A host that passes everything for 100k connections.
fn good() -> FakeRoot {
    let r = FakeRoot::new();
    r.nofile("1024", "1048576")
        .sysctl("fs.nr_open", "1048576")
        .sysctl("fs.file-max", "9223372036854775807")
        .sysctl("net.core.somaxconn", "65535")
        .sysctl("net.ipv4.tcp_max_syn_backlog", "65535")
        .sysctl("net.ipv4.ip_local_port_range", "1024\t65535")
        .sysctl("net.ipv4.tcp_tw_reuse", "2")
        .sysctl("net.core.netdev_max_backlog", "16384")
        .sysctl("net.ipv4.tcp_mem", "100000\t200000\t400000")
        .sysctl("kernel.osrelease", "6.1.0-18-amd64")
        .sysctl("kernel.io_uring_disabled", "0")
        .write("proc/self/status", "CapEff:\t000001ffffffffff\n");
    r
}

fn finding(root: &FakeRoot, knob: &str) -> Finding {
    let report = check(&Host::new(&root.0), T100K);
    report.findings.into_iter().find(|f| f.knob == knob).unwrap_or_else(|| panic!("no finding {knob}"))
}

#[test]
fn a_well_tuned_host_passes_everything() {
    let root = good();
    let report = check(&Host::new(&root.0), T100K);
    // Above 64,512 connections even the widest port range needs several
    // source addresses on the client side: a warning no sysctl removes.
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].knob, "net.ipv4.ip_local_port_range");
    assert!(problems[0].advice.contains("2 source addresses") && problems[0].advice.contains("already as wide"));
    let small = check(&Host::new(&root.0), Target { connections: 50_000, cores: 2 });
    assert!(small.problems().next().is_none(), "{:#?}", small.findings);
    assert!(report.reachable());
    assert!(report.render().contains("The target is reachable"));
}

#[test]
fn nofile_pass_and_both_kinds_of_fail() {
    let root = good();
    let f = finding(&root, "nofile (open files)");
    assert_eq!(f.status, Status::Pass);
    assert!(f.advice.contains("raises its soft limit"), "{}", f.advice);

    // The container case: hard 20,000, nr_open large, no CAP_SYS_RESOURCE.
    root.nofile("20000", "20000").write("proc/self/status", "CapEff:\t000001fffeffffff\n");
    let f = finding(&root, "nofile (open files)");
    assert_eq!(f.status, Status::Fail);
    assert_eq!(f.value, "soft 20000, hard 20000");
    assert!(f.advice.contains("at most 19744 connections"), "{}", f.advice);
    assert!(f.advice.contains("lacks CAP_SYS_RESOURCE"), "{}", f.advice);
    assert!(f.advice.contains("6 processes"), "{}", f.advice);
    assert!(!check(&Host::new(&root.0), T100K).reachable());

    // Privileged but capped by fs.nr_open.
    root.write("proc/self/status", "CapEff:\t000001ffffffffff\n").sysctl("fs.nr_open", "50000");
    let f = finding(&root, "nofile (open files)");
    assert_eq!(f.status, Status::Fail);
    assert!(f.advice.contains("sysctl -w fs.nr_open=1048576"), "{}", f.advice);
    assert_eq!(finding(&root, "fs.nr_open").status, Status::Fail);

    // Privileged and nr_open is fine: just raise the limit.
    root.sysctl("fs.nr_open", "1048576");
    assert!(finding(&root, "nofile (open files)").advice.contains("LimitNOFILE=131072"));
}

#[test]
fn plain_sysctls_pass_warn_fail() {
    let cases = [
        ("fs.file-max", "100000", Status::Fail, "265536"),
        ("net.core.somaxconn", "128", Status::Warn, "6250"),
        ("net.ipv4.tcp_max_syn_backlog", "128", Status::Warn, "6250"),
        ("net.core.netdev_max_backlog", "1000", Status::Warn, "16384"),
    ];
    for (knob, bad, status, needed) in cases {
        let root = good();
        assert_eq!(finding(&root, knob).status, Status::Pass, "{knob}");
        root.sysctl(knob, bad);
        let f = finding(&root, knob);
        assert_eq!(f.status, status, "{knob}");
        assert_eq!(f.value, bad);
        assert!(f.needed.contains(needed), "{knob}: {}", f.needed);
        assert!(f.advice.contains(&format!("sysctl -w {knob}={needed}")), "{knob}: {}", f.advice);
    }
}

#[test]
fn port_range_and_tw_reuse_warn() {
    let root = good();
    root.sysctl("net.ipv4.ip_local_port_range", "32768\t60999").sysctl("net.ipv4.tcp_tw_reuse", "0");
    let f = finding(&root, "net.ipv4.ip_local_port_range");
    assert_eq!(f.status, Status::Warn);
    assert_eq!(f.value, "32768-60999 (28232 ports)");
    assert!(f.advice.contains("4 source addresses"), "{}", f.advice);
    assert_eq!(finding(&root, "net.ipv4.tcp_tw_reuse").status, Status::Warn);
    root.sysctl("net.ipv4.tcp_tw_reuse", "1");
    assert_eq!(finding(&root, "net.ipv4.tcp_tw_reuse").status, Status::Pass);
}

#[test]
fn tcp_mem_pass_warn_fail() {
    // 100k connections × 4 KiB = 100,000 pages of 4 KiB.
    let root = good();
    assert_eq!(finding(&root, "net.ipv4.tcp_mem").status, Status::Pass);
    root.sysctl("net.ipv4.tcp_mem", "40000\t80000\t160000");
    assert_eq!(finding(&root, "net.ipv4.tcp_mem").status, Status::Warn);
    root.sysctl("net.ipv4.tcp_mem", "20000\t40000\t80000");
    let f = finding(&root, "net.ipv4.tcp_mem");
    assert_eq!(f.status, Status::Fail);
    assert!(f.advice.contains("tcp_mem=\"50000 100000 200000\""), "{}", f.advice);
}

#[test]
fn memlock_only_matters_before_5_12() {
    let root = good();
    assert_eq!(finding(&root, "memlock (io_uring rings)").status, Status::Pass);
    root.sysctl("kernel.osrelease", "5.10.0-28-amd64");
    // Fake limits give 8 MiB soft: enough for 2 cores.
    assert_eq!(finding(&root, "memlock (io_uring rings)").status, Status::Pass);
    root.write(
        "proc/self/limits",
        "Max open files            1024                 1048576              files\n\
         Max locked memory         65536                65536                bytes\n",
    );
    let f = finding(&root, "memlock (io_uring rings)");
    assert_eq!(f.status, Status::Warn);
    assert!(f.advice.contains("falls back to epoll"));
}

#[test]
fn io_uring_disabled_warns() {
    let root = good();
    assert_eq!(finding(&root, "io_uring").status, Status::Pass);
    root.sysctl("kernel.io_uring_disabled", "2");
    let f = finding(&root, "io_uring");
    assert_eq!(f.status, Status::Warn);
    assert_eq!(f.value, "kernel.io_uring_disabled=2");
    root.sysctl("kernel.io_uring_disabled", "1");
    assert!(finding(&root, "io_uring").advice.contains("io_uring_group"));
}

#[test]
fn missing_files_warn_instead_of_guessing() {
    let root = FakeRoot::new();
    let report = check(&Host::new(&root.0), T100K);
    assert!(report.findings.iter().filter(|f| f.knob != "io_uring").all(|f| f.value == "unreadable"), "{report:#?}");
}

#[test]
fn the_real_host_reports_its_actual_open_file_limit() {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    let show = |v: libc::rlim_t| if v == libc::RLIM_INFINITY { "unlimited".to_owned() } else { v.to_string() };
    let report = check(&Host::new("/"), T100K);
    let f = report.findings.iter().find(|f| f.knob == "nofile (open files)").unwrap();
    assert_eq!(f.value, format!("soft {}, hard {}", show(rl.rlim_cur), show(rl.rlim_max)));
    let expect_fail = rl.rlim_max != libc::RLIM_INFINITY && rl.rlim_max < 100_256;
    assert_eq!(f.status == Status::Fail, expect_fail, "{f:#?}");
}
