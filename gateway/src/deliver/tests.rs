//! Dispatch rules of `process_notification` / `process_message_event`,
//! as unit tests on a core's state.

use crate::state::{CoreState, Timing};
use serde_json::{json, Value};
use squall_proto::envelope::{Destination, MessageNotice, MessageRecipient, Notice, PerUserData, WideMessage};
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_proto::{flags, Shard};
use std::sync::Arc;

fn state() -> CoreState {
    CoreState::new(Shard { node: 0, core: 0 }, Timing::default())
}

fn spec(user_id: i64) -> QueueSpec {
    QueueSpec { user_id, realm_id: 1, ..QueueSpec::default() }
}

fn generic(event: Value, users: &[i64]) -> Notice {
    Notice::Generic { event: Arc::new(event), users: users.to_vec() }
}

fn events(s: &mut CoreState, user: i64, q: QueueId) -> Vec<Value> {
    s.peek(user, q).expect("queue exists")
}

#[test]
fn delete_message_is_bulk_or_per_message_by_capability() {
    let mut s = state();
    let bulk = s.allocate(QueueSpec { bulk_message_deletion: true, ..spec(1) }, 0);
    let legacy = s.allocate(spec(1), 0);
    s.deliver(generic(json!({"type": "delete_message", "message_type": "stream", "message_ids": [5, 6], "stream_id": 1, "topic": "t"}), &[1]));
    let b = events(&mut s, 1, bulk);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["message_ids"], json!([5, 6]));
    let l = events(&mut s, 1, legacy);
    assert_eq!(l.len(), 2);
    assert_eq!((l[0]["message_id"].clone(), l[1]["message_id"].clone()), (json!(5), json!(6)));
    assert!(l[0].get("message_ids").is_none());
    assert_eq!((l[0]["id"].clone(), l[1]["id"].clone()), (json!(0), json!(1)));
}

#[test]
fn presence_drops_email_for_slim_queues() {
    let mut s = state();
    let slim = s.allocate(QueueSpec { slim_presence: true, ..spec(1) }, 0);
    let full = s.allocate(spec(1), 0);
    let ev = json!({"type": "presence", "user_id": 9, "email": "x@y.z", "server_timestamp": 1.5, "presence": {}});
    s.deliver(generic(ev, &[1]));
    assert!(events(&mut s, 1, slim)[0].get("email").is_none());
    assert_eq!(events(&mut s, 1, full)[0]["email"], "x@y.z");
}

#[test]
fn realm_user_add_for_inaccessible_users_skips_incomplete_lists() {
    let mut s = state();
    let incomplete = s.allocate(QueueSpec { user_list_incomplete: true, ..spec(1) }, 0);
    let complete = s.allocate(spec(1), 0);
    let ev = json!({"type": "realm_user", "op": "add", "person": {"user_id": 9}, "inaccessible_user": true});
    s.deliver(generic(ev, &[1]));
    assert!(events(&mut s, 1, incomplete).is_empty());
    let got = events(&mut s, 1, complete);
    assert_eq!(got.len(), 1);
    assert!(got[0].get("inaccessible_user").is_none(), "internal key removed: {}", got[0]);
    // Without the internal flag everybody gets it.
    s.deliver(generic(json!({"type": "realm_user", "op": "add", "person": {"user_id": 10}}), &[1]));
    assert_eq!(events(&mut s, 1, incomplete).len(), 1);
}

#[test]
fn renames_of_deactivated_groups_need_the_capability() {
    let mut s = state();
    let with = s.allocate(QueueSpec { include_deactivated_groups: true, ..spec(1) }, 0);
    let without = s.allocate(spec(1), 0);
    let ev = json!({"type": "user_group", "op": "update", "group_id": 3, "data": {"name": "new"}, "deactivated": true});
    s.deliver(generic(ev, &[1]));
    let got = events(&mut s, 1, with);
    assert_eq!(got.len(), 1);
    assert!(got[0].get("deactivated").is_none());
    assert!(events(&mut s, 1, without).is_empty());
}

