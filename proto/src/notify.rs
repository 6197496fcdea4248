//! Zulip's per-user notifiability of one message
//! (`UserMessageNotificationsData`): pure logic shared by the gateway (which
//! decides and enqueues notifications) and the backend (which needs to know
//! who is notifiable if idle to compute `presence_idle_user_ids`).

use crate::envelope::NotifySets;
use crate::flags;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Zulip's per-user notifiability booleans for one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct NotificationData {
    pub user_id: i64,
    pub online_push_enabled: bool,
    pub dm_email_notify: bool,
    pub dm_push_notify: bool,
    pub mention_email_notify: bool,
    pub mention_push_notify: bool,
    pub topic_wildcard_mention_email_notify: bool,
    pub topic_wildcard_mention_push_notify: bool,
    pub stream_wildcard_mention_email_notify: bool,
    pub stream_wildcard_mention_push_notify: bool,
    pub topic_wildcard_mention_in_followed_topic_email_notify: bool,
    pub topic_wildcard_mention_in_followed_topic_push_notify: bool,
    pub stream_wildcard_mention_in_followed_topic_email_notify: bool,
    pub stream_wildcard_mention_in_followed_topic_push_notify: bool,
    pub stream_push_notify: bool,
    pub stream_email_notify: bool,
    pub followed_topic_push_notify: bool,
    pub followed_topic_email_notify: bool,
    pub sender_is_muted: bool,
    pub disable_external_notifications: bool,
}

/// Which of a notice's id sets each user is in, built once per message:
/// asking the sets themselves for every recipient would be quadratic in a
/// big stream (most recipients are in `online_push_user_ids`).
pub struct NotifyIndex {
    member: HashMap<i64, u16>,
    disable_external: bool,
}

/// The sets, in the order of their bits in [`NotifyIndex`].
fn sets_of(s: &NotifySets) -> [&Vec<i64>; 14] {
    [
        &s.presence_idle_user_ids,
        &s.online_push_user_ids,
        &s.dm_mention_push_disabled_user_ids,
        &s.dm_mention_email_disabled_user_ids,
        &s.stream_push_user_ids,
        &s.stream_email_user_ids,
        &s.topic_wildcard_mention_user_ids,
        &s.stream_wildcard_mention_user_ids,
        &s.followed_topic_push_user_ids,
        &s.followed_topic_email_user_ids,
        &s.topic_wildcard_mention_in_followed_topic_user_ids,
        &s.stream_wildcard_mention_in_followed_topic_user_ids,
        &s.muted_sender_user_ids,
        &s.all_bot_user_ids,
    ]
}

const PRESENCE_IDLE: u16 = 1;
const ONLINE_PUSH: u16 = 1 << 1;
const PUSH_DISABLED: u16 = 1 << 2;
const EMAIL_DISABLED: u16 = 1 << 3;
const STREAM_PUSH: u16 = 1 << 4;
const STREAM_EMAIL: u16 = 1 << 5;
const TOPIC_WILDCARD: u16 = 1 << 6;
const STREAM_WILDCARD: u16 = 1 << 7;
const FOLLOWED_PUSH: u16 = 1 << 8;
const FOLLOWED_EMAIL: u16 = 1 << 9;
const TOPIC_WILDCARD_FOLLOWED: u16 = 1 << 10;
const STREAM_WILDCARD_FOLLOWED: u16 = 1 << 11;
const MUTED_SENDER: u16 = 1 << 12;
const BOT: u16 = 1 << 13;

impl NotifyIndex {
    /// Indexes `s`.
    pub fn new(s: &NotifySets) -> Self {
        let mut member: HashMap<i64, u16> = HashMap::new();
        for (bit, set) in sets_of(s).into_iter().enumerate() {
            for &u in set {
                *member.entry(u).or_default() |= 1 << bit;
            }
        }
        NotifyIndex { member, disable_external: s.disable_external_notifications }
    }

    fn bits(&self, user_id: i64) -> u16 {
        self.member.get(&user_id).copied().unwrap_or(0)
    }

    /// Whether `user_id` is in `presence_idle_user_ids`.
    pub fn presence_idle(&self, user_id: i64) -> bool {
        self.bits(user_id) & PRESENCE_IDLE != 0
    }
}

impl NotificationData {
    /// Builds the record for `user_id` from the notice's id sets and the
    /// user's flags (Zulip's `from_user_id_sets`). For many users, index
    /// the sets once and use [`NotificationData::from_index`].
    pub fn from_sets(user_id: i64, bits: i64, private_message: bool, s: &NotifySets) -> Self {
        Self::from_index(user_id, bits, private_message, &NotifyIndex::new(s))
    }

