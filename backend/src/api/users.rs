//! `POST /users`, `GET /users`, `GET /users/me`.

use crate::users::{self, role, User};
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::envelope::{Envelope, Notice};
use squall_proto::error::{ApiError, ApiResult};
use std::sync::Arc;

/// `POST /users`: an administrator creates a user.
pub async fn create(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let email = p.req_str("email")?.trim().to_owned();
    let password = p.req_str("password")?;
    let full_name = p.req_str("full_name")?.trim().to_owned();
    if !actor.is_realm_admin() {
        return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Must be an organization administrator"));
    }
    if !users::valid_email(&email) {
        return Err(ApiError::bad_request("Bad name or username"));
    }
    if full_name.is_empty() {
        return Err(ApiError::bad_request("Name too short!"));
    }
    if full_name.chars().count() > 100 {
        return Err(ApiError::bad_request("Name too long!"));
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let (user_id, _key) =
        users::create_user(&tx, actor.realm_id, &email, &full_name, Some(&password), role::MEMBER).await?;
    users::join_default_streams(&tx, actor.realm_id, &[user_id]).await?;
    let recipients = users::active_user_ids(&tx, actor.realm_id).await?;
    let new_user = users::users_by_ids(&tx, actor.realm_id, &[user_id]).await?;
    tx.commit().await?;
    if let Some(u) = new_user.first() {
        let event = json!({"type": "realm_user", "op": "add", "person": u.api_dict(false)});
        let env = Envelope {
            realm_id: actor.realm_id,
            notice: Notice::Generic { event: Arc::new(event), users: recipients },
        };
        if let Err(e) = app.bus.publish(env).await {
            tracing::warn!(error = %e, "realm_user add event not delivered");
        }
    }
    let mut m = Map::new();
    m.insert("user_id".into(), user_id.into());
    Ok(m)
}

/// `GET /users`.
pub async fn list(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let client_gravatar = p.bool("client_gravatar")?.unwrap_or(true);
    let _ = p.bool("include_custom_profile_fields")?;
    let client = app.pool.get().await?;
    let all = users::realm_users(&client, actor.realm_id).await?;
    let members: Vec<Value> = all.iter().map(|u| u.api_dict(client_gravatar)).collect();
    let mut m = Map::new();
    m.insert("members".into(), members.into());
    Ok(m)
}

/// `GET /users/me`.
pub async fn me(app: &App, actor: &User) -> ApiResult {
    let client = app.pool.get().await?;
    let max: Option<i64> = client
        .query_one("SELECT max(message_id) FROM usermessage WHERE user_profile_id = $1", &[&(actor.id as i32)])
        .await?
        .get(0);
    let mut m = match actor.api_dict(false) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.remove("bot_type");
    m.remove("bot_owner_id");
    m.insert("max_message_id".into(), max.unwrap_or(-1).into());
    Ok(m)
}
