//! What a client can make the gateway hold: deadlines on connections that
//! wait for their client, large bodies only from good credentials, room
//! made for new clients by shedding waiting connections, never parked
//! polls.

mod support;

use std::time::Duration;
use support::{basic, config, poll_path, temp_dir, Server};

/// A server with 10 s head, 15 s body and 20 s idle deadlines (heartbeats
/// at 45 s), on a manual clock.
fn server(max_connections: usize, max_unserved: usize) -> Server {
    let mut cfg = config(&temp_dir());
    cfg.limits.header_timeout = Duration::from_secs(10);
    cfg.limits.body_timeout = Duration::from_secs(15);
    cfg.limits.idle_timeout = Duration::from_secs(20);
    cfg.limits.max_connections = max_connections;
    cfg.limits.max_unserved = max_unserved;
    // One core: shedding picks among the accepting core's connections.
    cfg.cores = 1;
    Server::start_with(cfg)
}

#[test]
fn waiting_connections_are_closed_at_their_deadlines_and_parked_polls_are_not() {
    let s = server(0, 1000);
    let q = s.register(7);
    let mut parked = s.client();
    parked.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);

    let mut silent = s.client();
    let mut trickling = s.client();
    trickling.send_raw(b"GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\n");
    let mut no_body = s.client();
    no_body.send_raw(
        format!("POST /api/v1/messages HTTP/1.1\r\nAuthorization: {}\r\nContent-Length: 10\r\n\r\nab", basic(7))
            .as_bytes(),
    );
    let mut idle = s.client();
    assert_eq!(idle.call("GET", "/api/v1/users/me", 7, "").status, 404, "the fake backend answered");
    s.wait_for("5 connections", |t| t.connections == 5);

    // 9 s: nothing is due yet.
    s.clock.advance(9);
    s.wait_ticks();
    s.wait_ticks();
    assert_eq!(s.totals().connections, 5, "no deadline has passed");
    trickling.send_raw(b"Accept: */*\r\n");

    // 11 s: the silent one and the trickling head are due (10 s from the
    // accept however the head trickles in).
    s.clock.advance(2);
    assert!(silent.closed(), "silent connection closed at the head deadline");
    assert!(trickling.closed(), "a head trickling in is closed 10 s after it began");
    s.wait_for("3 connections", |t| t.connections == 3);

    // 16 s: the body that never came; 21 s: the idle keep-alive connection.
    s.clock.advance(5);
    assert!(no_body.closed(), "an incomplete body is closed at its deadline");
    s.clock.advance(5);
    assert!(idle.closed(), "an idle keep-alive connection is closed at its deadline");
    s.wait_for("the parked poll alone", |t| t.connections == 1 && t.parked == 1);

    // The parked poll is governed by heartbeats, not deadlines.
    s.clock.advance(24);
    let r = parked.read();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["events"][0]["type"], "heartbeat", "{}", r.text());
}

#[test]
fn a_poll_answered_and_not_followed_waits_the_idle_deadline() {
    let s = server(0, 1000);
    let q = s.register(7);
    let mut c = s.client();
    c.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    s.publish_test_event(&[7], 1);
    assert_eq!(c.read().status, 200);
    // The read that waits for the next poll stays in flight; its idle
    // deadline counts from the answer.
    s.clock.advance(19);
    s.wait_ticks();
    s.wait_ticks();
    assert_eq!(s.totals().connections, 1);
    s.clock.advance(2);
    assert!(c.closed(), "no next poll within the idle deadline: closed");
}

