//! Streams (channels) and subscriptions: model, name rules, queries.

use crate::users::User;
use deadpool_postgres::GenericClient;
use serde_json::{json, Value};
use squall_proto::error::ApiError;
use tokio_postgres::Row;

/// Longest stream name Zulip accepts.
pub const MAX_STREAM_NAME_LENGTH: usize = 60;
/// Longest stream description.
pub const MAX_STREAM_DESCRIPTION_LENGTH: usize = 1024;

/// Columns [`Stream::from_row`] expects, for `stream s`.
pub const STREAM_COLUMNS: &str = "s.id, s.realm_id, s.name, s.description, s.rendered_description, \
    s.invite_only, s.is_web_public, s.history_public_to_subscribers, s.recipient_id, \
    s.first_message_id, extract(epoch from s.date_created)::bigint, s.creator_id, \
    coalesce(s.can_remove_subscribers_group_id, 0), s.stream_post_policy";

/// How many columns [`STREAM_COLUMNS`] selects.
pub const STREAM_COLUMN_COUNT: usize = 14;

/// Zulip's `stream_post_policy` values.
pub mod post_policy {
    /// Everyone may post.
    pub const EVERYONE: i16 = 1;
    /// Administrators only.
    pub const ADMINS: i16 = 2;
    /// Everyone except new members (and guests).
    pub const RESTRICT_NEW_MEMBERS: i16 = 3;
    /// Administrators and moderators.
    pub const MODERATORS: i16 = 4;
}

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
            for key in [
                "desktop_notifications",
                "email_notifications",
                "wildcard_mentions_notify",
                "push_notifications",
                "audible_notifications",
            ] {
                obj.insert(key.into(), Value::Null);
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

/// A user's per-subscription settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionProps {
    /// Muted.
    pub is_muted: bool,
    /// Pinned.
    pub pin_to_top: bool,
    /// Colour, `#rrggbb`.
    pub color: String,
}

/// Zulip's stream-name rules: stripped, non-empty, at most 60 characters,
/// no control or non-printable characters (1-based position reported).
pub fn check_stream_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ApiError::bad_request("Channel name can't be empty."));
    }
    if name.chars().count() > MAX_STREAM_NAME_LENGTH {
        return Err(ApiError::bad_request(format!(
            "Channel name too long (limit: {MAX_STREAM_NAME_LENGTH} characters)."
        )));
    }
    if let Some(pos) = name.chars().position(is_unprintable) {
        return Err(ApiError::bad_request(format!("Invalid character in channel name, at position {}.", pos + 1)));
    }
    Ok(name.to_owned())
}

