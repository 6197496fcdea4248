//! Unit tests of `persist`: round trips, sharing, damage, the previous
//! format, and when the dump may move.

use super::*;
use crate::queue::QueuedEvent;
use crate::state::{EventsOp, Timing};
use crate::stats::Stats;
use serde_json::json;
use squall_proto::envelope::{Destination, MessageNotice, MessageRecipient, Notice, NotifySets, WideMessage};
use squall_proto::flags;
use squall_proto::Shard;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("squall-persist-{}-{}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn state(core: u16) -> CoreState {
    CoreState::new(Shard { node: 0, core }, Timing::default())
}

pub(crate) fn spec(user_id: i64) -> QueueSpec {
    QueueSpec { user_id, realm_id: 1, queue_timeout_secs: 600, ..QueueSpec::default() }
}

pub(crate) fn restart() -> Value {
    json!({"type": "restart", "zulip_version": "v", "server_generation": 9})
}

/// A public stream message to `users` (id, flags), content `content`.
pub(crate) fn message(content: &str, users: &[(i64, i64)], notify: NotifySets) -> Notice {
    Notice::Message(Box::new(MessageNotice {
        message: Arc::new(WideMessage {
            id: 50,
            sender_id: 1,
            sender_email: "a@x.com".into(),
            sender_full_name: "A".into(),
            sender_realm_str: "".into(),
            recipient_id: 9,
            timestamp: 1,
            client: "test".into(),
            subject: "Topic".into(),
            content: content.into(),
            rendered_content: format!("<p>{content}</p>"),
            is_me_message: false,
            avatar_url: "u".into(),
            avatar_is_gravatar: false,
            destination: Destination::Stream { stream_id: 3, name: "Denmark".into() },
            last_edit_timestamp: None,
            edit_history: None,
        }),
        users: users.iter().map(|&(id, flags)| MessageRecipient { id, flags, mentioned_user_group_id: None }).collect(),
        sender_queue_id: None,
        local_id: Some("9.9".into()),
        realm_id: 1,
        public_stream: true,
        invite_only: false,
        notify,
    }))
}

pub(crate) fn generic(event: Value, users: &[i64]) -> Notice {
    Notice::Generic { event: Arc::new(event), users: users.to_vec() }
}

/// `n` queues of users 1..=n, each with two events of its own and one
/// shared by all.
fn queues_with_events(n: i64) -> (CoreState, Vec<(i64, QueueId)>) {
    let mut s = state(0);
    let qs: Vec<(i64, QueueId)> = (1..=n).map(|u| (u, s.allocate(spec(u), 100))).collect();
    for &(u, _) in &qs {
        s.deliver(generic(json!({"type": "test", "for": u}), &[u]));
    }
    s.deliver(generic(json!({"type": "test", "shared": true}), &(1..=n).collect::<Vec<_>>()));
    for &(u, _) in &qs {
        s.deliver(generic(json!({"type": "test", "again": u}), &[u]));
    }
    (s, qs)
}

/// What each queue would answer (this materialises virtual events).
fn peek_all(s: &mut CoreState, qs: &[(i64, QueueId)]) -> Vec<Option<Vec<Value>>> {
    qs.iter().map(|&(u, q)| s.peek(u, q)).collect()
}

fn events_of(s: &CoreState, q: QueueId) -> Vec<QueuedEvent> {
    s.reg.get(q).expect("queue restored").queue.contents().cloned().collect()
}

fn text(body: &EventBody) -> &Rc<str> {
    match body {
        EventBody::Shared(t) | EventBody::Message { payload: t, .. } => t,
        EventBody::Heartbeat => panic!("a heartbeat has no text"),
    }
}

/// The dump exactly as the previous version wrote it.
fn legacy_pieces(s: &CoreState) -> Vec<Vec<u8>> {
    s.reg
        .iter()
        .map(|(id, d)| {
            let id = id.to_string();
            serde_json::to_vec(&(id.clone(), SavedDescriptor::from_descriptor(&id, d))).unwrap()
        })
        .collect()
}

fn legacy_dump(s: &CoreState) -> Vec<u8> {
    let list: Vec<(String, SavedDescriptor)> =
        s.reg.iter().map(|(id, d)| (id.to_string(), SavedDescriptor::from_descriptor(&id.to_string(), d))).collect();
    let bytes = serde_json::to_vec(&list).unwrap();
    assert_eq!(bytes, [b"[".to_vec(), legacy_pieces(s).join(&b","[..]), b"]".to_vec()].concat());
    bytes
}

