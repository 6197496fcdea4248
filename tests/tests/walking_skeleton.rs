//! The walking-skeleton scenario: A registers and long-polls; B sends a
//! stream message mentioning A and a direct message; A receives both in real
//! time with the right flags; history returns them.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::Server;
use std::thread;

fn flags(e: &Value) -> Vec<String> {
    let mut f: Vec<String> = e["flags"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    f.sort();
    f
}

#[test]
fn mention_and_direct_message_arrive_in_real_time() {
    let server = Server::start().unwrap();
    let a = server.create_user("aaron@example.com", "Aaron Alpha").unwrap();
    let b = server.create_user("bea@example.com", "Bea Beta").unwrap();
    a.subscribe(&["Denmark"]).unwrap();
    b.subscribe(&["Denmark"]).unwrap();

    let (queue, last, state) = a.register(&[("event_types", r#"["message"]"#)]).unwrap();
    assert_eq!(last, -1);
    assert_eq!(state["max_message_id"], -1);

    // A parks a long-poll before anything is sent.
    let poller = {
        let (a, queue) = (a.clone(), queue.clone());
        thread::spawn(move || a.get_events(&queue, -1, false).unwrap())
    };
    server.wait_parked(1).unwrap();
    let stream_id = b.send_stream("Denmark", "greetings", "hi @**Aaron Alpha**, look").unwrap();
    let (status, first) = poller.join().unwrap();
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["queue_id"], json!(queue), "deferred responses carry queue_id");
    let events = first["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{first}");
    let e = &events[0];
    assert_eq!(e["type"], "message");
    assert_eq!(e["message"]["id"], stream_id);
    assert_eq!(e["message"]["display_recipient"], "Denmark");
    assert_eq!(e["message"]["sender_email"], "bea@example.com");
    assert_eq!(e["message"]["content"], "hi @**Aaron Alpha**, look", "apply_markdown defaults to false");
    assert_eq!(flags(e), vec!["mentioned"]);
    let mut last_id = e["id"].as_i64().unwrap();

    // The direct message.
    let (status, sent) = b
        .post("/api/v1/messages", &[("type", "direct"), ("to", &format!("[{}]", a.user_id)), ("content", "psst")])
        .unwrap();
    assert_eq!(status, 200, "{sent}");
    let dm_id = sent["id"].as_i64().unwrap();
    let (status, next) = a.get_events(&queue, last_id, false).unwrap();
    assert_eq!(status, 200);
    let events = next["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "acknowledged events are pruned: {next}");
    let e = &events[0];
    assert_eq!(e["message"]["id"], dm_id);
    assert_eq!(e["message"]["type"], "private");
    assert!(flags(e).is_empty(), "is_private is never exposed: {e}");
    let recipients: Vec<&str> =
        e["message"]["display_recipient"].as_array().unwrap().iter().map(|p| p["email"].as_str().unwrap()).collect();
    assert_eq!(recipients, vec!["aaron@example.com", "bea@example.com"]);
    last_id = e["id"].as_i64().unwrap();
    let (_, empty) = a.get_events(&queue, last_id, true).unwrap();
    assert_eq!(empty["events"], json!([]));

    // History has both, newest last, with A's flags.
    let (status, hist) =
        a.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "10"), ("num_after", "0")]).unwrap();
    assert_eq!(status, 200, "{hist}");
    let msgs = hist["messages"].as_array().unwrap();
    let ids: Vec<i64> = msgs.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![stream_id, dm_id]);
    assert_eq!(flags(&msgs[0]), vec!["mentioned"]);
    assert!(msgs[0]["content"].as_str().unwrap().contains("<span class=\"user-mention\""));
    assert_eq!(hist["found_newest"], true);
    assert_eq!(hist["found_oldest"], true);

    // Narrowed history.
    let narrow = json!([{"operator": "stream", "operand": "Denmark"}, {"operator": "topic", "operand": "GREETINGS"}])
        .to_string();
    let (_, hist) = a
        .get("/api/v1/messages", &[("anchor", "oldest"), ("num_before", "0"), ("num_after", "10"), ("narrow", &narrow)])
        .unwrap();
    let ids: Vec<i64> = hist["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![stream_id]);
    let narrow = json!([["dm", "bea@example.com"]]).to_string();
    let (_, hist) = a
        .get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "10"), ("num_after", "0"), ("narrow", &narrow)])
        .unwrap();
    let ids: Vec<i64> = hist["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![dm_id]);
}