/// Control characters, surrogates and noncharacters, which Zulip refuses in
/// names and topics.
pub fn is_unprintable(c: char) -> bool {
    let u = c as u32;
    c.is_control() || (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
}

/// A palette of subscription colours, assigned round-robin by stream id.
const COLORS: [&str; 8] = ["#76ce90", "#fae589", "#a6c7e5", "#e79ab5", "#bfd56f", "#f4ae55", "#b0a5fd", "#addfe5"];

/// Zulip's stream posting policy check. `provisional`: the sender is a
/// member who joined less than the realm's waiting period ago.
pub fn check_post_policy(stream: &Stream, sender: &User, provisional: bool) -> Result<(), ApiError> {
    use crate::users::role;
    let policy = stream.stream_post_policy;
    let msg = if sender.is_realm_admin() {
        return Ok(());
    } else if policy == post_policy::ADMINS {
        "Only organization administrators can send to this channel."
    } else if policy == post_policy::MODERATORS && sender.role != role::MODERATOR {
        "Only organization administrators and moderators can send to this channel."
    } else if policy != post_policy::EVERYONE && sender.is_guest() {
        "Guests cannot send to this channel."
    } else if policy == post_policy::RESTRICT_NEW_MEMBERS && provisional {
        "New members cannot send to this channel."
    } else {
        return Ok(());
    };
    Err(ApiError::bad_request(msg))
}

/// Channels and topics with at most this many subscribers / participants
/// allow wildcard mentions from anyone (Zulip's WILDCARD_MENTION_THRESHOLD).
pub const WILDCARD_MENTION_THRESHOLD: usize = 15;

/// Whether the realm's `wildcard_mention_policy` lets `sender` use a
/// wildcard mention reaching `audience` users.
pub fn wildcard_mention_allowed(policy: i16, sender: &User, audience: usize, provisional: bool) -> bool {
    use crate::users::role;
    if audience <= WILDCARD_MENTION_THRESHOLD {
        return true;
    }
    match policy {
        1 => true,
        2 => !sender.is_guest(),
        3 => !sender.is_guest() && !provisional,
        7 => sender.is_realm_admin() || sender.role == role::MODERATOR,
        6 => false,
        // 5 (administrators) and the retired 4 (channel administrators).
        _ => sender.is_realm_admin(),
    }
}

/// SQL over `userprofile u JOIN realm r`: the user joined less than the
/// realm's waiting period ago (a "new member").
pub const PROVISIONAL_MEMBER: &str = "u.date_joined > now() - make_interval(days => r.waiting_period_threshold)";

/// Whether `user` is still a new member: joined less than the realm's
/// `waiting_period_threshold` days ago.
pub async fn is_provisional_member(db: &impl GenericClient, user: &User) -> Result<bool, ApiError> {
    Ok(db
        .query_one(
            &format!(
                "SELECT {PROVISIONAL_MEMBER} FROM userprofile u JOIN realm r ON r.id = u.realm_id WHERE u.id = $1"
            ),
            &[&(user.id as i32)],
        )
        .await?
        .get(0))
}

/// Creates a stream with its recipient row.
pub async fn create_stream(
    db: &impl GenericClient,
    realm_id: i64,
    name: &str,
    description: &str,
    invite_only: bool,
    creator_id: Option<i64>,
) -> Result<Stream, ApiError> {
    let rendered = crate::markdown::render_plain(description);
    let creator = creator_id.map(|c| c as i32);
    let row = db
        .query_one(
            "INSERT INTO stream (realm_id, name, description, rendered_description, invite_only, creator_id,
                                 can_remove_subscribers_group_id)
             VALUES ($1, $2, $3, $4, $5, $6,
                     (SELECT id FROM usergroup WHERE realm_id = $1 AND name = 'role:administrators'))
             RETURNING id",
            &[&(realm_id as i32), &name, &description, &rendered, &invite_only, &creator],
        )
        .await?;
    let id: i32 = row.get(0);
    let rid: i32 =
        db.query_one("INSERT INTO recipient (type, type_id) VALUES (2, $1) RETURNING id", &[&id]).await?.get(0);
    db.execute("UPDATE stream SET recipient_id = $1 WHERE id = $2", &[&rid, &id]).await?;
    stream_by_id(db, realm_id, id as i64).await?.ok_or_else(|| ApiError::internal("stream vanished after creation"))
}

/// A stream of the realm by (case-insensitive) name.
pub async fn stream_by_name(db: &impl GenericClient, realm_id: i64, name: &str) -> Result<Option<Stream>, ApiError> {
    let sql = format!("SELECT {STREAM_COLUMNS} FROM stream s WHERE s.realm_id = $1 AND lower(s.name) = lower($2)");
    Ok(db.query_opt(&sql, &[&(realm_id as i32), &name]).await?.as_ref().map(Stream::from_row))
}

/// A stream of the realm by id.
pub async fn stream_by_id(db: &impl GenericClient, realm_id: i64, id: i64) -> Result<Option<Stream>, ApiError> {
    let Ok(id32) = i32::try_from(id) else { return Ok(None) };
    let sql = format!("SELECT {STREAM_COLUMNS} FROM stream s WHERE s.realm_id = $1 AND s.id = $2");
    Ok(db.query_opt(&sql, &[&(realm_id as i32), &id32]).await?.as_ref().map(Stream::from_row))
}

/// Whether `user_id` has an active subscription to `stream`.
pub async fn is_subscribed(db: &impl GenericClient, user_id: i64, stream: &Stream) -> Result<bool, ApiError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM subscription WHERE user_profile_id = $1 AND recipient_id = $2 AND active",
            &[&(user_id as i32), &(stream.recipient_id as i32)],
        )
        .await?
        .is_some())
}