#[test]
fn a_large_body_needs_good_credentials_before_it_is_read() {
    let s = server(0, 1000);
    let big = 1024 * 1024;
    // Head only: the answer comes without the body ever being sent.
    let mut anonymous = s.client();
    anonymous
        .send_raw(format!("POST /api/v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n").as_bytes());
    let r = anonymous.read();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["msg"], "Not logged in: API authentication or user session required");
    assert!(anonymous.closed(), "refused before the body: the connection closes");

    let mut bad = s.client();
    bad.send_raw(
        format!("POST /api/v1/messages HTTP/1.1\r\nAuthorization: Basic bm9ib2R5OnBhc3N3b3Jk\r\nContent-Length: {big}\r\n\r\nxx")
            .as_bytes(),
    );
    assert_eq!(bad.read().json()["msg"], "Invalid API key");

    // Good credentials: the body is read and the request served.
    let mut good = s.client();
    let body = "a".repeat(big);
    good.send("POST", "/api/v1/messages", 7, &body);
    let r = good.read();
    assert_eq!(r.status, 404, "reached the backend: {}", r.text());
    // Small bodies go to the backend without a check first.
    let checks = s.backend.auth_calls.load(std::sync::atomic::Ordering::SeqCst);
    let r = s.client().call("POST", "/api/v1/fetch_api_key", 0, "username=a&password=b");
    assert_eq!(r.status, 401, "the fake backend's own answer: {}", r.text());
    assert_eq!(s.backend.auth_calls.load(std::sync::atomic::Ordering::SeqCst), checks);
}

#[test]
fn at_the_connection_bound_waiting_connections_make_room_and_parked_polls_stay() {
    let s = server(4, 1000);
    let queues: Vec<String> = (7..=10).map(|u| s.register(u)).collect();
    s.wait_for("no connections", |t| t.connections == 0);
    let mut parked = s.client();
    parked.send("GET", &poll_path(&queues[0], -1), 7, "");
    s.wait_parked(1);
    let mut idle = s.client();
    assert_eq!(idle.call("GET", "/api/v1/users/me", 7, "").status, 404);
    let mut oldest = s.client();
    s.wait_for("3 connections", |t| t.connections == 3);
    s.clock.advance_ms(10);
    let mut newer = s.client();
    s.wait_for("4 connections", |t| t.connections == 4);

    // At the bound, a new client gets in: first the connections that never
    // sent a request go, oldest first...
    let mut fifth = s.client();
    assert_eq!(fifth.call("GET", "/api/v1/users/me", 7, "").status, 404);
    assert!(oldest.closed(), "the oldest unserved connection was shed");
    assert!(!newer.has_data(), "one at a time");
    let mut sixth = s.client();
    assert_eq!(sixth.call("GET", "/api/v1/users/me", 7, "").status, 404);
    assert!(newer.closed());
    // ...then idle keep-alive ones, oldest first.
    let mut seventh = s.client();
    assert_eq!(seventh.call("GET", "/api/v1/users/me", 7, "").status, 404);
    assert!(idle.closed(), "idle keep-alive connections go after unserved ones");
    s.wait_for("4 connections, 1 parked", |t| t.connections == 4 && t.parked == 1);

    // Parked polls never go: with 4 parked there is no room, and a new
    // client is turned away with a 503.
    drop((fifth, sixth));
    s.wait_for("2 connections", |t| t.connections == 2);
    let mut more_parked = Vec::new();
    for (q, user) in queues[1..3].iter().zip(8..) {
        let mut c = s.client();
        c.send("GET", &poll_path(q, -1), user, "");
        more_parked.push(c);
    }
    s.wait_parked(3);
    let mut eighth = s.client();
    assert_eq!(eighth.call("GET", "/api/v1/users/me", 7, "").status, 404);
    assert!(seventh.closed());
    eighth.send("GET", &poll_path(&queues[3], -1), 10, "");
    s.wait_parked(4);
    let r = s.client().call("GET", "/api/v1/users/me", 7, "");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(s.totals().parked, 4, "no parked poll was shed");
    drop((parked, more_parked, eighth));
}

#[test]
fn past_the_unserved_bound_the_oldest_silent_connection_goes() {
    let s = server(0, 2);
    let mut oldest = s.client();
    s.wait_for("1 connection", |t| t.connections == 1);
    s.clock.advance_ms(10);
    let mut newer = s.client();
    s.wait_for("2 connections", |t| t.connections == 2);
    let mut third = s.client();
    assert_eq!(third.call("GET", "/api/v1/users/me", 7, "").status, 404);
    assert!(oldest.closed(), "the oldest silent connection made room");
    s.wait_for("newer and third", |t| t.connections == 2);
    assert!(!newer.has_data());
}
