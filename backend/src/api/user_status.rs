//! User status: `POST /users/me/status`, the register `user_status`
//! section and `user_status` events to the realm. `away` is Zulip's legacy
//! spelling of `presence_enabled = false` and is stored as that setting.

use crate::users::{self, User};
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// Longest status text (Zulip's `UserStatus.MAX_STATUS_TEXT_LENGTH`).
const MAX_STATUS_TEXT_LENGTH: usize = 60;

/// The register `user_status`: for each user who set something, what they set.
pub async fn user_status(db: &impl GenericClient, realm_id: i64) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for r in db
        .query(
            "SELECT u.id, s.status_text, s.emoji_name, s.emoji_code, s.reaction_type,
                    coalesce((u.settings ->> 'presence_enabled')::boolean, true)
             FROM userprofile u LEFT JOIN userstatus s ON s.user_profile_id = u.id
             WHERE u.realm_id = $1 AND u.is_active
               AND (s.user_profile_id IS NOT NULL OR (u.settings ->> 'presence_enabled')::boolean = false)",
            &[&(realm_id as i32)],
        )
        .await?
    {
        let mut status = Map::new();
        if !r.get::<_, bool>(5) {
            status.insert("away".into(), true.into());
        }
        let text: Option<String> = r.get(1);
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            status.insert("status_text".into(), t.into());
        }
        let name: Option<String> = r.get(2);
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            status.insert("emoji_name".into(), n.into());
            status.insert("emoji_code".into(), r.get::<_, String>(3).into());
            status.insert("reaction_type".into(), r.get::<_, String>(4).into());
        }
        if !status.is_empty() {
            out.insert(r.get::<_, i32>(0).to_string(), Value::Object(status));
        }
    }
    Ok(out)
}

/// `POST /users/me/status`: `away`, `status_text`, `emoji_name` (empty
/// clears the emoji), `emoji_code`, `reaction_type`.
pub async fn update(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let away = p.bool("away")?;
    let text = p.str("status_text").map(|t| t.trim().to_owned());
    if let Some(t) = &text {
        if t.chars().count() > MAX_STATUS_TEXT_LENGTH {
            return Err(ApiError::bad_request(format!(
                "status_text is too long (limit: {MAX_STATUS_TEXT_LENGTH} characters)"
            )));
        }
    }
    let emoji = match p.str("emoji_name").as_deref() {
        None => None,
        // An empty name clears the emoji.
        Some("") => {
            let _ = (p.str("emoji_code"), p.str("reaction_type"));
            Some((String::new(), String::new(), "unicode_emoji".to_owned()))
        }
        Some(_) => {
            let e = super::reactions::requested_emoji(p, true)?;
            Some((e.name, e.code, e.kind))
        }
    };
    if away.is_none() && text.is_none() && emoji.is_none() {
        return Err(ApiError::bad_request("Client did not pass any new values."));
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let uid = user.id as i32;
    tx.execute("INSERT INTO userstatus (user_profile_id) VALUES ($1) ON CONFLICT DO NOTHING", &[&uid]).await?;
    if let Some(t) = &text {
        tx.execute("UPDATE userstatus SET status_text = $2, updated = now() WHERE user_profile_id = $1", &[&uid, t])
            .await?;
    }
    if let Some((name, code, kind)) = &emoji {
        tx.execute(
            "UPDATE userstatus SET emoji_name = $2, emoji_code = $3, reaction_type = $4, updated = now()
             WHERE user_profile_id = $1",
            &[&uid, name, code, kind],
        )
        .await?;
    }
    if let Some(a) = away {
        let patch = json!({"presence_enabled": !a});
        tx.execute("UPDATE userprofile SET settings = settings || $2 WHERE id = $1", &[&uid, &patch]).await?;
    }
    let everyone = users::active_user_ids(&tx, user.realm_id).await?;
    tx.commit().await?;
    let mut event = json!({"type": "user_status", "user_id": user.id});
    if let Some(a) = away {
        event["away"] = a.into();
    }
    if let Some(t) = text {
        event["status_text"] = t.into();
    }
    if let Some((name, code, kind)) = emoji {
        event["emoji_name"] = name.into();
        event["emoji_code"] = code.into();
        event["reaction_type"] = kind.into();
    }
    app.tell(user.realm_id, event, everyone, "user_status").await;
    Ok(Map::new())
}

/// `GET /users/{user_id}/status`: what one user of the realm has set.
pub async fn get(app: &App, actor: &User, user_id: i64) -> ApiResult {
    let client = app.pool.get().await?;
    if crate::users::users_by_ids(&client, actor.realm_id, &[user_id]).await?.is_empty() {
        return Err(ApiError::bad_request("No such user"));
    }
    let all = user_status(&client, actor.realm_id).await?;
    let mut m = Map::new();
    m.insert("status".into(), all.get(&user_id.to_string()).cloned().unwrap_or_else(|| json!({})));
    Ok(m)
}
