//! A cluster on one host (`squall gateway|backend|router`): two gateway
//! nodes of two processes each, two backends and the router, events
//! carried by RabbitMQ. Clients only ever talk to the router.

#![allow(clippy::unwrap_used)] // test code: a panic is a failed assertion

use serde_json::{json, Value};
use squall_e2e::{python_client_check_at, Client, Cluster, ClusterShape};
use squall_shard_router::placement::Topology;
use std::collections::BTreeSet;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// Where `user` lives: (node, process).
fn home(cluster: &Cluster, user: i64) -> (u16, u16) {
    let s = cluster.shape;
    let topo = Topology { nodes: s.nodes as u16, cores: s.processes * s.cores };
    let shard = topo.shard_of(user);
    (shard.node, shard.core / s.cores)
}

/// Members until every (node, process) of the cluster has one.
fn users_everywhere(cluster: &Cluster) -> Vec<Client> {
    let s = cluster.shape;
    let mut seen = BTreeSet::new();
    let mut users = Vec::new();
    for i in 0..200 {
        if seen.len() == s.nodes * s.processes as usize {
            return users;
        }
        let c = cluster.create_user(&format!("u{i}@example.com"), &format!("User {i}")).unwrap();
        seen.insert(home(cluster, c.user_id));
        users.push(c);
    }
    panic!("200 users and still some process has none: {seen:?}");
}

