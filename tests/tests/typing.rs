//! `POST /typing`: Zulip's test_typing behaviours over HTTP.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::json;
use squall_e2e::{assert_error, assert_schema, Server};

#[test]
fn typing_errors() {
    let server = Server::start().unwrap();
    let o = &server.owner;
    let t = |form: &[(&str, &str)]| o.post("/api/v1/typing", form).unwrap();
    assert_error(&t(&[("to", "[1]")]), 400, "REQUEST_VARIABLE_MISSING", "Missing 'op' argument");
    assert_error(&t(&[("op", "foo"), ("to", "[1]")]), 400, "BAD_REQUEST", "Invalid op");
    assert_error(&t(&[("type", "fax"), ("op", "start"), ("to", "[1]")]), 400, "BAD_REQUEST", "Invalid type");
    assert_error(&t(&[("op", "start")]), 400, "REQUEST_VARIABLE_MISSING", "Missing 'to' argument");
    assert_error(&t(&[("op", "start"), ("to", "1")]), 400, "BAD_REQUEST", "to is not a list");
    assert_error(&t(&[("op", "start"), ("to", r#"[1, "x"]"#)]), 400, "BAD_REQUEST", "to[1] is not an integer");
    assert_error(&t(&[("op", "start"), ("to", "[]")]), 400, "BAD_REQUEST", "Empty 'to' list");
    assert_error(&t(&[("op", "start"), ("to", "[9999999]")]), 400, "BAD_REQUEST", "Invalid user ID 9999999");
    assert_error(
        &t(&[("type", "stream"), ("op", "start"), ("topic", "t")]),
        400,
        "REQUEST_VARIABLE_MISSING",
        "Missing 'stream_id' argument",
    );
    assert_error(
        &t(&[("type", "stream"), ("op", "start"), ("stream_id", "x"), ("topic", "t")]),
        400,
        "BAD_REQUEST",
        "stream_id is not valid JSON",
    );
    assert_error(&t(&[("type", "stream"), ("op", "start"), ("stream_id", "1")]), 400, "BAD_REQUEST", "Missing topic");
    assert_error(
        &t(&[("type", "stream"), ("op", "start"), ("stream_id", "999"), ("topic", "t")]),
        400,
        "BAD_REQUEST",
        "Invalid channel ID",
    );
}

#[test]
fn direct_typing_reaches_every_participant_including_the_sender() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let queues: Vec<String> = [&server.owner, &alice, &bob].iter().map(|c| c.register(&[]).unwrap().0).collect();
    let (status, body) =
        alice.post("/api/v1/typing", &[("op", "start"), ("to", &format!("[{}]", bob.user_id))]).unwrap();
    assert_eq!(status, 200);
    assert_schema("/typing", "post", 200, &body);
    let expected = json!({"type": "typing", "message_type": "direct", "op": "start",
        "sender": {"user_id": alice.user_id, "email": "alice@example.com"},
        "recipients": [{"user_id": alice.user_id, "email": "alice@example.com"}, {"user_id": bob.user_id, "email": "bob@example.com"}],
        "id": 0});
    for (c, q) in [(&alice, &queues[1]), (&bob, &queues[2])] {
        let (_, events) = c.get_events(q, -1, true).unwrap();
        assert_eq!(events["events"], json!([expected]));
        assert_schema("/events", "get", 200, &events);
    }
    let (_, events) = server.owner.get_events(&queues[0], -1, true).unwrap();
    assert_eq!(events["events"], json!([]), "not a participant");

    // Typing to yourself notifies only yourself.
    alice.post("/api/v1/typing", &[("op", "stop"), ("to", &format!("[{}]", alice.user_id))]).unwrap();
    let (_, events) = alice.get_events(&queues[1], 0, true).unwrap();
    assert_eq!(events["events"][0]["recipients"], json!([{"user_id": alice.user_id, "email": "alice@example.com"}]));
    let (_, events) = bob.get_events(&queues[2], 0, true).unwrap();
    assert_eq!(events["events"], json!([]));
}

#[test]
fn stream_typing_needs_the_capability() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (capable, _, _) = alice
        .register(&[(
            "client_capabilities",
            r#"{"notification_settings_null": true, "stream_typing_notifications": true}"#,
        )])
        .unwrap();
    let (plain, _, _) = alice.register(&[]).unwrap();
    let (status, _) = server
        .owner
        .post("/api/v1/typing", &[("type", "stream"), ("op", "start"), ("stream_id", "1"), ("topic", "lunch")])
        .unwrap();
    assert_eq!(status, 200);
    let (_, events) = alice.get_events(&capable, -1, true).unwrap();
    assert_eq!(events["events"][0]["stream_id"], 1);
    assert_eq!(events["events"][0]["topic"], "lunch");
    assert_eq!(events["events"][0]["message_type"], "stream");
    assert_schema("/events", "get", 200, &events);
    let (_, events) = alice.get_events(&plain, -1, true).unwrap();
    assert_eq!(events["events"], json!([]));
}
