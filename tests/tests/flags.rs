//! Message flags over HTTP: Zulip's test_message_flags behaviours.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{assert_error, assert_schema, Client, Server};

fn flags_of(c: &Client, id: i64, narrow: &str) -> Vec<String> {
    let (status, body) = c
        .get(
            "/api/v1/messages",
            &[("anchor", &id.to_string()), ("num_before", "0"), ("num_after", "0"), ("narrow", narrow)],
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let m = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {body}"));
    m["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect()
}

fn set(c: &Client, op: &str, flag: &str, ids: &[i64]) -> (u16, Value) {
    c.post("/api/v1/messages/flags", &[("messages", &json!(ids).to_string()), ("op", op), ("flag", flag)]).unwrap()
}

#[test]
fn invalid_flags_and_operations() {
    let server = Server::start().unwrap();
    let id = server.owner.send_stream("general", "t", "x").unwrap();
    for bad in ["invalid", "is_private", "active_mobile_push_notification"] {
        assert_error(&set(&server.owner, "add", bad, &[id]), 400, "BAD_REQUEST", &format!("Invalid flag: '{bad}'"));
    }
    assert_error(&set(&server.owner, "add", "mentioned", &[id]), 400, "BAD_REQUEST", "Flag not editable: 'mentioned'");
    assert_error(
        &set(&server.owner, "bogus", "read", &[id]),
        400,
        "BAD_REQUEST",
        "Invalid message flag operation: 'bogus'",
    );
    let r = server.owner.post("/api/v1/messages/flags", &[("op", "add"), ("flag", "read")]).unwrap();
    assert_error(&r, 400, "REQUEST_VARIABLE_MISSING", "Missing 'messages' argument");
}

#[test]
fn read_and_starred_round_trip_with_events() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["update_message_flags"]"#)]).unwrap();
    let id = server.owner.send_stream("general", "t", "hello").unwrap();
    let general = r#"[["stream", "general"]]"#;
    assert!(flags_of(&alice, id, general).is_empty(), "others' messages arrive unread");

    let (status, body) = set(&alice, "add", "read", &[id]);
    assert_eq!((status, body["messages"].clone()), (200, json!([id])));
    assert_schema("/messages/flags", "post", 200, &body);
    assert_eq!(flags_of(&alice, id, general), vec!["read"]);
    // Already read: nothing changes, but the event still comes (empty).
    set(&alice, "add", "read", &[id]);
    set(&alice, "add", "starred", &[id]);
    set(&alice, "remove", "read", &[id]);
    assert_eq!(flags_of(&alice, id, general), vec!["starred"]);

    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let evs = events["events"].as_array().unwrap();
    // The two add/read events were merged into one (virtual events).
    let kinds: Vec<(String, String, Value)> = evs
        .iter()
        .map(|e| (e["op"].as_str().unwrap().into(), e["flag"].as_str().unwrap().into(), e["messages"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("add".into(), "read".into(), json!([id])),
            ("add".into(), "starred".into(), json!([id])),
            ("remove".into(), "read".into(), json!([id]))
        ]
    );
    let remove = &evs[2];
    assert_eq!(
        remove["message_details"][id.to_string()],
        json!({"type": "stream", "stream_id": 1, "topic": "t", "unmuted_stream_msg": true})
    );
}

#[test]
fn historical_rows_and_access() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    server.owner.subscribe(&["open"]).unwrap();
    let public = server.owner.send_stream("open", "t", "public").unwrap();
    // Alice is not subscribed: she has no row, yet may star it.
    let (status, _) = set(&alice, "add", "starred", &[public]);
    assert_eq!(status, 200);
    assert_eq!(flags_of(&alice, public, r#"[["stream", "open"]]"#), vec!["read", "starred", "historical"]);
    // Marking it unread is silently ignored: she is not subscribed.
    let (status, body) = set(&alice, "remove", "read", &[public]);
    assert_eq!((status, body["messages"].clone()), (200, json!([public])));
    assert_eq!(flags_of(&alice, public, r#"[["stream", "open"]]"#), vec!["read", "starred", "historical"]);

    let subs = json!([{"name": "secret"}]).to_string();
    server.owner.post("/api/v1/users/me/subscriptions", &[("subscriptions", &subs), ("invite_only", "true")]).unwrap();
    let private = server.owner.send_stream("secret", "t", "private").unwrap();
    assert_error(&set(&alice, "add", "starred", &[private]), 400, "BAD_REQUEST", "Invalid message(s)");
    let (_, dm) = server
        .owner
        .post("/api/v1/messages", &[("type", "direct"), ("to", &format!("[{}]", bob.user_id)), ("content", "psst")])
        .unwrap();
    assert_error(
        &set(&alice, "add", "starred", &[dm["id"].as_i64().unwrap()]),
        400,
        "BAD_REQUEST",
        "Invalid message(s)",
    );
    // Nothing was half-applied.
    assert_eq!(flags_of(&alice, public, r#"[["stream", "open"]]"#), vec!["read", "starred", "historical"]);
}

#[test]
fn mark_all_stream_and_topic_as_read() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    alice.subscribe(&["other"]).unwrap();
    server.owner.subscribe(&["other"]).unwrap();
    let a = server.owner.send_stream("general", "one", "a").unwrap();
    let b = server.owner.send_stream("general", "two", "b").unwrap();
    let c = server.owner.send_stream("other", "x", "c").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["update_message_flags"]"#)]).unwrap();

    let r = alice.post("/api/v1/mark_topic_as_read", &[("stream_id", "1"), ("topic_name", "nope")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "No such topic 'nope'");
    assert_error(
        &alice.post("/api/v1/mark_stream_as_read", &[("stream_id", "999")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid channel ID",
    );
    let (status, _) = alice.post("/api/v1/mark_topic_as_read", &[("stream_id", "1"), ("topic_name", "ONE")]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(flags_of(&alice, a, "[]"), vec!["read"]);
    assert!(flags_of(&alice, b, "[]").is_empty());
    alice.post("/api/v1/mark_stream_as_read", &[("stream_id", "1")]).unwrap();
    assert_eq!(flags_of(&alice, b, "[]"), vec!["read"]);
    assert!(flags_of(&alice, c, "[]").is_empty());
    let (status, body) = alice.post("/api/v1/mark_all_as_read", &[]).unwrap();
    assert_eq!((status, body["complete"].clone()), (200, json!(true)));
    assert_eq!(flags_of(&alice, c, "[]"), vec!["read"]);

    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let evs = events["events"].as_array().unwrap();
    assert_eq!(evs.last().unwrap()["all"], true);
    assert_eq!(evs.last().unwrap()["messages"], json!([]));
    let read_ids: Vec<Value> =
        evs.iter().filter(|e| e["all"] == false).flat_map(|e| e["messages"].as_array().unwrap().clone()).collect();
    assert_eq!(read_ids, vec![json!(a), json!(b)]);
}

#[test]
fn register_reports_unread_messages_grouped_like_zulip() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let s1 = server.owner.send_stream("general", "one", "hi @**Alice**").unwrap();
    let s2 = server.owner.send_stream("general", "one", "again").unwrap();
    let (_, dm) = server
        .owner
        .post("/api/v1/messages", &[("type", "direct"), ("to", &format!("[{}]", alice.user_id)), ("content", "dm")])
        .unwrap();
    let dm = dm["id"].as_i64().unwrap();
    let to = format!("[{}, {}]", alice.user_id, bob.user_id);
    let (_, group) =
        server.owner.post("/api/v1/messages", &[("type", "direct"), ("to", &to), ("content", "group")]).unwrap();
    let group = group["id"].as_i64().unwrap();
    set(&alice, "add", "read", &[s2]);

    let (_, _, state) = alice.register(&[]).unwrap();
    assert_schema("/register", "post", 200, &state);
    let u = &state["unread_msgs"];
    assert_eq!(u["count"], 3);
    assert_eq!(u["streams"], json!([{"stream_id": 1, "topic": "one", "unread_message_ids": [s1]}]));
    assert_eq!(u["pms"], json!([{"other_user_id": 1, "sender_id": 1, "unread_message_ids": [dm]}]));
    let ids_string = format!("1,{},{}", alice.user_id, bob.user_id);
    assert_eq!(u["huddles"], json!([{"user_ids_string": ids_string, "unread_message_ids": [group]}]));
    assert_eq!(u["mentions"], json!([s1]));
    assert_eq!(u["old_unreads_missing"], false);
    // Only with both message and update_message_flags wanted.
    let (_, _, state) = alice.register(&[("fetch_event_types", r#"["message"]"#)]).unwrap();
    assert!(state.get("unread_msgs").is_none());
}

#[test]
fn flags_by_narrow_update_a_range_and_report_it() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let ids: Vec<i64> = (0..5).map(|i| server.owner.send_stream("general", "t", &format!("m{i}")).unwrap()).collect();
    let other = server.owner.send_stream("general", "elsewhere", "not in the narrow").unwrap();
    let narrow = json!([{"operator": "channel", "operand": "general"}, {"operator": "topic", "operand": "t"}]);
    let call = |anchor: &str, before: &str, after: &str, include: &str| {
        alice
            .post(
                "/api/v1/messages/flags/narrow",
                &[
                    ("anchor", anchor),
                    ("num_before", before),
                    ("num_after", after),
                    ("include_anchor", include),
                    ("narrow", &narrow.to_string()),
                    ("op", "add"),
                    ("flag", "read"),
                ],
            )
            .unwrap()
    };
    // The first two after the oldest (the "oldest" anchor is no message).
    let (status, body) = call("oldest", "0", "2", "true");
    assert_eq!(status, 200, "{body}");
    assert_schema("/messages/flags/narrow", "post", 200, &body);
    assert_eq!(
        (&body["processed_count"], &body["updated_count"], &body["first_processed_id"], &body["last_processed_id"]),
        (&json!(2), &json!(2), &json!(ids[0]), &json!(ids[1]))
    );
    assert_eq!((&body["found_oldest"], &body["found_newest"]), (&json!(true), &json!(false)));
    // From the second to the newest: only the three unread ones change.
    let (status, body) = call(&ids[1].to_string(), "0", "100", "true");
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["processed_count"], &body["updated_count"]), (&json!(4), &json!(3)));
    assert_eq!(body["found_newest"], json!(true));
    let general_t = r#"[["stream", "general"], ["topic", "t"]]"#;
    for id in &ids {
        assert_eq!(flags_of(&alice, *id, general_t), vec!["read"]);
    }
    assert!(flags_of(&alice, other, r#"[["stream", "general"]]"#).is_empty(), "outside the narrow: untouched");
    // Excluding the anchor from the middle of a range is refused.
    assert_error(
        &call(&ids[2].to_string(), "1", "1", "false"),
        400,
        "BAD_REQUEST",
        "The anchor can only be excluded at an end of the range",
    );
    // An empty range is a success with null ids.
    let (status, body) = call("newest", "0", "0", "false");
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["processed_count"], &body["first_processed_id"]), (&json!(0), &Value::Null));
    let r = alice
        .post("/api/v1/messages/flags/narrow", &[("anchor", "oldest"), ("num_before", "0"), ("num_after", "1")])
        .unwrap();
    assert_error(&r, 400, "REQUEST_VARIABLE_MISSING", "Missing 'narrow' argument");
}
