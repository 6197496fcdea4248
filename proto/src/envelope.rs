//! The backend → gateway event envelope.
//!
//! One [`Envelope`] is what Zulip calls a notice: an event plus the users it
//! is for. In single-node mode it travels through in-process inboxes; across
//! nodes it is the JSON body of a RabbitMQ message, so everything here is
//! serde-serialisable.
//!
//! Message events carry a [`WideMessage`]: every field any client variant
//! needs. The gateway renders it once per content variant
//! ([`WideMessage::client_json`]) and splices the per-user parts (flags,
//! `local_message_id`) in when it writes a response.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One notice from the backend for the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Realm the event belongs to.
    pub realm_id: i64,
    /// The event and its recipients.
    pub notice: Notice,
}

/// What the gateway has to deliver.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A new message (Zulip's `process_message_event`).
    Message(Box<MessageNotice>),
    /// Any other event, delivered to every queue of each user that accepts
    /// it (with the per-queue variants of Zulip's `process_notification`).
    Generic {
        /// The event object (without `id`); may carry internal keys the
        /// gateway removes (`inaccessible_user`, `deactivated`).
        event: Arc<serde_json::Value>,
        /// Recipient user ids.
        users: Vec<i64>,
    },
    /// An event with per-user data merged in (`update_message`: each user's
    /// `flags`).
    PerUser {
        /// The shared part of the event.
        event: Arc<serde_json::Value>,
        /// Recipients and the keys to add for each.
        users: Vec<PerUserData>,
    },
    /// These users' credentials stopped being valid (the account was
    /// deactivated, or its API key replaced): every core of every gateway
    /// process forgets what it cached for them, so their next `/events`
    /// request is authenticated afresh. Not an event: nothing is queued.
    /// Unlike the other notices it goes to every core, since any core may
    /// have cached a user's credentials, not only the one owning the
    /// user's queues.
    Revoke {
        /// The users.
        users: Vec<i64>,
        /// Also delete the users' own queues (deactivation), completing
        /// their parked polls as a queue's removal always does.
        delete_queues: bool,
    },
}

/// One recipient of a [`Notice::PerUser`] event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerUserData {
    /// User id.
    pub id: i64,
    /// Keys copied into this user's copy of the event.
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// A message event for a set of recipients.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MessageNotice {
    /// The message, shared by every recipient.
    pub message: Arc<WideMessage>,
    /// Recipients with their flags, the sender first when a recipient.
    pub users: Vec<MessageRecipient>,
    /// The sender's queue id, for local echo.
    pub sender_queue_id: Option<String>,
    /// Opaque id the sender chose; echoed as `local_message_id` to the
    /// queue named by `sender_queue_id` only.
    pub local_id: Option<String>,
    /// Realm of the message (realm-wide watchers are indexed by realm).
    #[serde(default)]
    pub realm_id: i64,
    /// Sent to a public stream: every `all_public_streams` or narrowed queue
    /// of the realm is a candidate, with empty flags.
    #[serde(default)]
    pub public_stream: bool,
    /// Sent to an invite-only stream (mirror clients are told so).
    #[serde(default)]
    pub invite_only: bool,
    /// Who may be notified how, computed by the backend at send time.
    #[serde(default)]
    pub notify: NotifySets,
}

/// The user-id sets Zulip's backend attaches to a message notice so the
/// event server can decide missed-message notifications without a database
/// (names as in Zulip's notice).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifySets {
    /// Recipients whose presence says they are away.
    pub presence_idle_user_ids: Vec<i64>,
    /// Recipients with push notifications while online.
    pub online_push_user_ids: Vec<i64>,
    /// Recipients with offline push notifications for DMs/mentions off.
    pub dm_mention_push_disabled_user_ids: Vec<i64>,
    /// Recipients with offline email notifications for DMs/mentions off.
    pub dm_mention_email_disabled_user_ids: Vec<i64>,
    /// Subscribers with stream push notifications on.
    pub stream_push_user_ids: Vec<i64>,
    /// Subscribers with stream email notifications on.
    pub stream_email_user_ids: Vec<i64>,
    /// Topic-wildcard-mention notifiable users.
    pub topic_wildcard_mention_user_ids: Vec<i64>,
    /// Stream-wildcard-mention notifiable users.
    pub stream_wildcard_mention_user_ids: Vec<i64>,
    /// Followers of the topic with push for followed topics.
    pub followed_topic_push_user_ids: Vec<i64>,
    /// Followers of the topic with email for followed topics.
    pub followed_topic_email_user_ids: Vec<i64>,
    /// Topic-wildcard notifiable in a followed topic.
    pub topic_wildcard_mention_in_followed_topic_user_ids: Vec<i64>,
    /// Stream-wildcard notifiable in a followed topic.
    pub stream_wildcard_mention_in_followed_topic_user_ids: Vec<i64>,
    /// Users who muted the sender.
    pub muted_sender_user_ids: Vec<i64>,
    /// Recipients that are bots (never notified).
    pub all_bot_user_ids: Vec<i64>,
    /// The sender asked that nobody be notified externally.
    pub disable_external_notifications: bool,
}

