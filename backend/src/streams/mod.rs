//! Streams (channels) and subscriptions. This module holds the model: a
//! [`Stream`] row, the columns it is read from, and the dictionaries the
//! API and events show for it. [`policy`] has Zulip's rules (names,
//! posting, wildcard mentions, new members); [`queries`] the stream and
//! subscription SQL. Both are re-exported here, so callers write
//! `streams::stream_by_id` or `streams::check_post_policy`.

pub mod policy;
pub mod queries;

pub use policy::{
    check_post_policy, check_stream_description, check_stream_name, is_provisional_member, is_unprintable, post_policy,
    wildcard_mention_allowed, wildcard_mention_facts, WildcardMentionFacts, MAX_STREAM_DESCRIPTION_LENGTH,
    MAX_STREAM_NAME_LENGTH, PROVISIONAL_MEMBER, WILDCARD_MENTION_THRESHOLD,
};
pub use queries::{
    active_nonidle_subscriber_ids, active_subscriber_ids, add_subscriptions, create_stream, group_members,
    is_subscribed, linkable_streams, peer_audience, stream_by_id, stream_by_name, subscribers_of, subscription_dicts,
    user_subscriptions,
};

use serde_json::{json, Value};
use tokio_postgres::Row;

/// Columns [`Stream::from_row`] expects, for `stream s`.
pub const STREAM_COLUMNS: &str = "s.id, s.realm_id, s.name, s.description, s.rendered_description, \
    s.invite_only, s.is_web_public, s.history_public_to_subscribers, s.recipient_id, \
    s.first_message_id, extract(epoch from s.date_created)::bigint, s.creator_id, \
    coalesce(s.can_remove_subscribers_group_id, 0), s.stream_post_policy, s.deactivated";

/// How many columns [`STREAM_COLUMNS`] selects.
pub const STREAM_COLUMN_COUNT: usize = 15;

/// A stream row.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Stream id.
    pub id: i64,
    /// Realm id.
    pub realm_id: i64,
    /// Name.
    pub name: String,
    /// Markdown description.
    pub description: String,
    /// Rendered description.
    pub rendered_description: String,
    /// Private stream.
    pub invite_only: bool,
    /// Web-public stream.
    pub is_web_public: bool,
    /// Subscribers see history from before they joined.
    pub history_public_to_subscribers: bool,
    /// Its recipient row.
    pub recipient_id: i64,
    /// First message ever sent to it.
    pub first_message_id: Option<i64>,
    /// Creation time, unix seconds.
    pub date_created: i64,
    /// Creator, if known.
    pub creator_id: Option<i64>,
    /// The group allowed to remove subscribers.
    pub can_remove_subscribers_group: i64,
    /// Who may post (see [`post_policy`]).
    pub stream_post_policy: i16,
    /// Archived (`DELETE /streams/{id}`).
    pub deactivated: bool,
}

impl Stream {
    /// Reads a row selected with [`STREAM_COLUMNS`].
    pub fn from_row(r: &Row) -> Self {
        Stream {
            id: r.get::<_, i32>(0) as i64,
            realm_id: r.get::<_, i32>(1) as i64,
            name: r.get(2),
            description: r.get(3),
            rendered_description: r.get(4),
            invite_only: r.get(5),
            is_web_public: r.get(6),
            history_public_to_subscribers: r.get(7),
            recipient_id: r.get::<_, Option<i32>>(8).unwrap_or_default() as i64,
            first_message_id: r.get(9),
            date_created: r.get(10),
            creator_id: r.get::<_, Option<i32>>(11).map(i64::from),
            can_remove_subscribers_group: r.get::<_, i32>(12) as i64,
            stream_post_policy: r.get(13),
            deactivated: r.get(14),
        }
    }

    /// Public (not invite-only).
    pub fn is_public(&self) -> bool {
        !self.invite_only
    }

    /// The `GET /streams` / `stream` event dictionary.
    pub fn api_dict(&self) -> Value {
        json!({
            "stream_id": self.id,
            "name": self.name,
            "description": self.description,
            "rendered_description": self.rendered_description,
            "date_created": self.date_created,
            "creator_id": self.creator_id,
            "invite_only": self.invite_only,
            "is_web_public": self.is_web_public,
            "stream_post_policy": self.stream_post_policy,
            "message_retention_days": Value::Null,
            "history_public_to_subscribers": self.history_public_to_subscribers,
            "first_message_id": self.first_message_id,
            "is_announcement_only": false,
            "can_remove_subscribers_group": self.can_remove_subscribers_group,
            "stream_weekly_traffic": Value::Null,
        })
    }

    /// The subscription dictionary (register `subscriptions`,
    /// `GET /users/me/subscriptions`, `subscription` add events): the stream
    /// dictionary plus the user's settings for it.
    pub fn subscription_dict(&self, sub: &SubscriptionProps, subscribers: Option<&[i64]>) -> Value {
        let mut v = self.api_dict();
        if let Some(obj) = v.as_object_mut() {
            for (key, value) in NOTIFICATION_PROPERTIES.iter().zip(sub.notifications) {
                obj.insert((*key).into(), value.map_or(Value::Null, Value::Bool));
            }
            obj.insert("pin_to_top".into(), sub.pin_to_top.into());
            obj.insert("is_muted".into(), sub.is_muted.into());
            obj.insert("in_home_view".into(), (!sub.is_muted).into());
            obj.insert("color".into(), sub.color.clone().into());
            if let Some(list) = subscribers {
                obj.insert("subscribers".into(), json!(list));
            }
        }
        v
    }
}

/// The per-subscription notification settings, in the order of
/// [`SubscriptionProps::notifications`] (and of their columns).
pub const NOTIFICATION_PROPERTIES: [&str; 5] = [
    "desktop_notifications",
    "email_notifications",
    "wildcard_mentions_notify",
    "push_notifications",
    "audible_notifications",
];

/// A user's per-subscription settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubscriptionProps {
    /// Muted.
    pub is_muted: bool,
    /// Pinned.
    pub pin_to_top: bool,
    /// Colour, `#rrggbb`.
    pub color: String,
    /// [`NOTIFICATION_PROPERTIES`]; `None` follows the user's default.
    pub notifications: [Option<bool>; 5],
}
