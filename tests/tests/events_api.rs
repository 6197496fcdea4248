//! `GET`/`DELETE /events` over real HTTP: creation with dont_block,
//! supersession, deletion, BAD_EVENT_QUEUE_ID, heartbeats, /json paths.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::json;
use squall_e2e::{assert_error, assert_schema, Server, ServerOptions};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn dont_block_without_queue_id_creates_a_queue() {
    let server = Server::start().unwrap();
    let (status, body) = server.owner.get("/json/events", &[("dont_block", "true")]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], json!([]));
    let q = body["queue_id"].as_str().unwrap().to_owned();
    let (status, body) = server.owner.get_events(&q, -1, true).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.get("queue_id").is_none(), "immediate responses on existing queues have no queue_id");
    assert_error(&server.owner.get("/api/v1/events", &[]).unwrap(), 400, "BAD_REQUEST", "Missing 'queue_id' argument");
}

#[test]
fn queue_errors_are_zulips() {
    let server = Server::start().unwrap();
    let other = server.create_user("other@example.com", "Other").unwrap();
    let (q, _, _) = server.owner.register(&[]).unwrap();
    for bad in ["nope", "0-0-00000000000000000000000000000000", "9-9-00000000000000000000000000000000"] {
        let r = server.owner.get_events(bad, -1, true).unwrap();
        assert_schema("/events", "get", 400, &r.1);
        assert_error(&r, 400, "BAD_EVENT_QUEUE_ID", &format!("Bad event queue ID: {bad}"));
        assert_eq!(r.1["queue_id"], bad);
    }
    // Another user's queue is indistinguishable from a missing one.
    assert_error(
        &other.get_events(&q, -1, true).unwrap(),
        400,
        "BAD_EVENT_QUEUE_ID",
        &format!("Bad event queue ID: {q}"),
    );
    assert_error(
        &server.owner.get("/api/v1/events", &[("queue_id", &q)]).unwrap(),
        400,
        "BAD_REQUEST",
        "Missing 'last_event_id' argument",
    );
    assert_error(&server.owner.get_events(&q, 5, true).unwrap(), 400, "BAD_REQUEST", "Event 5 was not in this queue");
    assert_error(
        &server.owner.get("/api/v1/events", &[("queue_id", &q), ("last_event_id", "x")]).unwrap(),
        400,
        "BAD_REQUEST",
        "last_event_id is not valid JSON",
    );
    let (status, body, headers) = server.owner.raw("POST", "/api/v1/events", &[], "").unwrap();
    assert_eq!(status, 405, "{body}");
    assert_eq!(headers["allow"], "OPTIONS, GET, DELETE");
}

#[test]
fn a_new_poll_completes_the_parked_one_and_delete_removes_the_queue() {
    let server = Server::start().unwrap();
    let (q, _, _) = server.owner.register(&[]).unwrap();
    let first = {
        let (c, q) = (server.owner.clone(), q.clone());
        thread::spawn(move || c.get_events(&q, -1, false).unwrap())
    };
    server.wait_parked(1).unwrap();
    let second = {
        let (c, q) = (server.owner.clone(), q.clone());
        thread::spawn(move || c.get_events(&q, -1, false).unwrap())
    };
    let (status, body) = first.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["events"], json!([]));
    assert_eq!(body["queue_id"], json!(q));

    // DELETE completes the second poll and forgets the queue.
    server.wait_parked(1).unwrap();
    let (status, body) = server.owner.delete("/api/v1/events", &[("queue_id", &q)]).unwrap();
    assert_eq!((status, body), (200, json!({"result": "success", "msg": ""})));
    let (status, _) = second.join().unwrap();
    assert_eq!(status, 200);
    assert_error(
        &server.owner.get_events(&q, -1, true).unwrap(),
        400,
        "BAD_EVENT_QUEUE_ID",
        &format!("Bad event queue ID: {q}"),
    );
}

