//! `kill -9` under load: the journal brings every queue back with every
//! message whose send was acknowledged, and clients that keep polling the
//! same queue see each message exactly once.

use squall_e2e::{Server, ServerOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What a polling client saw.
#[derive(Default, Debug)]
struct Seen {
    /// Message ids, in the order received (duplicates kept).
    messages: Vec<i64>,
    restarts: usize,
    /// Error answers (a lost queue would show here).
    errors: Vec<String>,
}

/// Polls `queue` as a Zulip client does, retrying through the outage (the
/// server comes back on the same address), until it sees a message whose
/// content is `marker`.
fn poll_until_marker(c: squall_e2e::Client, queue: String, marker: &str) -> Seen {
    let mut seen = Seen::default();
    let mut last = -1;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        match c.get_events(&queue, last, false) {
            Ok((200, body)) => {
                for e in body["events"].as_array().cloned().unwrap_or_default() {
                    last = last.max(e["id"].as_i64().unwrap_or(last));
                    match e["type"].as_str() {
                        Some("message") => {
                            seen.messages.push(e["message"]["id"].as_i64().unwrap_or(-1));
                            if e["message"]["content"].as_str() == Some(marker) {
                                return seen;
                            }
                        }
                        Some("restart") => seen.restarts += 1,
                        _ => {}
                    }
                }
            }
            Ok((status, body)) => {
                seen.errors.push(format!("{status} {body}"));
                if seen.errors.len() > 20 {
                    return seen;
                }
                thread::sleep(Duration::from_millis(100));
            }
            // The server is down: try again shortly, as clients do.
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    seen.errors.push("gave up waiting for the marker".into());
    seen
}

#[test]
fn after_kill_9_every_acknowledged_message_reaches_every_queue_exactly_once() {
    // Records nobody waits for wait up to 2 s here (10 ms by default): an
    // acknowledgement that did not wait for the disk would be lost.
    let opts = ServerOptions {
        rate_limit_per_user: 100_000,
        env: vec![("SQUALL_JOURNAL_FLUSH_MS".into(), "2000".into())],
        ..ServerOptions::default()
    };
    let mut server = Server::start_with(opts).unwrap();
    let users: Vec<_> =
        ["alice", "bob", "carol"].iter().map(|n| server.create_user(&format!("{n}@example.com"), n).unwrap()).collect();
    let marker = "the last message";
    let mut pollers = Vec::new();
    let mut queues = HashMap::new();
    for u in &users {
        let (q, _, _) = u.register(&[("event_types", r#"["message", "restart"]"#)]).unwrap();
        queues.insert(u.email.clone(), q.clone());
        let c = u.clone();
        pollers.push((u.email.clone(), thread::spawn(move || poll_until_marker(c, q, marker))));
    }
    server.wait_parked(users.len() as i64).unwrap();
    // A queue nobody polls until after the crash: whatever it holds then
    // came from the journal, not from a client's memory.
    let (idle, _, _) = users[0].register(&[("event_types", r#"["message", "restart"]"#)]).unwrap();

    // Sends as fast as acknowledgements come back, until the server dies.
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (owner, acked, stop) = (server.owner.clone(), acked.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match owner.send_stream("general", "load", &format!("message {n}")) {
                    Ok(id) => acked.lock().unwrap().push(id),
                    Err(_) => return,
                }
            }
        })
    };
    let until = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 150 && Instant::now() < until {
        thread::sleep(Duration::from_millis(5));
    }
    // No graceful anything: SIGKILL while sends are under way.
    server.crash_and_restart_in_place().unwrap();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150, "sends were acknowledged before the kill: {}", acked.len());

    let (status, body) = server.client_for(&users[0]).get_events(&idle, -1, true).unwrap();
    assert_eq!(status, 200, "the unpolled queue is back: {body}");
    let events = body["events"].as_array().unwrap();
    let held: Vec<i64> =
        events.iter().filter(|e| e["type"] == "message").map(|e| e["message"]["id"].as_i64().unwrap()).collect();
    let missing: Vec<i64> = acked.iter().copied().filter(|id| !held.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged messages {missing:?} are not in the unpolled queue (of {})", acked.len());
    let mut unique = held.clone();
    unique.dedup();
    assert_eq!(unique, held, "each message once, in order");
    assert_eq!(events.last().unwrap()["type"], "restart", "{body}");

    let last = server.owner.send_stream("general", "load", marker).unwrap();
    for (email, poller) in pollers {
        let seen = poller.join().unwrap();
        assert!(seen.errors.is_empty(), "{email}'s queue {} kept working: {:?}", queues[&email], seen.errors);
        assert_eq!(seen.restarts, 1, "{email} was told of the restart once");
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for id in &seen.messages {
            *counts.entry(*id).or_default() += 1;
        }
        let missing: Vec<i64> = acked.iter().copied().filter(|id| !counts.contains_key(id)).collect();
        assert!(missing.is_empty(), "{email} never got acknowledged messages {missing:?} (of {})", acked.len());
        let twice: Vec<(&i64, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{email} got messages more than once: {twice:?}");
        assert_eq!(seen.messages.last(), Some(&last));
    }
}