/// One recipient of a message and that recipient's UserMessage flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecipient {
    /// User id.
    pub id: i64,
    /// Flag bits (see [`crate::flags`]).
    pub flags: i64,
    /// For users mentioned only through groups: the smallest such group.
    #[serde(default)]
    pub mentioned_user_group_id: Option<i64>,
}

/// Where a message went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Destination {
    /// A stream (channel) message.
    Stream {
        /// Stream id.
        stream_id: i64,
        /// Stream name (`display_recipient`).
        name: String,
    },
    /// A direct message; every participant including the sender.
    Private {
        /// Participants, sorted as clients expect.
        participants: Vec<Participant>,
    },
}

/// A direct-message participant as shown in `display_recipient`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// User id.
    pub id: i64,
    /// API email.
    pub email: String,
    /// Full name.
    pub full_name: String,
    /// Always false in Squall (no mirroring).
    pub is_mirror_dummy: bool,
}

/// A message with everything any client variant needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WideMessage {
    /// Message id.
    pub id: i64,
    /// Sender's user id.
    pub sender_id: i64,
    /// Sender's API email.
    pub sender_email: String,
    /// Sender's full name.
    pub sender_full_name: String,
    /// Sender's realm subdomain.
    pub sender_realm_str: String,
    /// Recipient row id.
    pub recipient_id: i64,
    /// Send time, unix seconds.
    pub timestamp: i64,
    /// Name of the sending client.
    pub client: String,
    /// Topic; empty for direct messages.
    pub subject: String,
    /// Raw Markdown.
    pub content: String,
    /// Rendered HTML.
    pub rendered_content: String,
    /// Whether the message is a `/me` message.
    pub is_me_message: bool,
    /// Avatar URL of the sender.
    pub avatar_url: String,
    /// True when clients may compute the avatar themselves
    /// (`client_gravatar`): the sender uses Gravatar and their email is
    /// visible to everyone.
    pub avatar_is_gravatar: bool,
    /// Stream or direct.
    pub destination: Destination,
    /// Unix time of the last edit, for edited messages.
    #[serde(default)]
    pub last_edit_timestamp: Option<i64>,
    /// Zulip's `edit_history` (newest first), for edited messages.
    #[serde(default)]
    pub edit_history: Option<serde_json::Value>,
}

/// The message-payload variant a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// HTML content instead of Markdown.
    pub apply_markdown: bool,
    /// `avatar_url: null` for Gravatar senders.
    pub client_gravatar: bool,
}

impl Variant {
    /// Index 0..4, for per-variant caches.
    pub fn index(self) -> usize {
        (self.apply_markdown as usize) << 1 | self.client_gravatar as usize
    }
}

