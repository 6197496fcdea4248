//! Soft deactivation against real PostgreSQL: Zulip's
//! test_soft_deactivation behaviours.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::json;
use squall_e2e::{sql_query, Client, Server};
use std::time::{Duration, Instant};

/// Makes `user` look inactive for 40 days.
fn age(server: &Server, user: &Client) {
    sql_query(
        &server.database_url,
        &format!("UPDATE userprofile SET last_activity = now() - interval '40 days' WHERE id = {}", user.user_id),
    )
    .unwrap();
}

fn soft_deactivate(server: &Server, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["soft-deactivate", "--inactive-days", "28"];
    args.extend_from_slice(extra);
    server.admin(&args).unwrap()
}

/// The user's UserMessage flags for `message`, or None without a row.
fn row(server: &Server, user: &Client, message: i64) -> Option<i64> {
    let rows = sql_query(
        &server.database_url,
        &format!("SELECT flags FROM usermessage WHERE user_profile_id = {} AND message_id = {message}", user.user_id),
    )
    .unwrap();
    rows.first().map(|r| r.get(0))
}

fn idle(server: &Server, user: &Client) -> (bool, Option<i64>) {
    let rows = sql_query(
        &server.database_url,
        &format!("SELECT long_term_idle, last_active_message_id FROM userprofile WHERE id = {}", user.user_id),
    )
    .unwrap();
    (rows[0].get(0), rows[0].get(1))
}

fn audit_count(server: &Server, user: &Client, event_type: i16) -> i64 {
    let rows = sql_query(
        &server.database_url,
        &format!(
            "SELECT count(*) FROM realmauditlog WHERE modified_user_id = {} AND event_type = {event_type}",
            user.user_id
        ),
    )
    .unwrap();
    rows[0].get(0)
}

fn send_dm(from: &Client, to: &Client, content: &str) -> i64 {
    let (status, body) = from
        .post("/api/v1/messages", &[("type", "direct"), ("to", &json!([to.user_id]).to_string()), ("content", content)])
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["id"].as_i64().unwrap()
}

#[test]
fn only_users_inactive_past_the_threshold_are_deactivated() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    let last = server.owner.send_stream("general", "t", "before").unwrap();
    age(&server, &alice);

    let report = soft_deactivate(&server, &["--no-catch-up"]);
    assert_eq!(report["deactivated"], json!([alice.user_id]), "{report}");
    assert_eq!(idle(&server, &alice), (true, Some(last)), "last_active_message_id = newest row");
    assert!(!idle(&server, &bob).0);
    assert_eq!(audit_count(&server, &alice, 121), 1);
    // Running again finds nobody new.
    assert_eq!(soft_deactivate(&server, &["--no-catch-up"])["deactivated"], json!([]));
}

#[test]
fn idle_users_get_rows_only_for_messages_that_concern_them() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let bob = server.create_user("bob@example.com", "Bob").unwrap();
    age(&server, &alice);
    soft_deactivate(&server, &["--no-catch-up"]);
    let owner = &server.owner;

    let plain = owner.send_stream("general", "t", "nothing for alice").unwrap();
    assert_eq!(row(&server, &alice, plain), None, "plain stream message: no row while idle");
    assert_eq!(row(&server, &bob, plain), Some(0), "active users still get theirs");

    let everyone = owner.send_stream("general", "t", "hello @**all**").unwrap();
    assert_eq!(row(&server, &alice, everyone), Some(1 << 4), "stream wildcard forces a row");
    let code = owner.send_stream("general", "t", "`@**Alice**` is code").unwrap();
    assert_eq!(row(&server, &alice, code), None, "a mention in a code span is no mention");
    let other = owner.send_stream("general", "t", "@**Bob** only").unwrap();
    assert_eq!(row(&server, &alice, other), None, "someone else's mention");
    let topic = owner.send_stream("general", "never-posted", "@**topic** here").unwrap();
    assert_eq!(row(&server, &alice, topic), None, "topic wildcard where alice never posted");
    assert!(idle(&server, &alice).0, "none of these brings alice back");

    // A personal mention gets a row and, like a DM, brings the user back:
    // the rows skipped meanwhile are then backfilled.
    let mention = owner.send_stream("general", "t", "hi @**Alice**").unwrap();
    assert_eq!(row(&server, &alice, mention), Some(1 << 3));
    let deadline = Instant::now() + Duration::from_secs(20);
    while idle(&server, &alice).0 {
        assert!(Instant::now() < deadline, "alice was not reactivated");
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in [plain, code, other, topic] {
        assert_eq!(row(&server, &alice, id), Some(0), "message {id} backfilled unflagged");
    }
    assert_eq!(row(&server, &alice, everyone), Some(1 << 4), "rows written while idle are kept as they were");
    assert_eq!(audit_count(&server, &alice, 120), 1);

    // DMs always get a row (and reactivate too).
    age(&server, &alice);
    soft_deactivate(&server, &["--no-catch-up"]);
    let dm = send_dm(owner, &alice, "psst");
    assert_eq!(row(&server, &alice, dm).map(|f| f & (1 << 11)), Some(1 << 11), "is_private row for the DM");
}

