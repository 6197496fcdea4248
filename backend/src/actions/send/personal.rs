//! What each recipient's own choices do to a new message: muting the
//! sender (the row is stored read, nobody is notified), alert words (the
//! `has_alert_word` flag), topic visibility policies and stream muting, and
//! the notification settings behind the notice's user-id lists (Zulip's
//! `get_recipient_info` and `user_allows_notifications_in_StreamTopic`).

use crate::db::messages::RecipientFacts;
use crate::db::query_cached;
use crate::settings;
use deadpool_postgres::GenericClient;
use squall_proto::envelope::NotifySets;
use squall_proto::error::ApiError;
use std::collections::{BTreeMap, BTreeSet};

/// Topic visibility policies (Zulip's `UserTopic.VisibilityPolicy`).
pub(crate) mod policy {
    /// Muted topic.
    pub const MUTED: i16 = 1;
    /// Unmuted topic in a muted stream.
    pub const UNMUTED: i16 = 2;
    /// Followed topic.
    pub const FOLLOWED: i16 = 3;
}

/// Whom a message may reach: a stream's subscribers (by its recipient id)
/// or these users.
pub(crate) enum Audience {
    /// Subscribers of the stream with this recipient id.
    Stream(i64),
    /// Direct-message participants.
    Users(Vec<i64>),
}

/// The choices of the users a message may reach that bear on it, read in
/// one pipelined round trip.
#[derive(Debug, Default)]
pub(crate) struct PersonalFacts {
    /// Users who muted the sender.
    pub muted_sender: BTreeSet<i64>,
    /// For a stream message: each user's policy for its topic.
    pub topic_policy: BTreeMap<i64, i16>,
    /// The alert words of the users the message may reach: (user,
    /// lower-cased word).
    pub alert_words: Vec<(i64, String)>,
}

impl PersonalFacts {
    /// Reads the facts for a message from `sender_id` to `audience`, in
    /// `stream_topic` (stream id, topic) for a stream message.
    pub async fn read(
        db: &impl GenericClient,
        sender_id: i64,
        audience: &Audience,
        stream_topic: Option<(i64, &str)>,
    ) -> Result<Self, ApiError> {
        let sender = sender_id as i32;
        let (recipient, users): (i32, Vec<i32>) = match audience {
            Audience::Stream(r) => (*r as i32, Vec::new()),
            Audience::Users(ids) => (0, ids.iter().map(|&u| u as i32).collect()),
        };
        let (stream_id, topic) = stream_topic.map_or((0, ""), |(s, t)| (s as i32, t));
        // One statement, three kinds of rows: 1 muted the sender, 2 a
        // topic policy, 3 an alert word (of a subscriber or participant).
        let rows = query_cached(
            db,
            "SELECT 1, user_profile_id, 0::smallint, ''::text FROM muteduser WHERE muted_user_id = $1
             UNION ALL
             SELECT 2, user_profile_id, visibility_policy, '' FROM usertopic
             WHERE stream_id = $2 AND lower(topic_name) = lower($3)
             UNION ALL
             SELECT 3, a.user_profile_id, 0::smallint, lower(a.word)
             FROM subscription s JOIN alertword a ON a.user_profile_id = s.user_profile_id
             JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = $4 AND s.active AND u.is_active
             UNION ALL
             SELECT 3, a.user_profile_id, 0::smallint, lower(a.word) FROM alertword a
             WHERE a.user_profile_id = ANY($5)",
            &[&sender, &stream_id, &topic, &recipient, &users],
        )
        .await?;
        let mut facts = PersonalFacts::default();
        for r in &rows {
            let user = r.get::<_, i32>(1) as i64;
            match r.get::<_, i32>(0) {
                1 => {
                    facts.muted_sender.insert(user);
                }
                2 => {
                    facts.topic_policy.insert(user, r.get(2));
                }
                _ => facts.alert_words.push((user, r.get(3))),
            }
        }
        Ok(facts)
    }

    /// Users with an alert word in `content`.
    pub fn alerted(&self, content: &str) -> BTreeSet<i64> {
        if self.alert_words.is_empty() {
            return BTreeSet::new();
        }
        let text = without_fenced_code(&content.to_lowercase());
        self.alert_words.iter().filter(|(_, w)| contains_alert_word(&text, w)).map(|(u, _)| *u).collect()
    }
}

/// `text` without its fenced code blocks (alert words there do not count).
fn without_fenced_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<&str> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if m == open && trimmed.trim_end() == m => fence = None,
            (None, None) => out.push_str(line),
            _ => {}
        }
    }
    out
}

