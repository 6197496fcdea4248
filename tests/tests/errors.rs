//! Bad input gets Zulip's error status, code and message — never a 500.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{assert_error, Client, Server};

#[test]
fn authentication_failures() {
    let server = Server::start().unwrap();
    let anon = Client::anonymous(&server.url);
    let (status, body, headers) = anon.raw("GET", "/api/v1/users/me", &[], "").unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["msg"], "Not logged in: API authentication or user session required");
    assert_eq!(body["code"], "UNAUTHORIZED");
    assert_eq!(headers["www-authenticate"], "Basic realm=\"zulip\"");
    let (status, _, headers) = anon.raw("GET", "/json/users/me", &[], "").unwrap();
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Session realm=\"zulip\"");
    // The same rules guard /events, which the gateway serves.
    let (status, body, _) = anon.raw("GET", "/api/v1/events?queue_id=x&last_event_id=-1", &[], "").unwrap();
    assert_eq!((status, body["code"].clone()), (401, json!("UNAUTHORIZED")));

    let (status, body, _) = anon.raw("GET", "/api/v1/users/me", &[("Authorization", "Bearer abc")], "").unwrap();
    assert_eq!((status, body["msg"].clone()), (400, json!("This endpoint requires HTTP basic authentication.")));
    let (status, body, _) = anon.raw("GET", "/api/v1/users/me", &[("Authorization", "Basic !!!")], "").unwrap();
    assert_eq!((status, body["msg"].clone()), (401, json!("Invalid authorization header for basic auth")));

    let key = server.owner.api_key.clone();
    let cases = [
        (Client::new(&server.url, "owner@example.com", "short"), "Malformed API key"),
        (Client::new(&server.url, "owner@example.com", &"a".repeat(32)), "Invalid API key"),
        (Client::new(&server.url, "someone@example.com", &key), "Invalid API key"),
    ];
    for (client, msg) in cases {
        let r = client.get("/api/v1/users/me", &[]).unwrap();
        assert_error(&r, 401, "UNAUTHORIZED", msg);
        let r = client.get("/api/v1/events", &[("dont_block", "true")]).unwrap();
        assert_error(&r, 401, "UNAUTHORIZED", msg);
    }
    // Email comparison is case-insensitive.
    let shouty = Client::new(&server.url, "OWNER@EXAMPLE.COM", &key);
    assert_eq!(shouty.get("/api/v1/users/me", &[]).unwrap().0, 200);

    let r = anon.post("/api/v1/fetch_api_key", &[("username", "owner@example.com"), ("password", "wrong")]).unwrap();
    assert_error(&r, 401, "AUTHENTICATION_FAILED", "Your username or password is incorrect");
}