#[test]
fn topic_wildcard_reaches_idle_participants() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    alice.send_stream("general", "lunch", "I'm in").unwrap();
    age(&server, &alice);
    soft_deactivate(&server, &["--no-catch-up"]);
    let id = server.owner.send_stream("general", "lunch", "@**topic** where to?").unwrap();
    assert_eq!(row(&server, &alice, id), Some(1 << 5), "topic_wildcard_mentioned row for a participant");
}

#[test]
fn register_backfills_exactly_what_subscriptions_allowed() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    let owner = &server.owner;
    owner.subscribe(&["s2", "gone"]).unwrap();
    alice.subscribe(&["s2", "gone"]).unwrap();
    // Left "gone" before going idle: ignored entirely.
    let (status, body) = alice.delete("/api/v1/users/me/subscriptions", &[("subscriptions", r#"["gone"]"#)]).unwrap();
    assert_eq!(status, 200, "{body}");
    age(&server, &alice);
    soft_deactivate(&server, &["--no-catch-up"]);

    let m1 = owner.send_stream("general", "t", "m1").unwrap();
    let m2 = owner.send_stream("s2", "t", "m2").unwrap();
    let gone = owner.send_stream("gone", "t", "not for alice").unwrap();
    // Alice leaves s2 and comes back (quickly, then after a message) while idle.
    for _ in 0..2 {
        let (status, body) = alice.delete("/api/v1/users/me/subscriptions", &[("subscriptions", r#"["s2"]"#)]).unwrap();
        assert_eq!(status, 200, "{body}");
        alice.subscribe(&["s2"]).unwrap();
    }
    let (status, body) = alice.delete("/api/v1/users/me/subscriptions", &[("subscriptions", r#"["s2"]"#)]).unwrap();
    assert_eq!(status, 200, "{body}");
    let m3 = owner.send_stream("s2", "t", "m3 while alice was away").unwrap();
    alice.subscribe(&["s2"]).unwrap();
    let m4 = owner.send_stream("s2", "t", "m4").unwrap();
    assert!(idle(&server, &alice).0, "subscription changes do not reactivate");
    for id in [m1, m2, m3, m4] {
        assert_eq!(row(&server, &alice, id), None);
    }

    alice.register(&[]).unwrap();
    assert_eq!(idle(&server, &alice), (false, Some(m4)), "reactivated; last_active_message_id = newest backfilled");
    assert_eq!(row(&server, &alice, m1), Some(0));
    assert_eq!(row(&server, &alice, m2), Some(0));
    assert_eq!(row(&server, &alice, m3), None, "sent while unsubscribed");
    assert_eq!(row(&server, &alice, m4), Some(0));
    assert_eq!(row(&server, &alice, gone), None, "stream left before going idle");
    assert_eq!(audit_count(&server, &alice, 120), 1);

    // Her history reads as if she had never been away.
    let (status, body) =
        alice.get("/api/v1/messages", &[("anchor", "newest"), ("num_before", "100"), ("num_after", "0")]).unwrap();
    assert_eq!(status, 200, "{body}");
    let ids: Vec<i64> = body["messages"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
    for id in [m1, m2, m4] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert!(!ids.contains(&m3) && !ids.contains(&gone), "{ids:?}");
    // A second register has nothing to do.
    alice.register(&[]).unwrap();
    assert_eq!(audit_count(&server, &alice, 120), 1);
}

#[test]
fn catch_up_backfills_without_reactivating() {
    let server = Server::start().unwrap();
    let alice = server.create_user("alice@example.com", "Alice").unwrap();
    age(&server, &alice);
    soft_deactivate(&server, &["--no-catch-up"]);
    let m = server.owner.send_stream("general", "t", "missed").unwrap();
    assert_eq!(row(&server, &alice, m), None);

    let report = soft_deactivate(&server, &[]);
    assert_eq!((report["deactivated"].clone(), report["caught_up_rows"].clone()), (json!([]), json!(1)), "{report}");
    assert_eq!(row(&server, &alice, m), Some(0));
    assert_eq!(idle(&server, &alice), (true, Some(m)), "still idle, but caught up");
    // Nothing is written twice.
    assert_eq!(soft_deactivate(&server, &[])["caught_up_rows"], json!(0));
}
