//! `POST /register`: allocate an event queue and return the initial state,
//! atomically in Zulip's sense (events that race the state fetch are left
//! in the queue and reflected in `last_event_id`).

use crate::error::{ApiError, ApiResult};
use crate::request::{ApiRequest, Params};
use crate::streams;
use crate::users::{self, User};
use crate::{App, ZULIP_FEATURE_LEVEL, ZULIP_MERGE_BASE, ZULIP_VERSION};
use serde_json::{json, Map, Value};
use squall_shard_router::envelope::QueueSpec;

/// Idle lifetime of a queue when the client does not ask for one.
pub const DEFAULT_EVENT_QUEUE_TIMEOUT_SECS: u64 = 600;
/// Longest lifetime a client may ask for (7 days).
pub const MAX_QUEUE_TIMEOUT_SECS: u64 = 604_800;

/// Narrow operators a queue may filter on.
const NARROW_OPERATORS: [&str; 5] = ["channel", "stream", "topic", "sender", "is"];

/// Validates a register/events `narrow`: a list of `[operator, operand]`.
pub fn check_queue_narrow(v: Option<Value>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(v) = v else { return Ok(vec![]) };
    let Value::Array(items) = v else { return Err(ApiError::bad_request("narrow is not a list")) };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let pair = match item {
            Value::Array(p) if p.len() == 2 => p,
            _ => return Err(ApiError::bad_request(format!("narrow[{i}] is not a list of length 2"))),
        };
        let (Some(op), Some(operand)) = (pair[0].as_str(), pair[1].as_str()) else {
            return Err(ApiError::bad_request(format!("narrow[{i}][0] is not a string")));
        };
        if !NARROW_OPERATORS.contains(&op) {
            return Err(ApiError::bad_request(format!("Operator {op} not supported.")));
        }
        if op == "is" && operand == "followed" {
            return Err(ApiError::bad_request("Operand followed not supported."));
        }
        out.push((op.to_owned(), operand.to_owned()));
    }
    Ok(out)
}

/// Zulip derives PRONOUNS support from the User-Agent: only the legacy
/// mobile app before 27.192 lacks it.
pub fn pronouns_supported(user_agent: Option<&str>) -> bool {
    let Some(rest) = user_agent.and_then(|ua| ua.strip_prefix("ZulipMobile/")) else { return true };
    let version: Vec<u32> = rest
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap_or("")
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect();
    match version.as_slice() {
        [major, minor, ..] => (*major, *minor) >= (27, 192),
        [major] => *major > 27,
        [] => true,
    }
}

/// Reads the queue-creation parameters shared by register and
/// `GET /events` without a queue id. `caps` is register's
/// `client_capabilities` (already read: register also needs it itself);
/// `GET /events` takes the same capabilities as plain parameters.
pub fn queue_spec(
    user: &User,
    client_name: String,
    user_agent: Option<&str>,
    caps: Option<Value>,
    p: &mut Params,
    register: bool,
) -> Result<QueueSpec, ApiError> {
    let apply_markdown = p.bool("apply_markdown")?.unwrap_or(false);
    // register defaults client_gravatar to true (authenticated); /events to false.
    let client_gravatar = p.bool("client_gravatar")?.unwrap_or(register);
    let slim_presence = p.bool("slim_presence")?.unwrap_or(false);
    let all_public_streams = p.bool("all_public_streams")?.unwrap_or(false);
    if all_public_streams && user.is_guest() {
        return Err(ApiError::bad_request("User not authorized for this query"));
    }
    let event_types = p.str_list("event_types")?;
    let narrow = check_queue_narrow(p.json("narrow")?)?;
    let lifespan_name = if register { "queue_lifespan_secs" } else { "lifespan_secs" };
    let lifespan = p.int(lifespan_name)?.unwrap_or(0);
    if lifespan < 0 {
        return Err(ApiError::bad_request(format!("{lifespan_name} is too small")));
    }
    let queue_timeout_secs =
        if lifespan == 0 { DEFAULT_EVENT_QUEUE_TIMEOUT_SECS } else { (lifespan as u64).min(MAX_QUEUE_TIMEOUT_SECS) };
    let mut spec = QueueSpec {
        user_id: user.id,
        realm_id: user.realm_id,
        client_type_name: client_name,
        event_types,
        narrow,
        apply_markdown,
        client_gravatar,
        slim_presence,
        all_public_streams,
        queue_timeout_secs,
        ..QueueSpec::default()
    };
    if register {
        if let Some(caps) = caps {
            let Value::Object(caps) = caps else {
                return Err(ApiError::bad_request("client_capabilities is not a dict"));
            };
            let flag = |k: &str| caps.get(k).and_then(Value::as_bool).unwrap_or(false);
            spec.bulk_message_deletion = flag("bulk_message_deletion");
            spec.stream_typing_notifications = flag("stream_typing_notifications");
            spec.user_settings_object = flag("user_settings_object");
            spec.linkifier_url_template = flag("linkifier_url_template");
            spec.user_list_incomplete = flag("user_list_incomplete");
            spec.include_deactivated_groups = flag("include_deactivated_groups");
        }
        spec.pronouns_field_type_supported = pronouns_supported(user_agent);
    } else {
        spec.bulk_message_deletion = p.bool("bulk_message_deletion")?.unwrap_or(false);
        spec.stream_typing_notifications = p.bool("stream_typing_notifications")?.unwrap_or(false);
        spec.user_settings_object = p.bool("user_settings_object")?.unwrap_or(false);
        spec.linkifier_url_template = p.bool("linkifier_url_template")?.unwrap_or(false);
        spec.user_list_incomplete = p.bool("user_list_incomplete")?.unwrap_or(false);
        spec.include_deactivated_groups = p.bool("include_deactivated_groups")?.unwrap_or(false);
        spec.pronouns_field_type_supported = p.bool("pronouns_field_type_supported")?.unwrap_or(true);
    }
    Ok(spec)
}