#[derive(Serialize)]
struct ClientMessage<'a> {
    id: i64,
    sender_id: i64,
    content: &'a str,
    content_type: &'static str,
    recipient_id: i64,
    timestamp: i64,
    client: &'a str,
    subject: &'a str,
    topic_links: [(); 0],
    is_me_message: bool,
    reactions: [(); 0],
    submessages: [(); 0],
    sender_full_name: &'a str,
    sender_email: &'a str,
    sender_realm_str: &'a str,
    display_recipient: DisplayRecipient<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_id: Option<i64>,
    avatar_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_edit_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    edit_history: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<&'static str>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum DisplayRecipient<'a> {
    Stream(&'a str),
    Private(&'a [Participant]),
}

impl WideMessage {
    /// Whether this is a stream message.
    pub fn is_stream(&self) -> bool {
        matches!(self.destination, Destination::Stream { .. })
    }

    /// The client-visible message object for `variant`, as JSON. With
    /// `flags`, a `flags` key is included (the `GET /messages` shape); message
    /// events carry flags beside the message instead.
    pub fn client_json(&self, variant: Variant, flags: Option<i64>) -> String {
        let (display_recipient, kind, stream_id) = match &self.destination {
            Destination::Stream { stream_id, name } => (DisplayRecipient::Stream(name), "stream", Some(*stream_id)),
            Destination::Private { participants } => (DisplayRecipient::Private(participants), "private", None),
        };
        let (content, content_type) = if variant.apply_markdown {
            (self.rendered_content.as_str(), "text/html")
        } else {
            (self.content.as_str(), "text/x-markdown")
        };
        let avatar_url =
            if variant.client_gravatar && self.avatar_is_gravatar { None } else { Some(self.avatar_url.as_str()) };
        let msg = ClientMessage {
            id: self.id,
            sender_id: self.sender_id,
            content,
            content_type,
            recipient_id: self.recipient_id,
            timestamp: self.timestamp,
            client: &self.client,
            subject: &self.subject,
            topic_links: [],
            is_me_message: self.is_me_message,
            reactions: [],
            submessages: [],
            sender_full_name: &self.sender_full_name,
            sender_email: &self.sender_email,
            sender_realm_str: &self.sender_realm_str,
            display_recipient,
            kind,
            stream_id,
            avatar_url,
            last_edit_timestamp: self.last_edit_timestamp,
            edit_history: self.edit_history.as_ref(),
            flags: flags.map(crate::flags::api_names),
        };
        // Serialising plain strings and integers into a String cannot fail.
        serde_json::to_string(&msg).expect("message serialisation is infallible")
    }
}

/// Test fixtures for this and other crates' tests.
#[doc(hidden)]
pub mod fixtures {
    use super::*;

    /// A stream message with every field set.
    pub fn message() -> WideMessage {
        sample(Destination::Stream { stream_id: 1, name: "a".into() })
    }

    pub fn sample(destination: Destination) -> WideMessage {
        WideMessage {
            id: 42,
            sender_id: 7,
            sender_email: "iago@example.com".into(),
            sender_full_name: "Iago".into(),
            sender_realm_str: "zulip".into(),
            recipient_id: 3,
            timestamp: 1_700_000_000,
            client: "ZulipPython".into(),
            subject: "greetings".into(),
            content: "**hi**".into(),
            rendered_content: "<p><strong>hi</strong></p>".into(),
            is_me_message: false,
            avatar_url: "https://secure.gravatar.com/avatar/x?d=identicon&version=1".into(),
            avatar_is_gravatar: true,
            destination,
            last_edit_timestamp: None,
            edit_history: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::sample;
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn stream_variants() {
        let m = sample(Destination::Stream { stream_id: 5, name: "Denmark".into() });
        let md: Value =
            serde_json::from_str(&m.client_json(Variant { apply_markdown: false, client_gravatar: false }, None))
                .unwrap();
        assert_eq!(md["content"], "**hi**");
        assert_eq!(md["content_type"], "text/x-markdown");
        assert_eq!(md["display_recipient"], "Denmark");
        assert_eq!(md["type"], "stream");
        assert_eq!(md["stream_id"], 5);
        assert!(md["avatar_url"].is_string());
        assert!(md.get("flags").is_none());

        let html: Value = serde_json::from_str(
            &m.client_json(Variant { apply_markdown: true, client_gravatar: true }, Some(crate::flags::READ)),
        )
        .unwrap();
        assert_eq!(html["content"], "<p><strong>hi</strong></p>");
        assert_eq!(html["content_type"], "text/html");
        assert_eq!(html["avatar_url"], Value::Null);
        assert_eq!(html["flags"], json!(["read"]));
    }

    #[test]
    fn private_display_recipient_and_no_stream_id() {
        let p = |id, e: &str| Participant { id, email: e.into(), full_name: e.into(), is_mirror_dummy: false };
        let mut m = sample(Destination::Private { participants: vec![p(7, "a@x"), p(9, "b@x")] });
        m.avatar_is_gravatar = false;
        let v: Value =
            serde_json::from_str(&m.client_json(Variant { apply_markdown: true, client_gravatar: true }, None))
                .unwrap();
        assert_eq!(v["type"], "private");
        assert!(v.get("stream_id").is_none());
        assert_eq!(v["display_recipient"][1]["email"], "b@x");
        assert_eq!(v["display_recipient"][0]["is_mirror_dummy"], false);
        // Not a Gravatar sender: the URL is always given.
        assert!(v["avatar_url"].is_string());
    }

    #[test]
    fn revoke_round_trips_through_json() {
        let env = Envelope { realm_id: 1, notice: Notice::Revoke { users: vec![3, 4], delete_queues: true } };
        let s = serde_json::to_string(&env).unwrap();
        assert!(s.contains("\"kind\":\"revoke\""), "{s}");
        match serde_json::from_str::<Envelope>(&s).unwrap().notice {
            Notice::Revoke { users, delete_queues } => assert_eq!((users, delete_queues), (vec![3, 4], true)),
            _ => panic!("wrong kind"),
        }
    }

    #[test]
    fn envelope_round_trips_through_json() {
        let env = Envelope {
            realm_id: 1,
            notice: Notice::Message(Box::new(MessageNotice {
                message: Arc::new(sample(Destination::Stream { stream_id: 1, name: "a".into() })),
                users: vec![MessageRecipient { id: 7, flags: 1, mentioned_user_group_id: None }],
                sender_queue_id: Some("0-0-00000000000000000000000000000001".into()),
                local_id: Some("1.5".into()),
                realm_id: 1,
                public_stream: true,
                invite_only: false,
                notify: NotifySets::default(),
            })),
        };
        let s = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&s).unwrap();
        match back.notice {
            Notice::Message(m) => {
                assert_eq!(m.users, vec![MessageRecipient { id: 7, flags: 1, mentioned_user_group_id: None }]);
                assert_eq!(m.local_id.as_deref(), Some("1.5"));
                assert_eq!(m.message.id, 42);
            }
            Notice::Generic { .. } | Notice::PerUser { .. } | Notice::Revoke { .. } => panic!("wrong kind"),
        }
    }
}
