//! Stream rules, as Zulip states them: what a stream name and description
//! may be, who may post to a stream (`stream_post_policy`), who may use
//! wildcard mentions (`wildcard_mention_policy`), and who counts as a new
//! ("provisional") member. Creating a stream (`api/streams`) and sending
//! to one (`actions/send`) check these before writing anything.

use super::Stream;
use crate::users::{role, User};
use deadpool_postgres::GenericClient;
use squall_proto::error::ApiError;

/// Longest stream name Zulip accepts.
pub const MAX_STREAM_NAME_LENGTH: usize = 60;
/// Longest stream description.
pub const MAX_STREAM_DESCRIPTION_LENGTH: usize = 1024;

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

/// Channels and topics with at most this many subscribers / participants
/// allow wildcard mentions from anyone (Zulip's WILDCARD_MENTION_THRESHOLD).
pub const WILDCARD_MENTION_THRESHOLD: usize = 15;

/// SQL over `userprofile u JOIN realm r`: the user joined less than the
/// realm's waiting period ago (a "new member").
pub const PROVISIONAL_MEMBER: &str = "u.date_joined > now() - make_interval(days => r.waiting_period_threshold)";

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

/// A stream description is at most 1,024 characters.
pub fn check_stream_description(description: &str) -> Result<(), ApiError> {
    if description.chars().count() > MAX_STREAM_DESCRIPTION_LENGTH {
        return Err(ApiError::bad_request("Channel description too long"));
    }
    Ok(())
}

/// Control characters, surrogates and noncharacters, which Zulip refuses in
/// names and topics.
pub fn is_unprintable(c: char) -> bool {
    let u = c as u32;
    c.is_control() || (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
}

/// Zulip's stream posting policy check. `provisional`: the sender is a
/// member who joined less than the realm's waiting period ago.
pub fn check_post_policy(stream: &Stream, sender: &User, provisional: bool) -> Result<(), ApiError> {
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

/// Whether the realm's `wildcard_mention_policy` lets `sender` use a
/// wildcard mention reaching `audience` users.
pub fn wildcard_mention_allowed(policy: i16, sender: &User, audience: usize, provisional: bool) -> bool {
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

/// What the realm's wildcard mention policy needs to judge a wildcard
/// mention in a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WildcardMentionFacts {
    /// The realm's `wildcard_mention_policy`.
    pub policy: i16,
    /// The sender is a new member ([`PROVISIONAL_MEMBER`]).
    pub provisional: bool,
    /// Active users subscribed to the stream.
    pub subscribers: usize,
}

/// Reads [`WildcardMentionFacts`] for `sender` in the stream of
/// `recipient_id`, in one query.
pub async fn wildcard_mention_facts(
    db: &impl GenericClient,
    sender: &User,
    recipient_id: i64,
) -> Result<WildcardMentionFacts, ApiError> {
    let sql = format!(
        "SELECT r.wildcard_mention_policy, {PROVISIONAL_MEMBER},
                (SELECT count(*) FROM subscription s JOIN userprofile su ON su.id = s.user_profile_id
                 WHERE s.recipient_id = $2 AND s.active AND su.is_active)
         FROM userprofile u JOIN realm r ON r.id = u.realm_id WHERE u.id = $1"
    );
    let row = db.query_one(&sql, &[&(sender.id as i32), &(recipient_id as i32)]).await?;
    Ok(WildcardMentionFacts { policy: row.get(0), provisional: row.get(1), subscribers: row.get::<_, i64>(2) as usize })
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
    fn stream_description_length() {
        assert!(check_stream_description(&"é".repeat(1024)).is_ok());
        assert_eq!(check_stream_description(&"x".repeat(1025)).unwrap_err().msg, "Channel description too long");
    }

    #[test]
    fn posting_policies() {
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
            deactivated: false,
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