/// Active subscribers of a stream who are active users, in id order.
pub async fn active_subscriber_ids(db: &impl GenericClient, recipient_id: i64) -> Result<Vec<i64>, ApiError> {
    Ok(db
        .query(
            "SELECT s.user_profile_id FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = $1 AND s.active AND u.is_active ORDER BY 1",
            &[&(recipient_id as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect())
}

/// Active subscribers who are active and not soft-deactivated, in id
/// order: who hears about edits, deletes and stream typing.
pub async fn active_nonidle_subscriber_ids(db: &impl GenericClient, recipient_id: i64) -> Result<Vec<i64>, ApiError> {
    Ok(db
        .query(
            "SELECT s.user_profile_id FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = $1 AND s.active AND u.is_active AND NOT u.long_term_idle ORDER BY 1",
            &[&(recipient_id as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect())
}

/// Subscribes users; returns the newly subscribed ones with their colour,
/// in id order (already active subscriptions are left alone; inactive ones
/// are reactivated).
pub async fn add_subscriptions(
    db: &impl GenericClient,
    stream: &Stream,
    user_ids: &[i64],
) -> Result<Vec<(i64, String)>, ApiError> {
    let ids: Vec<i32> = user_ids.iter().map(|&u| u as i32).collect();
    let color = COLORS[(stream.id as usize) % COLORS.len()];
    let rows = db
        .query(
            "INSERT INTO subscription (user_profile_id, recipient_id, color)
             SELECT u, $2, $3 FROM unnest($1::int[]) AS u
             ON CONFLICT (user_profile_id, recipient_id) DO UPDATE SET active = true
             WHERE NOT subscription.active
             RETURNING user_profile_id, color, xmax = 0",
            &[&ids, &(stream.recipient_id as i32), &color],
        )
        .await?;
    let mut out: Vec<(i64, String)> = rows.iter().map(|r| (r.get::<_, i32>(0) as i64, r.get(1))).collect();
    out.sort_unstable();
    // The subscription log add_missing_messages reads (xmax = 0: inserted,
    // not reactivated).
    let (created, reactivated): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.get::<_, bool>(2));
    let ids_of = |rows: Vec<&Row>| rows.iter().map(|r| r.get::<_, i32>(0) as i64).collect::<Vec<i64>>();
    use crate::soft_deactivation::{audit, log_subscription_changes};
    log_subscription_changes(db, stream.realm_id, stream.id, &ids_of(created), audit::SUBSCRIPTION_CREATED).await?;
    log_subscription_changes(db, stream.realm_id, stream.id, &ids_of(reactivated), audit::SUBSCRIPTION_ACTIVATED)
        .await?;
    Ok(out)
}

/// The user's active subscriptions with their settings, by stream name.
pub async fn user_subscriptions(
    db: &impl GenericClient,
    user_id: i64,
) -> Result<Vec<(Stream, SubscriptionProps)>, ApiError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS}, sub.is_muted, sub.pin_to_top, sub.color
         FROM subscription sub JOIN stream s ON s.recipient_id = sub.recipient_id
         WHERE sub.user_profile_id = $1 AND sub.active ORDER BY lower(s.name)"
    );
    let rows = db.query(&sql, &[&(user_id as i32)]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let n = STREAM_COLUMN_COUNT;
            (
                Stream::from_row(r),
                SubscriptionProps { is_muted: r.get(n), pin_to_top: r.get(n + 1), color: r.get(n + 2) },
            )
        })
        .collect())
}

/// The user's subscription dictionaries, with subscriber lists when asked
/// (register's `subscriptions`, `GET /users/me/subscriptions`).
pub async fn subscription_dicts(
    db: &impl GenericClient,
    user_id: i64,
    include_subscribers: bool,
) -> Result<Vec<Value>, ApiError> {
    let subs = user_subscriptions(db, user_id).await?;
    let members = if include_subscribers {
        let rids: Vec<i64> = subs.iter().map(|(s, _)| s.recipient_id).collect();
        Some(subscribers_of(db, &rids).await?)
    } else {
        None
    };
    Ok(subs
        .iter()
        .map(|(s, props)| {
            let subscribers = members.as_ref().map(|m| m.get(&s.recipient_id).cloned().unwrap_or_default());
            s.subscription_dict(props, subscribers.as_deref())
        })
        .collect())
}

/// Who hears about subscription changes of `stream` (Zulip's peer
/// events): everyone who can see its subscribers — every active non-guest
/// user for a public stream, administrators for a private one, plus the
/// subscribers — except the users whose subscription changed.
pub async fn peer_audience(
    db: &impl GenericClient,
    stream: &Stream,
    subscribers: &[i64],
    altered: &[i64],
) -> Result<Vec<i64>, ApiError> {
    let sql = if stream.is_public() {
        "SELECT id FROM userprofile WHERE realm_id = $1 AND is_active AND role <> 600"
    } else {
        "SELECT id FROM userprofile WHERE realm_id = $1 AND is_active AND role <= 200"
    };
    let mut ids: Vec<i64> =
        db.query(sql, &[&(stream.realm_id as i32)]).await?.iter().map(|r| r.get::<_, i32>(0) as i64).collect();
    ids.extend_from_slice(subscribers);
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|u| !altered.contains(u));
    Ok(ids)
}

/// Members of direct-message groups, by the groups' recipient ids (all
/// members, active or not: they are the conversation's participants).
pub async fn group_members(
    db: &impl GenericClient,
    group_recipient_ids: &[i32],
) -> Result<std::collections::HashMap<i64, Vec<i64>>, ApiError> {
    let mut out: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    if group_recipient_ids.is_empty() {
        return Ok(out);
    }
    for r in db
        .query(
            "SELECT recipient_id, user_profile_id FROM subscription WHERE recipient_id = ANY($1) ORDER BY 1, 2",
            &[&group_recipient_ids],
        )
        .await?
    {
        out.entry(r.get::<_, i32>(0) as i64).or_default().push(r.get::<_, i32>(1) as i64);
    }
    Ok(out)
}

