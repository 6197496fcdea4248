//! `POST /register`: allocate an event queue and return the initial state,
//! atomically in Zulip's sense (events that race the state fetch are left
//! in the queue and reflected in `last_event_id`).

use crate::streams;
use crate::users::{self, User};
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::{ApiRequest, Params};
use squall_proto::error::{ApiError, ApiResult};
use squall_proto::queue_spec::queue_spec;
use squall_proto::{ZULIP_FEATURE_LEVEL, ZULIP_MERGE_BASE, ZULIP_VERSION};

/// The user's direct-message conversations among their 1,000 latest direct
/// messages (Zulip's `get_recent_private_conversations`): for each, the
/// other participants (none for the self-conversation) and the latest
/// message id, latest first.
async fn recent_private_conversations(
    db: &impl deadpool_postgres::GenericClient,
    user_id: i64,
) -> Result<Vec<Value>, ApiError> {
    let rows = db
        .query(
            "SELECT m.id, m.sender_id, r.type, r.type_id, m.recipient_id FROM
               (SELECT message_id FROM usermessage WHERE user_profile_id = $1 AND (flags & 2048) <> 0
                ORDER BY message_id DESC LIMIT 1000) recent
             JOIN message m ON m.id = recent.message_id JOIN recipient r ON r.id = m.recipient_id",
            &[&(user_id as i32)],
        )
        .await?;
    let groups: Vec<i32> = rows.iter().filter(|r| r.get::<_, i16>(2) == 3).map(|r| r.get(4)).collect();
    let members = crate::streams::group_members(db, &groups).await?;
    let mut latest: std::collections::HashMap<Vec<i64>, i64> = std::collections::HashMap::new();
    for r in &rows {
        let id: i64 = r.get(0);
        let mut people: Vec<i64> = match r.get::<_, i16>(2) {
            1 => vec![r.get::<_, i32>(1) as i64, r.get::<_, i32>(3) as i64],
            3 => members.get(&(r.get::<_, i32>(4) as i64)).cloned().unwrap_or_default(),
            _ => continue,
        };
        people.retain(|&u| u != user_id);
        people.sort_unstable();
        people.dedup();
        let max = latest.entry(people).or_insert(id);
        *max = (*max).max(id);
    }
    let mut list: Vec<(Vec<i64>, i64)> = latest.into_iter().collect();
    list.sort_by_key(|(_, max)| std::cmp::Reverse(*max));
    Ok(list.into_iter().map(|(user_ids, max)| json!({"user_ids": user_ids, "max_message_id": max})).collect())
}

