//! Personal settings (Zulip's `UserBaseSettings` as the API of feature level
//! 313 has them): their defaults, `PATCH /settings`, the register
//! `user_settings` object and the legacy top-level copies, and the
//! `user_settings` / `update_display_settings` / `update_global_notifications`
//! events.
//!
//! A user's settings are stored as the overrides of the defaults
//! (`userprofile.settings`, JSON); the time zone lives in its own column,
//! since user lists show it.

use crate::users::User;
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// What values a setting takes.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    /// One of these integers.
    OneOf(&'static [i64]),
    /// An integer in this range.
    Range(i64, i64),
    /// One of these strings.
    Text(&'static [&'static str]),
    /// A language code Squall knows (see [`LANGUAGES`]).
    Language,
    /// A sound in [`SOUNDS`] or `none`.
    Sound,
}

/// Which legacy event (and register group) a setting also belongs to.
#[derive(Clone, Copy, PartialEq)]
enum Legacy {
    Display,
    Notification,
    None,
}

struct Setting {
    name: &'static str,
    kind: Kind,
    default: DefaultValue,
    legacy: Legacy,
}

#[derive(Clone, Copy)]
enum DefaultValue {
    Bool(bool),
    Int(i64),
    Text(&'static str),
}

impl DefaultValue {
    fn value(self) -> Value {
        match self {
            DefaultValue::Bool(b) => b.into(),
            DefaultValue::Int(n) => n.into(),
            DefaultValue::Text(s) => s.into(),
        }
    }
}

const ONE_TO_THREE: &[i64] = &[1, 2, 3];
const ONE_TO_FOUR: &[i64] = &[1, 2, 3, 4];

macro_rules! setting {
    ($name:literal, $kind:expr, bool $d:literal, $legacy:ident) => {
        Setting { name: $name, kind: $kind, default: DefaultValue::Bool($d), legacy: Legacy::$legacy }
    };
    ($name:literal, $kind:expr, int $d:literal, $legacy:ident) => {
        Setting { name: $name, kind: $kind, default: DefaultValue::Int($d), legacy: Legacy::$legacy }
    };
    ($name:literal, $kind:expr, text $d:literal, $legacy:ident) => {
        Setting { name: $name, kind: $kind, default: DefaultValue::Text($d), legacy: Legacy::$legacy }
    };
}

/// Every setting a user can change (besides the time zone), with Zulip's
/// default for a new user.
const SETTINGS: &[Setting] = &[
    setting!("twenty_four_hour_time", Kind::Bool, bool false, Display),
    setting!("dense_mode", Kind::Bool, bool true, None),
    setting!("web_mark_read_on_scroll_policy", Kind::OneOf(ONE_TO_THREE), int 1, None),
    setting!("web_channel_default_view", Kind::OneOf(ONE_TO_FOUR), int 1, None),
    setting!("starred_message_counts", Kind::Bool, bool true, Display),
    setting!("receives_typing_notifications", Kind::Bool, bool true, None),
    setting!("fluid_layout_width", Kind::Bool, bool false, Display),
    setting!("high_contrast_mode", Kind::Bool, bool false, Display),
    setting!("web_font_size_px", Kind::Range(12, 20), int 16, None),
    setting!("web_line_height_percent", Kind::Range(122, 158), int 140, None),
    setting!("color_scheme", Kind::OneOf(ONE_TO_THREE), int 1, Display),
    setting!("translate_emoticons", Kind::Bool, bool false, Display),
    setting!("display_emoji_reaction_users", Kind::Bool, bool true, None),
    setting!("default_language", Kind::Language, text "en", Display),
    setting!("web_home_view", Kind::Text(&["recent_topics", "inbox", "all_messages"]), text "inbox", Display),
    setting!("web_escape_navigates_to_home_view", Kind::Bool, bool true, None),
    setting!("left_side_userlist", Kind::Bool, bool false, Display),
    setting!("emojiset", Kind::Text(&["google", "twitter", "text", "google-blob"]), text "google", Display),
    setting!("demote_inactive_streams", Kind::OneOf(ONE_TO_THREE), int 1, Display),
    setting!("user_list_style", Kind::OneOf(ONE_TO_THREE), int 2, None),
    setting!("web_animate_image_previews", Kind::Text(&["always", "on_hover", "never"]), text "on_hover", None),
    setting!("web_stream_unreads_count_display_policy", Kind::OneOf(ONE_TO_THREE), int 2, None),
    setting!("enter_sends", Kind::Bool, bool false, Display),
    setting!("enable_drafts_synchronization", Kind::Bool, bool true, Display),
    setting!("enable_stream_desktop_notifications", Kind::Bool, bool false, Notification),
    setting!("enable_stream_email_notifications", Kind::Bool, bool false, Notification),
    setting!("enable_stream_push_notifications", Kind::Bool, bool false, Notification),
    setting!("enable_stream_audible_notifications", Kind::Bool, bool false, Notification),
    setting!("notification_sound", Kind::Sound, text "zulip", Notification),
    setting!("enable_desktop_notifications", Kind::Bool, bool true, Notification),
    setting!("enable_sounds", Kind::Bool, bool true, Notification),
    setting!("enable_followed_topic_desktop_notifications", Kind::Bool, bool true, None),
    setting!("enable_followed_topic_email_notifications", Kind::Bool, bool true, None),
    setting!("enable_followed_topic_push_notifications", Kind::Bool, bool true, None),
    setting!("enable_followed_topic_audible_notifications", Kind::Bool, bool true, None),
    setting!("email_notifications_batching_period_seconds", Kind::Range(120, 7 * 24 * 3600), int 120, Notification),
    setting!("enable_offline_email_notifications", Kind::Bool, bool true, Notification),
    setting!("enable_offline_push_notifications", Kind::Bool, bool true, Notification),
    setting!("enable_online_push_notifications", Kind::Bool, bool true, Notification),
    setting!("enable_digest_emails", Kind::Bool, bool true, Notification),
    setting!("enable_marketing_emails", Kind::Bool, bool true, Notification),
    setting!("enable_login_emails", Kind::Bool, bool true, Notification),
    setting!("message_content_in_email_notifications", Kind::Bool, bool true, Notification),
    setting!("pm_content_in_desktop_notifications", Kind::Bool, bool true, Notification),
    setting!("wildcard_mentions_notify", Kind::Bool, bool true, Notification),
    setting!("enable_followed_topic_wildcard_mentions_notify", Kind::Bool, bool true, None),
    setting!("desktop_icon_count_display", Kind::OneOf(ONE_TO_FOUR), int 1, Notification),
    setting!("realm_name_in_email_notifications_policy", Kind::OneOf(ONE_TO_THREE), int 1, Notification),
    setting!("automatically_follow_topics_policy", Kind::OneOf(ONE_TO_FOUR), int 3, None),
    setting!("automatically_unmute_topics_in_muted_streams_policy", Kind::OneOf(ONE_TO_FOUR), int 2, None),
    setting!("automatically_follow_topics_where_mentioned", Kind::Bool, bool true, None),
    setting!("presence_enabled", Kind::Bool, bool true, Notification),
    setting!("send_private_typing_notifications", Kind::Bool, bool true, None),
    setting!("send_stream_typing_notifications", Kind::Bool, bool true, None),
    setting!("send_read_receipts", Kind::Bool, bool true, None),
    setting!("allow_private_data_export", Kind::Bool, bool false, None),
    setting!("email_address_visibility", Kind::OneOf(&[1, 2, 3, 4, 5]), int 1, None),
    setting!("web_navigate_to_sent_message", Kind::Bool, bool true, None),
];

/// Notification sounds (Zulip's).
const SOUNDS: &[&str] = &["chime", "ding", "zulip"];

/// Languages a user may pick, with their names (for `language_name`).
const LANGUAGES: &[(&str, &str)] = &[
    ("ca", "català"),
    ("cs", "čeština"),
    ("de", "Deutsch"),
    ("en", "English"),
    ("en_GB", "English (United Kingdom)"),
    ("es", "español"),
    ("fr", "français"),
    ("it", "italiano"),
    ("ja", "日本語"),
    ("ko", "한국어"),
    ("nl", "Nederlands"),
    ("pl", "polski"),
    ("pt", "português"),
    ("pt_BR", "português (Brasil)"),
    ("ru", "русский"),
    ("sv", "svenska"),
    ("tr", "Türkçe"),
    ("uk", "українська"),
    ("zh-hans", "简体中文"),
];

fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// The value of `name` for a user with these overrides.
pub fn value_of(overrides: &Value, name: &str) -> Option<Value> {
    let s = setting(name)?;
    Some(overrides.get(name).cloned().unwrap_or_else(|| s.default.value()))
}

/// The register `user_settings` object.
pub fn user_settings(overrides: &Value, timezone: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for s in SETTINGS {
        out.insert(s.name.into(), overrides.get(s.name).cloned().unwrap_or_else(|| s.default.value()));
    }
    out.insert("timezone".into(), timezone.into());
    out.insert("available_notification_sounds".into(), json!(SOUNDS));
    out.insert("emojiset_choices".into(), emojiset_choices());
    out
}

fn emojiset_choices() -> Value {
    json!([
        {"key": "google", "text": "Google"},
        {"key": "twitter", "text": "Twitter"},
        {"key": "text", "text": "Plain text"},
        {"key": "google-blob", "text": "Google blobs"},
    ])
}

/// The legacy top-level display settings (register, for clients without
/// `user_settings_object`).
pub fn legacy_display(overrides: &Value, timezone: &str) -> Map<String, Value> {
    let mut out = legacy(overrides, Legacy::Display);
    out.insert("timezone".into(), timezone.into());
    out.insert("emojiset_choices".into(), emojiset_choices());
    out
}

/// The legacy top-level notification settings.
pub fn legacy_notifications(overrides: &Value) -> Map<String, Value> {
    let mut out = legacy(overrides, Legacy::Notification);
    out.insert("available_notification_sounds".into(), json!(SOUNDS));
    out
}

fn legacy(overrides: &Value, group: Legacy) -> Map<String, Value> {
    SETTINGS
        .iter()
        .filter(|s| s.legacy == group)
        .map(|s| (s.name.to_owned(), overrides.get(s.name).cloned().unwrap_or_else(|| s.default.value())))
        .collect()
}

/// Reads and checks one setting from the request, if sent.
fn requested(p: &mut Params, s: &Setting) -> Result<Option<Value>, ApiError> {
    let invalid = || ApiError::bad_request(format!("Invalid {}", s.name));
    Ok(match s.kind {
        Kind::Bool => p.bool(s.name)?.map(Value::from),
        Kind::OneOf(allowed) => match p.int(s.name)? {
            Some(n) if allowed.contains(&n) => Some(n.into()),
            Some(_) => return Err(invalid()),
            None => None,
        },
        Kind::Range(lo, hi) => match p.int(s.name)? {
            Some(n) if (lo..=hi).contains(&n) => Some(n.into()),
            Some(_) => return Err(invalid()),
            None => None,
        },
        Kind::Text(allowed) => match p.str(s.name) {
            Some(t) if allowed.contains(&t.as_str()) => Some(t.into()),
            Some(_) => return Err(invalid()),
            None => None,
        },
        Kind::Language => match p.str(s.name) {
            Some(t) if LANGUAGES.iter().any(|(code, _)| *code == t) => Some(t.into()),
            Some(_) => return Err(invalid()),
            None => None,
        },
        Kind::Sound => match p.str(s.name) {
            Some(t) if t == "none" || SOUNDS.contains(&t.as_str()) => Some(t.into()),
            Some(t) => return Err(ApiError::bad_request(format!("Invalid notification sound '{t}'"))),
            None => None,
        },
    })
}

/// Whether `tz` is a time zone name (an IANA name, as Zulip requires, or
/// empty for none): it must name a file of the system's zone database.
fn is_time_zone(tz: &str) -> bool {
    if tz.is_empty() {
        return true;
    }
    let well_formed = tz.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.chars().all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
    });
    well_formed && std::path::Path::new("/usr/share/zoneinfo").join(tz).is_file()
}

