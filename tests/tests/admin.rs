//! `squall admin create-users`: bulk accounts for load tests.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use squall_e2e::{assert_error, assert_schema, Client, Server};

#[test]
fn bulk_users_work_with_their_keys_and_are_kept_on_a_second_run() {
    let server = Server::start().unwrap();
    let made = server.admin(&["create-users", "--count", "5", "--prefix", "bulk-"]).unwrap();
    let made = made.as_array().unwrap();
    assert_eq!(made.len(), 5);
    assert_eq!(made[4]["email"], "bulk-4@loadtest.example");
    let c = Client::new(&server.url, made[0]["email"].as_str().unwrap(), made[0]["api_key"].as_str().unwrap());
    let (status, me) = c.get("/api/v1/users/me", &[]).unwrap();
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], made[0]["user_id"]);
    assert_eq!(me["role"], 400, "members");
    // Like POST /users, they join the default streams.
    let (_, subs) = c.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    assert_eq!(subs["subscriptions"][0]["name"], "general");

    // Again with more: the first five keep their keys.
    let state = std::env::temp_dir().join(format!("lt-state-{}.json", rand::random::<u64>()));
    let out = server
        .admin(&["create-users", "--count", "7", "--prefix", "bulk-", "--site", "http://s", "--loadtest-state"])
        .map(|_| ())
        .unwrap_err();
    assert!(out.to_string().contains("failed"), "--loadtest-state needs a value");
    let out = server
        .admin(&[
            "create-users",
            "--count",
            "7",
            "--prefix",
            "bulk-",
            "--site",
            "http://s",
            "--loadtest-state",
            state.to_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(out["users"], 7);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let site = saved["sites"]["http://s"].as_object().unwrap();
    assert_eq!(site.len(), 7);
    assert_eq!(site["bulk-0@loadtest.example"]["api_key"], made[0]["api_key"]);
    let _ = std::fs::remove_file(state);
}

#[test]
fn administrators_rename_users_and_change_roles_with_zulips_rules() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (q, _, _) = bob.register(&[("event_types", r#"["realm_user"]"#)]).unwrap();
    let patch =
        |c: &Client, id: i64, form: &[(&str, &str)]| c.raw_form("PATCH", &format!("/api/v1/users/{id}"), form).unwrap();
    let o = &server.owner;
    assert_eq!(patch(o, alice.user_id, &[("full_name", "Alice Admin"), ("role", "200")]).0, 200);
    let (_, me) = alice.get("/api/v1/users/me", &[]).unwrap();
    assert_eq!((&me["full_name"], &me["role"]), (&serde_json::json!("Alice Admin"), &serde_json::json!(200)));
    let (_, events) = bob.get_events(&q, -1, true).unwrap();
    let people: Vec<serde_json::Value> =
        events["events"].as_array().unwrap().iter().map(|e| e["person"].clone()).collect();
    assert_eq!(
        people,
        vec![
            serde_json::json!({"user_id": alice.user_id, "full_name": "Alice Admin"}),
            serde_json::json!({"user_id": alice.user_id, "role": 200}),
        ]
    );
    assert_schema("/events", "get", 200, &events);

    // An administrator, not an owner: no owners made or unmade.
    assert_error(
        &patch(&alice, bob.user_id, &[("role", "100")]),
        400,
        "UNAUTHORIZED_PRINCIPAL",
        "Must be an organization owner",
    );
    assert_eq!(patch(&alice, bob.user_id, &[("role", "300")]).0, 200, "a moderator, though");
    assert_error(&patch(&bob, alice.user_id, &[("full_name", "X")]), 400, "BAD_REQUEST", "Insufficient permission");
    assert_error(&patch(o, bob.user_id, &[("role", "250")]), 400, "BAD_REQUEST", "Invalid role");
    assert_error(&patch(o, bob.user_id, &[("full_name", "  ")]), 400, "BAD_REQUEST", "Name too short!");
    assert_error(
        &patch(o, bob.user_id, &[("full_name", "bad*name")]),
        400,
        "BAD_REQUEST",
        "Invalid characters in name!",
    );
    assert_error(&patch(o, 999_999, &[("full_name", "Nobody")]), 400, "BAD_REQUEST", "No such user");
    let (_, owner) = o.get("/api/v1/users/me", &[]).unwrap();
    let owner_id = owner["user_id"].as_i64().unwrap();
    assert_error(
        &patch(o, owner_id, &[("role", "400")]),
        400,
        "BAD_REQUEST",
        "The owner permission cannot be removed from the only organization owner.",
    );
}

#[test]
fn administrators_change_channels_and_everyone_who_sees_them_hears_it() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["stream"]"#)]).unwrap();
    let o = &server.owner;
    o.subscribe(&["other"]).unwrap();
    let (_, subs) = o.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let id_of = |name: &str| -> i64 {
        subs["subscriptions"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["stream_id"]
            .as_i64()
            .unwrap()
    };
    let (general, other) = (id_of("general"), id_of("other"));
    let patch = |c: &Client, id: i64, form: &[(&str, &str)]| {
        c.raw_form("PATCH", &format!("/api/v1/streams/{id}"), form).unwrap()
    };
    let r = patch(o, general, &[("new_name", "lobby"), ("description", "Where we\nmeet"), ("stream_post_policy", "2")]);
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    // (The creation of "other" came first.)
    let props: Vec<(&str, &serde_json::Value)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["op"] == "update")
        .map(|e| (e["property"].as_str().unwrap(), &e["value"]))
        .collect();
    assert_eq!(
        props,
        vec![
            ("name", &serde_json::json!("lobby")),
            ("description", &serde_json::json!("Where we meet")),
            ("stream_post_policy", &serde_json::json!(2)),
        ]
    );
    let (_, streams) = alice.get("/api/v1/streams", &[]).unwrap();
    let lobby = streams["streams"].as_array().unwrap().iter().find(|s| s["stream_id"] == general).cloned().unwrap();
    assert_eq!(
        (&lobby["name"], &lobby["description"]),
        (&serde_json::json!("lobby"), &serde_json::json!("Where we meet"))
    );

    // Made private: Alice (not subscribed to it) hears it, then no longer sees it.
    assert_eq!(patch(o, other, &[("is_private", "true")]).0, 200);
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    let last = events["events"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!((&last["property"], &last["value"]), (&serde_json::json!("invite_only"), &serde_json::json!(true)));
    let (_, streams) = alice.get("/api/v1/streams", &[]).unwrap();
    assert!(!streams["streams"].as_array().unwrap().iter().any(|s| s["stream_id"] == other));

    assert_error(
        &patch(&alice, general, &[("description", "mine")]),
        400,
        "UNAUTHORIZED_PRINCIPAL",
        "Must be an organization administrator",
    );
    assert_error(&patch(o, general, &[("new_name", "OTHER")]), 400, "BAD_REQUEST", "Channel 'OTHER' already exists");
    assert_error(&patch(o, general, &[("new_name", "  ")]), 400, "BAD_REQUEST", "Channel name can't be empty.");
    assert_error(&patch(o, general, &[("stream_post_policy", "9")]), 400, "BAD_REQUEST", "Invalid stream_post_policy");
    assert_error(&patch(o, 999_999, &[("description", "x")]), 400, "BAD_REQUEST", "Invalid channel ID");
}

#[test]
fn administrators_change_organization_settings_and_everyone_hears_it() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[("event_types", r#"["realm"]"#)]).unwrap();
    let o = &server.owner;
    let r = o
        .raw_form(
            "PATCH",
            "/api/v1/realm",
            &[("name", "Renamed Realm"), ("waiting_period_threshold", "3"), ("wildcard_mention_policy", "2")],
        )
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["name"], "Renamed Realm");
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let props: Vec<(&str, &serde_json::Value)> =
        events["events"].as_array().unwrap().iter().map(|e| (e["property"].as_str().unwrap(), &e["value"])).collect();
    assert_eq!(
        props,
        vec![
            ("name", &serde_json::json!("Renamed Realm")),
            ("waiting_period_threshold", &serde_json::json!(3)),
            ("wildcard_mention_policy", &serde_json::json!(2)),
        ]
    );
    let (_, reg) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["realm"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    assert_eq!(
        (&reg["realm_name"], &reg["realm_waiting_period_threshold"], &reg["realm_wildcard_mention_policy"]),
        (&serde_json::json!("Renamed Realm"), &serde_json::json!(3), &serde_json::json!(2))
    );
    let patch = |c: &Client, form: &[(&str, &str)]| c.raw_form("PATCH", "/api/v1/realm", form).unwrap();
    assert_error(
        &patch(&alice, &[("name", "Mine")]),
        400,
        "UNAUTHORIZED_PRINCIPAL",
        "Must be an organization administrator",
    );
    assert_error(&patch(o, &[("wildcard_mention_policy", "4")]), 400, "BAD_REQUEST", "Invalid wildcard_mention_policy");
    assert_error(
        &patch(o, &[("name", &"n".repeat(41))]),
        400,
        "BAD_REQUEST",
        "name is too long (limit: 40 characters)",
    );
    assert_error(
        &patch(o, &[("waiting_period_threshold", "-1")]),
        400,
        "BAD_REQUEST",
        "Invalid waiting_period_threshold",
    );
}

#[test]
fn the_editing_policy_is_the_realms_and_administrators_change_it() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let o = &server.owner;
    let id = alice.send_stream("general", "t", "first draft").unwrap();
    let edit =
        |content: &str| alice.raw_form("PATCH", &format!("/api/v1/messages/{id}"), &[("content", content)]).unwrap();
    assert_eq!(edit("second draft").0, 200);

    let (q, _, _) = alice.register(&[("event_types", r#"["realm"]"#)]).unwrap();
    let r = o
        .raw_form(
            "PATCH",
            "/api/v1/realm",
            &[("allow_message_editing", "false"), ("message_content_edit_limit_seconds", "unlimited")],
        )
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_error(&edit("third draft"), 400, "BAD_REQUEST", "Your organization has turned off message editing");
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    assert_eq!(
        events["events"][0],
        serde_json::json!({"type": "realm", "op": "update_dict", "property": "default", "id": 0,
                           "data": {"allow_message_editing": false, "message_content_edit_limit_seconds": null}})
    );
    let (_, reg) = alice.post("/api/v1/register", &[("fetch_event_types", r#"["realm"]"#)]).unwrap();
    assert_schema("/register", "post", 200, &reg);
    assert_eq!(reg["realm_allow_message_editing"], false);
    assert!(reg["realm_message_content_edit_limit_seconds"].is_null(), "unlimited");
    assert_eq!(reg["realm_message_content_delete_limit_seconds"], 600, "unchanged: Zulip's default");

    // Editing back on with a one-second limit: a message older than the
    // limit (plus Zulip's 20 s grace) is past it; this one is not yet.
    let r = o
        .raw_form(
            "PATCH",
            "/api/v1/realm",
            &[("allow_message_editing", "true"), ("message_content_edit_limit_seconds", "1")],
        )
        .unwrap();
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(edit("third draft").0, 200);
    let patch = |form: &[(&str, &str)]| o.raw_form("PATCH", "/api/v1/realm", form).unwrap();
    assert_error(
        &patch(&[("message_content_delete_limit_seconds", "0")]),
        400,
        "BAD_REQUEST",
        "Invalid message_content_delete_limit_seconds",
    );
    assert_error(
        &alice.raw_form("PATCH", "/api/v1/realm", &[("allow_message_editing", "true")]).unwrap(),
        400,
        "UNAUTHORIZED_PRINCIPAL",
        "Must be an organization administrator",
    );
}
