//! Missed-message notifications reach RabbitMQ (a real broker, the test's
//! own virtual host) with Zulip's queue names and payloads.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{drain_amqp_queue, fresh_amqp_vhost, Client, Server, ServerOptions};
use std::time::{Duration, Instant};

const MOBILE: &str = "missedmessage_mobile_notifications";
const EMAIL: &str = "missedmessage_emails";

/// Collects items until `want` have arrived (publishing is asynchronous).
fn collect(url: &str, queue: &str, want: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < want && start.elapsed() < Duration::from_secs(20) {
        got.extend(drain_amqp_queue(url, queue).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    got
}

/// A new user with no queue. The server under test runs one gateway core,
/// so a direct message to the marker is a notification decided after
/// everything sent before it: once it arrives, anything else due has
/// arrived too.
fn marker(server: &Server) -> Client {
    server.create_user("marker@example.com", "Marker").unwrap()
}

/// Sends a DM to `marker` and drains both notification queues until its
/// push and its email have arrived; returns what else arrived before them
/// (mobile, email).
fn drain_until_marker(server: &Server, amqp: &str, marker: &Client) -> (Vec<Value>, Vec<Value>) {
    let to = format!("[{}]", marker.user_id);
    let (status, _) =
        server.owner.post("/api/v1/messages", &[("type", "direct"), ("to", &to), ("content", "marker")]).unwrap();
    assert_eq!(status, 200);
    let mut got = [Vec::new(), Vec::new()];
    let mut seen = [false, false];
    let start = Instant::now();
    while seen != [true, true] {
        assert!(start.elapsed() < Duration::from_secs(20), "the marker's notifications never came: {got:?}");
        for (i, queue) in [MOBILE, EMAIL].into_iter().enumerate() {
            for n in drain_amqp_queue(amqp, queue).unwrap() {
                if n["user_profile_id"] == json!(marker.user_id) {
                    seen[i] = true;
                } else {
                    got[i].push(n);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let [mobile, email] = got;
    (mobile, email)
}

#[test]
fn offline_and_online_recipients_get_zulips_notifications() {
    let amqp = fresh_amqp_vhost().unwrap();
    // One core: notifications are decided in one order (see `marker`).
    let server =
        Server::start_with(ServerOptions { amqp_url: amqp.clone(), cores: 1, ..ServerOptions::default() }).unwrap();
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let here = server.create_user("here@example.com", "Here User").unwrap();
    let (q, _, _) = here.register(&[("event_types", r#"["message"]"#)]).unwrap();
    // Connected *and* active: Zulip treats a connected user with no recent
    // presence as idle.
    let (status, _) = here.post("/api/v1/users/me/presence", &[("status", "active")]).unwrap();
    assert_eq!(status, 200);

    // A DM to a user with no queue: push and email now.
    let to = format!("[{}]", away.user_id);
    let (_, sent) = server
        .owner
        .post("/api/v1/messages", &[("type", "direct"), ("to", &to), ("content", "are you there?")])
        .unwrap();
    let dm_id = sent["id"].as_i64().unwrap();
    let push = collect(&amqp, MOBILE, 1);
    let email = collect(&amqp, EMAIL, 1);
    assert_eq!(
        push,
        vec![
            json!({"user_profile_id": away.user_id, "message_id": dm_id, "trigger": "direct_message", "type": "add", "mentioned_user_group_id": null})
        ]
    );
    assert_eq!(
        email,
        vec![
            json!({"user_profile_id": away.user_id, "message_id": dm_id, "trigger": "direct_message", "mentioned_user_group_id": null})
        ]
    );

    // A mention of a user with an open queue: push only (online push is on
    // by default), no email while they are connected ...
    here.subscribe(&["general"]).unwrap();
    let mention_id = server.owner.send_stream("general", "t", "hi @**Here User**").unwrap();
    let push = collect(&amqp, MOBILE, 1);
    assert_eq!(push.len(), 1, "{push:?}");
    assert_eq!(
        (push[0]["user_profile_id"].clone(), push[0]["trigger"].clone()),
        (json!(here.user_id), json!("mentioned"))
    );
    let marker = marker(&server);
    assert_eq!(drain_until_marker(&server, &amqp, &marker), (vec![], vec![]));

    // ... until they leave without reading it: deleting their last queue
    // sends the email, and not the push again.
    let (status, _) = here.delete("/api/v1/events", &[("queue_id", &q)]).unwrap();
    assert_eq!(status, 200);
    let email = collect(&amqp, EMAIL, 1);
    assert_eq!(
        email,
        vec![
            json!({"user_profile_id": here.user_id, "message_id": mention_id, "trigger": "mentioned", "mentioned_user_group_id": null})
        ]
    );
    assert_eq!(drain_until_marker(&server, &amqp, &marker), (vec![], vec![]));

    // Nobody is notified about plain stream chatter (the sender never is).
    server.owner.send_stream("general", "t", "just talking").unwrap();
    assert_eq!(drain_until_marker(&server, &amqp, &marker), (vec![], vec![]));
}