#[test]
fn pronouns_fields_are_downgraded_for_old_clients() {
    let mut s = state();
    let old = s.allocate(QueueSpec { pronouns_field_type_supported: false, ..spec(1) }, 0);
    let new = s.allocate(spec(1), 0);
    let ev = json!({"type": "custom_profile_fields", "fields": [{"id": 1, "type": 8, "name": "Pronouns"}, {"id": 2, "type": 3}]});
    s.deliver(generic(ev, &[1]));
    assert_eq!(
        events(&mut s, 1, old)[0]["fields"],
        json!([{"id": 1, "type": 1, "name": "Pronouns"}, {"id": 2, "type": 3}])
    );
    assert_eq!(events(&mut s, 1, new)[0]["fields"][0]["type"], 8);
}

#[test]
fn cleanup_queue_removes_only_the_owners_queue() {
    let mut s = state();
    let q = s.allocate(spec(1), 0);
    s.deliver(generic(json!({"type": "cleanup_queue", "queue_id": q.to_string()}), &[2]));
    assert_eq!(s.queue_count(), 1, "not the owner");
    s.deliver(generic(json!({"type": "cleanup_queue", "queue_id": q.to_string()}), &[1]));
    assert_eq!(s.queue_count(), 0);
}

#[test]
fn flag_events_from_notices_are_compressed() {
    let mut s = state();
    let q = s.allocate(spec(1), 0);
    for ids in [[1, 2], [3, 4]] {
        let ev = json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "read", "messages": ids, "all": false});
        s.deliver(generic(ev, &[1]));
    }
    let got = events(&mut s, 1, q);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["messages"], json!([1, 2, 3, 4]));
    assert_eq!(got[0]["id"], 1);
}

#[test]
fn update_message_carries_each_users_flags_without_internal_keys() {
    let mut s = state();
    let q1 = s.allocate(spec(1), 0);
    let q2 = s.allocate(spec(2), 0);
    let template = json!({"type": "update_message", "message_id": 7, "message_ids": [7], "rendering_only": false,
        "user_id": 1, "edit_timestamp": 5, "prior_mention_user_ids": [2], "presence_idle_user_ids": [],
        "stream_push_user_ids": [], "disable_external_notifications": false});
    let user = |id: i64, f: Value| PerUserData { id, data: json!({"id": id, "flags": f}).as_object().unwrap().clone() };
    s.deliver(Notice::PerUser {
        event: Arc::new(template),
        users: vec![user(1, json!(["read"])), user(2, json!(["mentioned"]))],
    });
    let e1 = &events(&mut s, 1, q1)[0];
    let e2 = &events(&mut s, 2, q2)[0];
    assert_eq!(e1["flags"], json!(["read"]));
    assert_eq!(e2["flags"], json!(["mentioned"]));
    for e in [e1, e2] {
        assert_eq!(e["message_ids"], json!([7]));
        for k in [
            "prior_mention_user_ids",
            "presence_idle_user_ids",
            "stream_push_user_ids",
            "disable_external_notifications",
        ] {
            assert!(e.get(k).is_none(), "{k} leaked: {e}");
        }
        assert_eq!(e["id"], 0);
    }
}

fn stream_message(client: &str) -> WideMessage {
    WideMessage {
        id: 50,
        sender_id: 1,
        sender_email: "a@x.com".into(),
        sender_full_name: "A".into(),
        sender_realm_str: "".into(),
        recipient_id: 9,
        timestamp: 1,
        client: client.into(),
        subject: "Topic".into(),
        content: "hi".into(),
        rendered_content: "<p>hi</p>".into(),
        is_me_message: false,
        avatar_url: "u".into(),
        avatar_is_gravatar: false,
        destination: Destination::Stream { stream_id: 3, name: "Denmark".into() },
        last_edit_timestamp: None,
        edit_history: None,
    }
}