/// `POST /register`.
pub async fn register(app: &App, user: &User, req: &ApiRequest, p: &mut Params) -> ApiResult {
    let client_name = super::messages::client_name(req, p);
    let include_subscribers = p.bool("include_subscribers")?.unwrap_or(false);
    let fetch_event_types = p.str_list("fetch_event_types")?;
    let _ = p.int("presence_history_limit_days")?;
    let caps = p.json("client_capabilities")?;
    let cap = |name: &str| caps.as_ref().and_then(|c| c.get(name)).and_then(Value::as_bool).unwrap_or(false);
    let notification_settings_null = cap("notification_settings_null");
    let include_deactivated_groups = cap("include_deactivated_groups");
    let spec = queue_spec(&user.authed(), client_name, req.header("user-agent"), caps, p, true)?;
    let wanted = fetch_event_types.or_else(|| spec.event_types.clone());
    let want = |t: &str| wanted.as_ref().is_none_or(|w| w.iter().any(|x| x == t));

    // A returning soft-deactivated user gets the rows they missed before
    // any state is computed from them.
    // (Asked of the database: the cached user may not have heard yet of a
    // soft deactivation the periodic job or another process just made.)
    let mut db = app.pool.get().await?;
    let idle: bool =
        crate::db::query_one_cached(&db, "SELECT long_term_idle FROM userprofile WHERE id = $1", &[&(user.id as i32)])
            .await?
            .get(0);
    if idle {
        crate::soft_deactivation::reactivate(app, &mut db, user.id).await?;
    }
    drop(db);

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
    // Personal settings: the object, and for clients without
    // `user_settings_object` the legacy top-level copies; older clients'
    // subscriptions also take their defaults. Read once for all of them.
    let legacy_display = want("update_display_settings") && !spec.user_settings_object;
    let legacy_notifications = want("update_global_notifications") && !spec.user_settings_object;
    let overrides: Value = if want("user_settings")
        || legacy_display
        || legacy_notifications
        || (want("subscription") && !notification_settings_null)
    {
        client.query_one("SELECT settings FROM userprofile WHERE id = $1", &[&(user.id as i32)]).await?.get(0)
    } else {
        Value::Null
    };
    if want("subscription") {
        let mut list = streams::subscription_dicts(&client, user.id, include_subscribers).await?;
        if !notification_settings_null {
            // Older clients cannot take null settings: give them the
            // user's own default for each.
            for sub in list.iter_mut().filter_map(Value::as_object_mut) {
                for (key, setting) in [
                    ("desktop_notifications", "enable_stream_desktop_notifications"),
                    ("email_notifications", "enable_stream_email_notifications"),
                    ("push_notifications", "enable_stream_push_notifications"),
                    ("audible_notifications", "enable_stream_audible_notifications"),
                    ("wildcard_mentions_notify", "wildcard_mentions_notify"),
                ] {
                    if sub.get(key).is_some_and(Value::is_null) {
                        sub.insert(key.into(), crate::settings::value_of(&overrides, setting).unwrap_or(Value::Null));
                    }
                }
            }
        }
        let subscribed: Vec<i64> = list.iter().filter_map(|s| s["stream_id"].as_i64()).collect();
        let sql = format!(
            "SELECT {} FROM stream s WHERE s.realm_id = $1 AND NOT s.invite_only AND NOT s.deactivated ORDER BY lower(s.name)",
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
    let system = if want("realm") || want("realm_user_groups") {
        crate::user_groups::system_groups(&client, user.realm_id).await?
    } else {
        crate::user_groups::SystemGroups::default()
    };
    if want("realm") {
        let row = client
            .query_one(
                "SELECT name, description, extract(epoch from date_created)::bigint, waiting_period_threshold,
                        wildcard_mention_policy, allow_message_editing, message_content_edit_limit_seconds,
                        message_content_delete_limit_seconds, move_messages_within_stream_limit_seconds,
                        inline_url_embed_preview
                 FROM realm WHERE id = $1",
                &[&(user.realm_id as i32)],
            )
            .await?;
        let url = super::server::realm_url(app, &user.realm_string_id);
        state.extend(super::register_sections::realm_settings(&system).into_iter().map(|(k, v)| (k.to_owned(), v)));
        for (k, v) in [
            ("realm_name", json!(row.get::<_, String>(0))),
            ("realm_description", json!(crate::markdown::render_plain(row.get::<_, &str>(1)))),
            ("realm_date_created", json!(row.get::<_, i64>(2))),
            ("realm_waiting_period_threshold", json!(row.get::<_, i32>(3))),
            ("realm_wildcard_mention_policy", json!(row.get::<_, i16>(4))),
            ("realm_url", json!(url)),
            ("realm_uri", json!(url)),
            ("realm_icon_source", json!("G")),
            ("realm_is_zephyr_mirror_realm", json!(false)),
            ("realm_email_auth_enabled", json!(true)),
            ("realm_presence_disabled", json!(false)),
            ("realm_mandatory_topics", json!(false)),
            ("realm_invite_required", json!(true)),
            ("realm_enable_spectator_access", json!(false)),
            ("realm_push_notifications_enabled", json!(false)),
            ("realm_default_language", json!("en")),
            ("max_message_length", json!(crate::actions::send::addressee::MAX_MESSAGE_LENGTH)),
            ("max_topic_length", json!(crate::actions::send::addressee::MAX_TOPIC_LENGTH)),
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
            // Messages are kept for ever; edit history is kept and shown;
            // the editing policy is the realm's (`PATCH /realm`).
            ("realm_message_retention_days", json!(-1)),
            ("realm_allow_message_editing", json!(row.get::<_, bool>(5))),
            ("realm_message_content_edit_limit_seconds", json!(row.get::<_, Option<i32>>(6))),
            ("realm_message_content_delete_limit_seconds", json!(row.get::<_, Option<i32>>(7))),
            ("realm_move_messages_within_stream_limit_seconds", json!(row.get::<_, Option<i32>>(8))),
            ("realm_allow_edit_history", json!(true)),
            // Link previews: the realm's choice (the embed_links worker).
            ("realm_inline_url_embed_preview", json!(row.get::<_, bool>(9))),
            ("server_inline_url_embed_preview", json!(true)),
        ] {
            state.insert(k.into(), v);
        }
    }
    // Topic policies; the legacy muted list only for clients that do not
    // also ask for the modern one (as Zulip).
    if want("muted_topics") && !(wanted.is_some() && want("user_topic")) {
        state.insert("muted_topics".into(), super::user_topics::muted_topics(&client, user.id).await?.into());
    }
    if want("user_topic") {
        state.insert("user_topics".into(), super::user_topics::user_topics(&client, user.id).await?.into());
    }
    if want("drafts") {
        state.insert("drafts".into(), json!(super::drafts::drafts(&client, user).await?));
    }
    if want("user_status") {
        state.insert(
            "user_status".into(),
            Value::Object(super::user_status::user_status(&client, user.realm_id).await?),
        );
    }
    if want("muted_users") {
        state.insert("muted_users".into(), json!(super::muted_users::muted_users(&client, user.id).await?));
    }
    if want("alert_words") {
        state.insert("alert_words".into(), json!(super::alert_words::alert_words(&client, user.id).await?));
    }
    if want("recent_private_conversations") {
        state.insert(
            "recent_private_conversations".into(),
            recent_private_conversations(&client, user.id).await?.into(),
        );
    }
    if want("realm_user_groups") {
        let groups = crate::user_groups::realm_groups(&client, user.realm_id, include_deactivated_groups).await?;
        state.insert("realm_user_groups".into(), groups.iter().map(|g| g.api_dict(&system)).collect());
    }
    if want("custom_profile_fields") {
        super::register_sections::custom_profile_fields(&mut state);
    }
    if want("default_streams") {
        state.insert(
            "realm_default_streams".into(),
            super::register_sections::default_streams_for(&client, user).await?,
        );
    }
    if want("stream") {
        state.insert("streams".into(), super::register_sections::visible_streams(&client, user).await?);
    }
    if want("realm_bot") {
        state.insert("realm_bots".into(), super::register_sections::realm_bots(&client, user).await?);
    }
    if want("realm_user_settings_defaults") {
        let mut defaults = crate::settings::user_settings(&json!({}), "");
        defaults.remove("timezone");
        state.insert("realm_user_settings_defaults".into(), Value::Object(defaults));
    }
    super::register_sections::empty_sections(want, &mut state);
    // No custom emoji can be added yet.
    if want("realm_emoji") {
        state.insert("realm_emoji".into(), json!({}));
    }
    if want("starred_messages") {
        let starred: Vec<i64> = client
            .query(
                "SELECT message_id FROM usermessage WHERE user_profile_id = $1 AND flags & $2 <> 0 ORDER BY message_id",
                &[&(user.id as i32), &squall_proto::flags::STARRED],
            )
            .await?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect();
        state.insert("starred_messages".into(), starred.into());
    }
    {
        let timezone = &user.timezone;
        if want("user_settings") {
            state.insert("user_settings".into(), Value::Object(crate::settings::user_settings(&overrides, timezone)));
        }
        if legacy_display {
            state.extend(crate::settings::legacy_display(&overrides, timezone));
        }
        if legacy_notifications {
            state.extend(crate::settings::legacy_notifications(&overrides));
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
