//! The backend caches users by API key; every change to a cached user is
//! seen by the next request: changes made through this server at once,
//! changes made elsewhere (another backend process, another host, SQL)
//! as soon as PostgreSQL's notification arrives.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::Value;
use squall_e2e::{assert_error, sql_query, Server};
use std::time::{Duration, Instant};

fn ok(r: (u16, Value)) -> Value {
    assert_eq!(r.0, 200, "{}", r.1);
    r.1
}

#[test]
fn deactivation_and_key_rotation_through_the_api_apply_to_the_next_request() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    // Cached by now.
    for _ in 0..3 {
        ok(alice.get("/api/v1/users/me", &[]).unwrap());
        ok(bob.get("/api/v1/users/me", &[]).unwrap());
    }
    // A new key: the old one fails on the very next request.
    let fresh = ok(alice.post("/api/v1/users/me/api_key/regenerate", &[]).unwrap());
    assert_error(&alice.get("/api/v1/users/me", &[]).unwrap(), 401, "UNAUTHORIZED", "Invalid API key");
    let renewed = squall_e2e::Client::new(&server.url, &alice.email, fresh["api_key"].as_str().unwrap());
    ok(renewed.get("/api/v1/users/me", &[]).unwrap());
    // Deactivated by an administrator: refused on the next request.
    ok(server.owner.delete(&format!("/api/v1/users/{}", bob.user_id), &[]).unwrap());
    assert_error(&bob.get("/api/v1/users/me", &[]).unwrap(), 401, "UNAUTHORIZED", "Account is deactivated");
    // A role change shows in what the next request may do.
    let role = serde_json::json!(200).to_string();
    ok(server.owner.raw_form("PATCH", &format!("/api/v1/users/{}", renewed_id(&renewed)), &[("role", &role)]).unwrap());
    let me = ok(renewed.get("/api/v1/users/me", &[]).unwrap());
    assert_eq!(me["role"], 200, "{me}");
}

fn renewed_id(c: &squall_e2e::Client) -> i64 {
    ok(c.get("/api/v1/users/me", &[]).unwrap())["user_id"].as_i64().unwrap()
}