fn message_notice(msg: WideMessage, users: &[(i64, i64)], public: bool, sender_queue: Option<String>) -> Notice {
    Notice::Message(Box::new(MessageNotice {
        message: Arc::new(msg),
        users: users.iter().map(|&(id, flags)| MessageRecipient { id, flags, mentioned_user_group_id: None }).collect(),
        sender_queue_id: sender_queue,
        local_id: Some("9.9".into()),
        realm_id: 1,
        public_stream: public,
        invite_only: !public,
        notify: Default::default(),
    }))
}

#[test]
fn realm_wide_watchers_get_public_stream_messages_with_empty_flags() {
    let mut s = state();
    let watcher = s.allocate(QueueSpec { all_public_streams: true, ..spec(5) }, 0);
    let narrowed = s.allocate(QueueSpec { narrow: vec![("stream".into(), "denmark".into())], ..spec(6) }, 0);
    let other_narrow = s.allocate(QueueSpec { narrow: vec![("stream".into(), "scotland".into())], ..spec(6) }, 0);
    let other_realm = s.allocate(QueueSpec { all_public_streams: true, realm_id: 2, ..spec(7) }, 0);
    let recipient = s.allocate(QueueSpec { all_public_streams: true, ..spec(1) }, 0);
    s.deliver(message_notice(stream_message("test"), &[(1, flags::READ)], true, Some(recipient.to_string())));
    let w = &events(&mut s, 5, watcher)[0];
    assert_eq!(w["flags"], json!([]));
    assert!(w.get("local_message_id").is_none());
    assert_eq!(events(&mut s, 6, narrowed)[0]["flags"], json!([]));
    assert!(events(&mut s, 6, other_narrow).is_empty());
    assert!(events(&mut s, 7, other_realm).is_empty());
    let r = events(&mut s, 1, recipient);
    assert_eq!(r.len(), 1, "a recipient who is also a watcher gets it once");
    assert_eq!(r[0]["flags"], json!(["read"]));
    assert_eq!(r[0]["local_message_id"], "9.9", "the sender's queue is recognised by id, watcher or not");

    // Private streams reach recipients only.
    s.deliver(message_notice(stream_message("test"), &[(1, 0)], false, None));
    assert_eq!(events(&mut s, 5, watcher).len(), 1);
    assert_eq!(events(&mut s, 1, recipient).len(), 2);
}

#[test]
fn local_id_is_echoed_only_to_a_queue_of_the_sender() {
    let mut s = state();
    let alice = s.allocate(spec(1), 0);
    let bob = s.allocate(spec(2), 0);
    // Bob (2) sends naming Alice's (1) queue: nobody gets the echo.
    let mut msg = stream_message("test");
    msg.sender_id = 2;
    s.deliver(message_notice(msg.clone(), &[(1, 0), (2, flags::READ)], false, Some(alice.to_string())));
    for (user, q) in [(1, alice), (2, bob)] {
        let got = events(&mut s, user, q);
        assert_eq!(got.len(), 1);
        assert!(got[0].get("local_message_id").is_none(), "user {user}: {}", got[0]);
    }
    // Naming his own queue, Bob gets it there and only there.
    s.deliver(message_notice(msg, &[(1, 0), (2, flags::READ)], false, Some(bob.to_string())));
    assert_eq!(events(&mut s, 2, bob)[1]["local_message_id"], "9.9");
    assert!(events(&mut s, 1, alice)[1].get("local_message_id").is_none());
}

#[test]
fn mirror_clients_loop_guard_and_invite_only_marker() {
    let mut s = state();
    let mirror = s.allocate(QueueSpec { client_type_name: "zephyr_mirror".into(), ..spec(1) }, 0);
    let other_mirror = s.allocate(QueueSpec { client_type_name: "irc_mirror".into(), ..spec(1) }, 0);
    let plain = s.allocate(spec(1), 0);
    s.deliver(message_notice(stream_message("Zephyr_Mirror"), &[(1, 0)], false, None));
    assert!(events(&mut s, 1, mirror).is_empty(), "a mirror never gets back what it mirrored");
    let m = &events(&mut s, 1, other_mirror)[0];
    assert_eq!(m["message"]["invite_only_stream"], true);
    let p = &events(&mut s, 1, plain)[0];
    assert!(p["message"].get("invite_only_stream").is_none());
}

