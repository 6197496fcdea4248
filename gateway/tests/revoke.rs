//! Credentials stop working the moment the backend revokes them, on every
//! core; queue-less `GET /events` is counted against the rate limit.

mod support;

use serde_json::json;
use squall_proto::envelope::Notice;
use std::sync::atomic::Ordering;
use support::{poll_path, Server};

fn deactivate_in_backend(s: &Server, user: i64) {
    s.backend.deactivated.lock().expect("lock").push(user);
}

#[test]
fn a_revocation_empties_every_cores_cache_for_the_user() {
    let s = Server::start();
    let q = s.register(7);
    let dont_block = format!("{}&dont_block=true", poll_path(&q, -1));
    // Both cores cache user 7's credentials: one serves the queue, the
    // other authenticates a queue-less request before handing it over.
    let mut c = s.client();
    assert_eq!(c.call("GET", &dont_block, 7, "").status, 200);
    assert_eq!(s.client().call("GET", "/api/v1/events?dont_block=true", 7, "").status, 200);
    // The account goes away in the backend: the cache still answers.
    deactivate_in_backend(&s, 7);
    assert_eq!(c.call("GET", &dont_block, 7, "").status, 200, "served from the cache");
    let calls = s.backend.auth_calls.load(Ordering::SeqCst);
    // The backend revokes; from now on no core trusts the old answer.
    s.publish(Notice::Revoke { users: vec![7], delete_queues: false });
    let r = c.call("GET", &dont_block, 7, "");
    assert_eq!((r.status, r.json()["msg"].clone()), (401, json!("Account is deactivated")));
    for _ in 0..4 {
        let r = s.client().call("GET", "/api/v1/events?dont_block=true", 7, "");
        assert_eq!(r.status, 401, "every core asks the backend again: {}", r.text());
    }
    assert!(s.backend.auth_calls.load(Ordering::SeqCst) > calls);
    // Other users keep their cached credentials and queues.
    let q8 = s.register(8);
    assert_eq!(s.client().call("GET", &format!("{}&dont_block=true", poll_path(&q8, -1)), 8, "").status, 200);
}

#[test]
fn a_deactivation_deletes_the_users_queues_and_answers_their_parked_polls() {
    let s = Server::start();
    let mine = [s.register(7), s.register(7)];
    let other = s.register(8);
    let mut parked = s.client();
    parked.send("GET", &poll_path(&mine[0], -1), 7, "");
    s.wait_parked(1);
    deactivate_in_backend(&s, 7);
    s.publish(Notice::Revoke { users: vec![7], delete_queues: true });
    let v = parked.read().json();
    assert_eq!(v["events"], json!([]), "completed with what it held: {v}");
    assert_eq!(s.totals().queues, 1, "only user 8's queue is left");
    let r = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&other, -1)), 8, "");
    assert_eq!(r.status, 200);
    let r = s.client().call("GET", &poll_path(&mine[1], -1), 7, "");
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn queue_less_gets_are_rate_limited_and_polls_are_not() {
    let s = Server::start();
    s.backend.rate_limit_max.store(3, Ordering::SeqCst);
    for i in 0..3 {
        let r = s.client().call("GET", "/api/v1/events?dont_block=true", 7, "");
        assert_eq!(r.status, 200, "creation {i}: {}", r.text());
    }
    let r = s.client().call("GET", "/api/v1/events?dont_block=true", 7, "");
    assert_eq!((r.status, r.json()["code"].clone()), (429, json!("RATE_LIMIT_HIT")));
    assert_eq!(s.totals().queues, 3, "the refused request made no queue");
    // Polling an existing queue is not a creation.
    let q = s.register(9);
    let before = s.backend.rate_limit_calls.load(Ordering::SeqCst);
    let mut c = s.client();
    for _ in 0..5 {
        assert_eq!(c.call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 9, "").status, 200);
    }
    assert_eq!(s.backend.rate_limit_calls.load(Ordering::SeqCst), before);
}
