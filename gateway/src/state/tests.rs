//! Unit tests of a core's queue semantics (no runtime, no sockets).

use super::*;
use crate::park::{Answer, Slot};
use futures_util::task::noop_waker;
use serde_json::json;
use squall_proto::envelope::{Destination, MessageNotice, MessageRecipient, WideMessage};
use squall_proto::flags;
use std::future::Future;
use std::sync::Arc;
use std::task::Context;

fn state() -> CoreState {
    CoreState::new(Shard { node: 0, core: 1 }, Timing::default())
}

fn spec(user_id: i64) -> QueueSpec {
    QueueSpec { user_id, realm_id: 1, queue_timeout_secs: 600, ..QueueSpec::default() }
}

/// A poll in flight: answered at once, or parked on its slot.
struct Pending {
    slot: Rc<Slot>,
    now: Option<Answer>,
}

impl Pending {
    /// The answer, if there is one yet.
    fn try_recv(&mut self) -> Option<Answer> {
        if let Some(a) = self.now.take() {
            return Some(a);
        }
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        match std::pin::pin!(self.slot.wait()).poll(&mut cx) {
            std::task::Poll::Ready(a) => Some(a),
            std::task::Poll::Pending => None,
        }
    }
}

fn call(s: &mut CoreState, user: i64, op: EventsOp, now_ms: u64) -> Pending {
    let slot = Slot::new();
    let now = match s.events(user, op, &slot, now_ms) {
        PollResult::Answer(a) => Some(a),
        PollResult::Parked => None,
    };
    Pending { slot, now }
}

fn get(s: &mut CoreState, user: i64, q: Option<QueueId>, last: Option<i64>, dont_block: bool) -> Pending {
    let op = match q {
        Some(queue_id) => EventsOp::Poll { queue_id, last_event_id: last, dont_block },
        None => EventsOp::Create { dont_block, spec: Box::new(spec(user)) },
    };
    call(s, user, op, 1_000_000)
}

fn body(p: &mut Pending) -> (u16, serde_json::Value, Answer) {
    let a = p.try_recv().expect("no response yet");
    (a.status, serde_json::from_slice(a.json()).expect("json body"), a)
}

fn generic(users: Vec<i64>) -> Notice {
    Notice::Generic { event: Arc::new(json!({"type": "test", "data": "test data"})), users }
}

#[test]
fn parked_poll_completes_on_event_with_queue_id_and_vary() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    assert!(q.to_string().starts_with("0-1-"), "queue id names its shard: {q}");
    let mut rx = get(&mut s, 7, Some(q), Some(-1), false);
    assert!(rx.try_recv().is_none(), "should be parked");
    assert_eq!(s.counters().parked.load(std::sync::atomic::Ordering::Relaxed), 1);
    s.deliver(generic(vec![7]));
    let (status, v, r) = body(&mut rx);
    assert_eq!(status, 200);
    assert_eq!(v["events"], json!([{"type": "test", "data": "test data", "id": 0}]));
    assert_eq!(v["queue_id"], json!(q.to_string()));
    assert_eq!(v["result"], "success");
    assert_eq!(s.counters().parked.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(r.deferred, "deferred answers carry Vary");
}

#[test]
fn immediate_responses_have_no_queue_id() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    s.deliver(generic(vec![7]));
    let mut rx = get(&mut s, 7, Some(q), Some(-1), false);
    let (_, v, _) = body(&mut rx);
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    assert!(v.get("queue_id").is_none());
    // Acknowledge and poll with dont_block: empty, immediate.
    let mut rx = get(&mut s, 7, Some(q), Some(0), true);
    assert_eq!(body(&mut rx).1["events"], json!([]));
}

#[test]
fn new_poll_supersedes_the_parked_one() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    let mut first = get(&mut s, 7, Some(q), Some(-1), false);
    let mut second = get(&mut s, 7, Some(q), Some(-1), false);
    let (_, v, _) = body(&mut first);
    assert_eq!(v["events"], json!([]));
    assert_eq!(v["queue_id"], json!(q.to_string()));
    assert!(second.try_recv().is_none());
}

#[test]
fn queue_errors() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    let mut rx = get(&mut s, 8, Some(q), Some(-1), false);
    let (status, v, _) = body(&mut rx);
    assert_eq!(status, 400);
    assert_eq!(v["code"], "BAD_EVENT_QUEUE_ID");
    assert_eq!(v["msg"], format!("Bad event queue ID: {q}"));
    assert_eq!(v["queue_id"], json!(q.to_string()));

    let mut rx = get(&mut s, 7, Some(q), None, false);
    assert_eq!(body(&mut rx).1["msg"], "Missing 'last_event_id' argument");
    let mut rx = get(&mut s, 7, None, None, false);
    let (_, v, _) = body(&mut rx);
    assert_eq!(v["msg"], "Missing 'queue_id' argument");
    assert_eq!(v["code"], "BAD_REQUEST");
    let mut rx = get(&mut s, 7, Some(q), Some(3), true);
    assert_eq!(body(&mut rx).1["msg"], "Event 3 was not in this queue");
}

