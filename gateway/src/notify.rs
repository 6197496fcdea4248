//! Missed-message notifications: who gets a mobile push or an email about a
//! message, and when (Zulip's `UserMessageNotificationsData`,
//! `maybe_enqueue_notifications` and `missedmessage_hook`).
//!
//! Pure logic. A core computes each recipient's [`NotificationData`] from
//! the id sets in the message notice, enqueues what is due now, and keeps
//! the record with the queued event ([`InternalData`], never shown to
//! clients) so that when the user's last queue goes away the remaining
//! events are re-checked as if the user were idle, without notifying
//! twice. What to publish comes out as [`Notification`]s; publishing them
//! (RabbitMQ) happens elsewhere and never blocks the core.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use squall_proto::envelope::NotifySets;
use squall_proto::flags;

/// RabbitMQ queue of mobile push notifications.
pub const MOBILE_QUEUE: &str = "missedmessage_mobile_notifications";
/// RabbitMQ queue of missed-message emails.
pub const EMAIL_QUEUE: &str = "missedmessage_emails";

/// One item to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Destination queue.
    pub queue: &'static str,
    /// JSON body.
    pub payload: Value,
}

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

impl NotificationData {
    /// Builds the record for `user_id` from the notice's id sets and the
    /// user's flags (Zulip's `from_user_id_sets`).
    pub fn from_sets(user_id: i64, bits: i64, private_message: bool, s: &NotifySets) -> Self {
        let has = |v: &Vec<i64>| v.contains(&user_id);
        if has(&s.all_bot_user_ids) {
            return NotificationData { user_id, ..NotificationData::default() };
        }
        let email_ok = !has(&s.dm_mention_email_disabled_user_ids);
        let push_ok = !has(&s.dm_mention_push_disabled_user_ids);
        let mentioned = bits & flags::MENTIONED != 0;
        let topic_wc = bits & flags::TOPIC_WILDCARD_MENTIONED != 0;
        let stream_wc = bits & flags::STREAM_WILDCARD_MENTIONED != 0;
        NotificationData {
            user_id,
            online_push_enabled: has(&s.online_push_user_ids),
            dm_email_notify: private_message && email_ok,
            dm_push_notify: private_message && push_ok,
            mention_email_notify: mentioned && email_ok,
            mention_push_notify: mentioned && push_ok,
            topic_wildcard_mention_email_notify: has(&s.topic_wildcard_mention_user_ids) && email_ok && topic_wc,
            topic_wildcard_mention_push_notify: has(&s.topic_wildcard_mention_user_ids) && push_ok && topic_wc,
            stream_wildcard_mention_email_notify: has(&s.stream_wildcard_mention_user_ids) && email_ok && stream_wc,
            stream_wildcard_mention_push_notify: has(&s.stream_wildcard_mention_user_ids) && push_ok && stream_wc,
            topic_wildcard_mention_in_followed_topic_email_notify: has(
                &s.topic_wildcard_mention_in_followed_topic_user_ids
            ) && email_ok
                && topic_wc,
            topic_wildcard_mention_in_followed_topic_push_notify: has(
                &s.topic_wildcard_mention_in_followed_topic_user_ids
            ) && push_ok
                && topic_wc,
            stream_wildcard_mention_in_followed_topic_email_notify: has(
                &s.stream_wildcard_mention_in_followed_topic_user_ids
            ) && email_ok
                && stream_wc,
            stream_wildcard_mention_in_followed_topic_push_notify: has(
                &s.stream_wildcard_mention_in_followed_topic_user_ids
            ) && push_ok
                && stream_wc,
            stream_push_notify: has(&s.stream_push_user_ids),
            stream_email_notify: has(&s.stream_email_user_ids),
            followed_topic_push_notify: has(&s.followed_topic_push_user_ids),
            followed_topic_email_notify: has(&s.followed_topic_email_user_ids),
            sender_is_muted: has(&s.muted_sender_user_ids),
            disable_external_notifications: s.disable_external_notifications,
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

/// What a recipient's queued message event keeps for the GC hook (Zulip's
/// `internal_data`, plus the message and sender ids Squall's opaque stored
/// events no longer expose).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InternalData {
    /// The notifiability booleans.
    #[serde(flatten)]
    pub data: NotificationData,
    /// Smallest mentioned group the user is in, when mentioned via groups.
    #[serde(default)]
    pub mentioned_user_group_id: Option<i64>,
    /// A push notification was already enqueued.
    #[serde(default)]
    pub push_notified: bool,
    /// An email was already enqueued.
    #[serde(default)]
    pub email_notified: bool,
    /// The message.
    pub message_id: i64,
    /// Its sender.
    pub sender_id: i64,
}

/// Zulip's `maybe_enqueue_notifications`: appends what is due to `out`
/// (skipping kinds in `already`) and returns (push_notified,
/// email_notified) — true when due, whether sent now or before.
pub fn maybe_enqueue(
    data: &NotificationData,
    acting_user_id: i64,
    message_id: i64,
    mentioned_user_group_id: Option<i64>,
    idle: bool,
    already: (bool, bool),
    out: &mut Vec<Notification>,
) -> (bool, bool) {
    let mut notified = (false, false);
    if let Some(trigger) = data.push_trigger(acting_user_id, idle) {
        if !already.0 {
            out.push(Notification {
                queue: MOBILE_QUEUE,
                payload: json!({"user_profile_id": data.user_id, "message_id": message_id, "trigger": trigger,
                                "type": "add", "mentioned_user_group_id": mentioned_user_group_id}),
            });
        }
        notified.0 = true;
    }
    if let Some(trigger) = data.email_trigger(acting_user_id, idle) {
        if !already.1 {
            out.push(Notification {
                queue: EMAIL_QUEUE,
                payload: json!({"user_profile_id": data.user_id, "message_id": message_id, "trigger": trigger,
                                "mentioned_user_group_id": mentioned_user_group_id}),
            });
        }
        notified.1 = true;
    }
    notified
}

/// Zulip's `missedmessage_hook` for one stored message event of a user's
/// last queue: re-checked as idle, without online push, and without
/// repeating what was already sent.
pub fn on_last_queue_gone(internal: &InternalData, out: &mut Vec<Notification>) {
    let data = NotificationData { online_push_enabled: false, ..internal.data.clone() };
    maybe_enqueue(
        &data,
        internal.sender_id,
        internal.message_id,
        internal.mentioned_user_group_id,
        true,
        (internal.push_notified, internal.email_notified),
        out,
    );
}

#[cfg(test)]
mod tests;
