//! Ported from Zulip's test_notification_data.py and the notification
//! parts of test_event_queue.py.

use super::*;
use squall_proto::envelope::NotifySets;
use squall_proto::flags;

const SENDER: i64 = 1;
const USER: i64 = 2;

fn sets() -> NotifySets {
    NotifySets::default()
}

fn data(bits: i64, private: bool, s: &NotifySets) -> NotificationData {
    NotificationData::from_sets(USER, bits, private, s)
}

#[test]
fn boring_message_notifies_nobody() {
    let d = data(0, false, &sets());
    assert_eq!(d.push_trigger(SENDER, true), None);
    assert_eq!(d.email_trigger(SENDER, true), None);
    assert!(!d.is_notifiable(SENDER, true));
    let mut out = Vec::new();
    assert_eq!(maybe_enqueue(&d, SENDER, 10, None, true, (false, false), &mut out), (false, false));
    assert!(out.is_empty());
}

#[test]
fn triggers_and_their_priority() {
    assert_eq!(data(0, true, &sets()).push_trigger(SENDER, true), Some("direct_message"));
    assert_eq!(data(flags::MENTIONED, false, &sets()).push_trigger(SENDER, true), Some("mentioned"));
    // A DM that also mentions: direct_message wins.
    assert_eq!(data(flags::MENTIONED, true, &sets()).email_trigger(SENDER, true), Some("direct_message"));
    let wc = NotifySets {
        stream_wildcard_mention_user_ids: vec![USER],
        topic_wildcard_mention_user_ids: vec![USER],
        ..sets()
    };
    assert_eq!(
        data(flags::STREAM_WILDCARD_MENTIONED, false, &wc).push_trigger(SENDER, true),
        Some("stream_wildcard_mentioned")
    );
    assert_eq!(
        data(flags::STREAM_WILDCARD_MENTIONED | flags::TOPIC_WILDCARD_MENTIONED, false, &wc).push_trigger(SENDER, true),
        Some("topic_wildcard_mentioned")
    );
    // A wildcard without the user's wildcard setting notifies nothing.
    assert_eq!(data(flags::STREAM_WILDCARD_MENTIONED, false, &sets()).push_trigger(SENDER, true), None);
    let followed = NotifySets {
        stream_wildcard_mention_in_followed_topic_user_ids: vec![USER],
        stream_wildcard_mention_user_ids: vec![USER],
        ..sets()
    };
    assert_eq!(
        data(flags::STREAM_WILDCARD_MENTIONED, false, &followed).email_trigger(SENDER, true),
        Some("stream_wildcard_mentioned_in_followed_topic")
    );
    let stream = NotifySets { stream_push_user_ids: vec![USER], stream_email_user_ids: vec![USER], ..sets() };
    assert_eq!(data(0, false, &stream).push_trigger(SENDER, true), Some("stream_push_notify"));
    assert_eq!(data(0, false, &stream).email_trigger(SENDER, true), Some("stream_email_notify"));
    let ft = NotifySets { followed_topic_push_user_ids: vec![USER], stream_push_user_ids: vec![USER], ..sets() };
    assert_eq!(data(0, false, &ft).push_trigger(SENDER, true), Some("followed_topic_push_notify"));
}

#[test]
fn idle_online_push_and_exclusions() {
    let s = sets();
    let d = data(0, true, &s);
    assert_eq!(d.push_trigger(SENDER, false), None, "not idle and no online push");
    assert_eq!(d.email_trigger(SENDER, false), None, "email needs idle");
    let online = NotifySets { online_push_user_ids: vec![USER], ..sets() };
    assert_eq!(data(0, true, &online).push_trigger(SENDER, false), Some("direct_message"));
    assert_eq!(data(0, true, &online).email_trigger(SENDER, false), None);
    // Own message, muted sender, disabled external notifications.
    assert_eq!(d.push_trigger(USER, true), None);
    let muted = NotifySets { muted_sender_user_ids: vec![USER], ..sets() };
    assert!(!data(0, true, &muted).is_notifiable(SENDER, true));
    let quiet = NotifySets { disable_external_notifications: true, ..sets() };
    assert!(!data(flags::MENTIONED, true, &quiet).is_notifiable(SENDER, true));
}

