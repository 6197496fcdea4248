//! Mobile push notifications through a push bouncer (Zulip's
//! `PushNotificationsWorker`, `handle_push_notification`,
//! `handle_remove_push_notification` and `send_to_push_bouncer`).
//!
//! An `add` item becomes one POST to `<bouncer>/api/v1/remotes/push/notify`
//! (HTTP basic auth: this server's registration) carrying Zulip's FCM and
//! APNs payloads and the user's device tokens; the message's
//! `active_mobile_push_notification` flag is set in the same transaction,
//! so a message is pushed once. When the user reads such messages the
//! backend queues a `remove` item, which sends Zulip's removal payloads and
//! clears the flag. A bouncer that times out, cannot be reached or answers
//! 5xx is retried; a 4xx is not.

use super::{attribute, decode_entities, field, Failure, Workers};
use serde_json::{json, Map, Value};
use squall_proto::flags;

/// Zulip's `active_mobile_push_notification` bit.
pub const ACTIVE_PUSH: i64 = 1 << 12;
/// Device kinds (Zulip's PushDeviceToken.kind).
pub const APNS: i16 = 1;
/// Firebase Cloud Messaging (Android).
pub const FCM: i16 = 2;
/// Longest notification text, in characters, before "…".
const MAX_CONTENT: usize = 200;
/// Most message ids one removal names (Zulip's MAX_APNS_MESSAGE_IDS).
const MAX_REMOVE_IDS: usize = 200;

/// Does one item of `missedmessage_mobile_notifications`.
pub async fn handle(w: &Workers, item: &Value) -> Result<(), Failure> {
    let p = &w.cfg.push;
    if p.bouncer_url.is_empty() || p.org_id.is_empty() || p.org_key.is_empty() {
        tracing::debug!("mobile push item dropped: no push bouncer configured (SQUALL_PUSH_BOUNCER_URL)");
        return Ok(());
    }
    let user_id: i32 = field(item, "user_profile_id")?;
    match item.get("type").and_then(Value::as_str) {
        Some(kind @ ("register_push_device_to_bouncer" | "unregister_push_device_from_bouncer")) => {
            register(w, user_id, item, kind == "register_push_device_to_bouncer").await
        }
        Some("remove") => {
            let ids: Vec<i64> = field(item, "message_ids")?;
            remove(w, user_id, ids).await
        }
        _ => {
            let message_id: i64 = field(item, "message_id")?;
            let trigger: String = field(item, "trigger")?;
            let group: Option<i32> = field(item, "mentioned_user_group_id")?;
            add(w, user_id, message_id, &trigger, group).await
        }
    }
}

/// What the payloads say about the user and the realm.
struct Base {
    user_uuid: String,
    realm_uuid: String,
    payload: Map<String, Value>,
}

