//! The HTTP edge: authentication, routing to the backend, methods, bad
//! requests, pipelining, internal endpoints, metrics, and the epoll driver.

mod support;

use serde_json::json;
use support::{config, poll_path, temp_dir, Server, SECRET};

#[test]
fn events_need_valid_credentials() {
    let s = Server::start();
    let q = s.register(7);
    let r = s.client().call("GET", &poll_path(&q, -1), 0, "");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"zulip\""));
    assert_eq!(r.json()["msg"], "Not logged in: API authentication or user session required");
    let mut c = s.client();
    c.send_raw(
        format!("GET {} HTTP/1.1\r\nAuthorization: Basic bm9ib2R5OnBhc3N3b3Jk\r\n\r\n", poll_path(&q, -1)).as_bytes(),
    );
    let r = c.read();
    assert_eq!((r.status, r.json()["msg"].clone()), (401, json!("Invalid API key")));
    let r = s.client().call("GET", &poll_path(&q, -1).replace("/api/v1/", "/json/"), 0, "");
    assert_eq!(r.header("WWW-Authenticate"), Some("Session realm=\"zulip\""), "/json paths get the session challenge");
}

#[test]
fn repeated_polls_authenticate_once_per_credentials() {
    let s = Server::start();
    let q = s.register(7);
    let mut c = s.client();
    for _ in 0..5 {
        assert_eq!(c.call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "").status, 200);
    }
    let calls = s.backend.auth_calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 1, "one connection lives on one core: one backend check");
}

#[test]
fn everything_else_goes_to_the_backend() {
    let s = Server::start();
    let r = s.client().call("GET", "/api/v1/users/me", 7, "");
    assert_eq!((r.status, r.json()), (404, json!({"fake_backend": "GET /api/v1/users/me"})));
    let r = s.client().call("POST", "/api/v1/messages", 0, "");
    assert_eq!(r.status, 401, "the backend's own authentication answer comes back");
}

#[test]
fn other_methods_on_events_are_refused_as_in_zulip() {
    let s = Server::start();
    let r = s.client().call("POST", "/api/v1/events", 7, "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("OPTIONS, GET, DELETE"));
    assert_eq!(r.json(), json!({"result": "error", "msg": "Method Not Allowed", "allowed_methods": ["GET", "DELETE"]}));
    let r = s.client().call("OPTIONS", "/api/v1/events", 7, "");
    assert_eq!((r.status, r.header("Allow")), (204, Some("OPTIONS, GET, DELETE")));
}

#[test]
fn malformed_requests_are_refused_and_closed() {
    let s = Server::start();
    let mut c = s.client();
    c.send_raw(b"\x00\x01 nonsense\r\n\r\n");
    assert_eq!(c.read().status, 400);
    assert!(c.closed());
    let mut c = s.client();
    c.send_raw(b"POST /api/v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.read().status, 411);
    let mut c = s.client();
    c.send_raw(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70_000)).as_bytes());
    assert_eq!(c.read().status, 431);
}

#[test]
fn a_request_pipelined_behind_a_parked_poll_is_served_after_it() {
    let s = Server::start();
    let q = s.register(7);
    let mut c = s.client();
    c.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    // The next request arrives while the poll waits: whether the
    // disconnect watch has read its first bytes or not when the event
    // comes, it must not be lost.
    c.send("GET", "/api/v1/users/me", 7, "");
    s.publish_test_event(&[7], 1);
    assert_eq!(c.read().json()["events"][0]["n"], 1);
    assert_eq!(c.read().json(), json!({"fake_backend": "GET /api/v1/users/me"}));
}

#[test]
fn keep_alive_serves_many_requests_and_connection_close_is_honoured() {
    let s = Server::start();
    let q = s.register(7);
    let mut c = s.client();
    for _ in 0..20 {
        assert_eq!(c.call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "").status, 200);
    }
    c.send_raw(b"GET /api/v1/users/me HTTP/1.1\r\nConnection: close\r\n\r\n");
    let r = c.read();
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(c.closed());
}

#[test]
fn notify_tornado_delivers_zulip_notices_from_loopback_with_the_secret() {
    let s = Server::start();
    let q = s.register(7);
    let mut c = s.client();
    c.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    let data = r#"{"event":{"type":"test","data":"x"},"users":[7]}"#;
    let enc = |v: &str| {
        v.replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace(':', "%3A")
            .replace(',', "%2C")
            .replace('[', "%5B")
            .replace(']', "%5D")
    };
    let r = s.client().call("POST", "/api/internal/notify_tornado", 0, &format!("secret=wrong&data={}", enc(data)));
    assert_eq!((r.status, r.json()["code"].clone()), (403, json!("ACCESS_DENIED")));
    let r = s.client().call("POST", "/api/internal/notify_tornado", 0, &format!("secret={SECRET}&data={}", enc(data)));
    assert_eq!(r.json(), json!({"result": "success", "msg": ""}));
    assert_eq!(c.read().json()["events"], json!([{"type": "test", "data": "x", "id": 0}]));
}

