//! Parking and completing long-polls, on `Gateway::run` with a fake backend.

mod support;

use serde_json::json;
use squall_proto::ids::QueueId;
use squall_shard_router::placement::Topology;
use support::{poll_path, Server};

#[test]
fn a_parked_poll_completes_with_the_event_and_its_queue_id() {
    let s = Server::start();
    let q = s.register(7);
    let mut c = s.client();
    c.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    s.publish_test_event(&[7], 1);
    let r = c.read();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["events"], json!([{"type": "test", "n": 1, "id": 0}]));
    assert_eq!(v["queue_id"], json!(q));
    assert_eq!(v["result"], "success");
    assert_eq!(r.header("Vary"), Some("Accept-Language, Cookie"));
    assert_eq!(s.totals().parked, 0);
}

#[test]
fn events_already_queued_are_answered_at_once_without_queue_id() {
    let s = Server::start();
    let q = s.register(7);
    s.publish_test_event(&[7], 1);
    s.wait_for("the event to be queued", |t| t.events_queued == 1);
    let r = s.client().call("GET", &poll_path(&q, -1), 7, "");
    let v = r.json();
    assert_eq!(v["events"], json!([{"type": "test", "n": 1, "id": 0}]));
    assert!(v.get("queue_id").is_none(), "immediate answers carry no queue_id");
}

#[test]
fn dont_block_answers_empty_immediately() {
    let s = Server::start();
    let q = s.register(7);
    let r = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "");
    assert_eq!(r.json()["events"], json!([]));
    assert_eq!(s.totals().parked, 0);
}

#[test]
fn a_second_poll_completes_the_first_with_nothing() {
    let s = Server::start();
    let q = s.register(7);
    let mut first = s.client();
    first.send("GET", &poll_path(&q, -1), 7, "");
    s.wait_parked(1);
    let mut second = s.client();
    second.send("GET", &poll_path(&q, -1), 7, "");
    let r = first.read();
    assert_eq!(r.json()["events"], json!([]));
    assert_eq!(r.json()["queue_id"], json!(q));
    s.wait_parked(1);
    s.publish_test_event(&[7], 2);
    assert_eq!(second.read().json()["events"][0]["n"], 2, "the second poll is the one parked now");
}

#[test]
fn last_event_id_prunes_acknowledged_events() {
    let s = Server::start();
    let q = s.register(7);
    for n in 0..3 {
        s.publish_test_event(&[7], n);
    }
    s.wait_for("three events", |t| t.events_queued == 3);
    let mut c = s.client();
    let ids: Vec<i64> = c.call("GET", &poll_path(&q, -1), 7, "").json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
    let v = c.call("GET", &poll_path(&q, 1), 7, "").json();
    assert_eq!(v["events"], json!([{"type": "test", "n": 2, "id": 2}]));
    // Acknowledging everything parks the next poll.
    c.send("GET", &poll_path(&q, 2), 7, "");
    s.wait_parked(1);
    s.publish_test_event(&[7], 3);
    assert_eq!(c.read().json()["events"], json!([{"type": "test", "n": 3, "id": 3}]));
    // Going back before what was pruned is refused, as in Zulip.
    let r = s.client().call("GET", &poll_path(&q, 0), 7, "");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["msg"], "An event newer than 0 has already been pruned!");
}

#[test]
fn an_unknown_last_event_id_is_refused() {
    let s = Server::start();
    let q = s.register(7);
    let r = s.client().call("GET", &poll_path(&q, 5), 7, "");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["msg"], "Event 5 was not in this queue");
}

#[test]
fn only_the_named_users_queues_get_an_event() {
    let s = Server::start();
    let mine = s.register(7);
    let theirs = s.register(8);
    s.publish_test_event(&[7], 1);
    s.wait_for("one event", |t| t.events_queued == 1);
    let dont_block = |q: &str| format!("{}&dont_block=true", poll_path(q, -1));
    assert_eq!(s.client().call("GET", &dont_block(&mine), 7, "").json()["events"].as_array().unwrap().len(), 1);
    assert_eq!(s.client().call("GET", &dont_block(&theirs), 8, "").json()["events"], json!([]));
}

#[test]
fn event_types_filter_what_a_queue_accepts() {
    let s = Server::start();
    let r = s.client().call("POST", "/api/v1/register", 7, "event_types=%5B%22message%22%5D");
    let q = r.json()["queue_id"].as_str().unwrap().to_owned();
    // A second queue of the same user accepts everything: once it has the
    // event, the notice was handled for every queue of the user.
    s.register(7);
    s.publish_test_event(&[7], 1);
    s.wait_for("the unfiltered queue to get the event", |t| t.events_queued == 1);
    let v = s.client().call("GET", &format!("{}&dont_block=true", poll_path(&q, -1)), 7, "").json();
    assert_eq!(v["events"], json!([]), "a test event is not a message");
}

#[test]
fn polls_are_handed_to_the_core_that_owns_the_queue() {
    let s = Server::start();
    let topo = Topology::single_node(2);
    // One user on each core, both polled over one connection (which lives
    // on one core): at least one of the two polls crosses cores.
    let users: Vec<i64> =
        [0u16, 1].iter().map(|&core| (1..=100).find(|&u| topo.shard_of(u).core == core).unwrap()).collect();
    let queues: Vec<String> = users.iter().map(|&u| s.register(u)).collect();
    for (u, q) in users.iter().zip(&queues) {
        let id = QueueId::parse(q).unwrap();
        assert_eq!(id.shard.core, topo.shard_of(*u).core, "the queue id names its owner core");
    }
    let mut c = s.client();
    for (round, (u, q)) in users.iter().zip(&queues).enumerate() {
        c.send("GET", &poll_path(q, -1), *u, "");
        s.wait_parked(1);
        s.publish_test_event(&[*u], round as i64);
        let v = c.read().json();
        assert_eq!(v["events"][0]["n"], round as i64);
        assert_eq!(v["queue_id"], json!(q));
    }
    assert!(s.totals().handoffs >= 1, "the connection moved to a queue's core");
}

#[test]
fn get_events_without_a_queue_creates_one_with_dont_block() {
    let s = Server::start();
    let r = s.client().call("GET", "/api/v1/events?dont_block=true", 7, "");
    let v = r.json();
    assert_eq!(v["events"], json!([]));
    let q = v["queue_id"].as_str().expect("a new queue id").to_owned();
    assert_eq!(s.totals().queues, 1);
    let r = s.client().call("GET", "/api/v1/events", 7, "");
    assert_eq!(r.json()["msg"], "Missing 'queue_id' argument");
    let r = s.client().call("GET", &format!("/api/v1/events?queue_id={q}"), 7, "");
    assert_eq!(r.json()["msg"], "Missing 'last_event_id' argument");
}

#[test]
fn many_parked_polls_all_complete() {
    let s = Server::start();
    let users: Vec<i64> = (1..=40).collect();
    let queues: Vec<String> = users.iter().map(|&u| s.register(u)).collect();
    let mut clients: Vec<_> = users
        .iter()
        .zip(&queues)
        .map(|(&u, q)| {
            let mut c = s.client();
            c.send("GET", &poll_path(q, -1), u, "");
            c
        })
        .collect();
    s.wait_parked(40);
    s.publish_test_event(&users, 9);
    for (c, q) in clients.iter_mut().zip(&queues) {
        let v = c.read().json();
        assert_eq!(v["events"], json!([{"type": "test", "n": 9, "id": 0}]));
        assert_eq!(v["queue_id"], json!(q));
    }
    assert_eq!(s.totals().deliveries, 40);
}
