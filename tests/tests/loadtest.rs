//! The bundled load-test harness against a real `squall serve`: small
//! `fanout` and `chat` runs must deliver everything exactly once and write
//! their JSON report and plot.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::Value;
use squall_e2e::{Server, ServerOptions};
use std::path::PathBuf;
use std::process::Command;

fn loadtest_bin() -> PathBuf {
    squall_e2e::squall_bin().with_file_name("squall-loadtest")
}

/// `squall-loadtest ARGS` against `server`, its state and report in `dir`.
fn harness(server: &Server, dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(loadtest_bin());
    c.args(args)
        .args(["--site", &server.url, "--email", &server.owner.email, "--api-key", &server.owner.api_key])
        .arg("--state")
        .arg(dir.join("state.json"))
        .arg("--json")
        .arg(dir.join("report.json"))
        .args(["--clients-per-worker", "10", "--threads", "2", "--setup-parallel", "4"]);
    c
}

fn run(server: &Server, dir: &std::path::Path, args: &[&str]) -> (Value, String) {
    let json = dir.join("report.json");
    let out = harness(server, dir, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "squall-loadtest {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(), stdout)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("squall-lt-{name}-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn fanout_delivers_every_message_exactly_once_and_reuses_users() {
    let server = Server::start_with(ServerOptions { rate_limit_per_user: 0, ..ServerOptions::default() }).unwrap();
    let dir = temp_dir("fanout");
    let plot = dir.join("latency.svg");
    let plot_arg = plot.to_string_lossy().into_owned();
    let args = ["fanout", "--recipients", "25", "--messages", "5", "--interval-ms", "20", "--plot", &plot_arg];
    let (report, stdout) = run(&server, &dir, &args);
    assert_eq!(report["verdict"]["expected"], 125, "{report}");
    assert_eq!(report["verdict"]["delivered"], 125);
    assert_eq!((report["verdict"]["lost"].as_u64(), report["verdict"]["duplicated"].as_u64()), (Some(0), Some(0)));
    assert_eq!(report["progress"]["registrations"], 25, "25 clients over 3 worker processes");
    let delivery = &report["latencies"][0];
    assert_eq!(delivery["count"], 125);
    assert!(delivery["p50_ms"].as_f64().unwrap() > 0.0 && !delivery["hdr_base64"].as_str().unwrap().is_empty());
    assert!(stdout.contains("exactly-once") && stdout.contains("p99.9"), "{stdout}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("percentile"), "plot written");

    // A second run reuses the cached users: no new accounts.
    let users_before = server.owner.get("/api/v1/users", &[]).unwrap().1["members"].as_array().unwrap().len();
    let (report, _) = run(&server, &dir, &["fanout", "--recipients", "25", "--messages", "2", "--interval-ms", "10"]);
    assert_eq!(report["verdict"]["delivered"], 50);
    let users_after = server.owner.get("/api/v1/users", &[]).unwrap().1["members"].as_array().unwrap().len();
    assert_eq!(users_before, users_after);
}

#[test]
fn chat_mix_is_checked_per_recipient() {
    let server = Server::start_with(ServerOptions { rate_limit_per_user: 0, ..ServerOptions::default() }).unwrap();
    let dir = temp_dir("chat");
    let args = [
        "chat",
        "--streams",
        "3",
        "--stream-size",
        "4",
        "--senders",
        "4",
        "--rate",
        "40",
        "--seconds",
        "2",
        "--dm-fraction",
        "0.3",
        "--read-fraction",
        "0.3",
        "--drain-secs",
        "20",
    ];
    let (report, _) = run(&server, &dir, &args);
    eprintln!("chat report: {report}");
    let v = &report["verdict"];
    // Every sender's first message is due at once; how many more go out in
    // two seconds depends on the machine (a loaded CI box manages ~10/s), so
    // only the first one each is a requirement.
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent >= 4, "{report}");
    assert!(v["expected"].as_u64().unwrap() >= sent, "every message has a recipient: {report}");
    assert_eq!(report["send_errors"], 0, "{report}");
    assert_eq!(v["lost"], 0, "{report}");
    assert_eq!(v["duplicated"], 0);
    assert_eq!(v["unexpected"], 0);
    assert_eq!(v["delivered"], v["expected"]);
    assert!(v["expected"].as_u64().unwrap() > report["sent"].as_u64().unwrap(), "stream messages reach 4 members");
}

#[test]
fn a_fanout_through_a_graceful_restart_is_still_exactly_once() {
    let mut server = Server::start_with(ServerOptions { rate_limit_per_user: 0, ..ServerOptions::default() }).unwrap();
    let dir = temp_dir("restart");
    let json = dir.join("report.json");
    let args = ["fanout", "--recipients", "20", "--messages", "40", "--interval-ms", "100", "--send-retry-secs", "30"];
    let running = harness(&server, &dir, &args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Every client parked: the run is under way. Then a graceful restart on
    // the same address while messages are being sent.
    server.wait_parked(20).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(server.restart_in_place().unwrap(), "the first process stopped cleanly");
    let out = running.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["sent"], 40, "every send went through, retried across the restart: {report}");
    assert_eq!(report["verdict"]["expected"], 800);
    assert_eq!(
        (report["verdict"]["lost"].as_u64(), report["verdict"]["duplicated"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    assert_eq!(report["progress"]["registrations"], 20, "the clients kept their queues: {report}");
}