async fn base(
    w: &Workers,
    db: &impl deadpool_postgres::GenericClient,
    user_id: i32,
) -> Result<Option<(Base, bool)>, Failure> {
    let Some(r) = db
        .query_opt(
            "SELECT u.uuid::text, r.uuid::text, r.id, r.string_id, r.name, u.is_bot OR NOT u.is_active,
                    COALESCE((u.settings->>'enable_offline_push_notifications')::boolean, true)
                    OR COALESCE((u.settings->>'enable_online_push_notifications')::boolean, true)
             FROM userprofile u JOIN realm r ON r.id = u.realm_id WHERE u.id = $1",
            &[&user_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut payload = Map::new();
    payload.insert("server".into(), w.app.settings.external_host.clone().into());
    payload.insert("realm_id".into(), r.get::<_, i32>(2).into());
    payload.insert("realm_uri".into(), crate::api::server::realm_url(&w.app, &r.get::<_, String>(3)).into());
    payload.insert("realm_url".into(), crate::api::server::realm_url(&w.app, &r.get::<_, String>(3)).into());
    payload.insert("realm_name".into(), r.get::<_, String>(4).into());
    payload.insert("user_id".into(), user_id.into());
    let wants = !r.get::<_, bool>(5) && r.get::<_, bool>(6);
    Ok(Some((Base { user_uuid: r.get(0), realm_uuid: r.get(1), payload }, wants)))
}

async fn devices(
    db: &impl deadpool_postgres::GenericClient,
    user_id: i32,
) -> Result<(Vec<String>, Vec<String>), Failure> {
    let rows = db
        .query("SELECT kind, token FROM push_device_token WHERE user_profile_id = $1 ORDER BY id", &[&user_id])
        .await?;
    let mut android = Vec::new();
    let mut apple = Vec::new();
    for r in rows {
        match r.get::<_, i16>(0) {
            APNS => apple.push(r.get(1)),
            _ => android.push(r.get(1)),
        }
    }
    Ok((android, apple))
}

async fn add(w: &Workers, user_id: i32, message_id: i64, trigger: &str, group: Option<i32>) -> Result<(), Failure> {
    // No connection or lock is held across the bouncer call: read, send,
    // then mark the message as pushed (and take it back if it was read
    // in between).
    let db = w.app.pool.get().await?;
    let Some((base, wants)) = base(w, &db, user_id).await? else { return Ok(()) };
    if !wants {
        return Ok(());
    }
    let Some(um) = db
        .query_opt(
            "SELECT flags FROM usermessage WHERE user_profile_id = $1 AND message_id = $2",
            &[&user_id, &message_id],
        )
        .await?
    else {
        tracing::info!(user_id, message_id, "mobile push skipped: the message is gone or not the user's");
        return Ok(());
    };
    let bits: i64 = um.get(0);
    if bits & (flags::READ | ACTIVE_PUSH) != 0 {
        return Ok(());
    }
    let (android, apple) = devices(&db, user_id).await?;
    if android.is_empty() && apple.is_empty() {
        tracing::info!(user_id, "mobile push skipped: the user has no registered devices");
        return Ok(());
    }
    let Some(m) = db
        .query_opt(
            "SELECT m.sender_id, s.email, s.full_name, s.avatar_version, extract(epoch FROM m.date_sent)::bigint,
                    r.type, r.type_id, st.name, m.subject, m.rendered_content,
                    (SELECT name FROM usergroup WHERE id = $2), m.recipient_id
             FROM message m JOIN userprofile s ON s.id = m.sender_id JOIN recipient r ON r.id = m.recipient_id
             LEFT JOIN stream st ON r.type = 2 AND st.id = r.type_id WHERE m.id = $1",
            &[&message_id, &group],
        )
        .await?
    else {
        return Ok(());
    };
    let sender_name: String = m.get(2);
    let kind: i16 = m.get(5);
    let type_id: i32 = m.get(6);
    let mut payload = base.payload.clone();
    payload.insert("sender_id".into(), m.get::<_, i32>(0).into());
    payload.insert("sender_email".into(), m.get::<_, String>(1).into());
    payload.insert("time".into(), m.get::<_, i64>(4).into());
    if let (Some(g), Some(name)) = (group, m.get::<_, Option<String>>(10)) {
        payload.insert("mentioned_user_group_id".into(), g.into());
        payload.insert("mentioned_user_group_name".into(), name.into());
    }
    let title = match kind {
        2 => {
            let stream: String = m.get::<_, Option<String>>(7).unwrap_or_default();
            let topic: String = m.get(8);
            payload.insert("recipient_type".into(), "stream".into());
            payload.insert("stream".into(), stream.clone().into());
            payload.insert("stream_id".into(), type_id.into());
            payload.insert("topic".into(), topic.clone().into());
            format!("#{stream} > {topic}")
        }
        3 => {
            let people = super::group_participants(&db, m.get(11)).await?;
            let ids: Vec<String> = people.iter().map(|(id, _)| id.to_string()).collect();
            let mut group_names: Vec<String> = people.into_iter().map(|(_, name)| name).collect();
            group_names.sort();
            payload.insert("recipient_type".into(), "private".into());
            payload.insert("pm_users".into(), ids.join(",").into());
            group_names.join(", ")
        }
        _ => {
            payload.insert("recipient_type".into(), "private".into());
            sender_name.clone()
        }
    };
    let (content, truncated) = push_content(&m.get::<_, String>(9));
    let subtitle = match trigger {
        "mentioned" => match payload.get("mentioned_user_group_name").and_then(Value::as_str) {
            Some(g) => format!("{sender_name} mentioned @{g}:"),
            None => format!("{sender_name} mentioned you:"),
        },
        t if t.contains("wildcard") => format!("{sender_name} mentioned everyone:"),
        _ if kind == 1 => String::new(),
        _ => format!("{sender_name}:"),
    };
    let mut gcm = payload.clone();
    gcm.insert("event".into(), "message".into());
    gcm.insert("zulip_message_id".into(), message_id.into());
    gcm.insert("content".into(), content.clone().into());
    gcm.insert("content_truncated".into(), truncated.into());
    gcm.insert("sender_full_name".into(), sender_name.clone().into());
    gcm.insert(
        "sender_avatar_url".into(),
        crate::users::gravatar_url(&m.get::<_, String>(1), m.get::<_, i32>(3)).into(),
    );
    let mut custom = payload;
    custom.insert("message_ids".into(), json!([message_id]));
    let apns = json!({
        "alert": {"title": title, "subtitle": subtitle, "body": content},
        "sound": "default",
        "badge": 0,
        "custom": {"zulip": custom},
    });
    let body = notify_body(&base, user_id, gcm, "high", apns, android, apple);
    drop(db);
    let answer = send_to_bouncer(w, "push/notify", Payload::Json(&body)).await?;
    let db = w.app.pool.get().await?;
    let now = db
        .query_opt(
            "UPDATE usermessage SET flags = flags | $3 WHERE user_profile_id = $1 AND message_id = $2 RETURNING flags",
            &[&user_id, &message_id, &ACTIVE_PUSH],
        )
        .await?;
    // Read while the push was on its way: the phone gets the removal.
    if now.is_some_and(|r| r.get::<_, i64>(0) & flags::READ != 0) {
        w.app.jobs.enqueue(
            super::MOBILE_QUEUE,
            json!({"type": "remove", "user_profile_id": user_id, "message_ids": [message_id]}),
        );
    }
    forget_deleted_devices(&db, user_id, &answer).await?;
    Ok(())
}

async fn remove(w: &Workers, user_id: i32, mut ids: Vec<i64>) -> Result<(), Failure> {
    ids.sort_unstable();
    ids.dedup();
    let db = w.app.pool.get().await?;
    let Some((base, _)) = base(w, &db, user_id).await? else { return Ok(()) };
    let (android, apple) = devices(&db, user_id).await?;
    if !android.is_empty() || !apple.is_empty() {
        let newest: Vec<i64> = ids.iter().rev().take(MAX_REMOVE_IDS).rev().copied().collect();
        let list: Vec<String> = newest.iter().map(|i| i.to_string()).collect();
        let mut gcm = base.payload.clone();
        gcm.insert("event".into(), "remove".into());
        gcm.insert("zulip_message_ids".into(), list.join(",").into());
        gcm.insert("zulip_message_id".into(), newest.first().copied().unwrap_or_default().into());
        let mut custom = base.payload.clone();
        custom.insert("event".into(), "remove".into());
        custom.insert("zulip_message_ids".into(), list.join(",").into());
        let apns = json!({"badge": 0, "custom": {"zulip": custom}});
        let body = notify_body(&base, user_id, gcm, "normal", apns, android, apple);
        let answer = send_to_bouncer(w, "push/notify", Payload::Json(&body)).await?;
        forget_deleted_devices(&db, user_id, &answer).await?;
    }
    db.execute(
        "UPDATE usermessage SET flags = flags & ~$3::bigint
         WHERE user_profile_id = $1 AND message_id = ANY($2) AND (flags & $3) <> 0",
        &[&user_id, &ids, &ACTIVE_PUSH],
    )
    .await?;
    Ok(())
}

/// The body of a `push/notify` request (Zulip's
/// `RemoteServerNotificationPayload`).
fn notify_body(
    base: &Base,
    user_id: i32,
    gcm: Map<String, Value>,
    gcm_priority: &str,
    apns: Value,
    android: Vec<String>,
    apple: Vec<String>,
) -> Value {
    json!({
        "user_uuid": base.user_uuid,
        "user_id": user_id,
        "realm_uuid": base.realm_uuid,
        "gcm_payload": gcm,
        "gcm_options": {"priority": gcm_priority},
        "apns_payload": apns,
        "android_devices": android,
        "apple_devices": apple,
    })
}

/// Registers a device with the bouncer (`push/register`), or forgets it
/// there (`push/unregister`), as Zulip's `add_push_device_token` and
/// `remove_push_device_token` do.
async fn register(w: &Workers, user_id: i32, item: &Value, add: bool) -> Result<(), Failure> {
    let token: String = field(item, "token")?;
    let kind: i16 = field(item, "token_kind")?;
    let app_id: Option<String> = field(item, "ios_app_id").unwrap_or(None);
    let db = w.app.pool.get().await?;
    let Some(r) = db
        .query_opt(
            "SELECT u.uuid::text, r.uuid::text FROM userprofile u JOIN realm r ON r.id = u.realm_id WHERE u.id = $1",
            &[&user_id],
        )
        .await?
    else {
        return Ok(());
    };
    drop(db);
    let mut form = vec![
        ("server_uuid", w.cfg.push.org_id.clone()),
        ("user_uuid", r.get::<_, String>(0)),
        ("realm_uuid", r.get::<_, String>(1)),
        ("user_id", user_id.to_string()),
        ("token", token),
        ("token_kind", kind.to_string()),
    ];
    if let (true, Some(id)) = (add, app_id) {
        form.push(("ios_app_id", id));
    }
    let path = if add { "push/register" } else { "push/unregister" };
    send_to_bouncer(w, path, Payload::Form(&form)).await.map(|_| ())
}

/// A bouncer request's body.
enum Payload<'a> {
    Json(&'a Value),
    Form(&'a [(&'static str, String)]),
}