/// Subscriber ids of each of `recipient_ids` (active users only).
pub async fn subscribers_of(
    db: &impl GenericClient,
    recipient_ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<i64>>, ApiError> {
    let ids: Vec<i32> = recipient_ids.iter().map(|&r| r as i32).collect();
    let rows = db
        .query(
            "SELECT s.recipient_id, s.user_profile_id FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = ANY($1) AND s.active AND u.is_active ORDER BY 1, 2",
            &[&ids],
        )
        .await?;
    let mut map: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    for r in rows {
        map.entry(r.get::<_, i32>(0) as i64).or_default().push(r.get::<_, i32>(1) as i64);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_name_rules() {
        assert_eq!(check_stream_name("  Denmark ").unwrap(), "Denmark");
        assert_eq!(check_stream_name("   ").unwrap_err().msg, "Channel name can't be empty.");
        assert_eq!(
            check_stream_name(&"x".repeat(61)).unwrap_err().msg,
            "Channel name too long (limit: 60 characters)."
        );
        assert!(check_stream_name(&"é".repeat(60)).is_ok());
        assert_eq!(
            check_stream_name("ab\u{0007}c").unwrap_err().msg,
            "Invalid character in channel name, at position 3."
        );
    }

    #[test]
    fn posting_policies() {
        use crate::users::role;
        let stream = |policy| Stream {
            id: 1,
            realm_id: 1,
            name: "s".into(),
            description: String::new(),
            rendered_description: String::new(),
            invite_only: false,
            is_web_public: false,
            history_public_to_subscribers: true,
            recipient_id: 2,
            first_message_id: None,
            date_created: 0,
            creator_id: None,
            can_remove_subscribers_group: 0,
            stream_post_policy: policy,
        };
        let check = |policy, r, provisional| {
            check_post_policy(&stream(policy), &User::for_tests(r), provisional).err().map(|e| e.msg)
        };
        for r in [role::OWNER, role::ADMIN] {
            for policy in 1..=4 {
                assert_eq!(check(policy, r, true), None, "admins post anywhere");
            }
        }
        assert_eq!(check(post_policy::EVERYONE, role::GUEST, true), None);
        assert_eq!(
            check(post_policy::ADMINS, role::MODERATOR, false).unwrap(),
            "Only organization administrators can send to this channel."
        );
        assert_eq!(check(post_policy::MODERATORS, role::MODERATOR, false), None);
        assert_eq!(
            check(post_policy::MODERATORS, role::MEMBER, false).unwrap(),
            "Only organization administrators and moderators can send to this channel."
        );
        assert_eq!(
            check(post_policy::RESTRICT_NEW_MEMBERS, role::GUEST, false).unwrap(),
            "Guests cannot send to this channel."
        );
        assert_eq!(
            check(post_policy::RESTRICT_NEW_MEMBERS, role::MEMBER, true).unwrap(),
            "New members cannot send to this channel."
        );
        assert_eq!(check(post_policy::RESTRICT_NEW_MEMBERS, role::MEMBER, false), None);
    }

    #[test]
    fn wildcard_mention_policies() {
        use crate::users::role;
        let (member, admin, moderator, guest) = (
            User::for_tests(role::MEMBER),
            User::for_tests(role::ADMIN),
            User::for_tests(role::MODERATOR),
            User::for_tests(role::GUEST),
        );
        let big = WILDCARD_MENTION_THRESHOLD + 1;
        for policy in 1..=7 {
            assert!(
                wildcard_mention_allowed(policy, &guest, WILDCARD_MENTION_THRESHOLD, true),
                "small audiences: anyone"
            );
        }
        assert!(!wildcard_mention_allowed(5, &member, big, false), "Zulip's default: administrators only");
        assert!(wildcard_mention_allowed(5, &admin, big, false));
        assert!(wildcard_mention_allowed(7, &moderator, big, false));
        assert!(!wildcard_mention_allowed(7, &member, big, false));
        assert!(wildcard_mention_allowed(2, &member, big, true));
        assert!(!wildcard_mention_allowed(2, &guest, big, false));
        assert!(!wildcard_mention_allowed(3, &member, big, true), "full members only");
        assert!(!wildcard_mention_allowed(6, &admin, big, false), "nobody");
        assert!(wildcard_mention_allowed(1, &guest, big, true));
    }
}
