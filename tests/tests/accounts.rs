//! An account's lifecycle (deactivate, reactivate, a new API key) and the
//! fixes around it: old credentials fail on `/events` with the very next
//! request, `local_message_id` goes only to the sender's own queue, and a
//! queue-less `GET /events` is rate-limited like `POST /register`.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{assert_error, assert_schema, sql_query, Client, Server, ServerOptions};
use squall_shard_router::placement::Topology;
use std::thread;

/// Every event in `queue_id` after `last`, without waiting, checked
/// against the OpenAPI description (which does not describe a message
/// event's `local_message_id`, so such events are not).
fn drain(c: &Client, queue_id: &str, last: i64) -> Vec<Value> {
    let (status, body) = c.get_events(queue_id, last, true).unwrap();
    assert_eq!(status, 200, "{body}");
    let events = body["events"].as_array().unwrap().clone();
    if events.iter().all(|e| e.get("local_message_id").is_none()) {
        assert_schema("/events", "get", 200, &body);
    }
    events
}

fn realm_user_updates(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| e["type"] == "realm_user" && e["op"] == "update").map(|e| e["person"].clone()).collect()
}

/// Deactivates `target` as `admin`, checking the response.
fn deactivate(admin: &Client, target: &Client) {
    let (status, body) = admin.delete(&format!("/api/v1/users/{}", target.user_id), &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_schema("/users/{user_id}", "delete", 200, &body);
}

#[test]
fn deactivation_shuts_events_at_once_and_deletes_the_users_queues() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (watch, watch_last, _) = server.owner.register(&[("event_types", r#"["realm_user"]"#)]).unwrap();
    let (q, _, _) = alice.register(&[]).unwrap();
    let (parked_q, _, _) = alice.register(&[]).unwrap();
    // Alice's credentials are now in the cache of the core that owns her
    // queues (every poll of them is authenticated there).
    assert_eq!(alice.get_events(&q, -1, true).unwrap().0, 200);
    let poller = {
        let alice = alice.clone();
        thread::spawn(move || alice.get_events(&parked_q, -1, false).unwrap())
    };
    server.wait_parked(1).unwrap();
    assert_eq!(server.metric("squall_queues").unwrap(), 3);

    deactivate(&server.owner, &alice);
    // Right after the DELETE returns, not 30 s later.
    let r = alice.get_events(&q, -1, true).unwrap();
    assert_error(&r, 401, "UNAUTHORIZED", "Account is deactivated");
    let r = alice.get("/api/v1/users/me", &[]).unwrap();
    assert_error(&r, 401, "UNAUTHORIZED", "Account is deactivated");
    // Her parked poll was answered as its queue went, and both queues are gone.
    let (status, body) = poller.join().unwrap();
    assert_eq!((status, body["events"].clone()), (200, json!([])), "{body}");
    assert_eq!(server.metric("squall_queues").unwrap(), 1, "only the owner's queue is left");

    let updates = realm_user_updates(&drain(&server.owner, &watch, watch_last));
    assert_eq!(updates, vec![json!({"user_id": alice.user_id, "is_active": false})]);
    let (_, users) = server.owner.get("/api/v1/users", &[]).unwrap();
    let row = users["members"].as_array().unwrap().iter().find(|m| m["user_id"] == alice.user_id).unwrap().clone();
    assert_eq!(row["is_active"], false);
    let r = Client::anonymous(&server.url)
        .post("/api/v1/fetch_api_key", &[("username", "alice@example.com"), ("password", "pw-for-tests")])
        .unwrap();
    assert_error(&r, 401, "USER_DEACTIVATED", "Account is deactivated");
}

#[test]
fn deactivation_reaches_every_gateway_process() {
    let server = Server::start_with(ServerOptions { processes: 2, cores: 1, ..ServerOptions::default() }).unwrap();
    // One user whose queues live in each process: whichever process serves
    // the DELETE, one of them is another process's.
    let topo = Topology::single_node(2);
    let mut on: [Option<Client>; 2] = [None, None];
    for i in 0.. {
        if on.iter().all(Option::is_some) {
            break;
        }
        let c = server.create_user(&format!("u{i}@example.com"), &format!("User {i}")).unwrap();
        let p = topo.shard_of(c.user_id).core as usize;
        on[p].get_or_insert(c);
    }
    let users: Vec<Client> = on.into_iter().map(Option::unwrap).collect();
    let mut queues = Vec::new();
    for u in &users {
        let (q, _, _) = u.register(&[]).unwrap();
        assert_eq!(u.get_events(&q, -1, true).unwrap().0, 200);
        queues.push(q);
    }
    for (u, q) in users.iter().zip(&queues) {
        deactivate(&server.owner, u);
        let r = u.get_events(q, -1, true).unwrap();
        assert_error(&r, 401, "UNAUTHORIZED", "Account is deactivated");
    }
}

#[test]
fn a_regenerated_api_key_replaces_the_old_one_at_once() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (q, _, _) = alice.register(&[]).unwrap();
    assert_eq!(alice.get_events(&q, -1, true).unwrap().0, 200, "the old key is cached");

    let (status, body) = alice.post("/api/v1/users/me/api_key/regenerate", &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    let key = body["api_key"].as_str().unwrap().to_owned();
    assert_eq!(body, json!({"result": "success", "msg": "", "api_key": key}));
    assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
    assert_ne!(key, alice.api_key);

    let r = alice.get_events(&q, -1, true).unwrap();
    assert_error(&r, 401, "UNAUTHORIZED", "Invalid API key");
    let r = alice.get("/api/v1/users/me", &[]).unwrap();
    assert_error(&r, 401, "UNAUTHORIZED", "Invalid API key");

    // The new key works, on the same queue (queues stay).
    let mut renewed = Client::new(&server.url, &alice.email, &key);
    renewed.user_id = alice.user_id;
    assert_eq!(drain(&renewed, &q, -1), Vec::<Value>::new());
    let (status, me) = renewed.get("/api/v1/users/me", &[]).unwrap();
    assert_eq!((status, me["user_id"].clone()), (200, json!(alice.user_id)));
    let (_, fetched) = Client::anonymous(&server.url)
        .post("/api/v1/fetch_api_key", &[("username", "alice@example.com"), ("password", "pw-for-tests")])
        .unwrap();
    assert_eq!(fetched["api_key"], key);
}

#[test]
fn reactivation_restores_the_account_and_is_announced() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    alice.subscribe(&["lobby"]).unwrap();
    bob.subscribe(&["lobby"]).unwrap();
    let (watch, last, _) = bob.register(&[("event_types", r#"["realm_user", "subscription"]"#)]).unwrap();

    deactivate(&server.owner, &alice);
    let path = format!("/api/v1/users/{}/reactivate", alice.user_id);
    let (status, body) = server.owner.post(&path, &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_schema("/users/{user_id}/reactivate", "post", 200, &body);

    // The same key works again, for REST and events.
    assert_eq!(alice.get("/api/v1/users/me", &[]).unwrap().0, 200);
    let (q, _, _) = alice.register(&[]).unwrap();
    assert_eq!(alice.get_events(&q, -1, true).unwrap().0, 200);

    let events = drain(&bob, &watch, last);
    assert_eq!(
        realm_user_updates(&events),
        vec![
            json!({"user_id": alice.user_id, "is_active": false}),
            json!({"user_id": alice.user_id, "is_active": true})
        ]
    );
    // Bob saw Alice leave and rejoin the subscribers of each of her streams.
    let (_, subs) = alice.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let mut hers: Vec<i64> =
        subs["subscriptions"].as_array().unwrap().iter().map(|s| s["stream_id"].as_i64().unwrap()).collect();
    hers.sort_unstable();
    assert!(!hers.is_empty());
    let peer_events = |op: &str| -> Vec<i64> {
        let mut ids: Vec<i64> = events
            .iter()
            .filter(|e| e["type"] == "subscription" && e["op"] == op)
            .map(|e| {
                assert_eq!(e["user_ids"], json!([alice.user_id]), "{e}");
                e["stream_ids"][0].as_i64().unwrap()
            })
            .collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(peer_events("peer_remove"), hers);
    assert_eq!(peer_events("peer_add"), hers);
}

#[test]
fn account_lifecycle_errors_are_zulips() {
    let server = Server::start().unwrap();
    let owner = &server.owner;
    // Alone in the realm, the owner is its only user.
    let r = owner.delete("/api/v1/users/me", &[]).unwrap();
    assert_error(&r, 400, "CANNOT_DEACTIVATE_LAST_USER", "Cannot deactivate the only user.");
    assert_eq!((r.1["is_last_owner"].clone(), r.1["entity"].clone()), (json!(false), json!("user")));
    assert_schema("/users/me", "delete", 400, &r.1);

    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let carol = server.create_user("carol@example.com", "Carol").unwrap();
    let r = owner.delete("/api/v1/users/me", &[]).unwrap();
    assert_error(&r, 400, "CANNOT_DEACTIVATE_LAST_USER", "Cannot deactivate the only organization owner.");
    assert_eq!((r.1["is_last_owner"].clone(), r.1["entity"].clone()), (json!(true), json!("organization owner")));
    assert_schema("/users/me", "delete", 400, &r.1);
    let owner_id = owner.get("/api/v1/users/me", &[]).unwrap().1["user_id"].as_i64().unwrap();
    let r = owner.delete(&format!("/api/v1/users/{owner_id}"), &[]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Cannot deactivate the only organization owner");
    assert_schema("/users/{user_id}", "delete", 400, &r.1);

    // Members administer nobody.
    let r = alice.delete(&format!("/api/v1/users/{}", bob.user_id), &[]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Insufficient permission");
    let r = alice.post(&format!("/api/v1/users/{}/reactivate", bob.user_id), &[]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "Insufficient permission");
    assert_eq!(bob.get("/api/v1/users/me", &[]).unwrap().0, 200, "nothing happened to Bob");
    for path in ["/api/v1/users/999999", "/api/v1/users/999999/reactivate"] {
        let r = if path.ends_with("reactivate") { owner.post(path, &[]) } else { owner.delete(path, &[]) }.unwrap();
        assert_error(&r, 400, "BAD_REQUEST", "No such user");
    }
    let long = "x".repeat(2001);
    let r = owner
        .delete(&format!("/api/v1/users/{}", bob.user_id), &[("deactivation_notification_comment", long.as_str())])
        .unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "deactivation_notification_comment is too long (limit: 2000 characters)");

    // An administrator may not deactivate an owner; an owner may, while
    // another owner remains.
    sql_query(
        &server.database_url,
        &format!(
            "UPDATE userprofile SET role = 200 WHERE id = {}; UPDATE userprofile SET role = 100 WHERE id = {}",
            alice.user_id, carol.user_id
        ),
    )
    .unwrap();
    alice.wait_me(|me| me["role"] == 200).unwrap();
    let r = alice.delete(&format!("/api/v1/users/{}", carol.user_id), &[]).unwrap();
    assert_error(&r, 400, "UNAUTHORIZED_PRINCIPAL", "Must be an organization owner");
    deactivate(owner, &carol);
    deactivate(&alice, &bob);
    let r = owner.delete(&format!("/api/v1/users/{}", bob.user_id), &[]).unwrap();
    assert_error(&r, 400, "BAD_REQUEST", "User is deactivated");

    // A member leaves on their own; then their key is refused everywhere.
    let dave = server.create_user("dave@example.com", "Dave").unwrap();
    let (q, _, _) = dave.register(&[]).unwrap();
    assert_eq!(dave.get_events(&q, -1, true).unwrap().0, 200);
    let (status, body) = dave.delete("/api/v1/users/me", &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_schema("/users/me", "delete", 200, &body);
    assert_error(&dave.get_events(&q, -1, true).unwrap(), 401, "UNAUTHORIZED", "Account is deactivated");
}

#[test]
fn local_message_id_goes_only_to_a_queue_of_the_sender() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let (alice_q, _, _) = alice.register(&[("event_types", r#"["message"]"#)]).unwrap();
    let (bob_q, _, _) = bob.register(&[("event_types", r#"["message"]"#)]).unwrap();
    let to = json!([alice.user_id]).to_string();
    let send = |queue_id: &str, local_id: &str| {
        let form = [
            ("type", "private"),
            ("to", to.as_str()),
            ("content", "hi"),
            ("queue_id", queue_id),
            ("local_id", local_id),
        ];
        let (status, body) = bob.post("/api/v1/messages", &form).unwrap();
        assert_eq!(status, 200, "{body}");
    };
    // Bob names Alice's queue: she gets the message, without Bob's local id.
    send(&alice_q, "1.1");
    let got = drain(&alice, &alice_q, -1);
    assert_eq!(got.len(), 1);
    assert!(got[0].get("local_message_id").is_none(), "{}", got[0]);
    let own = drain(&bob, &bob_q, -1);
    assert!(own[0].get("local_message_id").is_none(), "not named: {}", own[0]);
    // Naming his own queue, Bob gets his echo there.
    send(&bob_q, "2.2");
    let own = drain(&bob, &bob_q, own[0]["id"].as_i64().unwrap());
    assert_eq!(own[0]["local_message_id"], "2.2");
    assert!(drain(&alice, &alice_q, got[0]["id"].as_i64().unwrap())[0].get("local_message_id").is_none());
}

#[test]
fn queue_less_get_events_counts_against_the_rate_limit() {
    let server = Server::start_with(ServerOptions { rate_limit_per_user: 5, ..ServerOptions::default() }).unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let mut made = Vec::new();
    for i in 0..5 {
        let (status, body) = alice.get("/api/v1/events", &[("dont_block", "true")]).unwrap();
        assert_eq!(status, 200, "creation {i}: {body}");
        made.push(body["queue_id"].as_str().unwrap().to_owned());
    }
    let r = alice.get("/api/v1/events", &[("dont_block", "true")]).unwrap();
    assert_error(&r, 429, "RATE_LIMIT_HIT", "API usage exceeded rate limit");
    assert!(r.1["retry-after"].as_f64().unwrap() > 0.0);
    assert_eq!(server.metric("squall_queues").unwrap(), 5, "the refused request made no queue");
    // It is the same budget as the REST API's...
    assert_error(&alice.get("/api/v1/users/me", &[]).unwrap(), 429, "RATE_LIMIT_HIT", "API usage exceeded rate limit");
    // ...and polling the queues she has is not creating any.
    for q in &made {
        assert_eq!(alice.get_events(q, -1, true).unwrap().0, 200);
    }
}
