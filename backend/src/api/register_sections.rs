//! The `POST /register` sections that describe what the realm and server
//! offer rather than the user's own data: the realm's settings, what
//! Squall supports of Zulip's optional features (linkifiers, playgrounds,
//! custom profile fields, video calls...), default channels, the bots a
//! user administers, the channels a user can see.
//!
//! Each value says what Squall does: a feature Squall does not have is an
//! empty list, a permission is the system group that Squall's rules let do
//! it.

use crate::streams::{self, Stream};
use crate::user_groups::SystemGroups;
use crate::users::User;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::error::ApiError;

/// The words `search` ignores: PostgreSQL's `english` text search
/// configuration's stop words, which Squall's full-text search uses.
const STOP_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "her",
    "hers",
    "herself",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "should",
    "now",
];

/// The realm settings beyond name, description and the policies stored
/// per realm (those `register` reads from the realm row). `groups` are
/// the realm's system groups.
pub fn realm_settings(groups: &SystemGroups) -> Vec<(&'static str, Value)> {
    let g = |name: &str| json!(groups.id(name));
    vec![
        // Who may do what, as Squall enforces it.
        ("realm_can_access_all_users_group", g("role:everyone")),
        ("realm_can_add_custom_emoji_group", g("role:nobody")),
        ("realm_can_create_groups", g("role:members")),
        ("realm_can_create_public_channel_group", g("role:members")),
        ("realm_can_create_private_channel_group", g("role:members")),
        ("realm_can_create_web_public_channel_group", g("role:nobody")),
        ("realm_can_delete_any_message_group", g("role:administrators")),
        ("realm_can_delete_own_message_group", g("role:everyone")),
        ("realm_can_manage_all_groups", g("role:administrators")),
        ("realm_can_move_messages_between_channels_group", g("role:nobody")),
        ("realm_create_multiuse_invite_group", g("role:administrators")),
        ("realm_direct_message_initiator_group", g("role:everyone")),
        ("realm_direct_message_permission_group", g("role:everyone")),
        // The enums the group settings replaced, for older clients:
        // 1 members, 2 admins, 6 nobody.
        ("realm_create_public_stream_policy", json!(1)),
        ("realm_create_private_stream_policy", json!(1)),
        ("realm_create_web_public_stream_policy", json!(6)),
        ("realm_invite_to_stream_policy", json!(1)),
        ("realm_invite_to_realm_policy", json!(2)),
        ("realm_bot_creation_policy", json!(3)),
        ("realm_edit_topic_policy", json!(5)),
        ("realm_move_messages_between_streams_limit_seconds", json!(604_800)),
        // Accounts and sign-in.
        (
            "realm_authentication_methods",
            json!({
                "Email": {"enabled": true, "available": true},
                "Dev": {"enabled": false, "available": false, "unavailable_reason": "Not configured on this server."},
            }),
        ),
        ("realm_password_auth_enabled", json!(true)),
        ("realm_require_unique_names", json!(false)),
        ("realm_name_changes_disabled", json!(false)),
        ("realm_email_changes_disabled", json!(false)),
        ("realm_avatar_changes_disabled", json!(true)),
        ("realm_emails_restricted_to_domains", json!(false)),
        ("realm_disallow_disposable_email_addresses", json!(true)),
        ("realm_send_welcome_emails", json!(false)),
        ("realm_bot_domain", json!("zulip.invalid")),
        ("realm_enable_guest_user_indicator", json!(true)),
        ("realm_enable_read_receipts", json!(false)),
        ("realm_org_type", json!(0)),
        ("realm_plan_type", json!(1)),
        ("zulip_plan_is_not_limited", json!(true)),
        ("realm_upload_quota_mib", Value::Null),
        ("realm_want_advertise_in_communities_directory", json!(false)),
        ("realm_digest_emails_enabled", json!(false)),
        ("realm_digest_weekday", json!(1)),
        ("realm_message_content_allowed_in_email_notifications", json!(true)),
        ("realm_push_notifications_enabled_end_timestamp", Value::Null),
        ("realm_default_code_block_language", json!("")),
        ("realm_default_external_accounts", json!({})),
        // Announcement channels: none configured.
        ("realm_new_stream_announcements_stream_id", json!(-1)),
        ("realm_signup_announcements_stream_id", json!(-1)),
        ("realm_zulip_update_announcements_stream_id", json!(-1)),
        // Media, previews and integrations Squall does not offer.
        ("realm_inline_image_preview", json!(false)),
        ("server_inline_image_preview", json!(false)),
        ("realm_video_chat_provider", json!(0)),
        ("realm_available_video_chat_providers", json!({"disabled": {"name": "None", "id": 0}})),
        ("realm_jitsi_server_url", Value::Null),
        ("server_jitsi_server_url", Value::Null),
        ("jitsi_server_url", json!("")),
        ("realm_giphy_rating", json!(-1)),
        ("giphy_rating_options", json!({"disabled": {"name": "GIPHY integration disabled", "id": -1}})),
        ("realm_icon_url", json!("https://secure.gravatar.com/avatar/?d=identicon")),
        ("realm_logo_source", json!("D")),
        ("realm_logo_url", json!("")),
        ("realm_night_logo_source", json!("D")),
        ("realm_night_logo_url", json!("")),
        ("max_avatar_file_size_mib", json!(0)),
        ("max_file_upload_size_mib", json!(0)),
        ("max_icon_file_size_mib", json!(0)),
        ("max_logo_file_size_mib", json!(0)),
        ("server_thumbnail_formats", json!([])),
        ("server_emoji_data_url", json!("")),
        ("upgrade_text_for_wide_organization_logo", json!("")),
        // Server facts.
        ("password_min_length", json!(6)),
        ("password_min_guesses", json!(0)),
        ("server_avatar_changes_disabled", json!(true)),
        ("server_name_changes_disabled", json!(false)),
        ("server_needs_upgrade", json!(false)),
        ("server_web_public_streams_enabled", json!(false)),
        ("settings_send_digest_emails", json!(false)),
        ("server_supported_permission_settings", permission_settings()),
    ]
}

