//! What the terminal client (zulip-terminal 0.7) reads at start and calls
//! first: its register request, the topic list of a channel, the legacy
//! `pm_with` narrow, Zulip's narrow errors, and content edits that repeat
//! the topic.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{assert_error, assert_schema, Client, Server};

/// zulip-terminal 0.7.0's first `POST /register` (model.py).
fn register_as_terminal(c: &Client) -> Value {
    let fetch = json!([
        "realm",
        "presence",
        "subscription",
        "message",
        "starred_messages",
        "update_message_flags",
        "muted_topics",
        "realm_user",
        "realm_user_groups",
        "update_global_notifications",
        "update_display_settings",
        "user_settings",
        "realm_emoji",
        "zulip_version"
    ]);
    let events = json!([
        "message",
        "update_message",
        "reaction",
        "subscription",
        "typing",
        "update_message_flags",
        "update_global_notifications",
        "update_display_settings",
        "user_settings",
        "realm_emoji"
    ]);
    let (status, body) = c
        .post(
            "/api/v1/register",
            &[
                ("event_types", &events.to_string()),
                ("fetch_event_types", &fetch.to_string()),
                ("client_gravatar", "true"),
                ("apply_markdown", "true"),
                ("include_subscribers", "true"),
                ("narrow", "[]"),
            ],
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn the_terminal_clients_register_has_every_key_it_reads_at_start() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let id = server.owner.send_stream("general", "t", "star me").unwrap();
    let r = alice
        .post("/api/v1/messages/flags", &[("messages", &format!("[{id}]")), ("op", "add"), ("flag", "starred")])
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);

    let body = register_as_terminal(&alice);
    for key in [
        "queue_id",
        "last_event_id",
        "max_message_id",
        "zulip_version",
        "user_id",
        "email",
        "full_name",
        "realm_name",
        "presences",
        "realm_users",
        "cross_realm_bots",
        "subscriptions",
        "unread_msgs",
    ] {
        assert!(body.get(key).is_some(), "{key} missing: {body}");
    }
    assert_eq!(body["realm_message_retention_days"], -1, "messages are kept for ever");
    assert_eq!(body["realm_allow_message_editing"], true);
    assert_eq!(body["realm_message_content_edit_limit_seconds"], 600, "an integer, as the client compares it");
    assert_eq!(body["realm_allow_edit_history"], true);
    assert_eq!(body["muted_topics"], json!([]));
    let groups: Vec<&str> =
        body["realm_user_groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(groups.contains(&"role:everyone") && groups.contains(&"role:owners"), "system groups: {groups:?}");
    assert_eq!(body["realm_emoji"], json!({}));
    assert_eq!(body["starred_messages"], json!([id]));
    assert_eq!(body["twenty_four_hour_time"], false);
    assert_eq!(body["pm_content_in_desktop_notifications"], true);
    assert!(body["realm_users"].as_array().unwrap().iter().any(|u| u["user_id"] == alice.user_id), "self listed");
    assert_schema("/register", "post", 200, &body);

    // Sections not asked for are left out.
    let (_, narrow) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["message"]"#)]).unwrap();
    for key in ["muted_topics", "realm_emoji", "starred_messages", "realm_message_retention_days"] {
        assert!(narrow.get(key).is_none(), "{key} not asked for: {narrow}");
    }
}

#[test]
fn a_channels_topics_come_most_recent_first_with_their_latest_message() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let o = &server.owner;
    let first = o.send_stream("general", "Alpha", "1").unwrap();
    let beta = o.send_stream("general", "beta", "2").unwrap();
    let alpha = o.send_stream("general", "alpha", "3").unwrap();
    let (_, subs) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let general = subs["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "general").unwrap()
        ["stream_id"]
        .as_i64()
        .unwrap();
    let (status, body) = alice.get(&format!("/api/v1/users/me/{general}/topics"), &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["topics"],
        json!([{"name": "alpha", "max_id": alpha}, {"name": "beta", "max_id": beta}]),
        "topics differing in case are one, named as last written (first message {first})"
    );
    assert_schema("/users/me/{stream_id}/topics", "get", 200, &body);

    // A private channel the user is not in: Zulip's error, nothing listed.
    let subs = json!([{"name": "secret"}]).to_string();
    o.post("/api/v1/users/me/subscriptions", &[("subscriptions", &subs), ("invite_only", "true")]).unwrap();
    o.send_stream("secret", "hidden topic", "x").unwrap();
    let (_, os) = o.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let secret = os["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "secret").unwrap()["stream_id"]
        .as_i64()
        .unwrap();
    assert_error(
        &alice.get(&format!("/api/v1/users/me/{secret}/topics"), &[]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid channel ID",
    );
    assert_error(&alice.get("/api/v1/users/me/999999/topics", &[]).unwrap(), 400, "BAD_REQUEST", "Invalid channel ID");
    let (_, mine) = o.get(&format!("/api/v1/users/me/{secret}/topics"), &[]).unwrap();
    assert_eq!(mine["topics"][0]["name"], "hidden topic");
}

#[test]
fn the_legacy_pm_with_narrow_works_and_narrow_errors_name_the_operator() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (_, sent) = alice
        .post("/api/v1/messages", &[("type", "direct"), ("to", &format!("[{}]", bob.user_id)), ("content", "psst")])
        .unwrap();
    let narrow = |n: Value| {
        alice.get(
            "/api/v1/messages",
            &[("anchor", "newest"), ("num_before", "10"), ("num_after", "0"), ("narrow", &n.to_string())],
        )
    };
    let (status, body) = narrow(json!([["pm_with", "bob@example.com"]])).unwrap();
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&Value> = body["messages"].as_array().unwrap().iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, vec![&sent["id"]]);
    assert_error(
        &narrow(json!([["whisper", "psst"]])).unwrap(),
        400,
        "BAD_NARROW",
        "Invalid narrow operator: unknown operator whisper",
    );
    assert_error(
        &narrow(json!([["is", "sleepy"]])).unwrap(),
        400,
        "BAD_NARROW",
        "Invalid narrow operator: unknown 'is' operand sleepy",
    );
    assert_error(
        &narrow(json!([["stream", "nowhere"]])).unwrap(),
        400,
        "BAD_NARROW",
        "Invalid narrow operator: unknown channel nowhere",
    );
}

#[test]
fn a_content_edit_that_repeats_the_topic_is_not_a_topic_edit() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["update_message"]"#)]).unwrap();
    let id = alice.send_stream("general", "Topic", "first").unwrap();
    let (status, body) = alice
        .raw_form(
            "PATCH",
            &format!("/api/v1/messages/{id}"),
            &[("content", "second"), ("topic", "Topic"), ("propagate_mode", "change_one")],
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    let e = &events["events"][0];
    assert_eq!(e["type"], "update_message", "{events}");
    assert!(e.get("orig_subject").is_none() && e.get("subject").is_none(), "no topic change in {e}");
    let (_, got) = alice.get(&format!("/api/v1/messages/{id}"), &[]).unwrap();
    let history = got["message"]["edit_history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{got}");
    assert!(history[0].get("prev_topic").is_none(), "{got}");
    assert_eq!(history[0]["prev_content"], "first");
    // Only the same topic again, nothing else: nothing changes.
    let (status, _) = alice
        .raw_form("PATCH", &format!("/api/v1/messages/{id}"), &[("topic", "Topic"), ("propagate_mode", "change_one")])
        .unwrap();
    assert_eq!(status, 200);
    let (_, got) = alice.get(&format!("/api/v1/messages/{id}"), &[]).unwrap();
    assert_eq!(got["message"]["edit_history"].as_array().unwrap().len(), 1);
}

#[test]
fn a_messages_edit_history_runs_from_the_original_to_now() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let id = alice.send_stream("general", "first topic", "one").unwrap();
    let edit = |form: &[(&str, &str)]| {
        let r = alice.raw_form("PATCH", &format!("/api/v1/messages/{id}"), form).unwrap();
        assert_eq!(r.0, 200, "{}", r.1);
    };
    edit(&[("content", "two")]);
    edit(&[("topic", "second topic")]);
    edit(&[("content", "three"), ("topic", "third topic")]);

    let (status, body) = bob.get(&format!("/api/v1/messages/{id}/history"), &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_schema("/messages/{message_id}/history", "get", 200, &body);
    let h = body["message_history"].as_array().unwrap();
    assert_eq!(h.len(), 4, "the original and three edits: {body}");
    let shape: Vec<(&str, &str, Option<&str>, Option<&str>)> = h
        .iter()
        .map(|e| {
            (
                e["content"].as_str().unwrap(),
                e["topic"].as_str().unwrap(),
                e.get("prev_content").and_then(Value::as_str),
                e.get("prev_topic").and_then(Value::as_str),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("one", "first topic", None, None),
            ("two", "first topic", Some("one"), None),
            ("two", "second topic", None, Some("first topic")),
            ("three", "third topic", Some("two"), Some("second topic")),
        ]
    );
    assert_eq!(h[0]["user_id"], alice.user_id);
    assert_eq!(h[0]["rendered_content"], "<p>one</p>");
    assert_eq!(h[3]["prev_rendered_content"], "<p>two</p>");
    assert!(h[0]["stream"].is_i64(), "the original names its channel: {}", h[0]);

    // A message the user cannot see: Zulip's error.
    assert_error(&bob.get("/api/v1/messages/999999/history", &[]).unwrap(), 400, "BAD_REQUEST", "Invalid message(s)");
}

#[test]
fn subscription_properties_are_stored_and_told_to_the_users_clients() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["subscription"]"#)]).unwrap();
    let subs = |c: &Client| {
        let (_, body) = c.get("/api/v1/users/me/subscriptions", &[]).unwrap();
        body["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "general").cloned().unwrap()
    };
    let general = subs(&alice)["stream_id"].as_i64().unwrap();
    let data = json!([
        {"stream_id": general, "property": "pin_to_top", "value": true},
        {"stream_id": general, "property": "color", "value": "#f00f00"},
        {"stream_id": general, "property": "is_muted", "value": true},
        {"stream_id": general, "property": "desktop_notifications", "value": false},
    ]);
    let r =
        alice.post("/api/v1/users/me/subscriptions/properties", &[("subscription_data", &data.to_string())]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    let s = subs(&alice);
    assert_eq!(
        (&s["pin_to_top"], &s["color"], &s["is_muted"], &s["in_home_view"]),
        (&json!(true), &json!("#f00f00"), &json!(true), &json!(false))
    );
    assert_eq!(s["desktop_notifications"], false);
    assert!(s["push_notifications"].is_null(), "untouched settings follow the default: {s}");
    let (_, body) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    assert_schema("/users/me/subscriptions", "get", 200, &body);

    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    let got: Vec<(String, Value)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(
                (&e["type"], &e["op"], &e["stream_id"]),
                (&json!("subscription"), &json!("update"), &json!(general))
            );
            (e["property"].as_str().unwrap().to_owned(), e["value"].clone())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("pin_to_top".into(), json!(true)),
            ("color".into(), json!("#f00f00")),
            ("is_muted".into(), json!(true)),
            ("in_home_view".into(), json!(false)),
            ("desktop_notifications".into(), json!(false)),
        ]
    );
    // The legacy name, and the one-property endpoint.
    let legacy = json!([{"stream_id": general, "property": "in_home_view", "value": true}]).to_string();
    assert_eq!(
        alice.post("/api/v1/users/me/subscriptions/properties", &[("subscription_data", &legacy)]).unwrap().0,
        200
    );
    assert_eq!(subs(&alice)["is_muted"], false);
    let one = alice
        .post(&format!("/api/v1/users/me/subscriptions/{general}"), &[("property", "color"), ("value", "#abc")])
        .unwrap();
    assert_eq!(one.0, 200, "{}", one.1);
    assert_eq!(subs(&alice)["color"], "#abc");

    // Zulip's errors; nothing of a refused list is applied.
    let post = |d: Value| {
        alice.post("/api/v1/users/me/subscriptions/properties", &[("subscription_data", &d.to_string())]).unwrap()
    };
    assert_error(
        &post(json!([{"stream_id": general, "property": "loud", "value": true}])),
        400,
        "BAD_REQUEST",
        "Unknown subscription property: loud",
    );
    assert_error(
        &post(json!([{"stream_id": general, "property": "pin_to_top", "value": "yes"}])),
        400,
        "BAD_REQUEST",
        "pin_to_top is not a boolean",
    );
    assert_error(
        &post(
            json!([{"stream_id": general, "property": "pin_to_top", "value": false}, {"stream_id": general, "property": "color", "value": "red"}]),
        ),
        400,
        "BAD_REQUEST",
        "color is not a valid hex color code",
    );
    assert_eq!(subs(&alice)["pin_to_top"], true, "the refused list changed nothing");
    assert_error(
        &post(json!([{"stream_id": 999999, "property": "pin_to_top", "value": true}])),
        400,
        "BAD_REQUEST",
        "Invalid channel ID",
    );
    let r = server
        .owner
        .post("/api/v1/users/me/subscriptions", &[("subscriptions", r#"[{"name": "elsewhere"}]"#)])
        .unwrap();
    assert_eq!(r.0, 200);
    let (_, all) = alice.get("/api/v1/streams", &[]).unwrap();
    let elsewhere = all["streams"].as_array().unwrap().iter().find(|s| s["name"] == "elsewhere").unwrap()["stream_id"]
        .as_i64()
        .unwrap();
    assert_error(
        &post(json!([{"stream_id": elsewhere, "property": "pin_to_top", "value": true}])),
        400,
        "BAD_REQUEST",
        &format!("Not subscribed to channel ID {elsewhere}"),
    );
}

#[test]
fn reactions_are_added_listed_told_and_removed() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (q, _, _) = bob.register(&[("event_types", r#"["reaction"]"#)]).unwrap();
    let id = server.owner.send_stream("general", "t", "react to me").unwrap();
    let path = format!("/api/v1/messages/{id}/reactions");
    // As zulip-terminal sends it: Zulip's name, the code, the type.
    let r = alice
        .post(&path, &[("emoji_name", "thumbs_up"), ("emoji_code", "1f44d"), ("reaction_type", "unicode_emoji")])
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    // By name only.
    assert_eq!(bob.post(&path, &[("emoji_name", "tada")]).unwrap().0, 200);
    assert_error(
        &alice.post(&path, &[("emoji_name", "+1"), ("emoji_code", "1f44d")]).unwrap(),
        400,
        "REACTION_ALREADY_EXISTS",
        "Reaction already exists.",
    );
    assert_error(
        &alice.post(&path, &[("emoji_name", "x"), ("emoji_code", "zz")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid emoji code.",
    );
    assert_error(
        &alice.post(&path, &[("emoji_name", "smile"), ("emoji_code", "1f44d")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid emoji name.",
    );
    assert_error(
        &alice.post(&path, &[("emoji_name", "no_such_emoji")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Emoji 'no_such_emoji' does not exist",
    );
    assert_error(
        &alice.post(&path, &[("emoji_name", "party"), ("emoji_code", "1"), ("reaction_type", "realm_emoji")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid custom emoji.",
    );
    assert_error(
        &alice.post("/api/v1/messages/999999/reactions", &[("emoji_name", "tada")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid message(s)",
    );

    // Listed on the message, with who reacted.
    let (_, body) =
        alice.get("/api/v1/messages", &[("anchor", &id.to_string()), ("num_before", "0"), ("num_after", "0")]).unwrap();
    assert_schema("/messages", "get", 200, &body);
    let reactions = body["messages"][0]["reactions"].as_array().unwrap().clone();
    let got: Vec<(&str, &str, i64, &str)> = reactions
        .iter()
        .map(|r| {
            (
                r["emoji_name"].as_str().unwrap(),
                r["emoji_code"].as_str().unwrap(),
                r["user_id"].as_i64().unwrap(),
                r["user"]["full_name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![("thumbs_up", "1f44d", alice.user_id, "Alice"), ("tada", "1f389", bob.user_id, "Bob")]);
    let (_, one) = alice.get(&format!("/api/v1/messages/{id}"), &[]).unwrap();
    assert_eq!(one["message"]["reactions"].as_array().unwrap().len(), 2);

    // Removed as zulip-terminal removes it (the parameters in the body).
    let r = alice
        .raw_form(
            "DELETE",
            &path,
            &[("emoji_name", "thumbs_up"), ("emoji_code", "1f44d"), ("reaction_type", "unicode_emoji")],
        )
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_error(
        &alice.raw_form("DELETE", &path, &[("emoji_name", "thumbs_up"), ("emoji_code", "1f44d")]).unwrap(),
        400,
        "REACTION_DOES_NOT_EXIST",
        "Reaction doesn't exist.",
    );

    // Bob's clients heard all of it.
    let (_, events) = bob.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let seen: Vec<(String, String, i64)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "reaction");
            assert_eq!(e["message_id"], id);
            (e["op"].as_str().unwrap().into(), e["emoji_name"].as_str().unwrap().into(), e["user_id"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("add".into(), "thumbs_up".into(), alice.user_id),
            ("add".into(), "tada".into(), bob.user_id),
            ("remove".into(), "thumbs_up".into(), alice.user_id),
        ]
    );
}

#[test]
fn every_backend_request_gets_an_access_log_line() {
    let log = std::env::temp_dir().join(format!("squall-access-{:x}.log", rand::random::<u64>()));
    let opts = squall_e2e::ServerOptions {
        log_file: Some(log.clone()),
        env: vec![("SQUALL_LOG".into(), "warn,squall::access=info".into())],
        ..Default::default()
    };
    let server = Server::start_with(opts).unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    assert_eq!(alice.get("/api/v1/users/me/42/nothing", &[("secret", "x")]).unwrap().0, 404);
    assert_eq!(alice.get("/api/v1/users/me", &[]).unwrap().0, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("squall::access")).collect();
        let missing = lines.iter().find(|l| l.contains("path=/api/v1/users/me/42/nothing"));
        let found = lines.iter().find(|l| l.contains("path=/api/v1/users/me ") && l.contains("status=200"));
        if let (Some(missing), Some(found)) = (missing, found) {
            assert!(missing.contains("status=404") && missing.contains("method=GET"), "{missing}");
            assert!(!missing.contains("secret"), "no query string in the log: {missing}");
            assert!(found.contains(&format!("user={}", alice.user_id)), "{found}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no access-log lines:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(server);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn narrows_negation_id_near_group_dms_and_resolved_topics() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let carol = server.create_user("carol@example.com", "Carol").unwrap();
    alice.subscribe(&["other"]).unwrap();
    let in_general = alice.send_stream("general", "t", "in general").unwrap();
    let in_other = alice.send_stream("other", "t", "in other").unwrap();
    let resolved = alice.send_stream("general", "✔ done", "fixed").unwrap();
    let dm = |to: Vec<i64>, text: &str| -> i64 {
        let (status, body) = alice
            .post("/api/v1/messages", &[("type", "direct"), ("to", &json!(to).to_string()), ("content", text)])
            .unwrap();
        assert_eq!(status, 200, "{body}");
        body["id"].as_i64().unwrap()
    };
    let to_bob = dm(vec![bob.user_id], "just bob");
    let group = dm(vec![bob.user_id, carol.user_id], "bob and carol");
    let ids = |n: Value| -> Vec<i64> {
        let (status, body) = alice
            .get(
                "/api/v1/messages",
                &[("anchor", "newest"), ("num_before", "100"), ("num_after", "0"), ("narrow", &n.to_string())],
            )
            .unwrap();
        assert_eq!(status, 200, "{n}: {body}");
        body["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect()
    };
    let not_general = ids(json!([{"operator": "stream", "operand": "general", "negated": true}]));
    assert!(not_general.contains(&in_other) && not_general.contains(&to_bob), "{not_general:?}");
    assert!(!not_general.contains(&in_general) && !not_general.contains(&resolved), "{not_general:?}");
    assert_eq!(ids(json!([["id", in_other.to_string()]])), vec![in_other]);
    assert_eq!(ids(json!([["stream", "other"], ["near", in_other.to_string()]])), vec![in_other]);
    assert_eq!(ids(json!([["group-pm-with", "carol@example.com"]])), vec![group]);
    assert_eq!(ids(json!([["dm-including", bob.user_id]])), vec![to_bob, group]);
    assert_eq!(ids(json!([["is", "resolved"]])), vec![resolved]);
    let (_, subs) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let general = subs["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "general").unwrap()
        ["stream_id"]
        .as_i64()
        .unwrap();
    let follow = alice
        .post("/api/v1/user_topics", &[("stream_id", &general.to_string()), ("topic", "T"), ("visibility_policy", "3")])
        .unwrap();
    assert_eq!(follow.0, 200, "{}", follow.1);
    assert_eq!(ids(json!([["is", "followed"]])), vec![in_general], "topics compare without case");
    let linked = alice.send_stream("other", "t", "see [the docs](https://example.com/docs)").unwrap();
    assert_eq!(ids(json!([["has", "link"]])), vec![linked]);
    let r = alice.post(&format!("/api/v1/messages/{in_other}/reactions"), &[("emoji_name", "tada")]).unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(ids(json!([["has", "reaction"]])), vec![in_other]);
    assert_eq!(ids(json!([["has", "image"]])), Vec::<i64>::new());
    assert_error(
        &alice
            .get(
                "/api/v1/messages",
                &[("anchor", "newest"), ("num_before", "1"), ("num_after", "0"), ("narrow", r#"[["has", "cats"]]"#)],
            )
            .unwrap(),
        400,
        "BAD_NARROW",
        "Invalid narrow operator: unknown 'has' operand cats",
    );
    assert_eq!(
        ids(json!([{"operator": "is", "operand": "resolved", "negated": true}, ["stream", "general"]])),
        vec![in_general]
    );
    assert_error(
        &alice
            .get(
                "/api/v1/messages",
                &[("anchor", "newest"), ("num_before", "1"), ("num_after", "0"), ("narrow", r#"[["id", "x"]]"#)],
            )
            .unwrap(),
        400,
        "BAD_NARROW",
        "Invalid narrow operator: Invalid message ID",
    );
}

#[test]
fn search_finds_words_and_phrases_and_highlights_them() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let o = &server.owner;
    let cats = o.send_stream("general", "pets", "The cats are sleeping on the sofa").unwrap();
    let dogs = o.send_stream("general", "pets", "A dog barked at the mailman").unwrap();
    let topic = o.send_stream("general", "sleeping schedules", "nothing else here").unwrap();
    let search = |n: Value| -> Value {
        let (status, body) = alice
            .get(
                "/api/v1/messages",
                &[("anchor", "newest"), ("num_before", "50"), ("num_after", "0"), ("narrow", &n.to_string())],
            )
            .unwrap();
        assert_eq!(status, 200, "{n}: {body}");
        body
    };
    let ids = |b: &Value| -> Vec<i64> {
        b["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect()
    };
    // Words match their stems, in the content or the topic.
    let body = search(json!([["search", "sleep"]]));
    assert_eq!(ids(&body), vec![cats, topic]);
    assert_schema("/messages", "get", 200, &body);
    let m = &body["messages"][0];
    assert!(m["match_content"].as_str().unwrap().contains(r#"<span class="highlight">sleeping</span>"#), "{m}");
    let t = &body["messages"][1];
    assert_eq!(t["match_subject"], r#"<span class="highlight">sleeping</span> schedules"#, "{t}");
    // Every word must match; phrases as written.
    assert_eq!(ids(&search(json!([["search", "dog mailman"]]))), vec![dogs]);
    assert_eq!(ids(&search(json!([["search", "\"on the sofa\""]]))), vec![cats]);
    assert_eq!(ids(&search(json!([["search", "\"the sofa on\""]]))), Vec::<i64>::new());
    // With other terms, and as zulip-terminal sends it (the narrow plus search).
    assert_eq!(ids(&search(json!([["stream", "general"], ["topic", "pets"], ["search", "cats"]]))), vec![cats]);
    // Stop words alone match nothing, as in Zulip.
    assert_eq!(ids(&search(json!([["search", "the"]]))), Vec::<i64>::new());
}

#[test]
fn personal_settings_are_changed_stored_registered_and_told_in_both_event_forms() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let modern = r#"{"user_settings_object": true}"#;
    let (qm, _, _) =
        alice.register(&[("event_types", r#"["user_settings"]"#), ("client_capabilities", modern)]).unwrap();
    let (ql, _, _) = alice
        .register(&[("event_types", r#"["user_settings", "update_display_settings", "update_global_notifications"]"#)])
        .unwrap();
    let (qb, _, _) = bob.register(&[("event_types", r#"["realm_user"]"#)]).unwrap();

    let patch = |form: &[(&str, &str)]| alice.raw_form("PATCH", "/api/v1/settings", form).unwrap();
    let r = patch(&[
        ("twenty_four_hour_time", "true"),
        ("enable_sounds", "false"),
        ("web_font_size_px", "14"),
        ("default_language", "de"),
        ("timezone", "Europe/Berlin"),
        ("send_read_receipts", "false"),
        ("no_such_setting", "1"),
    ]);
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["ignored_parameters_unsupported"], json!(["no_such_setting"]));

    // Stored: a new register sees them, in the object and (legacy) on top.
    let (_, reg) = alice
        .post(
            "/api/v1/register",
            &[("fetch_event_types", r#"["user_settings", "update_display_settings", "update_global_notifications"]"#)],
        )
        .unwrap();
    assert_schema("/register", "post", 200, &reg);
    let us = &reg["user_settings"];
    assert_eq!(
        (&us["twenty_four_hour_time"], &us["enable_sounds"], &us["web_font_size_px"]),
        (&json!(true), &json!(false), &json!(14))
    );
    assert_eq!(
        (&us["default_language"], &us["timezone"], &us["send_read_receipts"]),
        (&json!("de"), &json!("Europe/Berlin"), &json!(false))
    );
    assert_eq!(us["dense_mode"], true, "untouched settings keep Zulip's defaults");
    assert_eq!(
        (&reg["twenty_four_hour_time"], &reg["enable_sounds"], &reg["timezone"]),
        (&json!(true), &json!(false), &json!("Europe/Berlin"))
    );
    assert!(reg.get("send_read_receipts").is_none(), "modern settings are not copied to the top level");
    let (_, modern_reg) = alice
        .post(
            "/api/v1/register",
            &[("fetch_event_types", r#"["update_display_settings"]"#), ("client_capabilities", modern)],
        )
        .unwrap();
    assert!(modern_reg.get("twenty_four_hour_time").is_none(), "no legacy copies for user_settings_object clients");

    // Events: the modern queue gets user_settings only; the legacy one both.
    let types = |q: &str| -> Vec<String> {
        let (_, body) = alice.get_events(q, -1, true).unwrap();
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let name = e.get("property").or_else(|| e.get("setting_name")).or_else(|| e.get("notification_name"));
                format!("{}:{}", e["type"].as_str().unwrap(), name.and_then(Value::as_str).unwrap_or(""))
            })
            .collect()
    };
    let modern_events = types(&qm);
    assert_eq!(modern_events.len(), 6, "{modern_events:?}");
    assert!(modern_events.iter().all(|e| e.starts_with("user_settings:")), "{modern_events:?}");
    let legacy_events = types(&ql);
    for e in [
        "update_display_settings:twenty_four_hour_time",
        "update_global_notifications:enable_sounds",
        "update_display_settings:default_language",
        "update_display_settings:timezone",
        "user_settings:send_read_receipts",
    ] {
        assert!(legacy_events.contains(&e.to_string()), "{e} in {legacy_events:?}");
    }
    assert!(!legacy_events.iter().any(|e| e.starts_with("update_display_settings:send_read_receipts")));
    let (_, lang) = alice.get_events(&qm, -1, true).unwrap();
    let lang_event =
        lang["events"].as_array().unwrap().iter().find(|e| e["property"] == "default_language").cloned().unwrap();
    assert_eq!(lang_event["language_name"], "Deutsch");
    // Everyone sees the new time zone in the user list.
    let (_, bob_events) = bob.get_events(&qb, -1, true).unwrap();
    assert_eq!(bob_events["events"][0]["person"], json!({"user_id": alice.user_id, "timezone": "Europe/Berlin"}));

    // Zulip's checks; a refused request changes nothing.
    assert_error(&patch(&[("color_scheme", "7")]), 400, "BAD_REQUEST", "Invalid color_scheme");
    assert_error(
        &patch(&[("twenty_four_hour_time", "false"), ("enable_sounds", "maybe")]),
        400,
        "BAD_REQUEST",
        "enable_sounds is not valid JSON",
    );
    assert_error(&patch(&[("emojiset", "wingdings")]), 400, "BAD_REQUEST", "Invalid emojiset");
    assert_error(&patch(&[("notification_sound", "gong")]), 400, "BAD_REQUEST", "Invalid notification sound 'gong'");
    assert_error(&patch(&[("timezone", "Mars/Olympus")]), 400, "BAD_REQUEST", "Invalid timezone 'Mars/Olympus'");
    let (_, again) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["user_settings"]"#)]).unwrap();
    assert_eq!(again["user_settings"]["twenty_four_hour_time"], true, "the refused request changed nothing");
}

#[test]
fn topic_policies_are_stored_registered_and_told() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["user_topic", "muted_topics"]"#)]).unwrap();
    let (ql, _, _) = alice.register(&[("event_types", r#"["muted_topics"]"#)]).unwrap();
    let (_, subs) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let general = subs["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "general").unwrap()
        ["stream_id"]
        .as_i64()
        .unwrap();
    let set = |topic: &str, policy: &str| {
        alice
            .post(
                "/api/v1/user_topics",
                &[("stream_id", &general.to_string()), ("topic", topic), ("visibility_policy", policy)],
            )
            .unwrap()
    };
    assert_eq!(set("noisy", "1").0, 200);
    assert_eq!(set("important", "3").0, 200);

    let (_, reg) =
        alice.post("/api/v1/register", &[("fetch_event_types", r#"["user_topic", "muted_topics"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    let policies: Vec<(String, i64)> = reg["user_topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["topic_name"].as_str().unwrap().to_owned(), t["visibility_policy"].as_i64().unwrap()))
        .collect();
    assert_eq!(policies, vec![("noisy".into(), 1), ("important".into(), 3)]);
    assert!(reg.get("muted_topics").is_none(), "not both: {reg}");
    let (_, legacy) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["muted_topics"]"#)]).unwrap();
    let muted = legacy["muted_topics"].as_array().unwrap();
    assert_eq!(muted.len(), 1);
    assert_eq!((&muted[0][0], &muted[0][1]), (&json!("general"), &json!("noisy")));

    // Back to inheriting: gone.
    assert_eq!(set("NOISY", "0").0, 200, "topics compare without case");
    let (_, reg) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["user_topic"]"#)]).unwrap();
    assert_eq!(reg["user_topics"].as_array().unwrap().len(), 1);

    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let kinds: Vec<(&str, Option<i64>)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["visibility_policy"].as_i64()))
        .collect();
    assert_eq!(
        kinds,
        vec![("user_topic", Some(1)), ("user_topic", Some(3)), ("user_topic", Some(0))],
        "no muted_topics beside user_topic"
    );
    let (_, legacy_events) = alice.get_events(&ql, -1, true).unwrap();
    let last = legacy_events["events"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!((last["type"].as_str(), last["muted_topics"].as_array().map(Vec::len)), (Some("muted_topics"), Some(0)));

    assert_error(&set("x", "7"), 400, "BAD_REQUEST", "Invalid visibility_policy");
    assert_error(&set(&"t".repeat(61), "1"), 400, "BAD_REQUEST", "topic is too long (limit: 60 characters)");
    assert_error(
        &alice
            .post("/api/v1/user_topics", &[("stream_id", "999999"), ("topic", "x"), ("visibility_policy", "1")])
            .unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid channel ID",
    );
}

#[test]
fn recent_private_conversations_list_each_conversation_once_latest_first() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let carol = server.create_user("carol@example.com", "Carol").unwrap();
    let send = |from: &Client, to: Vec<i64>| -> i64 {
        let (_, b) = from
            .post("/api/v1/messages", &[("type", "direct"), ("to", &json!(to).to_string()), ("content", "hi")])
            .unwrap();
        b["id"].as_i64().unwrap()
    };
    send(&alice, vec![bob.user_id]);
    let group = send(&alice, vec![bob.user_id, carol.user_id]);
    let to_bob = send(&bob, vec![alice.user_id]);
    let own = send(&alice, vec![alice.user_id]);
    server.owner.send_stream("general", "t", "not a DM").unwrap();
    let (_, reg) =
        alice.post("/api/v1/register", &[("fetch_event_types", r#"["recent_private_conversations"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    let mut pair = vec![bob.user_id, carol.user_id];
    pair.sort_unstable();
    assert_eq!(
        reg["recent_private_conversations"],
        json!([
            {"user_ids": [], "max_message_id": own},
            {"user_ids": [bob.user_id], "max_message_id": to_bob},
            {"user_ids": pair, "max_message_id": group},
        ])
    );
}

#[test]
fn alert_words_are_added_listed_removed_registered_and_told() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["alert_words"]"#)]).unwrap();
    let (status, body) = alice
        .post("/api/v1/users/me/alert_words", &[("alert_words", r#"["Squall", " rust ", "", "squall"]"#)])
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alert_words"], json!(["Squall", "rust"]), "trimmed, empty dropped, one per spelling");
    let (_, got) = alice.get("/api/v1/users/me/alert_words", &[]).unwrap();
    assert_eq!(got["alert_words"], json!(["Squall", "rust"]));
    let (_, left) =
        alice.raw_form("DELETE", "/api/v1/users/me/alert_words", &[("alert_words", r#"["SQUALL"]"#)]).unwrap();
    assert_eq!(left["alert_words"], json!(["rust"]));
    let (_, reg) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["alert_words"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    assert_eq!(reg["alert_words"], json!(["rust"]));
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let lists: Vec<&Value> = events["events"].as_array().unwrap().iter().map(|e| &e["alert_words"]).collect();
    assert_eq!(lists, vec![&json!(["Squall", "rust"]), &json!(["rust"])]);
    let long = json!(["ok", "x".repeat(101)]).to_string();
    assert_error(
        &alice.post("/api/v1/users/me/alert_words", &[("alert_words", &long)]).unwrap(),
        400,
        "BAD_REQUEST",
        "alert_words[1] is too long (limit: 100 characters)",
    );
}

#[test]
fn muted_users_are_muted_unmuted_registered_and_told() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["muted_users"]"#)]).unwrap();
    let path = format!("/api/v1/users/me/muted_users/{}", bob.user_id);
    assert_eq!(alice.post(&path, &[]).unwrap().0, 200);
    assert_error(&alice.post(&path, &[]).unwrap(), 400, "BAD_REQUEST", "User already muted");
    assert_error(
        &alice.post(&format!("/api/v1/users/me/muted_users/{}", alice.user_id), &[]).unwrap(),
        400,
        "BAD_REQUEST",
        "Cannot mute self",
    );
    assert_error(&alice.post("/api/v1/users/me/muted_users/999999", &[]).unwrap(), 400, "BAD_REQUEST", "No such user");
    let (_, reg) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["muted_users"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    assert_eq!(reg["muted_users"][0]["id"], bob.user_id);
    assert!(reg["muted_users"][0]["timestamp"].is_i64());
    assert_eq!(alice.raw_form("DELETE", &path, &[]).unwrap().0, 200);
    assert_error(&alice.raw_form("DELETE", &path, &[]).unwrap(), 400, "BAD_REQUEST", "User is not muted");
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let sizes: Vec<usize> =
        events["events"].as_array().unwrap().iter().map(|e| e["muted_users"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, vec![1, 0]);
}

#[test]
fn a_users_status_is_set_cleared_registered_and_told_to_the_realm() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (q, _, _) = bob.register(&[("event_types", r#"["user_status"]"#)]).unwrap();
    let set = |form: &[(&str, &str)]| alice.post("/api/v1/users/me/status", form).unwrap();
    let r = set(&[("status_text", " on vacation "), ("emoji_name", "palm_tree")]);
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, reg) = bob.post("/api/v1/register", &[("fetch_event_types", r#"["user_status"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    assert_eq!(
        reg["user_status"][alice.user_id.to_string()],
        json!({"status_text": "on vacation", "emoji_name": "palm_tree", "emoji_code": "1f334", "reaction_type": "unicode_emoji"})
    );
    assert_eq!(set(&[("away", "true"), ("emoji_name", "")]).0, 200);
    let (_, reg) = bob.post("/api/v1/register", &[("fetch_event_types", r#"["user_status"]"#)]).unwrap();
    assert_eq!(reg["user_status"][alice.user_id.to_string()], json!({"away": true, "status_text": "on vacation"}));
    let (status, one) = bob.get(&format!("/api/v1/users/{}/status", alice.user_id), &[]).unwrap();
    assert_eq!(status, 200, "{one}");
    assert_schema("/users/{user_id}/status", "get", 200, &one);
    assert_eq!(one["status"], json!({"away": true, "status_text": "on vacation"}));
    let (_, nobody) = alice.get(&format!("/api/v1/users/{}/status", bob.user_id), &[]).unwrap();
    assert_eq!(nobody["status"], json!({}), "nothing set");
    assert_error(&bob.get("/api/v1/users/999999/status", &[]).unwrap(), 400, "BAD_REQUEST", "No such user");
    let (status, emoji) = bob.get("/api/v1/realm/emoji", &[]).unwrap();
    assert_eq!((status, &emoji["emoji"]), (200, &json!({})));
    assert_schema("/realm/emoji", "get", 200, &emoji);
    let (_, events) = bob.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let e = events["events"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(
        (&e[0]["user_id"], &e[0]["status_text"], &e[0]["emoji_code"]),
        (&json!(alice.user_id), &json!("on vacation"), &json!("1f334"))
    );
    assert_eq!((&e[1]["away"], &e[1]["emoji_name"]), (&json!(true), &json!("")));
    assert_error(&set(&[]), 400, "BAD_REQUEST", "Client did not pass any new values.");
    assert_error(
        &set(&[("status_text", &"x".repeat(61))]),
        400,
        "BAD_REQUEST",
        "status_text is too long (limit: 60 characters)",
    );
    assert_error(&set(&[("emoji_name", "no_such_emoji")]), 400, "BAD_REQUEST", "Emoji 'no_such_emoji' does not exist");
}

#[test]
fn drafts_are_kept_edited_deleted_registered_and_told() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["drafts"]"#)]).unwrap();
    let (_, subs) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let general = subs["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "general").unwrap()
        ["stream_id"]
        .as_i64()
        .unwrap();
    let drafts = json!([
        {"type": "stream", "to": [general], "topic": "plans", "content": "half a thought", "timestamp": 1700000000},
        {"type": "private", "to": [bob.user_id], "topic": "", "content": "psst"},
    ]);
    let (status, body) = alice.post("/api/v1/drafts", &[("drafts", &drafts.to_string())]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_schema("/drafts", "post", 200, &body);
    let ids: Vec<i64> = body["ids"].as_array().unwrap().iter().map(|i| i.as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2);
    let edit = json!({"type": "stream", "to": [general], "topic": "plans", "content": "a whole thought", "timestamp": 1700000100});
    assert_eq!(
        alice.raw_form("PATCH", &format!("/api/v1/drafts/{}", ids[0]), &[("draft", &edit.to_string())]).unwrap().0,
        200
    );
    let (_, got) = alice.get("/api/v1/drafts", &[]).unwrap();
    assert_schema("/drafts", "get", 200, &got);
    assert_eq!(got["count"], 2);
    assert_eq!(got["drafts"][0]["content"], "psst", "most recently edited first");
    assert_eq!(got["drafts"][1]["content"], "a whole thought");
    assert_eq!(alice.raw_form("DELETE", &format!("/api/v1/drafts/{}", ids[1]), &[]).unwrap().0, 200);
    let (_, reg) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["drafts"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    assert_eq!(reg["drafts"].as_array().unwrap().len(), 1);
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let ops: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, vec!["add", "update", "remove"]);

    // Zulip's checks.
    let post = |d: Value| alice.post("/api/v1/drafts", &[("drafts", &d.to_string())]).unwrap();
    assert_error(
        &post(json!([{"type": "stream", "to": [general, general], "topic": "t", "content": "c"}])),
        400,
        "BAD_REQUEST",
        "Must specify exactly 1 channel ID for channel messages",
    );
    assert_error(
        &post(json!([{"type": "private", "to": [999999], "topic": "", "content": "c"}])),
        400,
        "BAD_REQUEST",
        "Invalid user ID 999999",
    );
    assert_error(
        &post(json!([{"type": "", "to": [], "topic": "", "content": "  "}])),
        400,
        "BAD_REQUEST",
        "Message must not be empty",
    );
    assert_error(
        &alice.raw_form("DELETE", "/api/v1/drafts/999999", &[]).unwrap(),
        404,
        "BAD_REQUEST",
        "Draft does not exist",
    );
    // With synchronisation off, the server keeps none.
    assert_eq!(
        alice.raw_form("PATCH", "/api/v1/settings", &[("enable_drafts_synchronization", "false")]).unwrap().0,
        200
    );
    assert_error(
        &post(json!([{"type": "", "to": [], "topic": "", "content": "c"}])),
        400,
        "BAD_REQUEST",
        "User has disabled synchronizing drafts.",
    );
    let (_, none) = alice.get("/api/v1/drafts", &[]).unwrap();
    assert_eq!(none["count"], 0);
}

#[test]
fn a_register_of_every_section_with_data_in_each_validates_against_the_api() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    // Something in every section.
    let id = server.owner.send_stream("general", "t", "hello @**Alice**").unwrap();
    let ok = |r: (u16, Value)| assert_eq!(r.0, 200, "{}", r.1);
    ok(alice.post(&format!("/api/v1/messages/{id}/reactions"), &[("emoji_name", "tada")]).unwrap());
    ok(alice
        .post("/api/v1/messages/flags", &[("messages", &format!("[{id}]")), ("op", "add"), ("flag", "starred")])
        .unwrap());
    ok(alice
        .post("/api/v1/messages", &[("type", "direct"), ("to", &format!("[{}]", bob.user_id)), ("content", "hi")])
        .unwrap());
    ok(alice.post("/api/v1/users/me/alert_words", &[("alert_words", r#"["squall"]"#)]).unwrap());
    ok(alice.post(&format!("/api/v1/users/me/muted_users/{}", bob.user_id), &[]).unwrap());
    ok(alice.post("/api/v1/users/me/status", &[("status_text", "busy")]).unwrap());
    ok(alice
        .post("/api/v1/drafts", &[("drafts", r#"[{"type": "", "to": [], "topic": "", "content": "later"}]"#)])
        .unwrap());
    ok(alice.raw_form("PATCH", "/api/v1/settings", &[("twenty_four_hour_time", "true")]).unwrap());
    let (_, subs) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let general = subs["subscriptions"][0]["stream_id"].as_i64().unwrap();
    ok(alice
        .post("/api/v1/user_topics", &[("stream_id", &general.to_string()), ("topic", "t"), ("visibility_policy", "1")])
        .unwrap());

    // Every section, legacy client (no capabilities) and modern client.
    for caps in ["{}", r#"{"user_settings_object": true, "notification_settings_null": true}"#] {
        let (status, body) = alice.post("/api/v1/register", &[("client_capabilities", caps)]).unwrap();
        assert_eq!(status, 200, "{body}");
        assert_schema("/register", "post", 200, &body);
        for key in [
            "realm_users",
            "subscriptions",
            "presences",
            "unread_msgs",
            "starred_messages",
            "alert_words",
            "muted_users",
            "user_status",
            "drafts",
            "user_settings",
            "recent_private_conversations",
            "realm_emoji",
            "realm_user_groups",
            "realm_name",
            "max_message_id",
        ] {
            assert!(body.get(key).is_some(), "{key} missing with capabilities {caps}");
        }
        assert_eq!(body["muted_topics"][0][1], "t", "all sections: the legacy muted list too, as Zulip");
    }
}

/// The register sections Zulip's API description documents, each with the
/// keys it brings (read from the description by `tests/python/register_sections.py`).
fn documented_register_sections() -> serde_json::Map<String, Value> {
    let out = std::process::Command::new(squall_e2e::python())
        .arg(squall_e2e::workspace_root().join("tests/python/register_sections.py"))
        .arg(squall_e2e::openapi_path())
        .output()
        .expect("running register_sections.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sections: Value = serde_json::from_slice(&out.stdout).unwrap();
    sections.as_object().cloned().unwrap()
}

#[test]
fn every_documented_register_section_comes_with_all_its_keys_and_validates() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let sections = documented_register_sections();
    assert!(sections.len() >= 30, "the description documents {} sections", sections.len());
    let names: Vec<&String> = sections.keys().collect();
    // Legacy client (no capabilities) and modern client; all sections at
    // once, then each alone (a section must not depend on another).
    for caps in ["{}", r#"{"user_settings_object": true, "notification_settings_null": true}"#] {
        let all = serde_json::to_string(&names).unwrap();
        let (status, body) =
            alice.post("/api/v1/register", &[("fetch_event_types", &all), ("client_capabilities", caps)]).unwrap();
        assert_eq!(status, 200, "{body}");
        assert_schema("/register", "post", 200, &body);
        // Except the legacy `muted_topics`, left out when `user_topic` is
        // asked for too, as Zulip does (checked alone below).
        for (section, keys) in sections.iter().filter(|(s, _)| *s != "muted_topics") {
            for key in keys.as_array().unwrap() {
                let key = key.as_str().unwrap();
                assert!(body.get(key).is_some(), "{key} (section {section}) missing with capabilities {caps}");
            }
        }
        assert!(body.get("muted_topics").is_none(), "muted_topics with user_topic");
    }
    for (section, keys) in &sections {
        let (status, body) =
            alice.post("/api/v1/register", &[("fetch_event_types", &json!([section]).to_string())]).unwrap();
        assert_eq!(status, 200, "{body}");
        for key in keys.as_array().unwrap() {
            assert!(body.get(key.as_str().unwrap()).is_some(), "{key} missing when {section} is fetched alone");
        }
        assert!(body.get("realm_users").is_none() || section == "realm_user", "{section} brought realm_users");
    }
}

#[test]
fn typing_follows_the_senders_and_the_recipients_settings() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let carol = server.create_user("carol@example.com", "Carol").unwrap();
    let (qb, _, _) = bob.register(&[("event_types", r#"["typing"]"#)]).unwrap();
    let (qc, _, _) = carol.register(&[("event_types", r#"["typing"]"#)]).unwrap();
    // Carol does not want to see typing.
    assert_eq!(
        carol.raw_form("PATCH", "/api/v1/settings", &[("receives_typing_notifications", "false")]).unwrap().0,
        200
    );
    let to = json!([bob.user_id, carol.user_id]).to_string();
    assert_eq!(alice.post("/api/v1/typing", &[("op", "start"), ("to", &to)]).unwrap().0, 200);
    let (_, b) = bob.get_events(&qb, -1, true).unwrap();
    assert_eq!(b["events"].as_array().unwrap().len(), 1, "{b}");
    let (_, c) = carol.get_events(&qc, -1, true).unwrap();
    assert_eq!(c["events"], json!([]), "{c}");
    // Alice stops telling anyone she types.
    assert_eq!(
        alice.raw_form("PATCH", "/api/v1/settings", &[("send_private_typing_notifications", "false")]).unwrap().0,
        200
    );
    assert_error(
        &alice.post("/api/v1/typing", &[("op", "start"), ("to", &to)]).unwrap(),
        400,
        "BAD_REQUEST",
        "User has disabled typing notifications for direct messages",
    );
}
