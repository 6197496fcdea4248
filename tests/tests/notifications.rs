//! Missed-message notifications reach RabbitMQ (a real broker, the test's
//! own virtual host) with Zulip's queue names and payloads.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{drain_amqp_queue, fresh_amqp_vhost, Server, ServerOptions};
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

#[test]
fn offline_and_online_recipients_get_zulips_notifications() {
    let amqp = fresh_amqp_vhost().unwrap();
    let server = Server::start_with(ServerOptions { amqp_url: amqp.clone(), ..ServerOptions::default() }).unwrap();
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
    std::thread::sleep(Duration::from_millis(500));
    assert!(drain_amqp_queue(&amqp, EMAIL).unwrap().is_empty());

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
    std::thread::sleep(Duration::from_millis(500));
    assert!(drain_amqp_queue(&amqp, MOBILE).unwrap().is_empty());

    // Nobody is notified about their own messages or plain stream chatter.
    server.owner.send_stream("general", "t", "just talking").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(drain_amqp_queue(&amqp, MOBILE).unwrap().is_empty());
    assert!(drain_amqp_queue(&amqp, EMAIL).unwrap().is_empty());
}
