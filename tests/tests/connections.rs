//! Connection-level behaviour over raw sockets: keep-alive after a
//! long-poll, malformed requests, and the epoll fallback driver.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::Value;
use squall_e2e::{Server, ServerOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Reads one HTTP response (head + Content-Length body) from `s`.
fn read_response(s: &mut TcpStream) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed mid-head: {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() })
}

fn keep_alive_after_long_poll(opts: ServerOptions) {
    let server = Server::start_with(opts).unwrap();
    let (q, _, _) = server.owner.register(&[]).unwrap();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let auth = server.owner.basic_header();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let poll = format!(
        "GET /api/v1/events?queue_id={q}&last_event_id=-1 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\r\n"
    );
    s.write_all(poll.as_bytes()).unwrap();
    server.wait_parked(1).unwrap();
    // An event completes the parked poll ...
    server.owner.subscribe(&["wake-up"]).unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    assert!(!body["events"].as_array().unwrap().is_empty());
    // ... and the same connection keeps serving requests intact, including
    // immediate /events answers (whose socket watch must not swallow the
    // start of the next request).
    let quick = format!(
        "GET /api/v1/events?queue_id={q}&last_event_id=-1&dont_block=true HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\r\n"
    );
    let me = format!("GET /api/v1/users/me HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\r\n");
    for i in 0..40 {
        s.write_all(quick.as_bytes()).unwrap();
        let (status, body) = read_response(&mut s);
        assert_eq!(status, 200, "poll {i}: {body}");
        s.write_all(me.as_bytes()).unwrap();
        let (status, body) = read_response(&mut s);
        assert_eq!(status, 200, "request {i} after a poll: {body}");
        assert_eq!(body["email"], server.owner.email);
    }
}

#[test]
fn keep_alive_after_long_poll_io_uring() {
    keep_alive_after_long_poll(ServerOptions::default());
}

#[test]
fn keep_alive_after_long_poll_epoll() {
    keep_alive_after_long_poll(ServerOptions { io_uring: false, ..ServerOptions::default() });
}

#[test]
fn malformed_requests_get_errors_not_crashes() {
    let server = Server::start().unwrap();
    let addr = server.url.trim_start_matches("http://").to_owned();
    for raw in [
        "\x00\x01\x02 garbage\r\n\r\n".to_owned(),
        "POST /api/v1/messages HTTP/1.1\r\nContent-Length: nope\r\n\r\n".to_owned(),
        "POST /api/v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned(),
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000)),
    ] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let (status, body) = read_response(&mut s);
        assert!((400..500).contains(&status), "{status} {body}");
        assert_eq!(body["result"], "error");
    }
    // The server is still fine.
    assert_eq!(server.owner.get("/api/v1/users/me", &[]).unwrap().0, 200);
}

#[test]
fn head_responses_have_no_body() {
    let server = Server::start().unwrap();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("HEAD /api/v1/server_settings HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    // Read the head only: a HEAD response announces a length but sends nothing.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    // The next response on the connection must start right after the head.
    s.write_all(format!("GET /api/v1/server_settings HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200);
    assert!(body["zulip_version"].is_string());
}

/// Whether the server closes `s` (EOF) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
}

#[test]
fn silent_slow_and_unfinished_clients_are_closed_and_big_anonymous_bodies_refused() {
    let secs = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let opts = ServerOptions {
        env: vec![
            secs("SQUALL_HEADER_TIMEOUT_SECS", "1"),
            secs("SQUALL_BODY_TIMEOUT_SECS", "1"),
            secs("SQUALL_IDLE_TIMEOUT_SECS", "2"),
        ],
        ..ServerOptions::default()
    };
    let server = Server::start_with(opts).unwrap();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let auth = server.owner.basic_header();

    let mut silent = TcpStream::connect(&addr).unwrap();
    let mut slowloris = TcpStream::connect(&addr).unwrap();
    slowloris.write_all(b"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A body announced as 16 MB with 3 bytes sent, from a real user.
    let mut unfinished = TcpStream::connect(&addr).unwrap();
    let head = format!("POST /api/v1/messages HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Length: 16000000\r\n\r\nabc");
    unfinished.write_all(head.as_bytes()).unwrap();
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(
        format!("GET /api/v1/users/me HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(read_response(&mut idle).0, 200);

    // Generous bounds: the deadlines are 1-2 s, swept once a second.
    let bound = Duration::from_secs(15);
    assert!(closed_within(&mut silent, bound), "a connection that sends nothing is closed");
    slowloris.write_all(b"X-Slow: 1\r\n").unwrap();
    assert!(closed_within(&mut slowloris, bound), "a head that trickles in is closed");
    assert!(closed_within(&mut unfinished, bound), "a body that never completes is closed");
    assert!(closed_within(&mut idle, bound), "an idle keep-alive connection is closed");

    // A large body without credentials is refused before it is sent.
    let mut anonymous = TcpStream::connect(&addr).unwrap();
    anonymous
        .write_all(
            format!("POST /api/v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 16000000\r\n\r\n").as_bytes(),
        )
        .unwrap();
    anonymous.set_read_timeout(Some(bound)).unwrap();
    let (status, body) = read_response(&mut anonymous);
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")), "{body}");

    // Two different Content-Length headers: 400, whatever they say.
    let mut smuggler = TcpStream::connect(&addr).unwrap();
    smuggler
        .write_all(
            format!("POST /api/v1/messages HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello")
                .as_bytes(),
        )
        .unwrap();
    smuggler.set_read_timeout(Some(bound)).unwrap();
    assert_eq!(read_response(&mut smuggler).0, 400);
}