#[test]
fn dont_block_without_queue_creates_one() {
    let mut s = state();
    let mut rx = get(&mut s, 7, None, None, true);
    let (_, v, _) = body(&mut rx);
    assert_eq!(v["events"], json!([]));
    let q = QueueId::parse(v["queue_id"].as_str().unwrap()).unwrap();
    assert_eq!(s.queue_count(), 1);
    let mut rx = get(&mut s, 7, Some(q), Some(-1), true);
    assert_eq!(body(&mut rx).0, 200);
}

#[test]
fn delete_completes_parked_poll_and_forgets_queue() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    let mut parked = get(&mut s, 7, Some(q), Some(-1), false);
    let mut rx = call(&mut s, 8, EventsOp::Delete { queue_id: q }, 1_000_000);
    assert_eq!(body(&mut rx).1["code"], "BAD_EVENT_QUEUE_ID", "another user cannot delete it");
    let mut rx = call(&mut s, 7, EventsOp::Delete { queue_id: q }, 1_000_000);
    assert_eq!(body(&mut rx).1, json!({"result": "success", "msg": ""}));
    assert_eq!(body(&mut parked).1["events"], json!([]));
    assert_eq!(s.queue_count(), 0);
}

#[test]
fn heartbeat_comes_due_for_the_current_park_only_and_gc_spares_parked_queues() {
    let mut s = CoreState::new(Shard { node: 0, core: 1 }, Timing { heartbeat_min_secs: 45, heartbeat_jitter_secs: 0 });
    let q = s.allocate(spec(7), 1000);
    let mut first = get(&mut s, 7, Some(q), Some(-1), false);
    s.tick(1_040_000);
    assert!(first.try_recv().is_none(), "not due before 45 s");
    // A new park at t=1040.5 s moves the deadline to 1085.5 s (and answers the first).
    let op = EventsOp::Poll { queue_id: q, last_event_id: Some(-1), dont_block: false };
    let mut rx = call(&mut s, 7, op, 1_040_500);
    assert_eq!(body(&mut first).1["events"], json!([]));
    s.tick(1_045_000);
    assert!(rx.try_recv().is_none(), "the first park's deadline no longer counts");
    assert_eq!(s.gc(1040 + 10_000), 0, "a parked queue never expires");
    s.tick(1_085_499);
    assert!(rx.try_recv().is_none(), "45 s to the millisecond");
    s.tick(1_085_500);
    assert_eq!(body(&mut rx).1["events"], json!([{"type": "heartbeat", "id": 0}]));
    // Not parked any more: idle since the park at t=1040.
    assert_eq!(s.gc(1040 + 599), 0);
    assert_eq!(s.gc(1040 + 600), 1);
}

#[test]
fn jitter_stays_within_its_bound_and_is_fixed_per_queue() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    let mut rx = get(&mut s, 7, Some(q), Some(-1), false);
    s.tick(1_044_999);
    assert!(rx.try_recv().is_none(), "never before 45 s");
    s.tick(1_055_000);
    assert_eq!(body(&mut rx).1["events"][0]["type"], "heartbeat", "at most 45 + 10 s");
    let jitter = s.reg.get(q).unwrap().jitter_secs;
    assert!(jitter <= 10);
    assert_eq!(s.reg.get(q).unwrap().jitter_secs, jitter);
}

#[test]
fn tick_expires_idle_queues_once_a_minute_starting_a_minute_in() {
    let mut s = state();
    s.allocate(spec(7), 1000);
    // Restored queues' clients get a minute from the start.
    s.start_expiry(1599 - 60);
    assert_eq!(s.tick(1_598_000), 0);
    assert_eq!(s.tick(1_599_000), 0);
    assert_eq!(s.tick(1_601_000), 0);
    assert_eq!(s.tick(1_659_000), 1);
    assert_eq!(s.queue_count(), 0);
}

#[test]
fn a_vanished_client_stops_counting_as_parked() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    let rx = get(&mut s, 7, Some(q), Some(-1), false);
    assert_eq!(s.counters().parked.load(std::sync::atomic::Ordering::Relaxed), 1);
    rx.slot.set_gone();
    s.disconnected(q);
    assert_eq!(s.counters().parked.load(std::sync::atomic::Ordering::Relaxed), 0);
    s.disconnected(q);
    assert_eq!(s.counters().parked.load(std::sync::atomic::Ordering::Relaxed), 0, "counted once");
}

#[test]
fn gc_treats_a_vanished_client_as_not_parked() {
    let mut s = state();
    let q = s.allocate(spec(7), 1000);
    let rx = get(&mut s, 7, Some(q), Some(-1), false);
    rx.slot.set_gone();
    assert_eq!(s.gc(1000 + 600), 1);
}

