//! User groups (`/user_groups...`, register `realm_user_groups`,
//! `user_group` events), group mentions, and archiving channels, against a
//! real server.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{assert_error, assert_schema, Client, Server};

fn ok(r: (u16, Value)) -> Value {
    assert_eq!(r.0, 200, "{}", r.1);
    r.1
}

/// The realm's groups by name.
fn group(c: &Client, name: &str) -> Value {
    let body = ok(c.get("/api/v1/user_groups", &[("include_deactivated_groups", "true")]).unwrap());
    assert_schema("/user_groups", "get", 200, &body);
    body["user_groups"].as_array().unwrap().iter().find(|g| g["name"] == name).cloned().unwrap_or(Value::Null)
}

#[test]
fn system_groups_follow_roles_and_cannot_be_changed() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let owners = group(&alice, "role:owners");
    assert_eq!(owners["members"], json!([owner_id(&server)]));
    assert_eq!(owners["is_system_group"], true);
    let admins = group(&alice, "role:administrators");
    assert_eq!(admins["direct_subgroup_ids"], json!([owners["id"]]));
    let members = group(&alice, "role:members");
    assert!(members["members"].as_array().unwrap().contains(&json!(alice.user_id)));
    let nobody = group(&alice, "role:nobody");
    assert_eq!(owners["can_mention_group"], nobody["id"], "nobody mentions a system group");
    let id = owners["id"].as_i64().unwrap();
    assert_error(
        &server.owner.raw_form("PATCH", &format!("/api/v1/user_groups/{id}"), &[("name", "bosses")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Insufficient permission",
    );
    assert_error(
        &alice
            .post(
                "/api/v1/messages",
                &[("type", "stream"), ("to", "general"), ("topic", "t"), ("content", "@*role:owners*")],
            )
            .unwrap(),
        400,
        "BAD_REQUEST",
        "You are not allowed to mention user group 'role:owners'.",
    );
}

#[test]
fn a_group_is_created_edited_filled_nested_and_deactivated_with_its_events() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (q, _, _) = bob.register(&[("event_types", r#"["user_group"]"#)]).unwrap();
    let members = json!([alice.user_id]).to_string();
    let form = [("name", "support"), ("description", "Helpers"), ("members", members.as_str())];
    let created = ok(alice.post("/api/v1/user_groups/create", &form).unwrap());
    assert_schema("/user_groups/create", "post", 200, &created);
    assert_error(
        &alice.post("/api/v1/user_groups/create", &form).unwrap(),
        400,
        "BAD_REQUEST",
        "User group 'support' already exists.",
    );
    assert_error(
        &alice
            .post("/api/v1/user_groups/create", &[("name", "role:x"), ("description", ""), ("members", "[]")])
            .unwrap(),
        400,
        "BAD_REQUEST",
        "User group name cannot start with 'role:'.",
    );
    assert_error(
        &alice
            .post("/api/v1/user_groups/create", &[("name", "x"), ("description", ""), ("members", "[999999]")])
            .unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid user ID: 999999",
    );
    let support = group(&alice, "support");
    let id = support["id"].as_i64().unwrap();
    assert_eq!(support["members"], json!([alice.user_id]));
    assert_eq!(support["creator_id"], alice.user_id);
    assert_eq!(support["can_manage_group"], json!({"direct_members": [alice.user_id], "direct_subgroups": []}));

    // Only its manager (creator or administrator) changes it.
    assert_error(
        &bob.raw_form("PATCH", &format!("/api/v1/user_groups/{id}"), &[("description", "mine")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Insufficient permission",
    );
    ok(alice.raw_form("PATCH", &format!("/api/v1/user_groups/{id}"), &[("description", "Helpers, all day")]).unwrap());
    let add = json!([bob.user_id]).to_string();
    ok(alice.post(&format!("/api/v1/user_groups/{id}/members"), &[("add", &add)]).unwrap());
    assert_error(
        &alice.post(&format!("/api/v1/user_groups/{id}/members"), &[("add", &add)]).unwrap(),
        400,
        "BAD_REQUEST",
        &format!("User {} is already a member of this group", bob.user_id),
    );
    let members = ok(alice.get(&format!("/api/v1/user_groups/{id}/members"), &[]).unwrap());
    assert_eq!(members["members"], json!([alice.user_id, bob.user_id]));
    let is = ok(alice.get(&format!("/api/v1/user_groups/{id}/members/{}", bob.user_id), &[]).unwrap());
    assert_eq!(is["is_user_group_member"], true);

    // Nesting: a subgroup's members are the group's, cycles are refused.
    let inner = ok(server
        .owner
        .post(
            "/api/v1/user_groups/create",
            &[("name", "oncall"), ("description", ""), ("members", &json!([owner_id(&server)]).to_string())],
        )
        .unwrap());
    let _ = inner;
    let oncall = group(&alice, "oncall")["id"].as_i64().unwrap();
    ok(alice.post(&format!("/api/v1/user_groups/{id}/subgroups"), &[("add", &json!([oncall]).to_string())]).unwrap());
    let all = ok(alice.get(&format!("/api/v1/user_groups/{id}/members"), &[]).unwrap());
    assert_eq!(all["members"], json!([owner_id(&server), alice.user_id, bob.user_id]));
    assert_error(
        &server
            .owner
            .post(&format!("/api/v1/user_groups/{oncall}/subgroups"), &[("add", &json!([id]).to_string())])
            .unwrap(),
        400,
        "BAD_REQUEST",
        &format!("User group {oncall} is already a subgroup of one of the passed subgroups."),
    );
    // Bob may leave (only himself), and come back only through a manager.
    let me = json!([bob.user_id]).to_string();
    ok(bob.post(&format!("/api/v1/user_groups/{id}/members"), &[("delete", &me)]).unwrap());
    assert_error(
        &bob.post(&format!("/api/v1/user_groups/{id}/members"), &[("add", &me)]).unwrap(),
        400,
        "BAD_REQUEST",
        "Insufficient permission",
    );
    ok(alice.post(&format!("/api/v1/user_groups/{id}/members"), &[("add", &me)]).unwrap());
    // Who may mention it, Zulip's way: {"new", "old"}; a stale "old" is refused.
    let everyone = group(&alice, "role:everyone")["id"].as_i64().unwrap();
    let members_group = group(&alice, "role:members")["id"].as_i64().unwrap();
    let change = json!({"new": members_group, "old": everyone}).to_string();
    let path = format!("/api/v1/user_groups/{id}");
    ok(alice.raw_form("PATCH", &path, &[("can_mention_group", &change)]).unwrap());
    assert_error(
        &alice.raw_form("PATCH", &path, &[("can_mention_group", &change)]).unwrap(),
        400,
        "EXPECTATION_MISMATCH",
        "'old' value does not match the expected value.",
    );
    assert_eq!(group(&alice, "support")["can_mention_group"], members_group);
    // In use as a subgroup: it stays.
    let refused = server.owner.post(&format!("/api/v1/user_groups/{oncall}/deactivate"), &[]).unwrap();
    assert_error(&refused, 400, "CANNOT_DEACTIVATE_GROUP_IN_USE", "Cannot deactivate user group in use.");
    assert_eq!(refused.1["objections"], json!([{"type": "subgroup", "supergroup_ids": [id]}]));
    ok(alice.post(&format!("/api/v1/user_groups/{id}/deactivate"), &[]).unwrap());
    assert_eq!(group(&alice, "support")["deactivated"], true);
    let (_, reg) = bob.post("/api/v1/register", &[("fetch_event_types", r#"["realm_user_groups"]"#)]).unwrap();
    assert!(!reg["realm_user_groups"].as_array().unwrap().iter().any(|g| g["name"] == "support"), "deactivated: gone");

    let (_, events) = bob.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let ops: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        vec![
            "add",
            "update",
            "add_members",
            "add",
            "add_subgroups",
            "remove_members",
            "add_members",
            "update",
            "remove"
        ]
    );
    assert_eq!(events["events"][1]["data"], json!({"description": "Helpers, all day"}));
}

#[test]
fn a_group_mention_flags_its_members_through_subgroups() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let carol = server.create_user("carol@example.com", "Carol").unwrap();
    let members = |ids: &[i64]| json!(ids).to_string();
    ok(alice
        .post(
            "/api/v1/user_groups/create",
            &[("name", "inner"), ("description", ""), ("members", &members(&[bob.user_id]))],
        )
        .unwrap());
    let inner = group(&alice, "inner")["id"].as_i64().unwrap();
    ok(alice
        .post(
            "/api/v1/user_groups/create",
            &[
                ("name", "outer"),
                ("description", ""),
                ("members", &members(&[carol.user_id])),
                ("subgroups", &members(&[inner])),
            ],
        )
        .unwrap());
    let outer = group(&alice, "outer")["id"].as_i64().unwrap();
    let (q, _, _) = bob.register(&[("event_types", r#"["message"]"#), ("apply_markdown", "true")]).unwrap();
    let id = alice.send_stream("general", "t", "ping @*outer*, quietly @_*inner*, not @*nobody*").unwrap();
    let (_, events) = bob.get_events(&q, -1, true).unwrap();
    let m = &events["events"][0];
    assert_eq!(
        m["message"]["content"],
        format!(
            "<p>ping <span class=\"user-group-mention\" data-user-group-id=\"{outer}\">@outer</span>, quietly \
             <span class=\"user-group-mention silent\" data-user-group-id=\"{inner}\">inner</span>, not @<em>nobody</em></p>"
        )
    );
    assert!(m["flags"].as_array().unwrap().contains(&json!("mentioned")), "bob is in outer through inner: {m}");
    let flags = |c: &Client| {
        let (_, body) =
            c.get("/api/v1/messages", &[("anchor", &id.to_string()), ("num_before", "0"), ("num_after", "0")]).unwrap();
        body["messages"][0]["flags"].clone()
    };
    assert!(flags(&carol).as_array().unwrap().contains(&json!("mentioned")));
    assert!(!flags(&alice).as_array().unwrap().contains(&json!("mentioned")), "the sender is not in the group");
}

#[test]
fn an_archived_channel_is_renamed_hidden_and_told() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    alice.subscribe(&["archive me"]).unwrap();
    server.owner.subscribe(&["archive me"]).unwrap();
    let unread = alice.send_stream("archive me", "t", "unread for the owner").unwrap();
    let unread_ids = |reg: &Value| {
        reg["unread_msgs"]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["unread_message_ids"].as_array().unwrap().clone())
            .collect::<Vec<Value>>()
    };
    let fetch = [("fetch_event_types", r#"["message", "update_message_flags"]"#)];
    assert!(unread_ids(&server.owner.post("/api/v1/register", &fetch).unwrap().1).contains(&json!(unread)));
    let (q, _, _) = alice.register(&[("event_types", r#"["stream"]"#)]).unwrap();
    let (_, streams) = alice.get("/api/v1/streams", &[]).unwrap();
    let id = streams["streams"].as_array().unwrap().iter().find(|s| s["name"] == "archive me").unwrap()["stream_id"]
        .as_i64()
        .unwrap();
    assert_error(
        &alice.delete(&format!("/api/v1/streams/{id}"), &[]).unwrap(),
        400,
        "UNAUTHORIZED_PRINCIPAL",
        "Must be an organization administrator",
    );
    ok(server.owner.delete(&format!("/api/v1/streams/{id}"), &[]).unwrap());
    assert_error(
        &server.owner.delete(&format!("/api/v1/streams/{id}"), &[]).unwrap(),
        400,
        "BAD_REQUEST",
        "Channel is already deactivated",
    );
    let (_, events) = alice.get_events(&q, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    assert_eq!(events["events"][0]["op"], "delete");
    assert_eq!(events["events"][0]["streams"][0]["name"], "archive me");
    let (_, streams) = server.owner.get("/api/v1/streams", &[("include_all_active", "true")]).unwrap();
    assert!(!streams["streams"].as_array().unwrap().iter().any(|s| s["stream_id"] == id), "{streams}");
    let (_, subs) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    assert!(!subs["subscriptions"].as_array().unwrap().iter().any(|s| s["stream_id"] == id));
    let send = |to: &str| {
        alice.post("/api/v1/messages", &[("type", "stream"), ("to", to), ("topic", "t"), ("content", "x")]).unwrap()
    };
    assert_error(&send("archive me"), 400, "STREAM_DOES_NOT_EXIST", "Channel 'archive me' does not exist");
    assert_eq!(send(&id.to_string()).0, 400, "by id: not authorized");
    // It cannot be changed, nor joined by its new name.
    assert_error(
        &server.owner.raw_form("PATCH", &format!("/api/v1/streams/{id}"), &[("description", "back")]).unwrap(),
        400,
        "BAD_REQUEST",
        "Invalid channel ID",
    );
    // The name is free again.
    alice.subscribe(&["archive me"]).unwrap();
    let (_, reg) = server.owner.post("/api/v1/register", &fetch).unwrap();
    assert!(!unread_ids(&reg).contains(&json!(unread)), "the archived channel's messages were marked read: {reg}");
}

/// The realm owner's user id.
fn owner_id(server: &squall_e2e::Server) -> i64 {
    let (_, me) = server.owner.get("/api/v1/users/me", &[]).unwrap();
    me["user_id"].as_i64().unwrap()
}