fn dm(sender: i64, to: i64, notify: squall_proto::envelope::NotifySets) -> Notice {
    let mut msg = stream_message("test");
    msg.sender_id = sender;
    msg.destination = Destination::Private { participants: vec![] };
    Notice::Message(Box::new(MessageNotice {
        message: Arc::new(msg),
        users: vec![
            MessageRecipient { id: sender, flags: flags::READ | flags::IS_PRIVATE, mentioned_user_group_id: None },
            MessageRecipient { id: to, flags: flags::IS_PRIVATE, mentioned_user_group_id: Some(12) },
        ],
        sender_queue_id: None,
        local_id: None,
        realm_id: 1,
        public_stream: false,
        invite_only: false,
        notify,
    }))
}

fn queues_and_triggers(s: &mut CoreState) -> Vec<(&'static str, String)> {
    s.take_notifications()
        .into_iter()
        .map(|n| (n.queue, n.payload["trigger"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[test]
fn a_dm_to_someone_without_queues_notifies_by_push_and_email_at_once() {
    let mut s = state();
    s.deliver(dm(1, 2, Default::default()));
    assert_eq!(
        queues_and_triggers(&mut s),
        vec![
            (crate::notify::MOBILE_QUEUE, "direct_message".into()),
            (crate::notify::EMAIL_QUEUE, "direct_message".into())
        ]
    );
}

#[test]
fn an_online_user_gets_email_only_when_their_last_queue_goes() {
    let mut s = state();
    let q1 = s.allocate(spec(2), 0);
    let q2 = s.allocate(spec(2), 0);
    let notify = squall_proto::envelope::NotifySets { online_push_user_ids: vec![2], ..Default::default() };
    s.deliver(dm(1, 2, notify));
    assert_eq!(
        queues_and_triggers(&mut s),
        vec![(crate::notify::MOBILE_QUEUE, "direct_message".into())],
        "online: push only"
    );
    let e = &events(&mut s, 2, q1)[0];
    assert!(e.get("internal_data").is_none(), "internal data is never shown: {e}");

    // Not the last queue: nothing.
    s.events(2, crate::state::EventsOp::Delete { queue_id: q1 }, &crate::park::Slot::new(), 0);
    assert!(s.take_notifications().is_empty());
    // The last one: the email now; the push is not repeated.
    assert_eq!(s.gc(10_000), 1);
    let got = s.take_notifications();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].queue, crate::notify::EMAIL_QUEUE);
    assert_eq!(
        got[0].payload,
        json!({"user_profile_id": 2, "message_id": 50, "trigger": "direct_message", "mentioned_user_group_id": 12})
    );
    let _ = q2;
}

#[test]
fn a_deactivation_removes_the_users_queues_without_notifying_them() {
    let mut s = state();
    let q1 = s.allocate(spec(2), 0);
    let q2 = s.allocate(spec(2), 0);
    let bystander = s.allocate(spec(3), 0);
    let notify = squall_proto::envelope::NotifySets { online_push_user_ids: vec![2], ..Default::default() };
    s.deliver(dm(1, 2, notify));
    let _ = s.take_notifications();
    // Revoking the key alone leaves the queues.
    s.revoke(&[2], false);
    assert_eq!(s.queue_count(), 3);
    // Deactivation: both queues go, and the missed-message hook that a
    // last queue's removal runs does not notify a deactivated user.
    s.revoke(&[2], true);
    assert_eq!(s.queue_count(), 1);
    assert!(s.reg.get(q1).is_none() && s.reg.get(q2).is_none());
    assert!(s.reg.get(bystander).is_some());
    assert!(s.take_notifications().is_empty());
}

#[test]
fn the_hook_ignores_watcher_copies_and_acknowledged_events() {
    let mut s = state();
    let watcher = s.allocate(QueueSpec { all_public_streams: true, ..spec(5) }, 0);
    s.deliver(message_notice(stream_message("test"), &[(1, 0)], true, None));
    assert_eq!(events(&mut s, 5, watcher)[0]["flags"], json!([]));
    assert_eq!(s.gc(10_000), 1);
    assert!(s.take_notifications().is_empty(), "a watcher's copy carries no notification data");

    // A mention the user already fetched and acknowledged is not re-sent.
    let q = s.allocate(spec(2), 0);
    s.deliver(message_notice(stream_message("test"), &[(2, flags::MENTIONED)], true, None));
    let _ = s.take_notifications();
    let op = crate::state::EventsOp::Poll { queue_id: q, last_event_id: Some(0), dont_block: true };
    s.events(2, op, &crate::park::Slot::new(), 0);
    assert_eq!(s.gc(10_000), 1);
    assert!(s.take_notifications().is_empty());
}

#[test]
fn notification_state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("squall-notify-persist-{}", rand::random::<u64>()));
    let topo = squall_shard_router::placement::Topology::single_node(1);
    let mut a = state();
    let q = a.allocate(spec(2), 0);
    let notify = squall_proto::envelope::NotifySets { online_push_user_ids: vec![2], ..Default::default() };
    a.deliver(dm(1, 2, notify));
    assert_eq!(a.take_notifications().len(), 1);
    a.save_queues(&dir, 1).unwrap();
    let mut b = state();
    assert_eq!(b.load_queues(&dir, topo, &json!({"type": "restart"})), 1);
    assert!(events(&mut b, 2, q).iter().all(|e| e.get("internal_data").is_none()));
    assert_eq!(b.gc(10_000), 1);
    let got = b.take_notifications();
    assert_eq!(got.len(), 1, "email after restart, push not repeated: {got:?}");
    assert_eq!(got[0].queue, crate::notify::EMAIL_QUEUE);
    let _ = std::fs::remove_dir_all(dir);
}