#[test]
fn parked_polls_get_heartbeats() {
    // Heartbeat after exactly 1 s for the test (Zulip: 45 s + 0..10 s).
    let server = Server::start_with(ServerOptions {
        heartbeat_min_secs: 1,
        heartbeat_jitter_secs: 0,
        ..ServerOptions::default()
    })
    .unwrap();
    let (q, _, _) = server.owner.register(&[]).unwrap();
    let started = Instant::now();
    let (status, body) = server.owner.get_events(&q, -1, false).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["events"], json!([{"type": "heartbeat", "id": 0}]));
    assert_schema("/events", "get", 200, &body);
    assert!(started.elapsed() >= Duration::from_millis(900), "heartbeat came too early");
    // The heartbeat must be acknowledged like any event.
    let (status, body) = server.owner.get_events(&q, 0, true).unwrap();
    assert_eq!((status, body["events"].clone()), (200, json!([])));
}

#[test]
fn register_sees_events_that_race_it_and_subscription_events_flow() {
    let server = Server::start().unwrap();
    let (q, _, state) = server.owner.register(&[]).unwrap();
    assert!(state["subscriptions"].as_array().unwrap().iter().any(|s| s["name"] == "general"));
    assert_eq!(state["realm_users"].as_array().unwrap().len(), 1);
    assert_eq!(state["event_queue_longpoll_timeout_seconds"], 90);
    server.owner.subscribe(&["fresh"]).unwrap();
    let (_, body) = server.owner.get_events(&q, -1, true).unwrap();
    let types: Vec<&str> = body["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"stream") && types.contains(&"subscription"), "{body}");
    let sub = body["events"].as_array().unwrap().iter().find(|e| e["type"] == "subscription").unwrap();
    assert_eq!(sub["op"], "add");
    assert_eq!(sub["subscriptions"][0]["name"], "fresh");

    // fetch_event_types selects state independently of event_types.
    let (_, _, state) = server
        .owner
        .register(&[("event_types", r#"["realm_emoji"]"#), ("fetch_event_types", r#"["message"]"#)])
        .unwrap();
    assert!(state.get("max_message_id").is_some());
    assert!(state.get("realm_users").is_none());
}

#[test]
fn graceful_shutdown_on_sigterm() {
    let mut server = Server::start().unwrap();
    let (q, _, _) = server.owner.register(&[]).unwrap();
    let poll = {
        let (c, q) = (server.owner.clone(), q.clone());
        thread::spawn(move || c.get_events(&q, -1, false))
    };
    server.wait_parked(1).unwrap();
    assert!(server.stop_gracefully().unwrap(), "squall serve exits 0 on SIGTERM");
    // The parked poll was answered with what the queue had, not left hanging.
    let (status, body) = poll.join().unwrap().unwrap();
    assert_eq!((status, body["events"].clone(), body["queue_id"].clone()), (200, json!([]), json!(q)));
}

#[test]
fn queues_survive_a_restart_with_their_pending_events() {
    let mut server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["message", "restart"]"#)]).unwrap();
    let (qm, _, _) = alice.register(&[("event_types", r#"["message"]"#)]).unwrap();
    // An event arrives and is not yet fetched.
    let id = server.owner.send_stream("general", "before restart", "hello @**Alice**").unwrap();
    assert!(server.restart().unwrap(), "squall serve exits 0 on SIGTERM");

    let alice = server.client_for(&alice);
    let (status, body) = alice.get_events(&q, -1, true).unwrap();
    assert_eq!(status, 200, "same queue id after the restart: {body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{body}");
    assert_eq!(events[0]["type"], "message");
    assert_eq!(events[0]["message"]["id"], id);
    assert_eq!(events[0]["flags"], json!(["mentioned"]));
    assert_eq!(events[1]["type"], "restart");
    assert!(events[1]["id"].as_i64() > events[0]["id"].as_i64());
    assert_eq!(events[1]["zulip_feature_level"], 313);
    assert_schema("/events", "get", 200, &body);
    assert!(events[1]["server_generation"].as_i64().unwrap() > 0);
    // The message-only queue survived too, without the restart event.
    let (_, body) = alice.get_events(&qm, -1, true).unwrap();
    let types: Vec<&str> = body["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["message"]);

    // And it keeps working: acknowledge, park, receive something new.
    let last = events[1]["id"].as_i64().unwrap();
    let poll = {
        let (alice, q) = (alice.clone(), q.clone());
        thread::spawn(move || alice.get_events(&q, last, false).unwrap())
    };
    server.wait_parked(1).unwrap();
    let id2 = server.owner.send_stream("general", "after restart", "again").unwrap();
    let (status, body) = poll.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["events"][0]["message"]["id"], id2);
    assert_eq!(body["queue_id"], json!(q));
}

fn secret(server: &Server) -> String {
    std::fs::read_to_string(server.state_dir.join("shared_secret")).unwrap()
}

#[test]
fn notify_tornado_completes_a_parked_poll_and_checks_its_secret() {
    let server = Server::start().unwrap();
    let anon = squall_e2e::Client::anonymous(&server.url);
    let path = "/api/internal/notify_tornado";
    let data = json!({"event": {"type": "test", "data": "test data"}, "users": [1]}).to_string();
    assert_error(
        &anon.post(path, &[("data", &data)]).unwrap(),
        400,
        "REQUEST_VARIABLE_MISSING",
        "Missing 'secret' argument",
    );
    assert_error(
        &anon.post(path, &[("data", &data), ("secret", "wrong")]).unwrap(),
        403,
        "ACCESS_DENIED",
        "Access denied",
    );
    let s = secret(&server);
    assert_error(
        &anon.post(path, &[("secret", &s)]).unwrap(),
        400,
        "REQUEST_VARIABLE_MISSING",
        "Missing 'data' argument",
    );

    let (q, _, _) = server.owner.register(&[]).unwrap();
    let poll = {
        let (c, q) = (server.owner.clone(), q.clone());
        thread::spawn(move || {
            c.raw(
                "GET",
                &format!("/api/v1/events?queue_id={q}&last_event_id=-1"),
                &[("Authorization", &c.basic_header())],
                "",
            )
            .unwrap()
        })
    };
    server.wait_parked(1).unwrap();
    let (status, body) = anon.post(path, &[("data", &data), ("secret", &s)]).unwrap();
    assert_eq!((status, body["result"].clone()), (200, json!("success")), "{body}");
    let (status, body, headers) = poll.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["events"], json!([{"type": "test", "data": "test data", "id": 0}]));
    assert_eq!(body["result"], "success");
    assert_eq!(headers["vary"], "Accept-Language, Cookie");
}

#[test]
fn only_restored_queues_are_told_to_reload() {
    let mut server = Server::start().unwrap();
    let (old, _, _) = server.owner.register(&[]).unwrap();
    server.restart().unwrap();
    let (new, _, _) = server.owner.register(&[]).unwrap();
    let anon = squall_e2e::Client::anonymous(&server.url);
    let s = secret(&server);
    let path = "/api/internal/web_reload_clients";
    let (status, body) = anon.post(path, &[("client_count", "1"), ("secret", &s)]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["sent_events"].clone(), body["complete"].clone()), (json!(1), json!(false)));
    let (_, body) = anon.post(path, &[("client_count", "5"), ("secret", &s)]).unwrap();
    assert_eq!(
        (body["sent_events"].clone(), body["complete"].clone()),
        (json!(0), json!(true)),
        "each queue is told once"
    );

    let (_, events) = server.owner.get_events(&old, -1, true).unwrap();
    let types: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["restart", "web_reload_client"]);
    assert_eq!(events["events"][1], json!({"type": "web_reload_client", "immediate": false, "id": 1}));
    assert_schema("/events", "get", 200, &events);
    let (_, events) = server.owner.get_events(&new, -1, true).unwrap();
    assert_eq!(events["events"], json!([]), "queues made after the restart are not restored ones");
}
