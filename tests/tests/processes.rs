//! Several gateway processes on one port (`SQUALL_GATEWAY_PROCESSES`):
//! every queue is served by the process that owns it, whichever process a
//! connection lands on; events reach every process exactly once; one
//! process restarts without losing its queues.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::json;
use squall_e2e::{python_client_check, Client, Server, ServerOptions};
use squall_shard_router::placement::Topology;
use std::thread;
use std::time::{Duration, Instant};

fn two_processes() -> Server {
    Server::start_with(ServerOptions { processes: 2, cores: 1, ..ServerOptions::default() }).unwrap()
}

/// Users until there are `n` whose queues live in each of the 2 processes
/// (one core each: the process is the core).
fn users_on_both(server: &Server, n: usize) -> [Vec<Client>; 2] {
    let topo = Topology::single_node(2);
    let mut by_process: [Vec<Client>; 2] = [Vec::new(), Vec::new()];
    for i in 0.. {
        if by_process.iter().all(|v| v.len() >= n) {
            break;
        }
        let c = server.create_user(&format!("u{i}@example.com"), &format!("User {i}")).unwrap();
        let p = topo.shard_of(c.user_id).core as usize;
        if by_process[p].len() < n {
            by_process[p].push(c);
        }
    }
    by_process
}

#[test]
fn a_stream_message_reaches_queues_in_both_processes_exactly_once() {
    let server = two_processes();
    let groups = users_on_both(&server, 2);
    let mut pollers = Vec::new();
    for (process, users) in groups.iter().enumerate() {
        for c in users {
            c.subscribe(&["both"]).unwrap();
            let (q, _, _) = c.register(&[("event_types", r#"["message"]"#)]).unwrap();
            assert!(q.starts_with(&format!("0-{process}-")), "{q} lives in process {process}");
            let c = c.clone();
            pollers.push(thread::spawn(move || {
                let (status, body) = c.get_events(&q, -1, false).unwrap();
                (c, q, status, body)
            }));
        }
    }
    // The long-polls are parked wherever they landed: send once they all
    // would have an event to wait for (a parked poll or a queued event both
    // answer with it, so no wait is needed for correctness).
    server.owner.subscribe(&["both"]).unwrap();
    let id = server.owner.send_stream("both", "t", "hello both processes").unwrap();
    for p in pollers {
        let (c, q, status, body) = p.join().unwrap();
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().unwrap();
        let messages: Vec<_> = events.iter().filter(|e| e["type"] == "message").collect();
        assert_eq!(messages.len(), 1, "{body}");
        assert_eq!(messages[0]["message"]["id"], id);
        // Exactly once: nothing more after acknowledging it.
        let last = events.last().unwrap()["id"].as_i64().unwrap();
        let (status, rest) = c.get_events(&q, last, true).unwrap();
        assert_eq!((status, rest["events"].clone()), (200, json!([])), "{rest}");
    }
}

#[test]
fn a_poll_landing_on_the_wrong_process_is_handed_over() {
    let server = two_processes();
    let groups = users_on_both(&server, 1);
    for (process, users) in groups.iter().enumerate() {
        let c = &users[0];
        let (q, _, _) = c.register(&[]).unwrap();
        // Each call is a new connection; the kernel spreads them over both
        // processes, so about half land on the other one (all twenty on the
        // right one: one chance in a million).
        for _ in 0..20 {
            let fresh = server.client_for(c);
            let (status, body) = fresh.get_events(&q, -1, true).unwrap();
            assert_eq!(status, 200, "process {process}: {body}");
        }
    }
}

#[test]
fn the_official_client_works_across_processes() {
    python_client_check(&two_processes());
}

#[test]
fn a_process_that_restarts_keeps_its_queues() {
    let server = two_processes();
    let groups = users_on_both(&server, 1);
    let c = &groups[1][0];
    let (q, _, _) = c.register(&[("event_types", r#"["message", "restart"]"#)]).unwrap();
    let pid_file = server.state_dir.join("run/gateway-1.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    std::process::Command::new("kill").args(["-TERM", pid.trim()]).status().unwrap();
    // The first process starts it again (about a second later); it restores
    // the queues it saved.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if !now.trim().is_empty() && now.trim() != pid.trim() {
            break;
        }
        assert!(Instant::now() < deadline, "gateway process 1 was not restarted");
        thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        match c.get_events(&q, -1, false) {
            Ok((200, body)) => break body,
            // Between the pid file and the restored queues: try again.
            other => assert!(Instant::now() < deadline, "queue not restored: {other:?}"),
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(body["events"][0]["type"], "restart", "{body}");
}

#[test]
fn status_lists_every_process() {
    let server = two_processes();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = std::process::Command::new(squall_e2e::squall_bin())
            .arg("status")
            .env("SQUALL_STATE_DIR", &server.state_dir)
            .env("SQUALL_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.lines().filter(|l| l.contains("running")).count() == 2 {
            assert!(text.starts_with("process"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "two running processes never reported: {text}");
        thread::sleep(Duration::from_millis(100));
    }
}