/// Message events in a poll's answer.
fn messages(body: &Value) -> Vec<i64> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["message"]["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn clients_see_one_server_through_the_router() {
    let cluster = Cluster::start(ClusterShape::default()).unwrap();
    let users = users_everywhere(&cluster);

    // The official client, end to end through the router.
    python_client_check_at(&cluster.url, &users[0], &users[1]);

    // Every queue on the node and process that owns its user, reached
    // through the router wherever SO_REUSEPORT lands the connection.
    let mut pollers = Vec::new();
    for c in &users {
        c.subscribe(&["everyone"]).unwrap();
        let (q, last, _) = c.register(&[("event_types", r#"["message"]"#)]).unwrap();
        let (node, process) = home(&cluster, c.user_id);
        let core_prefix: Vec<String> =
            (0..cluster.shape.cores).map(|k| format!("{node}-{}-", process * cluster.shape.cores + k)).collect();
        assert!(core_prefix.iter().any(|p| q.starts_with(p)), "{q} belongs to node {node} process {process}");
        let c = c.clone();
        pollers.push(thread::spawn(move || {
            let (status, body) = c.get_events(&q, last, false).unwrap();
            (c, q, status, body)
        }));
    }
    cluster.owner.subscribe(&["everyone"]).unwrap();
    let id = cluster.owner.send_stream("everyone", "t", "hello every node").unwrap();
    for p in pollers {
        let (c, q, status, body) = p.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(messages(&body), vec![id], "{}: {body}", c.email);
        // Exactly once: nothing more is queued after it.
        let last = body["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).max().unwrap();
        let (status, again) = c.get_events(&q, last, true).unwrap();
        assert_eq!((status, messages(&again)), (200, vec![]), "{again}");
        let (status, _) = c.delete("/api/v1/events", &[("queue_id", &q)]).unwrap();
        assert_eq!(status, 200);
        let (status, gone) = c.get_events(&q, -1, true).unwrap();
        assert_eq!((status, gone["code"].clone()), (400, json!("BAD_EVENT_QUEUE_ID")));
    }

    // A queue made by GET /events itself (no register): made on the
    // user's own node through a backend.
    let far = users.iter().find(|c| home(&cluster, c.user_id).0 == 1).unwrap();
    let (status, body) =
        far.get("/api/v1/events", &[("dont_block", "true"), ("event_types", r#"["message"]"#)]).unwrap();
    assert_eq!(status, 200, "{body}");
    let q = body["queue_id"].as_str().unwrap().to_owned();
    assert!(q.starts_with("1-"), "{q}");
    let id = cluster.owner.send_stream("everyone", "t", "to the new queue").unwrap();
    let (status, body) = far.get_events(&q, -1, false).unwrap();
    assert_eq!((status, messages(&body)), (200, vec![id]), "{body}");

    // Each gateway process reports its event bus (whichever process of the
    // node answers the scrape).
    for gateway in &cluster.gateways {
        let text = reqwest::blocking::get(format!("http://{gateway}/metrics")).unwrap().text().unwrap();
        assert!(text.contains("squall_bus_connected 1"), "{text}");
        assert!(text.contains("squall_bus_messages_total "), "{text}");
        assert!(text.contains("squall_bus_delay_seconds_bucket{le=\"+Inf\"} "), "{text}");
        assert!(text.contains("squall_request_duration_seconds_bucket{"), "{text}");
    }

    // The queue endpoints are not for clients.
    let (status, _) = far.post("/api/internal/squall/allocate_queue", &[("spec", "{}")]).unwrap();
    assert_eq!(status, 404);
}

#[test]
fn a_gateway_node_restart_keeps_its_queues_and_the_events_sent_meanwhile() {
    let mut cluster = Cluster::start(ClusterShape { nodes: 2, processes: 2, cores: 1, backends: 1 }).unwrap();
    let users = users_everywhere(&cluster);
    let on_one: Vec<&Client> = users.iter().filter(|c| home(&cluster, c.user_id).0 == 1).collect();
    let mut queues = Vec::new();
    for c in &on_one {
        c.subscribe(&["restart"]).unwrap();
        queues.push(c.register(&[("event_types", r#"["message"]"#)]).unwrap());
    }
    assert!(cluster.stop_gateway(1).unwrap(), "node 1 stops cleanly");
    // Stored, and its events wait in node 1's queues at the broker.
    let id = users[0].send_stream("restart", "t", "while node 1 was away").unwrap();
    cluster.start_gateway(1).unwrap();
    for (c, (q, last, _)) in on_one.iter().zip(&queues) {
        let (status, body) = c.get_events(q, *last, false).unwrap();
        assert_eq!(status, 200, "{body}");
        let got = messages(&body);
        let got = if got.is_empty() {
            // The restored queue answered with its `restart` event first.
            let last = body["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).max().unwrap();
            messages(&c.get_events(q, last, false).unwrap().1)
        } else {
            got
        };
        assert_eq!(got, vec![id], "{}", c.email);
    }
}

fn rabbitmqctl(args: &[&str]) {
    let node = std::env::var("SQUALL_RABBITMQ_NODE").unwrap_or_else(|_| "squall-5673@localhost".into());
    let out = Command::new("rabbitmqctl").args(["-n", &node, "-q"]).args(args).output().unwrap();
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_broker_going_away_refuses_sends_and_coming_back_resumes_delivery() {
    let cluster = Cluster::start(ClusterShape { nodes: 2, processes: 1, cores: 1, backends: 1 }).unwrap();
    let users = users_everywhere(&cluster);
    let vhost = cluster.amqp_url.rsplit('/').next().unwrap().to_owned();
    let mut queues = Vec::new();
    for c in &users {
        c.subscribe(&["outage"]).unwrap();
        queues.push(c.register(&[("event_types", r#"["message"]"#)]).unwrap());
    }
    let before = users[0].send_stream("outage", "t", "before").unwrap();

    // The broker drops this cluster's connections and refuses new ones
    // (this vhost only: other tests share the broker).
    rabbitmqctl(&["clear_permissions", "-p", &vhost, "guest"]);
    rabbitmqctl(&["close_all_connections", "--vhost", &vhost, "e2e: broker going away"]);
    let (status, body) = users[0]
        .post("/api/v1/messages", &[("type", "stream"), ("to", "outage"), ("topic", "t"), ("content", "during")])
        .unwrap();
    assert_eq!((status, body["code"].clone()), (503, json!("SERVICE_UNAVAILABLE")), "{body}");
    // Polls keep being served meanwhile.
    let (status, _) = users[1].get_events(&queues[1].0, queues[1].1, true).unwrap();
    assert_eq!(status, 200);

    rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let (status, body) = users[0]
            .post("/api/v1/messages", &[("type", "stream"), ("to", "outage"), ("topic", "t"), ("content", "after")])
            .unwrap();
        if status == 200 {
            break body["id"].as_i64().unwrap();
        }
        assert!(Instant::now() < deadline, "sends still refused 30 s after the broker came back: {body}");
        thread::sleep(Duration::from_millis(100));
    };
    // Every queue: the message from before, none of the refused one, the
    // one after (the gateways' consumers reconnected on their own).
    for (c, (q, last, _)) in users.iter().zip(&queues) {
        let mut got = Vec::new();
        let mut last = *last;
        while !got.contains(&after) {
            let (status, body) = c.get_events(q, last, false).unwrap();
            assert_eq!(status, 200, "{body}");
            got.extend(messages(&body));
            last = body["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).max().unwrap_or(last);
        }
        assert_eq!(got, vec![before, after], "{}", c.email);
    }
}

#[test]
fn a_deactivation_reaches_every_gateway_node_over_the_bus() {
    let cluster = Cluster::start(ClusterShape::default()).unwrap();
    let users = users_everywhere(&cluster);
    let mut queues = Vec::new();
    for c in &users {
        let (q, _, _) = c.register(&[]).unwrap();
        // Cached by the core that owns the queue, on the user's node.
        assert_eq!(c.get_events(&q, -1, true).unwrap().0, 200);
        queues.push(q);
    }
    for c in &users {
        let (status, body) = cluster.owner.delete(&format!("/api/v1/users/{}", c.user_id), &[]).unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // The revocation travels on RabbitMQ, so it may land just after the
    // DELETE returns; the cache alone would keep answering for 30 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (c, q) in users.iter().zip(&queues) {
        loop {
            let (status, body) = c.get_events(q, -1, true).unwrap();
            if status == 401 {
                assert_eq!(body["msg"], "Account is deactivated", "{body}");
                break;
            }
            assert_eq!(status, 200, "{body}");
            assert!(Instant::now() < deadline, "{} still polls {q} 10 s after deactivation", c.email);
            thread::sleep(Duration::from_millis(10));
        }
    }
}
