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
