//! `POST /users/me/presence`, `GET /realm/presence`, `GET /users/{id}/presence`.

use crate::presence::{self, USER_LIMIT_FOR_SENDING_PRESENCE_UPDATE_EVENTS};
use crate::users::{self, User};
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::envelope::{Envelope, Notice};
use squall_proto::error::{ApiError, ApiResult};
use std::sync::Arc;

fn now_secs() -> (i64, f64) {
    let d = crate::unix_time();
    (d.as_secs() as i64, d.as_secs_f64())
}

/// `POST /users/me/presence`.
pub async fn update(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let status = p.req_str("status")?;
    let active = match status.as_str() {
        "active" => true,
        "idle" => false,
        other => return Err(ApiError::bad_request(format!("Invalid status: {other}"))),
    };
    let ping_only = p.bool("ping_only")?.unwrap_or(false);
    let _new_user_input = p.bool("new_user_input")?;
    let slim = p.bool("slim_presence")?.unwrap_or(false);
    let last_update_id = p.int("last_update_id")?;
    let history_days = p.int("history_limit_days")?.unwrap_or(presence::DEFAULT_HISTORY_DAYS);
    let (now, now_f) = now_secs();
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let (update, _) = presence::record(&tx, user, active, now).await?;
    tx.commit().await?;
    if update.notify {
        let recipients = users::active_user_ids(&client, user.realm_id).await?;
        if recipients.len() <= USER_LIMIT_FOR_SENDING_PRESENCE_UPDATE_EVENTS {
            let event = json!({"type": "presence", "user_id": user.id, "email": user.email,
                               "server_timestamp": now_f, "presence": presence::event_dict(update.presence)});
            let env = Envelope {
                realm_id: user.realm_id,
                notice: Notice::Generic { event: Arc::new(event), users: recipients },
            };
            if let Err(e) = app.bus.publish(env).await {
                tracing::warn!(error = %e, "presence event not delivered");
            }
        }
    }
    let mut m = Map::new();
    if !ping_only {
        // A last_update_id forces the modern format.
        let modern = slim || last_update_id.is_some();
        let (presences, last) =
            presence::realm_presences(&client, user.realm_id, modern, last_update_id, history_days, now).await?;
        m.insert("presences".into(), Value::Object(presences));
        m.insert("server_timestamp".into(), now_f.into());
        m.insert("presence_last_update_id".into(), last.into());
    }
    Ok(m)
}

/// `GET /realm/presence` (legacy format, keyed by email).
pub async fn realm(app: &App, user: &User) -> ApiResult {
    let (now, now_f) = now_secs();
    let client = app.pool.get().await?;
    let (presences, _) =
        presence::realm_presences(&client, user.realm_id, false, None, presence::DEFAULT_HISTORY_DAYS, now).await?;
    let mut m = Map::new();
    m.insert("presences".into(), Value::Object(presences));
    m.insert("server_timestamp".into(), now_f.into());
    Ok(m)
}

/// `GET /users/{user_id_or_email}/presence`.
pub async fn for_user(app: &App, user: &User, key: &str) -> ApiResult {
    let client = app.pool.get().await?;
    let found = match key.parse::<i64>() {
        Ok(id) => users::users_by_ids(&client, user.realm_id, &[id]).await?,
        Err(_) => users::users_by_emails(&client, user.realm_id, &[key.to_owned()]).await?,
    };
    let Some(target) = found.into_iter().find(|u| u.is_active) else {
        return Err(ApiError::bad_request("No such user"));
    };
    if target.is_bot {
        return Err(ApiError::bad_request("Presence is not supported for bot users."));
    }
    let Some(stored) = presence::user_presence(&client, target.id).await? else {
        return Err(ApiError::bad_request(format!("No presence data for {key}")));
    };
    let mut m = Map::new();
    m.insert("presence".into(), presence::single_user(stored, now_secs().0));
    Ok(m)
}