#[test]
fn personal_settings_and_bots() {
    let no_email = NotifySets { dm_mention_email_disabled_user_ids: vec![USER], ..sets() };
    let d = data(flags::MENTIONED, true, &no_email);
    assert_eq!(d.email_trigger(SENDER, true), None);
    assert_eq!(d.push_trigger(SENDER, true), Some("direct_message"));
    let no_push = NotifySets { dm_mention_push_disabled_user_ids: vec![USER], ..sets() };
    assert_eq!(data(flags::MENTIONED, false, &no_push).push_trigger(SENDER, true), None);
    let bot = NotifySets {
        all_bot_user_ids: vec![USER],
        online_push_user_ids: vec![USER],
        stream_push_user_ids: vec![USER],
        ..sets()
    };
    let b = data(flags::MENTIONED, true, &bot);
    assert_eq!(b, NotificationData { user_id: USER, ..NotificationData::default() });
    assert!(!b.is_notifiable(SENDER, true));
}

#[test]
fn notifiable_dm_goes_to_both_queues_with_the_group_id() {
    let d = data(0, true, &sets());
    let mut out = Vec::new();
    assert_eq!(maybe_enqueue(&d, SENDER, 10, Some(33), true, (false, false), &mut out), (true, true));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].queue, MOBILE_QUEUE);
    assert_eq!(
        out[0].payload,
        json!({"user_profile_id": USER, "message_id": 10, "trigger": "direct_message", "type": "add", "mentioned_user_group_id": 33})
    );
    assert_eq!(out[1].queue, EMAIL_QUEUE);
    assert_eq!(
        out[1].payload,
        json!({"user_profile_id": USER, "message_id": 10, "trigger": "direct_message", "mentioned_user_group_id": 33})
    );
    // Already notified: reported, not repeated.
    let mut again = Vec::new();
    assert_eq!(maybe_enqueue(&d, SENDER, 10, None, true, (true, true), &mut again), (true, true));
    assert!(again.is_empty());
}

#[test]
fn the_hook_treats_the_user_as_idle_without_online_push() {
    let online =
        NotifySets { online_push_user_ids: vec![USER], dm_mention_email_disabled_user_ids: vec![USER], ..sets() };
    let internal = InternalData {
        data: data(0, true, &online),
        mentioned_user_group_id: None,
        push_notified: true,
        email_notified: false,
        message_id: 10,
        sender_id: SENDER,
    };
    let mut out = Vec::new();
    on_last_queue_gone(&internal, &mut out);
    // Push was already sent; email is disabled for this user.
    assert!(out.is_empty(), "{out:?}");
    let fresh = InternalData { data: data(flags::MENTIONED, false, &sets()), push_notified: false, ..internal };
    on_last_queue_gone(&fresh, &mut out);
    let triggers: Vec<(&str, &str)> = out.iter().map(|n| (n.queue, n.payload["trigger"].as_str().unwrap())).collect();
    assert_eq!(triggers, vec![(MOBILE_QUEUE, "mentioned"), (EMAIL_QUEUE, "mentioned")]);
}

#[test]
fn internal_data_round_trips_through_json() {
    let internal = InternalData {
        data: data(flags::MENTIONED, true, &sets()),
        mentioned_user_group_id: Some(4),
        push_notified: true,
        email_notified: false,
        message_id: 10,
        sender_id: SENDER,
    };
    let v = serde_json::to_value(&internal).unwrap();
    assert_eq!(v["dm_push_notify"], true, "flattened like Zulip's internal_data: {v}");
    assert_eq!(serde_json::from_value::<InternalData>(v).unwrap(), internal);
}
