//! Queue errors, deletion, heartbeats, expiry, disconnects and restarts, on
//! `Gateway::run` with a fake backend and a manual clock.

mod support;

use serde_json::json;
use support::{config, poll_path, temp_dir, Server};

#[test]
fn bad_queue_ids_get_zulips_error() {
    let s = Server::start();
    let theirs = s.register(8);
    for (q, user) in [
        ("0-0-000000000000000000000000deadbeef".to_owned(), 7), // well-formed, unknown
        ("not-a-queue".to_owned(), 7),                          // malformed
        ("0-9-000000000000000000000000deadbeef".to_owned(), 7), // a core that does not exist
        ("3-0-000000000000000000000000deadbeef".to_owned(), 7), // another node
        (theirs.clone(), 7),                                    // someone else's
    ] {
        let r = s.client().call("GET", &poll_path(&q, -1), user, "");
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(
            r.json(),
            json!({"result": "error", "msg": format!("Bad event queue ID: {q}"), "code": "BAD_EVENT_QUEUE_ID", "queue_id": q})
        );
    }
}

#[test]
fn delete_forgets_the_queue_and_completes_its_parked_poll() {
    let s = Server::start();
    let q = s.register(7);
    let mut parked = s.client();
    parked.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    let r = s.client().call("DELETE", &format!("/api/v1/events?queue_id={q}"), 8, "");
    assert_eq!(r.json()["code"], "BAD_EVENT_QUEUE_ID", "only the owner may delete");
    let r = s.client().call("DELETE", "/api/v1/events", 7, &format!("queue_id={q}"));
    assert_eq!(r.json(), json!({"result": "success", "msg": ""}));
    assert_eq!(parked.read().json()["events"], json!([]));
    assert_eq!(s.client().call("GET", &poll_path(&q, -1), 7, "").json()["code"], "BAD_EVENT_QUEUE_ID");
    assert_eq!(s.totals().queues, 0);
}

#[test]
fn a_parked_poll_gets_a_heartbeat_when_the_clock_passes_its_deadline() {
    let s = Server::start();
    let q = s.register(7);
    let mut c = s.client();
    c.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    s.clock.advance_ms(44_999);
    s.wait_ticks();
    let t = s.totals();
    assert_eq!((t.parked, t.deliveries, t.events_queued), (1, 0, 0), "no heartbeat before 45 s");
    s.clock.advance_ms(1);
    let v = c.read().json();
    assert_eq!(v["events"], json!([{"type": "heartbeat", "id": 0}]));
    assert_eq!(v["queue_id"], json!(q));
}

#[test]
fn an_idle_queue_expires_but_a_parked_one_does_not() {
    let s = Server::start();
    let idle = s.register(7);
    let watched = s.register(8);
    let mut c = s.client();
    c.send("GET", &poll_path(&watched, -1), 8, "");
    s.wait_parked(1);
    // Long after any heartbeat: the parked poll got one and re-polled, so
    // the watched queue stays; the idle one is collected.
    s.clock.advance(700);
    let v = c.read().json();
    assert_eq!(v["events"][0]["type"], "heartbeat");
    c.send("GET", &poll_path(&watched, 0), 8, "");
    s.wait_for("the idle queue to expire", |t| t.queues == 1);
    assert_eq!(s.client().call("GET", &poll_path(&idle, -1), 7, "").json()["code"], "BAD_EVENT_QUEUE_ID");
    s.wait_parked(1);
}

#[test]
fn a_client_that_hangs_up_is_noticed_and_its_queue_expires() {
    let s = Server::start();
    let q = s.register(7);
    let c = s.client();
    let mut c = c;
    c.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    c.hang_up();
    s.wait_for("the connection to close", |t| t.connections == 0);
    s.wait_for("the owner core to hear of it", |t| t.parked == 0);
    // 600 s after the park, the next expiry pass collects the queue.
    s.clock.advance(599);
    s.wait_ticks();
    assert_eq!(s.totals().queues, 1);
    s.clock.advance(61);
    s.wait_for("the queue to expire", |t| t.queues == 0);
}

#[test]
fn shutdown_releases_parked_polls_and_a_restart_restores_queues() {
    let dir = temp_dir();
    let mut s = Server::start_with(config(&dir));
    let q = s.register(7);
    s.publish_test_event(&[7], 1);
    s.wait_for("the event", |t| t.events_queued == 1);
    let parked_q = s.register(9);
    let mut c = s.client();
    c.send("GET", &poll_path(&parked_q, -1), 9, "");
    s.wait_parked(1);
    s.stop();
    let v = c.read().json();
    assert_eq!(v["events"], json!([]), "shutdown answers parked polls");
    assert!(dir.join("event_queues.0.json").exists() && dir.join("event_queues.1.json").exists(), "each core saved");

    let s = Server::start_with(config(&dir));
    s.wait_for("the saved queues to load", |t| t.queues == 2);
    let v = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "").json();
    let events = v["events"].as_array().unwrap();
    assert_eq!(events[0], json!({"type": "test", "n": 1, "id": 0}), "pending events survive");
    assert_eq!(events[1]["type"], "restart");
    assert_eq!(events[1]["server_generation"], 42);
    assert_eq!(events[1]["id"], 1);
    let v = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&parked_q, -1)), 9, "").json();
    assert_eq!(v["events"][0]["type"], "restart", "the queue that was parked is back too");
}