fn edit(users: &[(i64, &[&str])], extra: Value) -> Notice {
    let mut template = json!({"type": "update_message", "user_id": 1, "message_id": 70, "message_ids": [70],
        "rendering_only": false, "edit_timestamp": 5, "stream_id": 3, "stream_name": "Denmark",
        "online_push_user_ids": [], "prior_mention_user_ids": []});
    for (k, v) in extra.as_object().unwrap() {
        template[k] = v.clone();
    }
    let users = users
        .iter()
        .map(|(id, f)| PerUserData { id: *id, data: json!({"id": id, "flags": f}).as_object().unwrap().clone() })
        .collect();
    Notice::PerUser { event: Arc::new(template), users }
}

#[test]
fn an_edit_that_newly_mentions_notifies_like_a_mention() {
    let mut s = state();
    s.deliver(edit(&[(2, &["mentioned"])], json!({})));
    let got = queues_and_triggers(&mut s);
    assert_eq!(
        got,
        vec![(crate::notify::MOBILE_QUEUE, "mentioned".into()), (crate::notify::EMAIL_QUEUE, "mentioned".into())]
    );
    // Already mentioned before the edit: nothing again.
    s.deliver(edit(&[(2, &["mentioned"])], json!({"prior_mention_user_ids": [2]})));
    assert!(s.take_notifications().is_empty());
    // Users with stream notifications were notified at send time.
    s.deliver(edit(&[(2, &["mentioned"])], json!({"stream_push_user_ids": [2]})));
    assert!(s.take_notifications().is_empty());
    // Unmentioned users, rendering-only updates and the editor: nothing.
    s.deliver(edit(&[(2, &[])], json!({})));
    s.deliver(edit(&[(2, &["mentioned"])], json!({"rendering_only": true, "user_id": null})));
    s.deliver(edit(&[(1, &["mentioned"])], json!({})));
    assert!(s.take_notifications().is_empty());
}