#[test]
fn local_echo_goes_to_the_senders_queue_only() {
    let server = Server::start().unwrap();
    let a = server.create_user("aaron@example.com", "Aaron Alpha").unwrap();
    let b = server.create_user("bea@example.com", "Bea Beta").unwrap();
    b.subscribe(&["general"]).unwrap();
    let (qa, _, _) = a.register(&[("event_types", r#"["message"]"#)]).unwrap();
    let (qb, _, _) = b.register(&[("event_types", r#"["message"]"#)]).unwrap();
    let (qb2, _, _) = b.register(&[("event_types", r#"["message"]"#), ("apply_markdown", "true")]).unwrap();
    let (status, _) = b
        .post(
            "/api/v1/messages",
            &[
                ("type", "stream"),
                ("to", "general"),
                ("topic", "t"),
                ("content", "*hi*"),
                ("queue_id", &qb),
                ("local_id", "12.01"),
            ],
        )
        .unwrap();
    assert_eq!(status, 200);
    let (_, eb) = b.get_events(&qb, -1, true).unwrap();
    let (_, eb2) = b.get_events(&qb2, -1, true).unwrap();
    let (_, ea) = a.get_events(&qa, -1, true).unwrap();
    assert_eq!(eb["events"][0]["local_message_id"], "12.01");
    assert!(eb["events"][0].get("queue_id").is_none());
    assert!(eb2["events"][0].get("local_message_id").is_none());
    assert_eq!(eb2["events"][0]["message"]["content"], "<p><em>hi</em></p>");
    assert_eq!(eb2["events"][0]["message"]["content_type"], "text/html");
    assert!(ea["events"][0].get("local_message_id").is_none());
    // ZulipPython-like API clients do not mark their own messages read;
    // SquallE2E is not in the read_by_sender list either.
    assert_eq!(eb["events"][0]["flags"], json!([]));
}

#[test]
fn many_users_across_cores_all_receive_a_stream_message() {
    // With 2 cores, users are placed on both; connections land on either
    // core, so this exercises both the local path and the hand-off path.
    let server = Server::start().unwrap();
    let sender = server.create_user("sender@example.com", "Sender").unwrap();
    sender.subscribe(&["town square"]).unwrap();
    let mut clients = Vec::new();
    for i in 0..12 {
        let c = server.create_user(&format!("u{i}@example.com"), &format!("User {i}")).unwrap();
        c.subscribe(&["town square"]).unwrap();
        let (q, _, _) = c.register(&[("event_types", r#"["message"]"#)]).unwrap();
        clients.push((c, q));
    }
    let pollers: Vec<_> =
        clients.into_iter().map(|(c, q)| thread::spawn(move || c.get_events(&q, -1, false).unwrap())).collect();
    server.wait_parked(12).unwrap();
    let id = sender.send_stream("town square", "news", "hello everyone").unwrap();
    for p in pollers {
        let (status, body) = p.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["events"][0]["message"]["id"], id, "{body}");
    }
}

#[test]
fn a_big_stream_gets_every_row_through_the_bulk_copy_path() {
    // 600 subscribers: above the size from which rows are written with COPY.
    let server = Server::start().unwrap();
    squall_e2e::sql_query(
        &server.database_url,
        "INSERT INTO userprofile (realm_id, email, delivery_email, full_name, role, api_key)
           SELECT 1, 'u' || g || '@bulk.example', 'u' || g || '@bulk.example', 'Bulk ' || g, 400,
                  substr(md5(g::text) || md5((g + 7)::text), 1, 32)
           FROM generate_series(1, 600) g;
         INSERT INTO recipient (type, type_id) SELECT 1, id FROM userprofile WHERE email LIKE '%@bulk.example';
         INSERT INTO subscription (user_profile_id, recipient_id)
           SELECT u.id, s.recipient_id FROM userprofile u, stream s
           WHERE s.name = 'general' AND u.email LIKE '%@bulk.example';",
    )
    .unwrap();
    let id = server.owner.send_stream("general", "crowd", "hello @**Bulk 7** and everyone").unwrap();
    let rows = squall_e2e::sql_query(
        &server.database_url,
        &format!(
            "SELECT count(*)::bigint, count(*) FILTER (WHERE flags & 8 <> 0)::bigint,
                    bool_and(u.full_name <> 'Bulk 7' OR um.flags & 8 <> 0)
             FROM usermessage um JOIN userprofile u ON u.id = um.user_profile_id WHERE um.message_id = {id}"
        ),
    )
    .unwrap();
    let (count, mentioned, bulk7_mentioned): (i64, i64, bool) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    assert_eq!(count, 601, "every subscriber (600 + the owner) has a row");
    assert_eq!(mentioned, 1);
    assert!(bulk7_mentioned);
    // And a bulk user sees it through the API with the right flags.
    let key: String = squall_e2e::sql_query(
        &server.database_url,
        "SELECT api_key::text FROM userprofile WHERE email = 'u7@bulk.example'",
    )
    .unwrap()[0]
        .get(0);
    let u7 = squall_e2e::Client::new(&server.url, "u7@bulk.example", &key);
    let (_, hist) =
        u7.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "1"), ("num_after", "0")]).unwrap();
    assert_eq!(hist["messages"][0]["id"], id);
    assert_eq!(hist["messages"][0]["flags"], json!(["mentioned"]));
}

#[test]
fn channel_links_and_emoji_render_as_zulip_does() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let (status, body) = server
        .owner
        .post(
            "/api/v1/users/me/subscriptions",
            &[("subscriptions", r#"[{"name": "secret"}]"#), ("invite_only", "true")],
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let content = "see #**general>lunch** :tada: and #**secret**";
    let id = alice.send_stream("general", "t", content).unwrap();
    let (status, body) = alice.get(&format!("/api/v1/messages/{id}"), &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    let html = body["message"]["content"].as_str().unwrap();
    assert!(
        html.contains(r#"class="stream-topic""#) && html.contains("/topic/lunch\">#general &gt; lunch</a>"),
        "{html}"
    );
    assert!(html.contains(r#"<span aria-label="tada" class="emoji emoji-1f389" role="img" title="tada">:tada:</span>"#));
    assert!(html.contains("#**secret**"), "a private channel alice cannot see is not linked: {html}");
    let (_, raw) = alice.get(&format!("/api/v1/messages/{id}"), &[("apply_markdown", "false")]).unwrap();
    assert_eq!(raw["message"]["content"], content);
}
