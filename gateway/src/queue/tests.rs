//! Unit tests of `queue`.

use super::*;

fn shared(s: &str) -> EventBody {
    EventBody::Shared(Rc::from(s))
}

#[test]
fn first_event_has_id_zero() {
    let mut q = EventQueue::new();
    assert_eq!(q.push(shared(r#"{"type":"unknown","data":"x"}"#)), 0);
    assert_eq!(q.render_events(), r#"[{"id":0,"type":"unknown","data":"x"}]"#);
}

#[test]
fn pruning_rules() {
    let mut q = EventQueue::new();
    // Fresh queue: only -1 is valid.
    assert_eq!(q.prune(0), Err(PruneError::NotInQueue(0)));
    assert_eq!(q.prune(-1), Ok(()));
    for _ in 0..3 {
        q.push(EventBody::Heartbeat);
    }
    assert_eq!(q.prune(1), Ok(()));
    assert_eq!(q.contents().map(|e| e.id).collect::<Vec<_>>(), vec![2]);
    // Idempotent retry with the same id.
    assert_eq!(q.prune(1), Ok(()));
    assert_eq!(q.prune(0).unwrap_err().message(), "An event newer than 0 has already been pruned!");
    assert_eq!(q.prune(5).unwrap_err().message(), "Event 5 was not in this queue");
    // The failed prune above still dropped event 2 (as Zulip does).
    assert!(q.is_empty());
}

fn flags(op: &str, flag: &str, messages: &[i64], ts: i64) -> Map<String, Value> {
    let v = serde_json::json!({"type": "update_message_flags", "op": op, "operation": op, "flag": flag,
                               "messages": messages, "all": false, "timestamp": ts});
    v.as_object().unwrap().clone()
}

fn other(ty: &str) -> Map<String, Value> {
    serde_json::json!({"type": ty}).as_object().unwrap().clone()
}

fn contents(q: &mut EventQueue) -> Value {
    serde_json::from_str(&q.render_events()).unwrap()
}

#[test]
fn consecutive_read_flags_collapse_at_the_last_id() {
    // Zulip's test_event_queue: flags(0), flags(1), unknown(2), flags(3), flags(4).
    let mut q = EventQueue::new();
    q.push_value(flags("add", "read", &[101], 0), None);
    q.push_value(flags("add", "read", &[201, 202], 1), None);
    q.push_value(other("unknown"), None);
    q.push_value(flags("add", "read", &[301, 302, 303], 3), None);
    q.push_value(flags("add", "read", &[401, 402, 403, 404], 4), None);
    let got = contents(&mut q);
    assert_eq!(got.as_array().unwrap().len(), 2);
    assert_eq!(got[0], serde_json::json!({"id": 2, "type": "unknown"}));
    assert_eq!(got[1]["id"], 4);
    assert_eq!(got[1]["timestamp"], 4);
    assert_eq!(got[1]["messages"], serde_json::json!([101, 201, 202, 301, 302, 303, 401, 402, 403, 404]));
    // Reading ended the compression: the next flags event stands alone.
    q.push_value(flags("add", "read", &[999], 5), None);
    let got = contents(&mut q);
    assert_eq!(got.as_array().unwrap().len(), 3);
    assert_eq!(got[2]["id"], 5);
    assert_eq!(got[2]["messages"], serde_json::json!([999]));
}

#[test]
fn other_flags_compress_keeping_the_first_events_fields_and_wait_as_virtual() {
    let mut q = EventQueue::new();
    let mut first = flags("remove", "collapsed", &[1], 10);
    first.insert("extra".into(), "first".into());
    q.push_value(first, None);
    assert!(q.events.is_empty(), "a single flags event is held as a virtual event");
    assert!(!q.is_empty(), "but the queue is not empty");
    let mut second = flags("remove", "collapsed", &[2], 11);
    second.insert("extra".into(), "second".into());
    q.push_value(second, None);
    let got = contents(&mut q);
    assert_eq!(got[0]["extra"], "first");
    assert_eq!(got[0]["messages"], serde_json::json!([1, 2]));
    assert_eq!(got[0]["timestamp"], 11);
    assert_eq!(got[0]["id"], 1);
}

#[test]
fn remove_read_and_all_are_never_merged() {
    assert!(!is_compressible(&virtual_key(&Value::Object(flags("remove", "read", &[1], 0)))));
    let mut all = flags("add", "read", &[], 0);
    all.insert("all".into(), true.into());
    assert_eq!(virtual_key(&Value::Object(all.clone())), "all_flags/read/add");
    assert!(!is_compressible("all_flags/read/add"));
    let mut q = EventQueue::new();
    q.push_value(flags("remove", "read", &[1], 0), None);
    q.push_value(flags("remove", "read", &[2], 1), None);
    q.push_value(all.clone(), None);
    q.push_value(all, None);
    assert_eq!(contents(&mut q).as_array().unwrap().len(), 4);
    assert!(is_compressible("flags/add/starred"));
}

#[test]
fn pruning_ignores_virtual_events() {
    let mut q = EventQueue::new();
    q.push(EventBody::Heartbeat);
    q.push_value(flags("add", "read", &[1], 0), None);
    // Event 1 is virtual: acknowledging 0 is fine; 1 was never delivered.
    assert_eq!(q.prune(0), Ok(()));
    assert!(!q.is_empty());
    assert_eq!(contents(&mut q)[0]["id"], 1);
    assert_eq!(q.prune(1), Ok(()));
    assert!(q.is_empty());
}

#[test]
fn saving_and_restoring_is_lossless() {
    let mut q = EventQueue::new();
    q.push(shared(r#"{"type":"unknown","data":"x"}"#));
    q.push(EventBody::Message {
        payload: Rc::from(r#"{"id":5}"#),
        flags: flags::MENTIONED,
        local_message_id: Some("1.1".into()),
    });
    q.push(EventBody::Heartbeat);
    assert_eq!(q.prune(0), Ok(()));
    q.push_value(flags("add", "starred", &[7], 3), None);
    let saved = q.save("0-0-x");
    let text = serde_json::to_string(&saved).unwrap();
    let back: SavedQueue = serde_json::from_str(&text).unwrap();
    assert_eq!(back, saved);
    let mut restored = EventQueue::restore(back);
    assert_eq!(restored.next_event_id(), 4);
    assert_eq!(restored.save("0-0-x"), saved, "restore then save is the identity");
    assert_eq!(restored.prune(-1), Err(PruneError::AlreadyPruned(-1)), "newest_pruned_id survived");
    let got = contents(&mut restored);
    assert_eq!(got[0]["flags"], serde_json::json!(["mentioned"]));
    assert_eq!(got[0]["local_message_id"], "1.1");
    assert_eq!(got[2]["messages"], serde_json::json!([7]));
    assert_eq!(got[2]["id"], 3);
}

#[test]
fn old_dumps_without_newest_pruned_id_load() {
    let saved: SavedQueue =
        serde_json::from_str(r#"{"id":"q","next_event_id":1,"queue":[{"id":0,"type":"x"}]}"#).unwrap();
    assert_eq!(saved.newest_pruned_id, -1);
    let mut q = EventQueue::restore(saved);
    assert_eq!(q.render_events(), r#"[{"id":0,"type":"x"}]"#);
}

#[test]
fn message_rendering_splices_per_queue_parts() {
    let e = QueuedEvent {
        internal: None,
        id: 7,
        body: EventBody::Message {
            payload: Rc::from(r#"{"id":1}"#),
            flags: flags::READ | flags::IS_PRIVATE,
            local_message_id: Some("1.5".into()),
        },
    };
    let mut out = Vec::new();
    e.render(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, r#"{"type":"message","message":{"id":1},"flags":["read"],"local_message_id":"1.5","id":7}"#);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], 7);
}

#[test]
fn empty_shared_object_renders() {
    let mut out = Vec::new();
    QueuedEvent { id: 3, body: shared("{}"), internal: None }.render(&mut out);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, r#"{"id":3}"#);
}

#[test]
fn integers_render_like_json() {
    for n in [0i64, 7, -1, 10, 1234567890, i64::MAX, i64::MIN] {
        let mut out = Vec::new();
        push_int(&mut out, n);
        assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
    }
}

#[test]
fn a_recovered_queue_takes_an_unknown_last_event_id_once_and_ids_continue_past_it() {
    let mut q = EventQueue::new();
    q.push(EventBody::Shared(Rc::from(r#"{"type":"a"}"#)));
    q.push(EventBody::Shared(Rc::from(r#"{"type":"b"}"#)));
    // A queue that was not recovered refuses an id it never gave.
    let mut plain = EventQueue::new();
    plain.push(EventBody::Heartbeat);
    assert_eq!(plain.prune(5), Err(PruneError::NotInQueue(5)));

    q.recovered();
    assert_eq!(q.next_event_id(), 2 + RECOVERY_ID_GAP);
    // The client saw id 40 (not journaled) before the crash.
    assert_eq!(q.prune(40), Ok(()));
    assert_eq!(q.len(), 0);
    assert_eq!(q.newest_pruned_id(), 40);
    let next = q.push(EventBody::Shared(Rc::from(r#"{"type":"c"}"#)));
    assert!(next > 40);
    // Only the first poll is lenient.
    assert_eq!(q.prune(next + 7), Err(PruneError::NotInQueue(next + 7)));

    // Whatever a client sends, ids never overflow.
    let mut q = EventQueue::new();
    q.recovered();
    assert_eq!(q.prune(i64::MAX), Ok(()));
    let id = q.push(EventBody::Heartbeat);
    assert!(id <= MAX_EVENT_ID);
    q.push(EventBody::Heartbeat);
}