#[test]
fn changes_made_elsewhere_reach_the_cache_through_postgresql() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    for _ in 0..3 {
        ok(alice.get("/api/v1/users/me", &[]).unwrap());
    }
    // As another backend process (or an operator) would: straight in SQL.
    // Without the notification the cached user would last a minute.
    sql_query(
        &server.database_url,
        &format!("UPDATE userprofile SET full_name = 'Renamed' WHERE id = {}", alice.user_id),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let me = ok(alice.get("/api/v1/users/me", &[]).unwrap());
        if me["full_name"] == "Renamed" {
            break;
        }
        assert!(Instant::now() < deadline, "the cache kept the old name: {me}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A channel renamed elsewhere: sends by the old name stop.
    alice.subscribe(&["lobby"]).unwrap();
    for _ in 0..3 {
        alice.send_stream("lobby", "t", "cached now").unwrap();
    }
    sql_query(&server.database_url, "UPDATE stream SET name = 'hall' WHERE name = 'lobby'").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let send =
        || alice.post("/api/v1/messages", &[("type", "stream"), ("to", "lobby"), ("topic", "t"), ("content", "x")]);
    while send().unwrap().0 == 200 {
        assert!(Instant::now() < deadline, "the cache kept the channel's old name");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_error(&send().unwrap(), 400, "STREAM_DOES_NOT_EXIST", "Channel 'lobby' does not exist");
    sql_query(&server.database_url, &format!("UPDATE userprofile SET is_active = false WHERE id = {}", alice.user_id))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alice.get("/api/v1/users/me", &[]).unwrap().0 != 401 {
        assert!(Instant::now() < deadline, "a deactivated user stayed cached");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn unsubscribing_and_renaming_a_channel_apply_to_the_next_request() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    alice.subscribe(&["lobby"]).unwrap();
    alice.send_stream("lobby", "t", "hello").unwrap();
    let (_, streams) = alice.get("/api/v1/streams", &[]).unwrap();
    let id = streams["streams"].as_array().unwrap().iter().find(|s| s["name"] == "lobby").unwrap()["stream_id"]
        .as_i64()
        .unwrap();
    ok(server.owner.raw_form("PATCH", &format!("/api/v1/streams/{id}"), &[("new_name", "hall")]).unwrap());
    assert_error(
        &alice
            .post("/api/v1/messages", &[("type", "stream"), ("to", "lobby"), ("topic", "t"), ("content", "x")])
            .unwrap(),
        400,
        "STREAM_DOES_NOT_EXIST",
        "Channel 'lobby' does not exist",
    );
    alice.send_stream("hall", "t", "renamed").unwrap();
    ok(server.owner.raw_form("PATCH", &format!("/api/v1/streams/{id}"), &[("is_private", "true")]).unwrap());
    ok(alice.delete("/api/v1/users/me/subscriptions", &[("subscriptions", r#"["hall"]"#)]).unwrap());
    assert_error(
        &alice
            .post("/api/v1/messages", &[("type", "stream"), ("to", "hall"), ("topic", "t"), ("content", "x")])
            .unwrap(),
        400,
        "BAD_REQUEST",
        "Not authorized to send to channel 'hall'",
    );
}

/// Whether `user_id` has a UserMessage row for `message`.
fn has_row(server: &Server, user_id: i64, message: i64) -> bool {
    !sql_query(
        &server.database_url,
        &format!("SELECT 1 FROM usermessage WHERE user_profile_id = {user_id} AND message_id = {message}"),
    )
    .unwrap()
    .is_empty()
}

/// Sends to `lobby` until `bob`'s row for the new message is `wanted` (a
/// change made in SQL reaches the cache through PostgreSQL's notification).
fn until_row(server: &Server, alice: &squall_e2e::Client, bob_id: i64, wanted: bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = alice
            .post("/api/v1/messages", &[("type", "stream"), ("to", "lobby"), ("topic", "t"), ("content", "probe")])
            .unwrap();
        // Probing fast may meet the rate limit: wait and probe again.
        if status != 429 {
            assert_eq!(status, 200, "{body}");
            if has_row(server, bob_id, body["id"].as_i64().unwrap()) == wanted {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the cached subscriber list kept bob's old state: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn subscriber_changes_apply_to_the_next_message() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    alice.subscribe(&["lobby"]).unwrap();
    // The subscriber list is cached by now.
    for _ in 0..3 {
        alice.send_stream("lobby", "t", "cached").unwrap();
    }
    // Through the API: the very next message.
    bob.subscribe(&["lobby"]).unwrap();
    let after_subscribe = alice.send_stream("lobby", "t", "bob is in").unwrap();
    assert!(has_row(&server, bob.user_id, after_subscribe), "a new subscriber missed the next message");
    ok(bob.delete("/api/v1/users/me/subscriptions", &[("subscriptions", r#"["lobby"]"#)]).unwrap());
    let after_unsubscribe = alice.send_stream("lobby", "t", "bob is out").unwrap();
    assert!(!has_row(&server, bob.user_id, after_unsubscribe), "an unsubscribed user still got a row");
    bob.subscribe(&["lobby"]).unwrap();
    assert!(has_row(&server, bob.user_id, alice.send_stream("lobby", "t", "back").unwrap()));

    // Elsewhere (another process, an operator): through PostgreSQL.
    let sql = |q: &str| sql_query(&server.database_url, q).unwrap();
    sql(&format!("UPDATE subscription SET active = false WHERE user_profile_id = {}", bob.user_id));
    until_row(&server, &alice, bob.user_id, false, "unsubscribed in SQL");
    sql(&format!("UPDATE subscription SET active = true WHERE user_profile_id = {}", bob.user_id));
    until_row(&server, &alice, bob.user_id, true, "subscribed again in SQL");
    // Soft deactivation by the job (another process): plain messages stop
    // giving bob rows; and back.
    sql(&format!("UPDATE userprofile SET long_term_idle = true WHERE id = {}", bob.user_id));
    until_row(&server, &alice, bob.user_id, false, "soft-deactivated");
    sql(&format!("UPDATE userprofile SET long_term_idle = false WHERE id = {}", bob.user_id));
    until_row(&server, &alice, bob.user_id, true, "active again");
}