#[test]
fn editing_a_dm_to_add_a_mention_notifies_nobody() {
    let mut s = state();
    let template = json!({"stream_id": null, "stream_name": null});
    let mut n = edit(&[(2, &["mentioned"])], template);
    if let Notice::PerUser { event, .. } = &mut n {
        let mut e = (**event).clone();
        e.as_object_mut().unwrap().remove("stream_id");
        e.as_object_mut().unwrap().remove("stream_name");
        *event = Arc::new(e);
    }
    s.deliver(n);
    assert!(s.take_notifications().is_empty());
}

#[test]
fn presence_decides_idleness_for_edit_notifications() {
    let mut s = state();
    let _q = s.allocate(spec(2), 0);
    // Connected, not presence-idle, online push on: push only.
    s.deliver(edit(&[(2, &["mentioned"])], json!({"online_push_user_ids": [2]})));
    assert_eq!(queues_and_triggers(&mut s), vec![(crate::notify::MOBILE_QUEUE, "mentioned".into())]);
    // Connected but presence-idle: treated as idle, email too.
    s.deliver(edit(&[(2, &["mentioned"])], json!({"presence_idle_user_ids": [2]})));
    assert_eq!(
        queues_and_triggers(&mut s),
        vec![(crate::notify::MOBILE_QUEUE, "mentioned".into()), (crate::notify::EMAIL_QUEUE, "mentioned".into())]
    );
    // Connected, present, no online push: nothing.
    s.deliver(edit(&[(2, &["mentioned"])], json!({})));
    assert!(s.take_notifications().is_empty());
}

/// The event one queue would get if it were serialised on its own, field
/// by field: what the serialise-once splicing must reproduce byte for byte.
#[derive(serde::Serialize)]
struct OwnEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a serde_json::value::RawValue,
    flags: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_message_id: Option<&'a str>,
    id: i64,
}

#[test]
fn spliced_message_events_are_byte_identical_to_per_queue_serialisation() {
    let mut msg = stream_message("ZulipPython");
    msg.avatar_is_gravatar = true;
    msg.content = "quote \" and \\ and ünïcødé".into();
    let flag_sets = [
        0,
        flags::READ,
        flags::MENTIONED | flags::STARRED,
        flags::STREAM_WILDCARD_MENTIONED,
        flags::TOPIC_WILDCARD_MENTIONED | flags::IS_PRIVATE | flags::HISTORICAL,
    ];
    for apply_markdown in [false, true] {
        for client_gravatar in [false, true] {
            let variant = squall_proto::envelope::Variant { apply_markdown, client_gravatar };
            for &bits in &flag_sets {
                for local in [None, Some("1.5"), Some("odd \"id\"")] {
                    // What a queue of this variant holds after delivery.
                    let mut s = state();
                    let q = s.allocate(QueueSpec { apply_markdown, client_gravatar, ..spec(1) }, 0);
                    let mut notice = message_notice(msg.clone(), &[(1, bits)], true, Some(q.to_string()));
                    if let Notice::Message(m) = &mut notice {
                        m.local_id = local.map(str::to_owned);
                    }
                    s.deliver(notice);
                    let mut queue = Vec::new();
                    s.reg.get_mut(q).unwrap().queue.render_events_into(&mut queue);

                    let payload = msg.client_json(variant, None);
                    let raw = serde_json::value::RawValue::from_string(payload).unwrap();
                    let own = OwnEvent {
                        kind: "message",
                        message: &raw,
                        flags: flags::api_names(bits),
                        local_message_id: local,
                        id: 0,
                    };
                    let expected = format!("[{}]", serde_json::to_string(&own).unwrap());
                    assert_eq!(
                        String::from_utf8(queue).unwrap(),
                        expected,
                        "variant {variant:?}, flags {bits}, local {local:?}"
                    );
                }
            }
        }
    }
}