/// Saves `s` and returns the dump's lines (each with its newline).
fn saved_lines(s: &CoreState, dir: &Path) -> Vec<Vec<u8>> {
    s.save_queues(dir, 1).unwrap();
    let bytes = std::fs::read(dump_path(dir, 0, 1)).unwrap();
    std::fs::remove_file(dump_path(dir, 0, 1)).unwrap();
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Whether a record line is of type `tag`.
fn is(line: &[u8], tag: u8) -> bool {
    line.get(9) == Some(&tag)
}

/// A line with its payload replaced and its checksum recomputed.
fn resealed(tag: u8, payload: &str) -> Vec<u8> {
    let rest = format!("{} {payload}", tag as char);
    format!("{:08x} {rest}\n", crc32fast::hash(rest.as_bytes())).into_bytes()
}

#[test]
fn queues_survive_with_their_events_then_get_restart() {
    let topo = Topology::single_node(1);
    let dir = tempdir();
    let mut a = state(0);
    let q = a.allocate(QueueSpec { user_id: 3, realm_id: 1, apply_markdown: true, ..QueueSpec::default() }, 1234);
    let only_messages = a.allocate(
        QueueSpec { user_id: 3, realm_id: 1, event_types: Some(vec!["message".into()]), ..QueueSpec::default() },
        1234,
    );
    a.deliver(generic(json!({"type": "test", "n": 1}), &[3]));
    assert_eq!(a.save_queues(&dir, 1).unwrap(), 2);
    assert!(!dir.join("event_queues.json.tmp").exists(), "the temporary file was renamed");

    let mut b = state(0);
    assert_eq!(b.load_queues(&dir, topo, &restart()), 2);
    assert!(!dir.join("event_queues.json").exists(), "Zulip's single-process name");
    assert!(dir.join("event_queues.json.last").exists(), "the dump is renamed to .last");
    let got = b.peek(3, q).unwrap();
    assert_eq!(
        got,
        vec![
            json!({"id": 0, "type": "test", "n": 1}),
            json!({"id": 1, "type": "restart", "zulip_version": "v", "server_generation": 9})
        ]
    );
    assert!(b.peek(3, only_messages).unwrap().is_empty(), "restart goes through the event_types filter");
    assert_eq!(b.reload_pending.len(), 1, "only the queue that accepts every type is marked for reload");
    // Idle time keeps counting from the saved last_connection_time.
    assert_eq!(b.gc(1234 + 599), 0);
    assert_eq!(b.gc(1234 + 600), 2);
    // Loading again finds nothing.
    assert_eq!(state(0).load_queues(&dir, topo, &restart()), 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shared_events_are_stored_once_and_shared_again_after_loading() {
    let topo = Topology::single_node(1);
    let dir = tempdir();
    let mut a = state(0);
    let q1 = a.allocate(spec(1), 100);
    let q2 = a.allocate(spec(2), 100);
    let q2b = a.allocate(QueueSpec { client_type_name: "other".into(), ..spec(2) }, 100);
    let qs = [(1, q1), (2, q2), (2, q2b)];
    a.deliver(generic(json!({"type": "test", "first": true}), &[1, 2]));
    // Queue 1 acknowledges the first event: newest_pruned_id must survive.
    let op = EventsOp::Poll { queue_id: q1, last_event_id: Some(0), dont_block: true };
    a.events(1, op, &crate::park::Slot::new(), 0);
    // User 2 is mentioned and push-notifiable: their events carry a record.
    let notify = NotifySets { online_push_user_ids: vec![2], ..NotifySets::default() };
    a.deliver(message("only-once-marker", &[(1, 0), (2, flags::MENTIONED)], notify));
    let _ = a.take_notifications();
    a.deliver(generic(
        json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "starred",
               "messages": [50], "all": false}),
        &[1],
    ));
    if let Some(d) = a.reg.get_mut(q2b) {
        d.queue.push(EventBody::Heartbeat);
    }
    a.save_queues(&dir, 1).unwrap();
    let dump = std::fs::read_to_string(dump_path(&dir, 0, 1)).unwrap();
    assert_eq!(dump.matches("only-once-marker").count(), 1, "the message is written once: {dump}");
    assert_eq!(dump.matches("\"first\":true").count(), 1, "{dump}");

    let mut b = state(0);
    assert_eq!(b.load_queues(&dir, topo, &restart()), 3);
    let (e1, e2, e2b) = (events_of(&b, q1), events_of(&b, q2), events_of(&b, q2b));
    // Queue 1: message, restart (its flag event is virtual). Queue 2: first, message, restart.
    assert_eq!(e1.len(), 2);
    assert_eq!(e2.len(), 3);
    assert_eq!(e2b.len(), 4);
    assert!(Rc::ptr_eq(text(&e2[0].body), text(&e2b[0].body)), "the generic event is one allocation");
    assert!(matches!(e1[0].body, EventBody::Message { flags: 0, .. }));
    assert!(matches!(e2[1].body, EventBody::Message { flags: flags::MENTIONED, .. }));
    assert!(Rc::ptr_eq(text(&e1[0].body), text(&e2[1].body)), "the message payload is one allocation");
    assert!(Rc::ptr_eq(text(&e2[1].body), text(&e2b[1].body)));
    assert!(e1[0].internal.is_none());
    let (r2, r2b) = (e2[1].internal.as_ref().unwrap(), e2b[1].internal.as_ref().unwrap());
    assert!(Rc::ptr_eq(r2, r2b), "a user's queues share the notification record");
    assert!(Rc::ptr_eq(text(&e1[1].body), text(&e2[2].body)), "one restart event for all");
    assert_eq!(e2b[2].body, EventBody::Heartbeat);
    assert_eq!(b.reg.get(q1).unwrap().queue.newest_pruned_id(), 0);
    assert_eq!(b.reg.get(q1).unwrap().queue.virtual_events().len(), 1);
    assert_eq!(b.reg.get(q2b).unwrap().spec.client_type_name, "other");

    // What clients see is what they saw, plus the restart event.
    let before = peek_all(&mut a, &qs);
    let after = peek_all(&mut b, &qs);
    for (before, after) in before.into_iter().zip(after) {
        let (before, mut after) = (before.unwrap(), after.unwrap());
        assert_eq!(after.pop().unwrap()["type"], "restart");
        assert_eq!(before, after);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_truncated_dump_restores_the_queues_before_the_cut_and_is_kept_aside() {
    let topo = Topology::single_node(1);
    let dir = tempdir();
    let (mut a, qs) = queues_with_events(4);
    let lines = saved_lines(&a, &dir);
    let expected = peek_all(&mut a, &qs);
    for keep in 1..=lines.len() {
        for half in [false, true] {
            // The first `keep` lines, the last of them only half if `half`.
            let complete = if half { keep - 1 } else { keep };
            let mut bytes = lines[..complete].concat();
            if half {
                bytes.extend_from_slice(&lines[keep - 1][..lines[keep - 1].len() / 2]);
            }
            // Each queue's events fit one R record, which completes it.
            let restorable = lines[..complete].iter().filter(|l| is(l, b'R')).count();
            std::fs::write(dump_path(&dir, 0, 1), &bytes).unwrap();
            let mut b = state(0);
            let loaded = b.load_queues(&dir, topo, &restart());
            assert_eq!(loaded, restorable, "cut after {complete} lines (half a line more: {half})");
            assert!(!dump_path(&dir, 0, 1).exists());
            let whole = complete == lines.len();
            assert_eq!(last_path(&dir, 0, 1).exists(), whole);
            if whole {
                std::fs::remove_file(last_path(&dir, 0, 1)).unwrap();
            } else {
                let kept = bad_path(&dir, 0, 1);
                assert_eq!(std::fs::read(&kept).unwrap(), bytes, "the damaged file is kept as it was");
                std::fs::remove_file(kept).unwrap();
            }
            // The restored queues are whole.
            for (i, (got, want)) in peek_all(&mut b, &qs).into_iter().zip(&expected).enumerate() {
                if let Some(mut events) = got {
                    assert_eq!(events.pop().unwrap()["type"], "restart");
                    assert_eq!(Some(events), *want, "queue {i}");
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_record_stops_the_restore_at_the_last_good_one() {
    let topo = Topology::single_node(1);
    let dir = tempdir();
    let (a, _) = queues_with_events(4);
    let lines = saved_lines(&a, &dir);
    let third_queue = lines.iter().enumerate().filter(|(_, l)| is(l, b'Q')).nth(2).unwrap().0;
    let first_r = lines.iter().position(|l| is(l, b'R')).unwrap();
    let mut flipped = lines.clone();
    // A changed byte: the checksum no longer matches.
    let l = &mut flipped[third_queue];
    let at = l.len() - 3;
    l[at] ^= 0x01;
    // Records whose checksum matches but which do not make sense.
    let unknown_body = {
        let mut v = lines.clone();
        v[first_r] = resealed(b'R', r#"[{"i":0,"b":999}]"#);
        v
    };
    let misnumbered = {
        let mut v = lines.clone();
        let first_b = v.iter().position(|l| is(l, b'B')).unwrap();
        v[first_b] = resealed(b'B', r#"7 {"type":"x"}"#);
        v
    };
    let not_json = {
        let mut v = lines.clone();
        v[third_queue] = resealed(b'Q', "{");
        v
    };
    let unknown_tag = {
        let mut v = lines.clone();
        v[third_queue] = resealed(b'Z', "{}");
        v
    };
    let wrong_end = {
        let mut v = lines.clone();
        let last = v.len() - 1;
        v[last] = resealed(b'E', r#"{"queues":5,"bodies":0,"records":0,"events":0}"#);
        v
    };
    for (what, lines, restorable) in [
        ("a flipped bit", flipped, 2),
        ("an unknown body", unknown_body, 0),
        ("a misnumbered body", misnumbered, 0),
        ("a queue that is not JSON", not_json, 2),
        ("an unknown record", unknown_tag, 2),
        ("an end record that disagrees", wrong_end, 4),
    ] {
        let bytes = lines.concat();
        std::fs::write(dump_path(&dir, 0, 1), &bytes).unwrap();
        assert_eq!(state(0).load_queues(&dir, topo, &restart()), restorable, "{what}");
        assert_eq!(std::fs::read(bad_path(&dir, 0, 1)).unwrap(), bytes, "{what}: kept for inspection");
        assert!(!last_path(&dir, 0, 1).exists(), "{what}");
    }
    for (what, bytes) in [
        ("empty", b"".to_vec()),
        ("garbage", b"\x00\x01\x02 not a dump".to_vec()),
        ("a newer version", b"squall-event-queues 99\n".to_vec()),
        ("not a JSON array", b"{not json".to_vec()),
    ] {
        std::fs::write(dump_path(&dir, 0, 1), &bytes).unwrap();
        assert_eq!(state(0).load_queues(&dir, topo, &restart()), 0, "{what}");
        assert_eq!(std::fs::read(bad_path(&dir, 0, 1)).unwrap(), bytes, "{what}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_previous_format_loads_with_equal_events_shared() {
    let topo = Topology::single_node(1);
    let dir = tempdir();
    let mut a = state(0);
    let q1 = a.allocate(spec(1), 100);
    let q2 = a.allocate(spec(2), 100);
    let q2b = a.allocate(spec(2), 100);
    let qs = [(1, q1), (2, q2), (2, q2b)];
    let notify = NotifySets { online_push_user_ids: vec![2], ..NotifySets::default() };
    a.deliver(generic(json!({"type": "test", "first": true}), &[1, 2]));
    a.deliver(message("hello", &[(1, 0), (2, flags::MENTIONED)], notify));
    let _ = a.take_notifications();
    a.deliver(generic(
        json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "starred",
               "messages": [50], "all": false}),
        &[2],
    ));
    std::fs::write(dump_path(&dir, 0, 1), legacy_dump(&a)).unwrap();

    let mut b = state(0);
    assert_eq!(b.load_queues(&dir, topo, &restart()), 3);
    assert!(last_path(&dir, 0, 1).exists());
    let (e1, e2, e2b) = (events_of(&b, q1), events_of(&b, q2), events_of(&b, q2b));
    assert!(Rc::ptr_eq(text(&e1[0].body), text(&e2[0].body)), "equal texts share one allocation");
    assert!(Rc::ptr_eq(text(&e2[1].body), text(&e2b[1].body)), "the same message with the same flags");
    assert!(!Rc::ptr_eq(text(&e1[1].body), text(&e2[1].body)), "other flags, other text");
    assert!(Rc::ptr_eq(e2[1].internal.as_ref().unwrap(), e2b[1].internal.as_ref().unwrap()));
    let before = peek_all(&mut a, &qs);
    let after = peek_all(&mut b, &qs);
    for (before, after) in before.into_iter().zip(after) {
        let (before, mut after) = (before.unwrap(), after.unwrap());
        assert_eq!(after.pop().unwrap()["type"], "restart");
        assert_eq!(before, after);
    }
    // Notification state came back too: the last queue gone, the email is due.
    b.events(1, EventsOp::Delete { queue_id: q1 }, &crate::park::Slot::new(), 0);
    b.events(2, EventsOp::Delete { queue_id: q2 }, &crate::park::Slot::new(), 0);
    assert!(b.take_notifications().is_empty());
    b.events(2, EventsOp::Delete { queue_id: q2b }, &crate::park::Slot::new(), 0);
    assert_eq!(b.take_notifications().len(), 1);

    // A dump as Zulip writes it, without the keys added later.
    let zulip = json!([["0-0-0000000000000000000000000000000a", {
        "user_profile_id": 3, "realm_id": 1, "queue_timeout": 600, "event_types": null,
        "last_connection_time": 5, "client_type_name": "ZulipMobile", "apply_markdown": true,
        "event_queue": {"id": "0-0-0000000000000000000000000000000a", "next_event_id": 2,
                        "queue": [{"id": 1, "type": "stream", "op": "create"}]}}]]);
    std::fs::write(dump_path(&dir, 0, 1), zulip.to_string()).unwrap();
    let mut c = state(0);
    assert_eq!(c.load_queues(&dir, topo, &json!({"type": "restart"})), 1);
    let q = QueueId::parse("0-0-0000000000000000000000000000000a").unwrap();
    let d = c.reg.get(q).unwrap();
    assert!(d.spec.pronouns_field_type_supported && !d.spec.slim_presence, "Zulip's defaults");
    assert_eq!(d.spec.client_type_name, "ZulipMobile");
    assert_eq!(
        c.peek(3, q).unwrap(),
        vec![json!({"id": 1, "type": "stream", "op": "create"}), json!({"id": 2, "type": "restart"})]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_dump_in_the_previous_format_restores_its_complete_queues() {
    let topo = Topology::single_node(1);
    let dir = tempdir();
    let (a, _) = queues_with_events(4);
    let pieces = legacy_pieces(&a);
    // Cut inside the third queue.
    let mut bytes = [b"[".to_vec(), pieces[..2].join(&b","[..]), b",".to_vec()].concat();
    bytes.extend_from_slice(&pieces[2][..pieces[2].len() / 2]);
    std::fs::write(dump_path(&dir, 0, 1), &bytes).unwrap();
    assert_eq!(state(0).load_queues(&dir, topo, &restart()), 2);
    assert_eq!(std::fs::read(bad_path(&dir, 0, 1)).unwrap(), bytes);
    std::fs::remove_file(bad_path(&dir, 0, 1)).unwrap();
    // Trailing garbage after a complete array: everything is restored, the file is kept aside.
    let bytes = [legacy_dump(&a), b" x".to_vec()].concat();
    std::fs::write(dump_path(&dir, 0, 1), &bytes).unwrap();
    assert_eq!(state(0).load_queues(&dir, topo, &restart()), 4);
    assert!(bad_path(&dir, 0, 1).exists() && !last_path(&dir, 0, 1).exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_dump_on_one_core_leaves_the_others_alone_and_survives_the_next_restart() {
    let topo = Topology::single_node(2);
    let dir = tempdir();
    let user_on = |core: u16| (1..).find(|&u| topo.shard_of(u).core == core).unwrap();
    let mut cores: Vec<CoreState> = (0..2).map(state).collect();
    for (c, s) in cores.iter_mut().enumerate() {
        let u = user_on(c as u16);
        s.allocate(spec(u), 100);
        s.allocate(spec(u), 100);
        s.deliver(generic(json!({"type": "test"}), &[u]));
        assert_eq!(s.save_queues(&dir, 2).unwrap(), 2);
    }
    let damaged = b"squall-event-queues 1\nnonsense\n".to_vec();
    std::fs::write(dump_path(&dir, 0, 2), &damaged).unwrap();
    let mut restored: Vec<CoreState> = (0..2).map(state).collect();
    assert_eq!(restored[0].load_queues(&dir, topo, &restart()), 0);
    assert_eq!(restored[1].load_queues(&dir, topo, &restart()), 2);
    assert_eq!(std::fs::read(dir.join("event_queues.0.bad.json")).unwrap(), damaged, "several processes' name");
    assert!(dir.join("event_queues.1.last.json").exists());
    // The next shutdown and start do not overwrite what was kept.
    for s in &restored {
        s.save_queues(&dir, 2).unwrap();
    }
    for s in &mut restored {
        s.load_queues(&dir, topo, &restart());
    }
    assert!(dir.join("event_queues.0.last.json").exists());
    assert_eq!(std::fs::read(dir.join("event_queues.0.bad.json")).unwrap(), damaged);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn queues_of_other_cores_are_dropped() {
    let dir = tempdir();
    let foreign = json!([["0-0-0000000000000000000000000000000a", {
        "user_profile_id": 3, "realm_id": 1, "queue_timeout": 600, "event_types": null,
        "last_connection_time": 5, "event_queue": {"id": "x", "next_event_id": 0, "queue": []}}]]);
    std::fs::write(dir.join("event_queues.0.json"), foreign.to_string()).unwrap();
    let two_cores = Topology::single_node(2);
    let expected = usize::from(two_cores.shard_of(3).core == 0);
    assert_eq!(state(0).load_queues(&dir, two_cores, &json!({"type": "restart"})), expected);
    assert!(dir.join("event_queues.0.last.json").exists(), "several processes' name");
    let _ = std::fs::remove_dir_all(dir);
}

/// Feeds `bytes` to a core loading from a named pipe, stopping after
/// `split` bytes until `queues` queues are restored; checks that the dump
/// is still in place then, and moved once read to its end.
fn load_through_a_pipe(bytes: &[u8], split: usize, queues: i64, total: usize) {
    let dir = tempdir();
    let path = dump_path(&dir, 0, 1);
    let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
    assert!(made.success());
    let stats = Arc::new(Stats::new(1));
    let loader = std::thread::spawn({
        let (dir, stats) = (dir.clone(), stats.clone());
        move || {
            let mut s = CoreState::with_stats(Shard { node: 0, core: 0 }, Timing::default(), stats);
            s.load_queues(&dir, Topology::single_node(1), &json!({"type": "restart"}))
        }
    });
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    pipe.write_all(&bytes[..split]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.totals().queues < queues {
        if Instant::now() > deadline {
            drop(pipe);
            panic!("no queue was restored before the whole dump was read");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(path.exists(), "half-loaded: the dump stays where it is");
    assert!(!last_path(&dir, 0, 1).exists() && !bad_path(&dir, 0, 1).exists());
    pipe.write_all(&bytes[split..]).unwrap();
    drop(pipe);
    assert_eq!(loader.join().unwrap(), total);
    assert!(!path.exists() && last_path(&dir, 0, 1).exists(), "read to its end: moved aside");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_dump_is_moved_aside_only_once_it_is_read_to_its_end() {
    let dir = tempdir();
    let (a, _) = queues_with_events(3);
    // The previous format: restored pair by pair while the file is read.
    let pieces = legacy_pieces(&a);
    let bytes = legacy_dump(&a);
    load_through_a_pipe(&bytes, 1 + pieces[0].len() + 1 + pieces[1].len(), 2, 3);
    // Records: restored queue by queue.
    let lines = saved_lines(&a, &dir);
    let second_r = lines.iter().enumerate().filter(|(_, l)| is(l, b'R')).nth(1).unwrap().0;
    let split = lines[..=second_r].iter().map(Vec::len).sum();
    load_through_a_pipe(&lines.concat(), split, 2, 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn long_queues_and_many_bodies_round_trip() {
    let topo = Topology::single_node(1);
    let dir = tempdir();
    let mut a = state(0);
    let qs: Vec<(i64, QueueId)> = (1..=3).map(|u| (u, a.allocate(spec(u), 100))).collect();
    for n in 0..2500 {
        a.deliver(generic(json!({"type": "test", "n": n, "text": "line\nbreak"}), &[1, 2, 3]));
    }
    // A body with a raw newline (pretty-printed JSON) is re-encoded.
    if let Some(d) = a.reg.get_mut(qs[0].1) {
        d.queue.push(EventBody::Shared(Rc::from("{\n  \"type\": \"pretty\"\n}")));
    }
    a.save_queues(&dir, 1).unwrap();
    let dump = std::fs::read(dump_path(&dir, 0, 1)).unwrap();
    let records = dump.split(|&b| b == b'\n').filter(|l| l.get(9) == Some(&b'R')).count();
    assert_eq!(records, 9, "2,500 events in three records per queue");
    let mut b = state(0);
    assert_eq!(b.load_queues(&dir, topo, &restart()), 3);
    let before = peek_all(&mut a, &qs);
    let after = peek_all(&mut b, &qs);
    for (before, after) in before.into_iter().zip(after) {
        let (before, mut after) = (before.unwrap(), after.unwrap());
        assert_eq!(after.pop().unwrap()["type"], "restart");
        assert_eq!(before, after);
    }
    assert_eq!(b.peek(1, qs[0].1).unwrap()[2500], json!({"id": 2500, "type": "pretty"}));
    let _ = std::fs::remove_dir_all(dir);
}