/// `server_supported_permission_settings`: the group permission settings
/// Squall knows and the groups they accept.
fn permission_settings() -> Value {
    let setting = |default: &str, id_field: &str| {
        json!({
            "require_system_group": false,
            "allow_internet_group": false,
            "allow_owners_group": false,
            "allow_nobody_group": true,
            "allow_everyone_group": true,
            "default_group_name": default,
            "id_field_name": id_field,
            "default_for_system_groups": Value::Null,
            "allowed_system_groups": [],
        })
    };
    json!({
        "realm": {
            "can_create_groups": setting("role:members", "can_create_groups_id"),
            "can_manage_all_groups": setting("role:administrators", "can_manage_all_groups_id"),
            "create_multiuse_invite_group": setting("role:administrators", "create_multiuse_invite_group_id"),
        },
        "stream": {
            "can_remove_subscribers_group": setting("role:administrators", "can_remove_subscribers_group_id"),
        },
        "group": {
            "can_mention_group": setting("role:everyone", "can_mention_group_id"),
        },
    })
}

/// `custom_profile_fields` (none can be defined yet) and the field types
/// Zulip defines.
pub fn custom_profile_fields(state: &mut Map<String, Value>) {
    state.insert("custom_profile_fields".into(), json!([]));
    let types = [
        ("SHORT_TEXT", 1, "Short text"),
        ("LONG_TEXT", 2, "Long text"),
        ("SELECT", 3, "List of options"),
        ("DATE", 4, "Date picker"),
        ("URL", 5, "Link"),
        ("USER", 6, "Person picker"),
        ("EXTERNAL_ACCOUNT", 7, "External account"),
        ("PRONOUNS", 8, "Pronouns"),
    ];
    let types: Map<String, Value> =
        types.iter().map(|(key, id, name)| ((*key).into(), json!({"id": id, "name": name}))).collect();
    state.insert("custom_profile_field_types".into(), Value::Object(types));
}