fn message(flags_for: &[(i64, i64)], sender_queue: Option<String>) -> Notice {
    let msg = WideMessage {
        id: 99,
        sender_id: 7,
        sender_email: "a@x.com".into(),
        sender_full_name: "A".into(),
        sender_realm_str: "".into(),
        recipient_id: 1,
        timestamp: 5,
        client: "test".into(),
        subject: "t".into(),
        content: "**x**".into(),
        rendered_content: "<p><strong>x</strong></p>".into(),
        is_me_message: false,
        avatar_url: "https://a".into(),
        avatar_is_gravatar: true,
        destination: Destination::Stream { stream_id: 3, name: "Denmark".into() },
        last_edit_timestamp: None,
        edit_history: None,
    };
    Notice::Message(Box::new(MessageNotice {
        message: Arc::new(msg),
        users: flags_for
            .iter()
            .map(|&(id, flags)| MessageRecipient { id, flags, mentioned_user_group_id: None })
            .collect(),
        sender_queue_id: sender_queue,
        local_id: Some("0.1".into()),
        realm_id: 1,
        public_stream: true,
        invite_only: false,
        notify: Default::default(),
    }))
}

#[test]
fn message_events_carry_per_user_flags_variant_and_local_id_only_for_sender_queue() {
    let mut s = state();
    let sender_q = s.allocate(spec(7), 1000);
    let other_sender_q = s.allocate(QueueSpec { apply_markdown: true, ..spec(7) }, 1000);
    let recip_q = s.allocate(QueueSpec { narrow: vec![("stream".into(), "denmark".into())], ..spec(8) }, 1000);
    let filtered_q = s.allocate(QueueSpec { event_types: Some(vec!["typing".into()]), ..spec(8) }, 1000);
    s.deliver(message(&[(7, flags::READ), (8, flags::MENTIONED)], Some(sender_q.to_string())));
    let e = &s.peek(7, sender_q).unwrap()[0];
    assert_eq!(e["flags"], json!(["read"]));
    assert_eq!(e["local_message_id"], "0.1");
    assert_eq!(e["message"]["content"], "**x**");
    assert_eq!(e["message"]["avatar_url"], "https://a");
    let e = &s.peek(7, other_sender_q).unwrap()[0];
    assert!(e.get("local_message_id").is_none());
    assert_eq!(e["message"]["content"], "<p><strong>x</strong></p>");
    let e = &s.peek(8, recip_q).unwrap()[0];
    assert_eq!(e["flags"], json!(["mentioned"]));
    assert!(e.get("local_message_id").is_none());
    assert_eq!(s.peek(8, filtered_q).unwrap(), Vec::<Value>::new());
    assert_eq!(s.peek(7, recip_q), None, "peek checks the owner");
}

#[test]
fn a_queue_past_its_event_bound_is_dropped_and_a_read_one_is_not() {
    let mut s = state();
    s.set_queue_limits(QueueLimits { max_events_per_queue: 3, ..QueueLimits::default() });
    let unread = s.allocate(spec(7), 1000);
    let read = s.allocate(spec(8), 1000);
    for i in 0..3 {
        s.deliver(generic(vec![7, 8]));
        // User 8 reads (and so acknowledges) each event.
        let (status, _, _) = body(&mut get(&mut s, 8, Some(read), Some(i - 1), true));
        assert_eq!(status, 200);
    }
    assert!(s.peek(7, unread).is_some(), "3 unread events: at the bound, kept");
    s.deliver(generic(vec![7, 8]));
    assert!(s.peek(7, unread).is_none(), "the 4th unread event dropped the queue");
    let (status, v, _) = body(&mut get(&mut s, 7, Some(unread), Some(-1), true));
    assert_eq!((status, v["code"].as_str()), (400, Some("BAD_EVENT_QUEUE_ID")), "its client registers again");
    assert!(s.peek(8, read).is_some(), "a queue that is read stays");
    assert_eq!(s.counters().queues_dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_users_queues_past_their_bound_lose_the_least_recently_polled_parked_last() {
    let mut s = state();
    s.set_queue_limits(QueueLimits { max_queues_per_user: 2, ..QueueLimits::default() });
    let oldest = s.allocate(spec(7), 1000);
    let newer = s.allocate(spec(7), 2000);
    // The oldest is parked: the newer, unparked one goes first.
    let mut parked =
        call(&mut s, 7, EventsOp::Poll { queue_id: oldest, last_event_id: Some(-1), dont_block: false }, 3_000_000);
    assert!(parked.try_recv().is_none());
    let third = s.allocate(spec(7), 4000);
    assert!(s.peek(7, newer).is_none(), "the least recently polled queue that is not parked went");
    assert!(s.peek(7, oldest).is_some() && s.peek(7, third).is_some());
    let other = s.allocate(spec(8), 4000);
    assert!(s.peek(8, other).is_some(), "other users are not affected");
    // All parked or not, the bound holds.
    let fourth = s.allocate(spec(7), 5000);
    assert_eq!(s.reg.of_user(7).len(), 2);
    assert!(s.peek(7, fourth).is_some() && s.peek(7, oldest).is_some(), "the parked one stays while others can go");
    assert_eq!(s.counters().queues_dropped.load(std::sync::atomic::Ordering::Relaxed), 2);
}