#[test]
fn metrics_report_every_core_for_loopback_scrapers() {
    let s = Server::start();
    s.register(7);
    let r = s.client().call("GET", "/metrics", 0, "");
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    let text = r.text();
    assert!(text.contains("squall_queues{core=\"0\"}") && text.contains("squall_queues{core=\"1\"}"), "{text}");
    let queues: i64 = text
        .lines()
        .filter(|l| l.starts_with("squall_queues{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(queues, 1);
    // The register above was answered at once: it is in some core's
    // request-duration histogram (the +Inf bucket counts every request).
    let answered: i64 = text
        .lines()
        .filter(|l| l.starts_with("squall_request_duration_seconds_count{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert!(answered >= 1, "{text}");
    assert!(text.contains("squall_request_duration_seconds_bucket{core=\"0\",le=\"0.001\"}"), "{text}");
    assert!(text.contains("squall_inbox_depth{core=\"1\"} 0"), "{text}");
    assert!(!text.contains("squall_bus_"), "no event bus on a single node");
}

#[test]
fn the_epoll_driver_serves_long_polls_too() {
    let dir = temp_dir();
    let s = Server::start_with(squall_gateway::Config { io_uring: false, ..config(&dir) });
    let q = s.register(7);
    let mut c = s.client();
    c.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    s.publish_test_event(&[7], 5);
    assert_eq!(c.read().json()["events"][0]["n"], 5);
}

#[test]
fn head_requests_get_headers_only() {
    use std::io::{Read, Write};
    let s = Server::start();
    let q = s.register(7);
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let auth = support::basic(7);
    let path = format!("{}&dont_block=true", poll_path(&q, -1));
    write!(sock, "HEAD {path} HTTP/1.1\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    sock.read_to_string(&mut all).unwrap();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(all.contains("Content-Length: "), "{all}");
    assert!(all.ends_with("\r\n\r\n"), "no body after the head: {all:?}");
}

#[test]
fn health_says_the_process_serves() {
    let s = Server::start();
    let r = s.client().call("GET", "/health", 0, "");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!((v["status"].clone(), v["process"].clone(), v["cores"].clone()), (json!("ok"), json!(0), json!(2)));
}

/// Percent-encodes a form value.
fn form_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn a_clusters_backends_allocate_and_peek_queues_over_http() {
    use squall_proto::queue_spec::QueueSpec;
    use squall_shard_router::placement::Topology;
    let dir = temp_dir();
    // Node 0 of two; the test's two cores are the node's.
    let s = Server::start_with(squall_gateway::Config { nodes: 2, node: 0, ..config(&dir) });
    let topo = Topology { nodes: 2, cores: 2 };
    let mine = (1..).find(|&u| topo.shard_of(u).node == 0).unwrap();
    let theirs = (1..).find(|&u| topo.shard_of(u).node == 1).unwrap();
    let allocate = |user: i64, secret: &str| {
        let spec = serde_json::to_string(&QueueSpec { user_id: user, ..QueueSpec::default() }).unwrap();
        let body = format!("secret={secret}&spec={}", form_value(&spec));
        s.client().call("POST", "/api/internal/squall/allocate_queue", 0, &body)
    };

    let r = allocate(mine, "wrong");
    assert_eq!((r.status, r.json()["code"].clone()), (403, json!("ACCESS_DENIED")));
    let r = allocate(theirs, SECRET);
    assert_eq!(r.status, 400, "another node's user: {}", r.text());
    assert!(r.json()["msg"].as_str().unwrap().contains("node 1"), "{}", r.text());

    let r = allocate(mine, SECRET);
    assert_eq!(r.status, 200, "{}", r.text());
    let q = r.json()["queue_id"].as_str().unwrap().to_owned();
    assert!(q.starts_with("0-"), "the queue id names its node: {q}");
    s.publish_test_event(&[mine], 1);
    let peek = |user: i64, queue: &str| {
        let body = format!("secret={SECRET}&user_id={user}&queue_id={}", form_value(queue));
        s.client().call("POST", "/api/internal/squall/peek_events", 0, &body)
    };
    let r = peek(mine, &q);
    assert_eq!(r.json()["events"], json!([{"type": "test", "n": 1, "id": 0}]), "{}", r.text());
    // Peeking acknowledges nothing: the client's first poll still gets it.
    let r = s.client().call("GET", &poll_path(&q, -1), mine, "");
    assert_eq!(r.json()["events"], json!([{"type": "test", "n": 1, "id": 0}]));
    let r = peek(mine + 1_000_000, &q);
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("BAD_EVENT_QUEUE_ID")), "someone else's queue");
    let r = peek(mine, &q.replacen("0-", "1-", 1));
    assert_eq!((r.status, r.json()["code"].clone()), (400, json!("BAD_EVENT_QUEUE_ID")), "another node's queue");
}