/// POSTs to the bouncer's `/api/v1/remotes/<path>`; returns its answer.
async fn send_to_bouncer(w: &Workers, path: &str, body: Payload<'_>) -> Result<Value, Failure> {
    let p = &w.cfg.push;
    let url = format!("{}/api/v1/remotes/{path}", p.bouncer_url.trim_end_matches('/'));
    let request = w
        .http
        .post(&url)
        .basic_auth(&p.org_id, Some(&p.org_key))
        .header("User-Agent", concat!("ZulipServer/", env!("CARGO_PKG_VERSION"), " (Squall)"))
        .timeout(std::time::Duration::from_secs(15));
    let request = match body {
        Payload::Json(v) => request.json(v),
        Payload::Form(f) => request.form(f),
    };
    let resp = request
        .send()
        .await
        .map_err(|e| Failure::Retry(format!("{} while trying to connect to push notification bouncer", kind_of(&e))))?;
    let status = resp.status();
    let mut resp = resp;
    let text = super::net::read_capped(&mut resp, 1 << 20).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).into_owned();
    if status.is_server_error() {
        return Err(Failure::Retry(format!("Received {} from push notification bouncer", status.as_u16())));
    }
    if !status.is_success() {
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("msg").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or(text);
        return Err(Failure::Permanent(format!("Push notifications bouncer error ({}): {msg}", status.as_u16())));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "Timeout"
    } else if e.is_connect() {
        "ConnectionError"
    } else {
        "RequestError"
    }
}