/// Optional features with nothing configured: each section's keys, empty.
pub fn empty_sections(want: impl Fn(&str) -> bool, state: &mut Map<String, Value>) {
    let sections: [(&str, &str, Value); 12] = [
        ("realm_linkifiers", "realm_linkifiers", json!([])),
        ("realm_filters", "realm_filters", json!([])),
        ("realm_playgrounds", "realm_playgrounds", json!([])),
        ("realm_domains", "realm_domains", json!([])),
        ("default_stream_groups", "realm_default_stream_groups", json!([])),
        ("onboarding_steps", "onboarding_steps", json!([])),
        ("realm_embedded_bots", "realm_embedded_bots", json!([])),
        ("realm_incoming_webhook_bots", "realm_incoming_webhook_bots", json!([])),
        ("saved_snippets", "saved_snippets", json!([])),
        ("scheduled_messages", "scheduled_messages", json!([])),
        ("video_calls", "has_zoom_token", json!(false)),
        ("giphy", "giphy_api_key", json!("")),
    ];
    for (section, key, value) in sections {
        if want(section) {
            state.insert(key.into(), value);
        }
    }
    if want("stop_words") {
        state.insert("stop_words".into(), json!(STOP_WORDS));
    }
}

/// The channel dictionary without per-user fields, as `realm_default_streams`
/// lists it.
fn default_channel_dict(s: &Stream) -> Value {
    let mut d = s.api_dict();
    if let Some(o) = d.as_object_mut() {
        o.remove("stream_weekly_traffic");
    }
    d
}

/// `realm_default_streams`: the channels new users join (guests are not
/// told, as in Zulip).
pub async fn default_streams_for(db: &impl GenericClient, user: &User) -> Result<Value, ApiError> {
    if user.is_guest() {
        return Ok(json!([]));
    }
    default_streams(db, user.realm_id).await
}

/// The channels new users of `realm_id` join.
pub async fn default_streams(db: &impl GenericClient, realm_id: i64) -> Result<Value, ApiError> {
    let sql = format!(
        "SELECT {} FROM defaultstream d JOIN stream s ON s.id = d.stream_id WHERE d.realm_id = $1 ORDER BY s.id",
        streams::STREAM_COLUMNS
    );
    let rows = db.query(&sql, &[&(realm_id as i32)]).await?;
    Ok(rows.iter().map(|r| default_channel_dict(&Stream::from_row(r))).collect())
}

/// `streams`: every channel `user` can see (public ones unless a guest,
/// those they are subscribed to, and all of them for administrators).
pub async fn visible_streams(db: &impl GenericClient, user: &User) -> Result<Value, ApiError> {
    let sql = format!(
        "SELECT {} FROM stream s WHERE s.realm_id = $1 AND NOT s.deactivated AND ($4 OR ($3 AND NOT s.invite_only) OR EXISTS
           (SELECT 1 FROM subscription sub WHERE sub.recipient_id = s.recipient_id AND sub.user_profile_id = $2 AND sub.active))
         ORDER BY s.id",
        streams::STREAM_COLUMNS
    );
    let rows = db
        .query(&sql, &[&(user.realm_id as i32), &(user.id as i32), &!user.is_guest(), &user.is_realm_admin()])
        .await?;
    Ok(rows.iter().map(|r| Stream::from_row(r).api_dict()).collect())
}

/// `realm_bots` (see [`crate::api::bots::realm_bots`]).
pub async fn realm_bots(db: &impl GenericClient, user: &User) -> Result<Value, ApiError> {
    crate::api::bots::realm_bots(db, user).await
}
