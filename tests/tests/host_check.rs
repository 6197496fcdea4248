//! `squall serve` checks the host at start-up and warns (refusing nothing).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use squall_e2e::{fresh_database, squall_bin};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

#[test]
fn startup_logs_one_line_per_shortfall_and_still_serves() {
    let db = fresh_database().unwrap();
    // Far more connections than any test host allows open files for.
    let mut child = Command::new(squall_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SQUALL_DATABASE_URL", &db)
        .env("SQUALL_EXPECTED_CONNECTIONS", "50000000")
        .env("SQUALL_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("squall: listening on"), "it still serves: {line:?}");
    child.kill().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let _ = child.wait();
    let checks: Vec<&str> = err.lines().filter(|l| l.contains("host check:")).collect();
    assert!(checks.iter().any(|l| l.contains("nofile (open files)")), "{err}");
    assert!(checks.iter().all(|l| l.contains("WARN")), "{err}");
    assert!(!err.contains("ip_local_port_range"), "client-side knobs are not the server's business: {err}");
    assert!(err.contains("squall-tune check --connections 50000000"), "{err}");
}