    /// [`NotificationData::from_sets`] with the sets indexed.
    pub fn from_index(user_id: i64, bits: i64, private_message: bool, index: &NotifyIndex) -> Self {
        let member = index.bits(user_id);
        let has = |set: u16| member & set != 0;
        if has(BOT) {
            return NotificationData { user_id, ..NotificationData::default() };
        }
        let email_ok = !has(EMAIL_DISABLED);
        let push_ok = !has(PUSH_DISABLED);
        let mentioned = bits & flags::MENTIONED != 0;
        let topic_wc = bits & flags::TOPIC_WILDCARD_MENTIONED != 0;
        let stream_wc = bits & flags::STREAM_WILDCARD_MENTIONED != 0;
        NotificationData {
            user_id,
            online_push_enabled: has(ONLINE_PUSH),
            dm_email_notify: private_message && email_ok,
            dm_push_notify: private_message && push_ok,
            mention_email_notify: mentioned && email_ok,
            mention_push_notify: mentioned && push_ok,
            topic_wildcard_mention_email_notify: has(TOPIC_WILDCARD) && email_ok && topic_wc,
            topic_wildcard_mention_push_notify: has(TOPIC_WILDCARD) && push_ok && topic_wc,
            stream_wildcard_mention_email_notify: has(STREAM_WILDCARD) && email_ok && stream_wc,
            stream_wildcard_mention_push_notify: has(STREAM_WILDCARD) && push_ok && stream_wc,
            topic_wildcard_mention_in_followed_topic_email_notify: has(TOPIC_WILDCARD_FOLLOWED) && email_ok && topic_wc,
            topic_wildcard_mention_in_followed_topic_push_notify: has(TOPIC_WILDCARD_FOLLOWED) && push_ok && topic_wc,
            stream_wildcard_mention_in_followed_topic_email_notify: has(STREAM_WILDCARD_FOLLOWED)
                && email_ok
                && stream_wc,
            stream_wildcard_mention_in_followed_topic_push_notify: has(STREAM_WILDCARD_FOLLOWED)
                && push_ok
                && stream_wc,
            stream_push_notify: has(STREAM_PUSH),
            stream_email_notify: has(STREAM_EMAIL),
            followed_topic_push_notify: has(FOLLOWED_PUSH),
            followed_topic_email_notify: has(FOLLOWED_EMAIL),
            sender_is_muted: has(MUTED_SENDER),
            disable_external_notifications: index.disable_external,
        }
    }

    fn excluded(&self, acting_user_id: i64) -> bool {
        self.user_id == acting_user_id || self.sender_is_muted || self.disable_external_notifications
    }

    /// Why a push notification is due, if it is (first match wins).
    pub fn push_trigger(&self, acting_user_id: i64, idle: bool) -> Option<&'static str> {
        if (!idle && !self.online_push_enabled) || self.excluded(acting_user_id) {
            return None;
        }
        [
            (self.dm_push_notify, "direct_message"),
            (self.mention_push_notify, "mentioned"),
            (self.topic_wildcard_mention_in_followed_topic_push_notify, "topic_wildcard_mentioned_in_followed_topic"),
            (self.stream_wildcard_mention_in_followed_topic_push_notify, "stream_wildcard_mentioned_in_followed_topic"),
            (self.topic_wildcard_mention_push_notify, "topic_wildcard_mentioned"),
            (self.stream_wildcard_mention_push_notify, "stream_wildcard_mentioned"),
            (self.followed_topic_push_notify, "followed_topic_push_notify"),
            (self.stream_push_notify, "stream_push_notify"),
        ]
        .into_iter()
        .find(|(on, _)| *on)
        .map(|(_, t)| t)
    }

    /// Why an email is due, if it is (only for idle users).
    pub fn email_trigger(&self, acting_user_id: i64, idle: bool) -> Option<&'static str> {
        if !idle || self.excluded(acting_user_id) {
            return None;
        }
        [
            (self.dm_email_notify, "direct_message"),
            (self.mention_email_notify, "mentioned"),
            (self.topic_wildcard_mention_in_followed_topic_email_notify, "topic_wildcard_mentioned_in_followed_topic"),
            (
                self.stream_wildcard_mention_in_followed_topic_email_notify,
                "stream_wildcard_mentioned_in_followed_topic",
            ),
            (self.topic_wildcard_mention_email_notify, "topic_wildcard_mentioned"),
            (self.stream_wildcard_mention_email_notify, "stream_wildcard_mentioned"),
            (self.followed_topic_email_notify, "followed_topic_email_notify"),
            (self.stream_email_notify, "stream_email_notify"),
        ]
        .into_iter()
        .find(|(on, _)| *on)
        .map(|(_, t)| t)
    }

    /// Push- or email-notifiable.
    pub fn is_notifiable(&self, acting_user_id: i64, idle: bool) -> bool {
        self.push_trigger(acting_user_id, idle).is_some() || self.email_trigger(acting_user_id, idle).is_some()
    }
}
