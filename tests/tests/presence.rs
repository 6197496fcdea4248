//! Presence over HTTP: reports, formats, events and their limits.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::json;
use squall_e2e::{assert_error, assert_schema, Server};

#[test]
fn presence_reports_formats_and_events() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let r = bob.post("/api/v1/users/me/presence", &[("status", "away")]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Invalid status: away");
    assert_error(
        &bob.post("/api/v1/users/me/presence", &[]).unwrap(),
        400,
        "REQUEST_VARIABLE_MISSING",
        "Missing 'status' argument",
    );

    let (full, _, _) = alice.register(&[("event_types", r#"["presence"]"#)]).unwrap();
    let (slim, _, state) = alice.register(&[("event_types", r#"["presence"]"#), ("slim_presence", "true")]).unwrap();
    assert_eq!(state["presences"], json!({}));
    assert_schema("/register", "post", 200, &state);

    let (status, body) = bob.post("/api/v1/users/me/presence", &[("status", "active")]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_schema("/users/me/presence", "post", 200, &body);
    assert_eq!(
        body["presences"]["bob@example.com"]["aggregated"]["status"], "active",
        "legacy format by default: {body}"
    );
    let first_update = body["presence_last_update_id"].as_i64().unwrap();
    assert!(first_update >= 1);

    let (_, events) = alice.get_events(&full, -1, true).unwrap();
    assert_schema("/events", "get", 200, &events);
    let e = &events["events"][0];
    assert_eq!(
        (e["type"].clone(), e["user_id"].clone(), e["email"].clone()),
        (json!("presence"), json!(bob.user_id), json!("bob@example.com"))
    );
    assert_eq!(e["presence"]["website"]["status"], "active");
    let (_, events) = alice.get_events(&slim, -1, true).unwrap();
    assert!(events["events"][0].get("email").is_none(), "slim presence drops email: {events}");

    // Reporting again at once changes nothing and tells nobody; idle from
    // a second client neither.
    bob.post("/api/v1/users/me/presence", &[("status", "active")]).unwrap();
    bob.post("/api/v1/users/me/presence", &[("status", "idle")]).unwrap();
    let (_, events) = alice.get_events(&full, 0, true).unwrap();
    assert_eq!(events["events"], json!([]));

    // Modern format, and only what changed after a given update id.
    let (_, body) = alice.post("/api/v1/users/me/presence", &[("status", "idle"), ("slim_presence", "true")]).unwrap();
    let bob_modern = &body["presences"][bob.user_id.to_string()];
    assert!(bob_modern["active_timestamp"].as_i64().unwrap() > 0, "{body}");
    let last = body["presence_last_update_id"].as_i64().unwrap();
    let (_, body) = bob
        .post(
            "/api/v1/users/me/presence",
            &[("status", "idle"), ("last_update_id", &last.to_string()), ("ping_only", "false")],
        )
        .unwrap();
    assert_eq!(body["presences"], json!({}), "nothing changed since {last}: {body}");
    let (_, body) = bob.post("/api/v1/users/me/presence", &[("status", "idle"), ("ping_only", "true")]).unwrap();
    assert!(body.get("presences").is_none());

    let (status, body) = alice.get("/api/v1/realm/presence", &[]).unwrap();
    assert_eq!(status, 200);
    assert_schema("/realm/presence", "get", 200, &body);
    let keys: Vec<&String> = body["presences"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["alice@example.com", "bob@example.com"]);
}

#[test]
fn one_users_presence_by_id_or_email() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let path = format!("/api/v1/users/{}/presence", bob.user_id);
    assert_error(&alice.get(&path, &[]).unwrap(), 400, "BAD_REQUEST", &format!("No presence data for {}", bob.user_id));

    let (status, body) = bob.post("/api/v1/users/me/presence", &[("status", "active")]).unwrap();
    assert_eq!(status, 200, "{body}");
    for key in [bob.user_id.to_string(), "bob@example.com".to_owned()] {
        let (status, body) = alice.get(&format!("/api/v1/users/{key}/presence"), &[]).unwrap();
        assert_eq!(status, 200, "{body}");
        assert_schema("/users/{user_id_or_email}/presence", "get", 200, &body);
        let aggregated = &body["presence"]["aggregated"];
        assert_eq!(aggregated["status"], "active", "{body}");
        assert_eq!(body["presence"]["website"], *aggregated);
        assert!(aggregated["timestamp"].as_i64().unwrap() > 1_700_000_000);
    }
    for missing in ["999999", "nobody@example.com"] {
        let r = alice.get(&format!("/api/v1/users/{missing}/presence"), &[]).unwrap();
        assert_error(&r, 400, "BAD_REQUEST", "No such user");
    }
}

#[test]
fn any_history_length_is_answered_not_a_500() {
    let server = Server::start().unwrap();
    for days in ["2466233285", "-3", "9223372036854775807"] {
        let (status, body) = server
            .owner
            .post("/api/v1/users/me/presence", &[("status", "active"), ("history_limit_days", days)])
            .unwrap();
        assert_eq!(status, 200, "history_limit_days={days}: {body}");
    }
}
