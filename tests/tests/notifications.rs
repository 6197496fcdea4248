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

#[test]
fn personal_choices_shape_rows_and_notifications() {
    let amqp = fresh_amqp_vhost().unwrap();
    let server =
        Server::start_with(ServerOptions { amqp_url: amqp.clone(), cores: 1, ..ServerOptions::default() }).unwrap();
    let away = server.create_user("away@example.com", "Away User").unwrap();
    let marker = marker(&server);
    let ok = |r: (u16, Value)| assert_eq!(r.0, 200, "{}", r.1);
    let flags_of = |c: &Client, id: i64| {
        let anchor = id.to_string();
        let (_, body) =
            c.get("/api/v1/messages", &[("anchor", &anchor), ("num_before", "0"), ("num_after", "0")]).unwrap();
        body["messages"][0]["flags"].clone()
    };

    // Stream push notifications turned on: plain chatter now notifies ...
    ok(away.raw_form("PATCH", "/api/v1/settings", &[("enable_stream_push_notifications", "true")]).unwrap());
    let chatter = server.owner.send_stream("general", "loud", "news").unwrap();
    let (mobile, email) = drain_until_marker(&server, &amqp, &marker);
    assert_eq!(mobile.len(), 1, "{mobile:?}");
    assert_eq!(
        (mobile[0]["message_id"].clone(), mobile[0]["trigger"].clone()),
        (json!(chatter), json!("stream_push_notify"))
    );
    assert!(email.is_empty(), "{email:?}");

    // ... except in a topic they muted.
    let (_, subs) = away.get("/api/v1/users/me/subscriptions", &[]).unwrap();
    let general = subs["subscriptions"][0]["stream_id"].to_string();
    ok(away
        .post("/api/v1/user_topics", &[("stream_id", &general), ("topic", "quiet"), ("visibility_policy", "1")])
        .unwrap());
    let muted_topic = server.owner.send_stream("general", "quiet", "hush").unwrap();
    assert_eq!(drain_until_marker(&server, &amqp, &marker), (vec![], vec![]));
    let (_, reg) =
        away.post("/api/v1/register", &[("fetch_event_types", r#"["message", "update_message_flags"]"#)]).unwrap();
    assert_eq!(reg["unread_msgs"]["count"], 1, "the muted topic's message is listed, not counted: {reg}");
    assert!(reg["unread_msgs"]["streams"].to_string().contains(&muted_topic.to_string()));

    // A group mention notifies with the group's id.
    let members = json!([away.user_id]).to_string();
    ok(server
        .owner
        .post("/api/v1/user_groups/create", &[("name", "crew"), ("description", ""), ("members", &members)])
        .unwrap());
    let (_, groups) = server.owner.get("/api/v1/user_groups", &[]).unwrap();
    let crew = groups["user_groups"].as_array().unwrap().iter().find(|g| g["name"] == "crew").unwrap()["id"].clone();
    let mention = server.owner.send_stream("general", "quiet", "@*crew* look").unwrap();
    let (mobile, email) = drain_until_marker(&server, &amqp, &marker);
    assert_eq!(mobile.len(), 1, "a mention notifies even in a muted topic: {mobile:?}");
    assert_eq!((mobile[0]["message_id"].clone(), mobile[0]["trigger"].clone()), (json!(mention), json!("mentioned")));
    assert_eq!(mobile[0]["mentioned_user_group_id"], crew);
    assert_eq!(email.len(), 1, "{email:?}");

    // Alert words flag the message for their owner.
    ok(away.post("/api/v1/users/me/alert_words", &[("alert_words", r#"["Deploy"]"#)]).unwrap());
    let alert = server.owner.send_stream("general", "loud", "we deploy at noon").unwrap();
    assert!(flags_of(&away, alert).as_array().unwrap().contains(&json!("has_alert_word")));
    assert!(!flags_of(&server.owner, alert).as_array().unwrap().contains(&json!("has_alert_word")));
    let _ = drain_until_marker(&server, &amqp, &marker);

    // A muted sender's messages arrive read and notify nobody.
    ok(away.post(&format!("/api/v1/users/me/muted_users/{}", owner_id(&server)), &[]).unwrap());
    let to = format!("[{}]", away.user_id);
    let (_, sent) =
        server.owner.post("/api/v1/messages", &[("type", "direct"), ("to", &to), ("content", "ignored")]).unwrap();
    let dm = sent["id"].as_i64().unwrap();
    assert_eq!(drain_until_marker(&server, &amqp, &marker), (vec![], vec![]));
    assert!(flags_of(&away, dm).as_array().unwrap().contains(&json!("read")), "{}", flags_of(&away, dm));
}

/// The realm owner's user id.
fn owner_id(server: &squall_e2e::Server) -> i64 {
    let (_, me) = server.owner.get("/api/v1/users/me", &[]).unwrap();
    me["user_id"].as_i64().unwrap()
}
