//! `squall-tune` as a user runs it.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use std::process::Command;

fn tune(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_squall-tune")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_exit_code_says_whether_the_target_is_reachable() {
    // One connection fits anywhere.
    let (code, out, _) = tune(&["check", "--connections", "1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("The target is reachable"));
    // A billion does not fit in any process's open-file limit.
    let (code, out, _) = tune(&["check", "--connections", "1000000000"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL   nofile (open files)"), "{out}");
}

#[test]
fn render_and_apply_against_a_fake_root() {
    let dir = std::env::temp_dir().join(format!("squall-tune-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, out, _) = tune(&["render", "--connections", "200000", "--cores", "4", "--write", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let sysctl = std::fs::read_to_string(dir.join("99-squall.conf")).unwrap();
    assert!(sysctl.contains("net.core.somaxconn = 12500"), "{sysctl}");
    assert!(dir.join("squall.service.d/90-limits.conf").exists());

    let root = dir.join("root");
    std::fs::create_dir_all(root.join("proc/sys/net/core")).unwrap();
    std::fs::write(root.join("proc/sys/net/core/somaxconn"), "128\n").unwrap();
    let (code, out, _) = tune(&["apply", "--connections", "200000", "--dry-run", "--root", root.to_str().unwrap()]);
    assert!(out.contains("would  sysctl -w net.core.somaxconn=\"12500\""), "{out}");
    assert_eq!(code, 0);
    assert_eq!(std::fs::read_to_string(root.join("proc/sys/net/core/somaxconn")).unwrap(), "128\n");
    let (_, out, _) = tune(&["apply", "--connections", "200000", "--root", root.to_str().unwrap()]);
    assert!(out.contains("set    net.core.somaxconn = 12500 (was 128)"), "{out}");
    assert_eq!(std::fs::read_to_string(root.join("proc/sys/net/core/somaxconn")).unwrap(), "12500\n");
    let _ = std::fs::remove_dir_all(&dir);

    let (code, _, err) = tune(&["render", "--file", "bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("--file must be"), "{err}");
}