/// Drops the device tokens the bouncer says are gone.
async fn forget_deleted_devices(
    db: &impl deadpool_postgres::GenericClient,
    user_id: i32,
    answer: &Value,
) -> Result<(), Failure> {
    let gone = |key: &str| -> Vec<String> {
        answer["deleted_devices"][key]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    for (kind, tokens) in [(FCM, gone("android_devices")), (APNS, gone("apple_devices"))] {
        if !tokens.is_empty() {
            db.execute(
                "DELETE FROM push_device_token WHERE user_profile_id = $1 AND kind = $2 AND token = ANY($3)",
                &[&user_id, &kind, &tokens],
            )
            .await?;
        }
    }
    Ok(())
}

/// Zulip's `get_mobile_push_content`, simplified: the rendered message as
/// plain text (tags dropped, images by their alt text, entities decoded,
/// quotes marked with "> "), cut at 200 characters with "…".
pub fn push_content(html: &str) -> (String, bool) {
    let mut out = String::new();
    let mut rest = html;
    let mut quote = 0usize;
    let mut line_start = true;
    let emit = |out: &mut String, text: &str, quote: usize, line_start: &mut bool| {
        // Nothing, or the line breaks between block elements.
        if text.is_empty() || (text.trim().is_empty() && (*line_start || text.contains('\n'))) {
            return;
        }
        if *line_start && quote > 0 {
            out.push_str("> ");
        }
        *line_start = false;
        out.push_str(&decode_entities(text));
    };
    while let Some(lt) = rest.find('<') {
        emit(&mut out, &rest[..lt], quote, &mut line_start);
        let Some(gt) = rest[lt..].find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[lt + 1..lt + gt];
        let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let closing = tag.starts_with('/');
        match (name.as_str(), closing) {
            ("blockquote", false) => quote += 1,
            ("blockquote", true) => quote = quote.saturating_sub(1),
            ("p" | "li" | "pre" | "div", true) | ("br", _) => {
                out.push('\n');
                line_start = true;
            }
            ("img", false) => {
                if let Some(alt) = attribute(tag, "alt") {
                    emit(&mut out, &alt, quote, &mut line_start);
                }
            }
            _ => {}
        }
        rest = &rest[lt + gt + 1..];
    }
    emit(&mut out, rest, quote, &mut line_start);
    let text = out.trim().to_owned();
    if text.chars().count() > MAX_CONTENT {
        let cut: String = text.chars().take(MAX_CONTENT).collect();
        (format!("{cut}\u{2026}"), true)
    } else {
        (text, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_content_is_plain_text_cut_at_200_characters() {
        assert_eq!(
            push_content("<p>Hi <strong>there</strong> &amp; <img alt=\":smile:\" src=\"x\"></p>"),
            ("Hi there & :smile:".to_owned(), false)
        );
        assert_eq!(push_content("<blockquote>\n<p>quoted</p>\n</blockquote>\n<p>reply</p>").0, "> quoted\nreply");
        let long = format!("<p>{}</p>", "é".repeat(250));
        let (text, truncated) = push_content(&long);
        assert!(truncated);
        assert_eq!(text.chars().count(), 201);
        assert!(text.ends_with('\u{2026}'));
    }
}