#[test]
fn a_send_under_way_at_shutdown_is_in_the_saved_queue_and_later_requests_are_refused() {
    let dir = temp_dir();
    let mut s = Server::start_with(config(&dir));
    let q = s.register(7);
    let mut sender = s.client();
    sender.send("POST", "/api/v1/slow_send", 7, "");
    s.wait_for("the send to be with the backend", |t| t.in_flight == 1);
    let mut late = s.client();
    assert_eq!(late.call("GET", "/api/v1/users/me", 7, "").status, 404, "served before the stop");
    let stopping = std::thread::spawn(move || {
        s.stop();
        s
    });
    // The send finishes (and is acknowledged) during the stop...
    assert_eq!(sender.read().status, 200);
    // ...while new requests on open connections are refused.
    let r = late.call("GET", "/api/v1/users/me", 7, "");
    assert_eq!((r.status, r.json()["code"].as_str()), (503, Some("SERVICE_UNAVAILABLE")));
    // Kept until the end: dropping a server removes its state directory.
    let _stopped = stopping.join().unwrap();

    let s = Server::start_with(config(&dir));
    let v = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "").json();
    assert_eq!(
        v["events"][0],
        json!({"type": "test", "n": 99, "id": 0}),
        "the acknowledged send's event was saved: {v}"
    );
}

#[test]
fn web_reload_clients_reaches_restored_queues_once() {
    let dir = temp_dir();
    let mut s = Server::start_with(config(&dir));
    let q = s.register(7);
    s.stop();
    let s = Server::start_with(config(&dir));
    let fresh = s.register(8);
    let body = format!("secret={}&client_count=5&immediate=true", support::SECRET);
    let r = s.client().call("POST", "/api/internal/web_reload_clients", 0, &body);
    assert_eq!(r.json()["sent_events"], 1, "only the restored queue: {}", r.text());
    let r = s.client().call("POST", "/api/internal/web_reload_clients", 0, &body);
    assert_eq!(r.json()["sent_events"], 0, "each queue at most once");
    let v = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "").json();
    assert_eq!(v["events"][1], json!({"type": "web_reload_client", "immediate": true, "id": 1}));
    let v = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&fresh, -1)), 8, "").json();
    assert_eq!(v["events"], json!([]));
}

/// Copies `from` into `to` as it is at this moment (what a crash would
/// leave: files may be mid-write).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("a copy's directory");
    for entry in std::fs::read_dir(from).expect("a directory to copy") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else if let Ok(bytes) = std::fs::read(entry.path()) {
            // A file removed between listing and reading was superseded.
            std::fs::write(target, bytes).expect("a copied file");
        }
    }
}

#[test]
fn a_running_gateways_journal_rotates_through_snapshots_and_recovers_every_acknowledged_event() {
    let dir = temp_dir();
    let mut cfg = config(&dir);
    // Tiny snapshots: the journal rotates many times below.
    cfg.journal = Some(squall_gateway::journal::JournalOptions { snapshot_bytes: 2048, ..Default::default() });
    let s = Server::start_with(cfg);
    let q = s.register(7);
    let other = s.register(8);
    for n in 0..300 {
        // Each publish returns once the owning core's journal has the event.
        s.publish_test_event(&[7, 8], n);
    }
    // Acknowledged by user 8: the journal records that too.
    let v = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&other, 149)), 8, "").json();
    assert_eq!(v["events"].as_array().unwrap().len(), 150, "{v}");
    s.publish_test_event(&[8], 300);
    let crash_image = temp_dir();
    copy_tree(&dir, &crash_image);
    let generations: Vec<String> = std::fs::read_dir(dir.join("journal/core-0"))
        .unwrap()
        .chain(std::fs::read_dir(dir.join("journal/core-1")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("snapshot.") && !n.ends_with("tmp"))
        .collect();
    assert!(
        generations.iter().any(|n| n.trim_start_matches("snapshot.").parse::<u64>().unwrap() > 3),
        "the journal rotated while running: {generations:?}"
    );
    assert!(!crash_image.join("event_queues.0.json").exists(), "no dump: only the journal can bring the queues back");
    let metrics = s.client().call("GET", "/metrics", 0, "").text();
    let total = |name: &str| -> i64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
            .sum()
    };
    assert!(total("squall_journal_syncs_total") >= 300, "a sync per acknowledged publish at least: {metrics}");
    assert!(total("squall_journal_snapshots_total") >= 2, "{metrics}");
    assert!(total("squall_journal_written_bytes_total") > 2048, "{metrics}");

    // A new gateway on the crash image.
    let r = Server::start_with(config(&crash_image));
    r.wait_for("the recovered queues", |t| t.queues == 2);
    let v = r.client().call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "").json();
    let events = v["events"].as_array().unwrap();
    let ns: Vec<i64> = events.iter().filter(|e| e["type"] == "test").map(|e| e["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, (0..300).collect::<Vec<_>>(), "every acknowledged event, once, in order");
    assert_eq!(events.last().unwrap()["type"], "restart");
    let v = r.client().call("GET", &format!("{}&dont_block=true", poll_path(&other, 149)), 8, "").json();
    let ns: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "test")
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (150..=300).collect::<Vec<_>>(), "what user 8 acknowledged stays acknowledged");
    drop(s);
}