/// Whether `word` occurs in `text` (both lower-cased) between Zulip's alert
/// word boundaries.
fn contains_alert_word(text: &str, word: &str) -> bool {
    const BEFORE: &str = " \n(\".,';[*`>";
    const AFTER: &str = " \n)?:.,';]!*`";
    if word.is_empty() {
        return false;
    }
    let mut from = 0;
    while let Some(i) = text[from..].find(word).map(|i| from + i) {
        let end = i + word.len();
        let starts = text[..i].chars().next_back().is_none_or(|c| BEFORE.contains(c));
        let ends = text[end..].chars().next().is_none_or(|c| AFTER.contains(c));
        if starts && ends {
            return true;
        }
        from = i + text[i..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The boolean personal settings the notification lists read.
const NOTIFY_SETTINGS: [&str; 9] = [
    "enable_online_push_notifications",
    "enable_offline_push_notifications",
    "enable_offline_email_notifications",
    "enable_stream_push_notifications",
    "enable_stream_email_notifications",
    "enable_followed_topic_push_notifications",
    "enable_followed_topic_email_notifications",
    "wildcard_mentions_notify",
    "enable_followed_topic_wildcard_mentions_notify",
];

/// Their defaults, looked up once per message rather than once per
/// recipient and setting (a big stream's recipients mostly have none of
/// their own).
struct Defaults([bool; NOTIFY_SETTINGS.len()]);

impl Defaults {
    fn new() -> Self {
        let empty = serde_json::Value::Null;
        Defaults(
            NOTIFY_SETTINGS.map(|name| settings::value_of(&empty, name).and_then(|v| v.as_bool()).unwrap_or(false)),
        )
    }

    /// A boolean personal setting of `p` (one of [`NOTIFY_SETTINGS`]).
    fn of(&self, p: &RecipientFacts, name: &str) -> bool {
        if let Some(v) = p.settings.as_ref().and_then(|o| o.get(name)) {
            return v.as_bool().unwrap_or(false);
        }
        NOTIFY_SETTINGS.iter().position(|n| *n == name).is_some_and(|i| self.0[i])
    }
}

/// What a message is, for the notification lists.
pub(crate) struct MessageKind<'a> {
    /// A direct message.
    pub is_private: bool,
    /// A non-silent `@**all**`-style mention.
    pub stream_wildcard: bool,
    /// Who a non-silent `@**topic**` reaches (empty without one).
    pub topic_participants: &'a BTreeSet<i64>,
}

/// The notice's notification lists for the recipients with a row
/// (`with_row`), from each one's settings, subscription and topic policy.
pub(crate) fn notify_sets(
    people: &[RecipientFacts],
    with_row: &BTreeSet<i64>,
    facts: &PersonalFacts,
    kind: &MessageKind<'_>,
) -> NotifySets {
    let mut n = NotifySets::default();
    let defaults = Defaults::new();
    let setting = |p: &RecipientFacts, name: &str| defaults.of(p, name);
    for p in people.iter().filter(|p| with_row.contains(&p.id)) {
        let id = p.id;
        if p.is_bot {
            n.all_bot_user_ids.push(id);
        }
        if facts.muted_sender.contains(&id) {
            n.muted_sender_user_ids.push(id);
        }
        if setting(p, "enable_online_push_notifications") {
            n.online_push_user_ids.push(id);
        }
        if !setting(p, "enable_offline_push_notifications") {
            n.dm_mention_push_disabled_user_ids.push(id);
        }
        if !setting(p, "enable_offline_email_notifications") {
            n.dm_mention_email_disabled_user_ids.push(id);
        }
        if kind.is_private {
            continue;
        }
        let topic = facts.topic_policy.get(&id).copied().unwrap_or(0);
        let followed = topic == policy::FOLLOWED;
        // Muting (the topic, or the stream unless the topic is unmuted or
        // followed) silences stream notifications and wildcards.
        let muted =
            topic == policy::MUTED || (p.subscription.muted && topic != policy::UNMUTED && topic != policy::FOLLOWED);
        let sub = p.subscription;
        if !muted && sub.push.unwrap_or_else(|| setting(p, "enable_stream_push_notifications")) {
            n.stream_push_user_ids.push(id);
        }
        if !muted && sub.email.unwrap_or_else(|| setting(p, "enable_stream_email_notifications")) {
            n.stream_email_user_ids.push(id);
        }
        if followed && setting(p, "enable_followed_topic_push_notifications") {
            n.followed_topic_push_user_ids.push(id);
        }
        if followed && setting(p, "enable_followed_topic_email_notifications") {
            n.followed_topic_email_user_ids.push(id);
        }
        let wildcards = !muted && sub.wildcard_mentions.unwrap_or_else(|| setting(p, "wildcard_mentions_notify"));
        let followed_wildcards = followed && setting(p, "enable_followed_topic_wildcard_mentions_notify");
        let participant = kind.topic_participants.contains(&id);
        if kind.stream_wildcard && wildcards {
            n.stream_wildcard_mention_user_ids.push(id);
        }
        if kind.stream_wildcard && followed_wildcards {
            n.stream_wildcard_mention_in_followed_topic_user_ids.push(id);
        }
        if participant && wildcards {
            n.topic_wildcard_mention_user_ids.push(id);
        }
        if participant && followed_wildcards {
            n.topic_wildcard_mention_in_followed_topic_user_ids.push(id);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::messages::SubscriptionNotify;
    use serde_json::json;

    fn person(id: i64, settings: Option<serde_json::Value>, subscription: SubscriptionNotify) -> RecipientFacts {
        RecipientFacts { id, is_bot: false, long_term_idle: false, settings, subscription }
    }

    #[test]
    fn alert_words_match_between_boundaries_outside_fenced_code() {
        let facts = PersonalFacts {
            alert_words: vec![(1, "squall".into()), (2, "rust lang".into()), (3, "code".into()), (4, "all".into())],
            ..PersonalFacts::default()
        };
        let text = "Try *Squall*, written in Rust Lang!\n```\ncode\n```\nsmall talk";
        assert_eq!(facts.alerted(text), BTreeSet::from([1, 2]), "3 only in a fence; 4 only inside words");
        assert_eq!(facts.alerted("(squall)"), BTreeSet::from([1]));
        assert_eq!(facts.alerted("squalls"), BTreeSet::new());
        assert_eq!(facts.alerted("`code`"), BTreeSet::from([3]), "inline code counts");
    }

    #[test]
    fn the_notification_settings_are_known_booleans() {
        for name in NOTIFY_SETTINGS {
            let v = settings::value_of(&serde_json::Value::Null, name);
            assert!(v.as_ref().is_some_and(|v| v.is_boolean()), "{name}: {v:?}");
        }
    }

    #[test]
    fn settings_subscriptions_and_topic_policies_pick_the_lists() {
        let quiet = json!({"enable_online_push_notifications": false, "enable_offline_email_notifications": false});
        let people = [
            person(1, None, SubscriptionNotify::default()),
            person(2, Some(quiet), SubscriptionNotify { push: Some(true), ..SubscriptionNotify::default() }),
            person(3, Some(json!({"enable_stream_email_notifications": true})), SubscriptionNotify::default()),
            person(4, None, SubscriptionNotify { muted: true, push: Some(true), ..SubscriptionNotify::default() }),
            person(5, None, SubscriptionNotify { muted: true, ..SubscriptionNotify::default() }),
            person(6, None, SubscriptionNotify::default()),
        ];
        let facts = PersonalFacts {
            muted_sender: BTreeSet::from([6]),
            topic_policy: BTreeMap::from([(3, policy::MUTED), (5, policy::FOLLOWED)]),
            ..PersonalFacts::default()
        };
        let all: BTreeSet<i64> = (1..=6).collect();
        let none = BTreeSet::new();
        let kind = MessageKind { is_private: false, stream_wildcard: true, topic_participants: &none };
        let n = notify_sets(&people, &all, &facts, &kind);
        assert_eq!(n.online_push_user_ids, vec![1, 3, 4, 5, 6]);
        assert_eq!(n.dm_mention_email_disabled_user_ids, vec![2]);
        assert_eq!(n.stream_push_user_ids, vec![2], "4's stream is muted");
        assert!(n.stream_email_user_ids.is_empty(), "3 muted the topic");
        assert_eq!(n.followed_topic_push_user_ids, vec![5]);
        assert_eq!(n.stream_wildcard_mention_user_ids, vec![1, 2, 5, 6], "muted: 3 (topic), 4 (stream)");
        assert_eq!(n.stream_wildcard_mention_in_followed_topic_user_ids, vec![5]);
        assert_eq!(n.muted_sender_user_ids, vec![6]);
        let dm = MessageKind { is_private: true, stream_wildcard: false, topic_participants: &none };
        let n = notify_sets(&people, &BTreeSet::from([1, 2]), &facts, &dm);
        assert!(n.stream_push_user_ids.is_empty());
        assert_eq!(n.online_push_user_ids, vec![1], "only rows count; 2 turned it off");
    }
}