#[test]
fn parameter_errors() {
    let server = Server::start().unwrap();
    let o = &server.owner;
    let r = o.post("/api/v1/messages", &[("to", "general"), ("content", "x")]).unwrap();
    assert_error(&r, 400, "REQUEST_VARIABLE_MISSING", "Missing 'type' argument");
    assert_eq!(r.1["var_name"], "type");
    let r = o.post("/api/v1/register", &[("apply_markdown", "yes")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "apply_markdown is not valid JSON");
    let r = o.post("/api/v1/register", &[("apply_markdown", "1")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "apply_markdown is not a boolean");
    let r = o.post("/api/v1/register", &[("narrow", r#"[["search", "x"]]"#)]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Operator search not supported.");
    let r = o.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "4000"), ("num_after", "1001")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Too many messages requested (maximum 5000).");
    let r = o.get("/api/v1/messages", &[("num_before", "1")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Missing 'anchor' argument.");
    let r = o.get("/api/v1/messages", &[("anchor", "sideways")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Invalid anchor");

    let (status, body) = o.get("/api/v1/no_such_endpoint", &[]).unwrap();
    assert_eq!((status, body["result"].clone()), (404, json!("error")));
    let (status, body) = o.raw_form("PATCH", "/api/v1/users/me", &[]).unwrap();
    assert_eq!(status, 405);
    assert_eq!(body["allowed_methods"], json!(["GET", "DELETE"]));

    // Unknown parameters are reported, not fatal.
    let (status, body) = o.get("/api/v1/users/me", &[("bogus", "1"), ("dont_block", "true")]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["ignored_parameters_unsupported"], json!(["bogus", "dont_block"]));
}

#[test]
fn send_validation() {
    let server = Server::start().unwrap();
    let o = &server.owner;
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let send = |form: &[(&str, &str)]| o.post("/api/v1/messages", form).unwrap();
    assert_error(&send(&[("type", "fax"), ("to", "general"), ("content", "x")]), 400, "BAD_REQUEST", "Invalid type");
    assert_error(
        &send(&[("type", "stream"), ("to", "general"), ("topic", "t"), ("content", "  \n ")]),
        400,
        "BAD_REQUEST",
        "Message must not be empty",
    );
    assert_error(
        &send(&[("type", "stream"), ("to", "general"), ("topic", "t"), ("content", "a\u{0}b")]),
        400,
        "BAD_REQUEST",
        "Message must not contain null bytes",
    );
    assert_error(
        &send(&[("type", "stream"), ("to", "general"), ("content", "x")]),
        400,
        "BAD_REQUEST",
        "Missing topic",
    );
    assert_error(
        &send(&[("type", "stream"), ("to", "general"), ("topic", "  "), ("content", "x")]),
        400,
        "BAD_REQUEST",
        "Topic can't be empty!",
    );
    assert_error(
        &send(&[("type", "stream"), ("to", "general"), ("topic", "abcd\u{1}"), ("content", "x")]),
        400,
        "BAD_REQUEST",
        "Invalid character in topic, at position 5!",
    );
    let r = send(&[("type", "stream"), ("to", "nonexistent_stream"), ("topic", "t"), ("content", "x")]);
    assert_error(&r, 400, "STREAM_DOES_NOT_EXIST", "Channel 'nonexistent_stream' does not exist");
    assert_eq!(r.1["stream"], "nonexistent_stream");
    let r = send(&[("type", "stream"), ("to", "<b>"), ("topic", "t"), ("content", "x")]);
    assert_eq!(r.1["msg"], "Channel '&lt;b&gt;' does not exist");
    let r = send(&[("type", "stream"), ("to", "99999"), ("topic", "t"), ("content", "x")]);
    assert_error(&r, 400, "STREAM_DOES_NOT_EXIST", "Channel with ID '99999' does not exist");
    assert_error(
        &send(&[("type", "stream"), ("to", r#"["a", "b"]"#), ("topic", "t"), ("content", "x")]),
        400,
        "BAD_REQUEST",
        "Cannot send to multiple channels",
    );
    assert_error(&send(&[("type", "direct"), ("content", "x")]), 400, "BAD_REQUEST", "Message must have recipients");
    assert_error(
        &send(&[("type", "direct"), ("to", "nonexistent"), ("content", "x")]),
        400,
        "BAD_REQUEST",
        "Invalid email 'nonexistent'",
    );
    assert_error(
        &send(&[("type", "direct"), ("to", "[9999999]"), ("content", "x")]),
        400,
        "BAD_REQUEST",
        "Invalid user ID 9999999",
    );

    // A private stream its non-subscribers cannot post to.
    let subs = json!([{"name": "secret"}]).to_string();
    let (status, _) =
        o.post("/api/v1/users/me/subscriptions", &[("subscriptions", &subs), ("invite_only", "true")]).unwrap();
    assert_eq!(status, 200);
    let r = alice
        .post("/api/v1/messages", &[("type", "stream"), ("to", "secret"), ("topic", "t"), ("content", "x")])
        .unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Not authorized to send to channel 'secret'");

    // Members cannot create users.
    let r = alice.post("/api/v1/users", &[("email", "x@example.com"), ("password", "p"), ("full_name", "X")]).unwrap();
    assert_error(&r, 400, "UNAUTHORIZED_PRINCIPAL", "Must be an organization administrator");
    let r = o.post("/api/v1/users", &[("email", "alice@example.com"), ("password", "p"), ("full_name", "A")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Email 'alice@example.com' already in use");
}

#[test]
fn content_and_topic_normalisation() {
    let server = Server::start().unwrap();
    let o = &server.owner;
    let long_topic = "t".repeat(70);
    let (status, body) = o
        .post(
            "/api/v1/messages",
            &[
                ("type", "stream"),
                ("to", "general"),
                ("topic", &long_topic),
                ("content", &format!("\n\n{}   ", "x".repeat(10_050))),
            ],
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, hist) = o
        .get(
            "/api/v1/messages",
            &[("anchor", "newest"), ("num_before", "1"), ("num_after", "0"), ("apply_markdown", "false")],
        )
        .unwrap();
    let m = &hist["messages"][0];
    assert_eq!(m["subject"], format!("{}...", "t".repeat(57)));
    let content = m["content"].as_str().unwrap();
    assert_eq!(content.chars().count(), 10_000);
    assert!(content.starts_with('x') && content.ends_with("\n[message truncated]"));
    // A DM to yourself and to [yourself, X] are personal messages.
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (_, body) =
        o.post("/api/v1/messages", &[("type", "direct"), ("to", "owner@example.com"), ("content", "note")]).unwrap();
    let self_id = body["id"].as_i64().unwrap();
    let to = format!("[{}, {}]", alice.user_id, 1);
    let (_, body) = o.post("/api/v1/messages", &[("type", "private"), ("to", &to), ("content", "hey")]).unwrap();
    let pair_id = body["id"].as_i64().unwrap();
    let (_, hist) =
        o.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "2"), ("num_after", "0")]).unwrap();
    let msgs = hist["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["id"], self_id);
    assert_eq!(msgs[0]["display_recipient"].as_array().unwrap().len(), 1);
    assert_eq!(msgs[1]["id"], pair_id);
    assert_eq!(msgs[1]["display_recipient"].as_array().unwrap().len(), 2);
    // Alice sees the pair message but not the owner's note to self.
    let (_, hist) =
        alice.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "5"), ("num_after", "0")]).unwrap();
    let ids: Vec<i64> = hist["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![pair_id]);
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let server = squall_e2e::Server::start_with(squall_e2e::ServerOptions {
        rate_limit_per_user: 5,
        ..squall_e2e::ServerOptions::default()
    })
    .unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    for _ in 0..5 {
        assert_eq!(alice.get("/api/v1/users/me", &[]).unwrap().0, 200);
    }
    let (status, body, headers) =
        alice.raw("GET", "/api/v1/users/me", &[("Authorization", &alice.basic_header())], "").unwrap();
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "RATE_LIMIT_HIT");
    assert_eq!(body["msg"], "API usage exceeded rate limit");
    let wait = body["retry-after"].as_f64().unwrap();
    assert!(wait > 0.0 && wait <= 12.0, "5/min refills one every 12 s: {wait}");
    let header: f64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(header >= wait);
    squall_e2e::assert_schema("/users/me", "get", 200, &server.owner.get("/api/v1/users/me", &[]).unwrap().1);
    // Another user is not affected.
    assert_eq!(server.owner.get("/api/v1/users/me", &[]).unwrap().0, 200);
}

#[test]
fn unsubscribing_with_events() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    alice.subscribe(&["Denmark"]).unwrap();
    server.owner.subscribe(&["Denmark"]).unwrap();
    let (aq, _, _) = alice.register(&[("event_types", r#"["subscription"]"#)]).unwrap();
    let (oq, _, _) = server.owner.register(&[("event_types", r#"["subscription"]"#)]).unwrap();
    // Bob is not subscribed to Denmark, but a public stream's subscriber
    // list is visible to every member, so he hears about it too.
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (bq, _, _) = bob.register(&[("event_types", r#"["subscription"]"#)]).unwrap();
    let subs = json!(["Denmark", "general"]).to_string();
    alice.post("/api/v1/users/me/subscriptions", &[("method", "DELETE"), ("subscriptions", r#"["general"]"#)]).unwrap();
    let (status, body) = alice.delete("/api/v1/users/me/subscriptions", &[("subscriptions", &subs)]).unwrap();
    assert_eq!(status, 200, "{body}");
    squall_e2e::assert_schema("/users/me/subscriptions", "delete", 200, &body);
    assert_eq!((body["removed"].clone(), body["not_removed"].clone()), (json!(["Denmark"]), json!(["general"])));
    let (_, events) = alice.get_events(&aq, -1, true).unwrap();
    squall_e2e::assert_schema("/events", "get", 200, &events);
    assert_eq!(events["events"][0]["op"], "remove", "the method override removed general first: {events}");
    assert_eq!(events["events"][1]["subscriptions"][0]["name"], "Denmark");
    let (_, events) = server.owner.get_events(&oq, -1, true).unwrap();
    let peer = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["op"] == "peer_remove" && e["user_ids"] == json!([alice.user_id]))
        .cloned();
    assert!(peer.is_some(), "{events}");
    let (_, events) = bob.get_events(&bq, -1, true).unwrap();
    let bob_saw: Vec<(Value, Value)> =
        events["events"].as_array().unwrap().iter().map(|e| (e["op"].clone(), e["user_ids"].clone())).collect();
    assert!(bob_saw.contains(&(json!("peer_remove"), json!([alice.user_id]))), "{events}");
    let (_, mine) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    assert_eq!(mine["subscriptions"], json!([]));
    let r = alice.delete("/api/v1/users/me/subscriptions", &[("subscriptions", r#"["Atlantis"]"#)]).unwrap();
    assert_error(&r, 400, "STREAM_DOES_NOT_EXIST", "Channel 'Atlantis' does not exist");
    assert_eq!(r.1["stream"], "Atlantis");
    let r = alice
        .delete("/api/v1/users/me/subscriptions", &[("subscriptions", r#"["Denmark"]"#), ("principals", "[1]")])
        .unwrap();
    assert_error(&r, 400, "UNAUTHORIZED_PRINCIPAL", "Insufficient permission");
}

#[test]
fn channel_posting_policies() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let create = |name: &str, policy: &str| {
        let subs = serde_json::json!([{"name": name}]).to_string();
        let (status, body) = server
            .owner
            .post(
                "/api/v1/users/me/subscriptions",
                &[
                    ("subscriptions", &subs),
                    ("principals", r#"["owner@example.com", "alice@example.com"]"#),
                    ("stream_post_policy", policy),
                ],
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
    };
    create("announce", "2");
    create("mods", "4");
    create("veterans", "3");
    let send = |c: &squall_e2e::Client, stream: &str| {
        c.post("/api/v1/messages", &[("type", "stream"), ("to", stream), ("topic", "t"), ("content", "hi")]).unwrap()
    };
    let (status, body) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    let announce = body["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == "announce").unwrap();
    assert_eq!(announce["stream_post_policy"], 2);

    let msg = "Only organization administrators can send to this channel.";
    assert_error(&send(&alice, "announce"), 400, "BAD_REQUEST", msg);
    let msg = "Only organization administrators and moderators can send to this channel.";
    assert_error(&send(&alice, "mods"), 400, "BAD_REQUEST", msg);
    for stream in ["announce", "mods", "veterans"] {
        assert_eq!(send(&server.owner, stream).0, 200, "admins post anywhere");
    }
    assert_eq!(send(&alice, "veterans").0, 200, "no waiting period: nobody is new");
    // With a waiting period, alice (who just joined) is a new member.
    squall_e2e::sql_query(&server.database_url, "UPDATE realm SET waiting_period_threshold = 3").unwrap();
    assert_error(&send(&alice, "veterans"), 400, "BAD_REQUEST", "New members cannot send to this channel.");
    // Moderators may post where moderators are allowed.
    squall_e2e::sql_query(
        &server.database_url,
        &format!("UPDATE userprofile SET role = 300 WHERE id = {}", alice.user_id),
    )
    .unwrap();
    alice.wait_me(|me| me["role"] == 300).unwrap();
    assert_eq!(send(&alice, "mods").0, 200);
    let bad = server
        .owner
        .post("/api/v1/users/me/subscriptions", &[("subscriptions", r#"[{"name": "x"}]"#), ("stream_post_policy", "9")])
        .unwrap();
    assert_error(&bad, 400, "BAD_REQUEST", "Invalid stream_post_policy");
}

#[test]
fn wildcard_mentions_in_large_channels_need_permission() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let send = |c: &Client, content: &str| {
        c.post("/api/v1/messages", &[("type", "stream"), ("to", "general"), ("topic", "t"), ("content", content)])
            .unwrap()
    };
    // 2 subscribers: anyone may.
    assert_eq!(send(&alice, "@**all** hi").0, 200);
    for i in 0..15 {
        server.create_user(&format!("u{i}@example.com"), &format!("User {i}")).unwrap();
    }
    // 17 subscribers: only administrators, Zulip's default policy.
    assert_error(
        &send(&alice, "@**everyone** hi"),
        400,
        "STREAM_WILDCARD_MENTION_NOT_ALLOWED",
        "You do not have permission to use channel wildcard mentions in this channel.",
    );
    assert_eq!(send(&alice, "@_**all** silent is fine").0, 200, "silent wildcards notify nobody");
    assert_eq!(send(&server.owner, "@**channel** hi").0, 200);
    squall_e2e::sql_query(&server.database_url, "UPDATE realm SET wildcard_mention_policy = 2").unwrap();
    assert_eq!(send(&alice, "@**all** members may now").0, 200);
}

#[test]
fn text_the_database_cannot_store_is_a_client_error_not_a_500() {
    let server = Server::start().unwrap();
    server.owner.subscribe(&["general"]).unwrap();
    // PostgreSQL refuses NUL in text (22021): the client sent it, so it is a 400.
    let (status, body) = server
        .owner
        .post("/api/v1/messages", &[("type", "stream"), ("to", "general"), ("topic", "a\u{0}b"), ("content", "x")])
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["result"], "error");
    assert_eq!(body["code"], "BAD_REQUEST");
}

#[test]
fn nul_anywhere_in_a_request_is_a_400_never_a_500() {
    let server = Server::start().unwrap();
    let owner = &server.owner;
    owner.subscribe(&["general"]).unwrap();
    let anonymous = squall_e2e::Client::anonymous(&server.url);
    let narrow = r#"[{"operator": "channel", "operand": "gen\u0000eral"}]"#;
    let subs = r#"[{"name": "nul", "description": "a\u0000b"}]"#;
    let cases: Vec<(&str, (u16, serde_json::Value))> = vec![
        ("path", owner.get("/api/v1/users/a%00b@example.com", &[]).unwrap()),
        (
            "dm recipient",
            owner
                .post("/api/v1/messages", &[("type", "private"), ("to", "[\"a\u{0}b@x.com\"]"), ("content", "x")])
                .unwrap(),
        ),
        (
            "narrow operand",
            owner
                .get(
                    "/api/v1/messages",
                    &[("anchor", "newest"), ("num_before", "1"), ("num_after", "0"), ("narrow", narrow)],
                )
                .unwrap(),
        ),
        ("stream description", owner.post("/api/v1/users/me/subscriptions", &[("subscriptions", subs)]).unwrap()),
        (
            "fetch_api_key username",
            anonymous.post("/api/v1/fetch_api_key", &[("username", "a\u{0}b@x.com"), ("password", "x")]).unwrap(),
        ),
        (
            "POST /users",
            owner
                .post(
                    "/api/v1/users",
                    &[("email", "n@x.com"), ("password", "secret-secret"), ("full_name", "N\u{0}ul")],
                )
                .unwrap(),
        ),
        (
            "message content",
            owner
                .post(
                    "/api/v1/messages",
                    &[("type", "stream"), ("to", "general"), ("topic", "t"), ("content", "a\u{0}b")],
                )
                .unwrap(),
        ),
    ];
    for (what, (status, body)) in cases {
        assert!(status == 400 || status == 404, "{what}: {status} {body}");
        assert_eq!(body["result"], "error", "{what}: {body}");
    }
}