/// `POST /register`.
pub async fn register(app: &App, user: &User, req: &ApiRequest, p: &mut Params) -> ApiResult {
    let client_name = super::messages::client_name(req, p);
    let include_subscribers = p.bool("include_subscribers")?.unwrap_or(false);
    let fetch_event_types = p.str_list("fetch_event_types")?;
    let _ = p.int("presence_history_limit_days")?;
    let caps = p.json("client_capabilities")?;
    let notification_settings_null =
        caps.as_ref().and_then(|c| c.get("notification_settings_null")).and_then(Value::as_bool).unwrap_or(false);
    let spec = queue_spec(user, client_name, req.header("user-agent"), caps, p, true)?;
    let wanted = fetch_event_types.or_else(|| spec.event_types.clone());
    let want = |t: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == t));

    // A returning soft-deactivated user gets the rows they missed before
    // any state is computed from them.
    if user.long_term_idle {
        crate::soft_deactivation::reactivate_user(&mut app.pool.get().await?, user.id).await?;
    }

    let queue_id = app.bus.allocate_queue(spec.clone()).await.map_err(|e| {
        tracing::warn!(error = %e, "queue allocation failed");
        ApiError::bad_request("Could not allocate event queue")
    })?;

    let mut state = Map::new();
    let client = app.pool.get().await?;
    if want("message") {
        let max: Option<i64> = client
            .query_one("SELECT max(message_id) FROM usermessage WHERE user_profile_id = $1", &[&(user.id as i32)])
            .await?
            .get(0);
        state.insert("max_message_id".into(), max.unwrap_or(-1).into());
    }
    if want("message") && want("update_message_flags") {
        state.insert("unread_msgs".into(), crate::unread::unread_msgs(&client, user.id).await?);
    }
    if want("realm_user") {
        let all = users::realm_users(&client, user.realm_id).await?;
        let (active, inactive): (Vec<&User>, Vec<&User>) = all.iter().partition(|u| u.is_active);
        let dict = |u: &User| {
            let mut d = u.api_dict(spec.client_gravatar);
            if let Some(o) = d.as_object_mut() {
                o.remove("is_active");
                o.remove("bot_owner_id");
                if !u.is_bot {
                    o.remove("bot_type");
                }
            }
            d
        };
        state.insert("realm_users".into(), active.iter().map(|u| dict(u)).collect::<Vec<_>>().into());
        state.insert("realm_non_active_users".into(), inactive.iter().map(|u| dict(u)).collect::<Vec<_>>().into());
        state.insert("cross_realm_bots".into(), json!([]));
        // The user's own avatar is always a URL; client_gravatar applies
        // to the user list only.
        let avatar = json!(user.avatar_url());
        for (k, v) in [
            ("user_id", json!(user.id)),
            ("email", json!(user.email)),
            ("delivery_email", json!(user.delivery_email)),
            ("full_name", json!(user.full_name)),
            ("is_admin", json!(user.is_realm_admin())),
            ("is_owner", json!(user.role == users::role::OWNER)),
            ("is_moderator", json!(user.role == users::role::MODERATOR)),
            ("is_guest", json!(user.is_guest())),
            ("is_billing_admin", json!(false)),
            ("avatar_source", json!("G")),
            ("avatar_url", avatar.clone()),
            ("avatar_url_medium", avatar),
            ("can_create_streams", json!(!user.is_guest())),
            ("can_create_public_streams", json!(!user.is_guest())),
            ("can_create_private_streams", json!(!user.is_guest())),
            ("can_create_web_public_streams", json!(false)),
            ("can_subscribe_other_users", json!(!user.is_guest())),
            ("can_invite_others_to_realm", json!(user.is_realm_admin())),
        ] {
            state.insert(k.into(), v);
        }
    }
    if want("subscription") {
        let mut list = streams::subscription_dicts(&client, user.id, include_subscribers).await?;
        if !notification_settings_null {
            // Older clients cannot take null settings: give them the user's
            // defaults (Zulip's; Squall stores no per-user overrides yet).
            for sub in list.iter_mut().filter_map(Value::as_object_mut) {
                for (key, default) in [
                    ("desktop_notifications", false),
                    ("email_notifications", false),
                    ("push_notifications", false),
                    ("audible_notifications", false),
                    ("wildcard_mentions_notify", true),
                ] {
                    if sub.get(key).is_some_and(Value::is_null) {
                        sub.insert(key.into(), default.into());
                    }
                }
            }
        }
        let subscribed: Vec<i64> = list.iter().filter_map(|s| s["stream_id"].as_i64()).collect();
        let sql = format!(
            "SELECT {} FROM stream s WHERE s.realm_id = $1 AND NOT s.invite_only ORDER BY lower(s.name)",
            streams::STREAM_COLUMNS
        );
        let never: Vec<Value> = if user.is_guest() {
            vec![]
        } else {
            client
                .query(&sql, &[&(user.realm_id as i32)])
                .await?
                .iter()
                .map(streams::Stream::from_row)
                .filter(|s| !subscribed.contains(&s.id))
                .map(|s| s.api_dict())
                .collect()
        };
        state.insert("subscriptions".into(), list.into());
        state.insert("unsubscribed".into(), json!([]));
        state.insert("never_subscribed".into(), never.into());
    }
    if want("presence") {
        let now = crate::unix_time();
        let (presences, last) = crate::presence::realm_presences(
            &client,
            user.realm_id,
            spec.slim_presence,
            None,
            crate::presence::DEFAULT_HISTORY_DAYS,
            now.as_secs() as i64,
        )
        .await?;
        state.insert("presences".into(), Value::Object(presences));
        state.insert("presence_last_update_id".into(), last.into());
        state.insert("server_timestamp".into(), now.as_secs_f64().into());
    }
    if want("realm") {
        let row = client
            .query_one(
                "SELECT name, description, extract(epoch from date_created)::bigint FROM realm WHERE id = $1",
                &[&(user.realm_id as i32)],
            )
            .await?;
        let url = super::server::realm_url(app, &user.realm_string_id);
        for (k, v) in [
            ("realm_name", json!(row.get::<_, String>(0))),
            ("realm_description", json!(crate::markdown::render_plain(row.get::<_, &str>(1)))),
            ("realm_date_created", json!(row.get::<_, i64>(2))),
            ("realm_url", json!(url)),
            ("realm_uri", json!(url)),
            ("realm_icon_url", json!("https://secure.gravatar.com/avatar/?d=identicon")),
            ("realm_icon_source", json!("G")),
            ("realm_is_zephyr_mirror_realm", json!(false)),
            ("realm_email_auth_enabled", json!(true)),
            ("realm_presence_disabled", json!(false)),
            ("realm_mandatory_topics", json!(false)),
            ("realm_invite_required", json!(true)),
            ("realm_enable_spectator_access", json!(false)),
            ("realm_push_notifications_enabled", json!(false)),
            ("realm_default_language", json!("en")),
            ("max_message_length", json!(crate::actions::send::MAX_MESSAGE_LENGTH)),
            ("max_topic_length", json!(crate::actions::send::MAX_TOPIC_LENGTH)),
            ("max_stream_name_length", json!(streams::MAX_STREAM_NAME_LENGTH)),
            ("max_stream_description_length", json!(streams::MAX_STREAM_DESCRIPTION_LENGTH)),
            ("event_queue_longpoll_timeout_seconds", json!(90)),
            ("server_generation", json!(app.settings.server_generation)),
            ("server_presence_ping_interval_seconds", json!(60)),
            ("server_presence_offline_threshold_seconds", json!(200)),
            ("server_typing_started_expiry_period_milliseconds", json!(45000)),
            ("server_typing_stopped_wait_period_milliseconds", json!(12000)),
            ("server_typing_started_wait_period_milliseconds", json!(30000)),
            ("development_environment", json!(false)),
        ] {
            state.insert(k.into(), v);
        }
    }

    // Events that reached the queue while the state was being computed stay
    // queued; apply the ones that change what we return.
    let raced = app
        .bus
        .peek_events(user.id, queue_id.clone())
        .await
        .map_err(|e| ApiError::internal(format!("reading new queue: {e}")))?;
    let mut last_event_id = -1i64;
    for ev in &raced {
        if let Some(id) = ev.get("id").and_then(Value::as_i64) {
            last_event_id = last_event_id.max(id);
        }
        if ev.get("type").and_then(Value::as_str) == Some("message") {
            if let (Some(Value::Number(cur)), Some(mid)) =
                (state.get("max_message_id"), ev.pointer("/message/id").and_then(Value::as_i64))
            {
                let cur = cur.as_i64().unwrap_or(-1);
                state.insert("max_message_id".into(), cur.max(mid).into());
            }
        }
    }
    state.insert("queue_id".into(), queue_id.into());
    state.insert("last_event_id".into(), last_event_id.into());
    state.insert("zulip_version".into(), ZULIP_VERSION.into());
    state.insert("zulip_feature_level".into(), ZULIP_FEATURE_LEVEL.into());
    state.insert("zulip_merge_base".into(), ZULIP_MERGE_BASE.into());
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(role: i32) -> User {
        User::for_tests(role)
    }

    #[test]
    fn guests_cannot_watch_all_public_streams() {
        let guest = user(crate::users::role::GUEST);
        for register in [true, false] {
            let mut p = Params::from_pairs(&[("all_public_streams", "true")]);
            let e = queue_spec(&guest, "x".into(), None, None, &mut p, register).unwrap_err();
            assert_eq!(e.msg, "User not authorized for this query");
        }
        let mut p = Params::from_pairs(&[("all_public_streams", "true")]);
        assert!(
            queue_spec(&user(crate::users::role::MEMBER), "x".into(), None, None, &mut p, true)
                .unwrap()
                .all_public_streams
        );
    }

    #[test]
    fn queue_options_and_lifespans() {
        let member = user(crate::users::role::MEMBER);
        let caps = serde_json::json!({"notification_settings_null": true, "bulk_message_deletion": true, "user_list_incomplete": true});
        let mut p = Params::from_pairs(&[("queue_lifespan_secs", "9999999"), ("event_types", r#"["message"]"#)]);
        let spec =
            queue_spec(&member, "ZulipPython".into(), Some("ZulipMobile/27.100"), Some(caps), &mut p, true).unwrap();
        assert!(spec.bulk_message_deletion && spec.user_list_incomplete && !spec.stream_typing_notifications);
        assert!(!spec.pronouns_field_type_supported);
        assert!(spec.client_gravatar, "register defaults client_gravatar to true");
        assert_eq!(spec.queue_timeout_secs, MAX_QUEUE_TIMEOUT_SECS);
        assert_eq!(spec.event_types, Some(vec!["message".to_owned()]));
        let mut p = Params::from_pairs(&[("lifespan_secs", "0")]);
        let spec = queue_spec(&member, "x".into(), None, None, &mut p, false).unwrap();
        assert_eq!(spec.queue_timeout_secs, DEFAULT_EVENT_QUEUE_TIMEOUT_SECS);
        assert!(!spec.client_gravatar, "GET /events defaults client_gravatar to false");
        let mut p = Params::from_pairs(&[("lifespan_secs", "-1")]);
        assert!(queue_spec(&member, "x".into(), None, None, &mut p, false).is_err());
    }

    #[test]
    fn pronouns_from_user_agent() {
        assert!(pronouns_supported(None));
        assert!(pronouns_supported(Some("ZulipPython/0.9.1")));
        assert!(!pronouns_supported(Some("ZulipMobile/27.191 (Android 14)")));
        assert!(pronouns_supported(Some("ZulipMobile/27.192 (iOS 17)")));
        assert!(pronouns_supported(Some("ZulipMobile/28.0")));
        assert!(!pronouns_supported(Some("ZulipMobile/26.1")));
    }

    #[test]
    fn narrow_validation() {
        assert_eq!(check_queue_narrow(None).unwrap(), vec![]);
        assert_eq!(
            check_queue_narrow(Some(json!([["stream", "denmark"]]))).unwrap(),
            vec![("stream".to_owned(), "denmark".to_owned())]
        );
        assert_eq!(
            check_queue_narrow(Some(json!([["search", "x"]]))).unwrap_err().msg,
            "Operator search not supported."
        );
        assert_eq!(
            check_queue_narrow(Some(json!([["is", "followed"]]))).unwrap_err().msg,
            "Operand followed not supported."
        );
        assert!(check_queue_narrow(Some(json!([["stream"]]))).is_err());
        assert!(check_queue_narrow(Some(json!("x"))).is_err());
    }
}