/// `PATCH /settings`: the settings sent, checked all before any is stored;
/// each change told to the user's clients (and, for the legacy ones, in the
/// legacy events too). Parameters that are not settings are reported as
/// ignored.
pub async fn update(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let mut changes: Vec<(&'static Setting, Value)> = Vec::new();
    for s in SETTINGS {
        if let Some(v) = requested(p, s)? {
            changes.push((s, v));
        }
    }
    let timezone = p.str("timezone");
    if let Some(tz) = &timezone {
        if !is_time_zone(tz) {
            return Err(ApiError::bad_request(format!("Invalid timezone '{tz}'")));
        }
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let stored: Value =
        tx.query_one("SELECT settings FROM userprofile WHERE id = $1 FOR UPDATE", &[&(user.id as i32)]).await?.get(0);
    // Only what differs from what the user has now is a change.
    changes.retain(|(s, v)| value_of(&stored, s.name).as_ref() != Some(v));
    let timezone = timezone.filter(|tz| *tz != user.timezone);
    if !changes.is_empty() {
        let patch: Map<String, Value> = changes.iter().map(|(s, v)| (s.name.to_owned(), v.clone())).collect();
        tx.execute(
            "UPDATE userprofile SET settings = settings || $2 WHERE id = $1",
            &[&(user.id as i32), &Value::Object(patch)],
        )
        .await?;
    }
    if let Some(tz) = &timezone {
        tx.execute("UPDATE userprofile SET timezone = $2 WHERE id = $1", &[&(user.id as i32), tz]).await?;
    }
    let everyone =
        if timezone.is_some() { crate::users::active_user_ids(&tx, user.realm_id).await? } else { Vec::new() };
    tx.commit().await?;

    let mut events: Vec<(Value, Vec<i64>)> = Vec::new();
    let mine = vec![user.id];
    for (s, v) in &changes {
        let mut event = json!({"type": "user_settings", "op": "update", "property": s.name, "value": v});
        let language = (s.name == "default_language")
            .then(|| LANGUAGES.iter().find(|(code, _)| Some(*code) == v.as_str()).map(|(_, n)| *n))
            .flatten();
        if let Some(name) = language {
            event["language_name"] = name.into();
        }
        events.push((event, mine.clone()));
        match s.legacy {
            Legacy::Display => {
                let mut legacy =
                    json!({"type": "update_display_settings", "user": user.email, "setting_name": s.name, "setting": v});
                if let Some(name) = language {
                    legacy["language_name"] = name.into();
                }
                events.push((legacy, mine.clone()));
            }
            Legacy::Notification => events.push((
                json!({"type": "update_global_notifications", "user": user.email, "notification_name": s.name, "setting": v}),
                mine.clone(),
            )),
            Legacy::None => {}
        }
    }
    if let Some(tz) = timezone {
        events.push((
            json!({"type": "user_settings", "op": "update", "property": "timezone", "value": tz}),
            mine.clone(),
        ));
        events.push((
            json!({"type": "update_display_settings", "user": user.email, "setting_name": "timezone", "setting": tz}),
            mine.clone(),
        ));
        events.push((
            json!({"type": "realm_user", "op": "update", "person": {"user_id": user.id, "timezone": tz}}),
            everyone,
        ));
    }
    for (event, users) in events {
        app.tell(user.realm_id, event, users, "settings").await;
    }
    Ok(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_listed_once_with_a_default_of_its_kind() {
        let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "no setting twice");
        for s in SETTINGS {
            let ok = match (s.kind, s.default) {
                (Kind::Bool, DefaultValue::Bool(_)) => true,
                (Kind::OneOf(allowed), DefaultValue::Int(n)) => allowed.contains(&n),
                (Kind::Range(lo, hi), DefaultValue::Int(n)) => (lo..=hi).contains(&n),
                (Kind::Text(allowed), DefaultValue::Text(t)) => allowed.contains(&t),
                (Kind::Language, DefaultValue::Text(t)) => LANGUAGES.iter().any(|(c, _)| *c == t),
                (Kind::Sound, DefaultValue::Text(t)) => SOUNDS.contains(&t),
                _ => false,
            };
            assert!(ok, "{}: its default is a value it may take", s.name);
        }
    }

    #[test]
    fn overrides_win_and_the_legacy_groups_are_zulips() {
        let overrides = json!({"twenty_four_hour_time": true, "enable_sounds": false});
        let all = user_settings(&overrides, "Europe/Berlin");
        assert_eq!(all["twenty_four_hour_time"], true);
        assert_eq!(all["dense_mode"], true);
        assert_eq!(all["timezone"], "Europe/Berlin");
        let display = legacy_display(&overrides, "");
        assert_eq!(display.len(), 13 + 2, "Zulip's 13 legacy display settings, the time zone and the emoji sets");
        let notifications = legacy_notifications(&overrides);
        assert_eq!(notifications.len(), 20 + 1, "Zulip's 20 legacy notification settings and the sounds");
        assert_eq!(notifications["enable_sounds"], false);
        assert!(is_time_zone("Europe/Berlin") || !std::path::Path::new("/usr/share/zoneinfo").exists());
        assert!(!is_time_zone("../../etc/passwd") && !is_time_zone("Mars/Olympus Mons"));
    }
}
