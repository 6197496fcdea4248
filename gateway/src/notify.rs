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

pub use squall_proto::notify::NotificationData;

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
