//! `POST /users`, `GET /users`, `GET /users/me`, and an account's
//! lifecycle: `DELETE /users/{user_id}`, `DELETE /users/me`,
//! `POST /users/{user_id}/reactivate`, `POST /users/me/api_key/regenerate`.

use crate::actions::users::{do_deactivate_user, do_reactivate_user, do_regenerate_api_key, lock_active_owners};
use crate::users::{self, role, User};
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

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
    // Hashed before a database connection is taken: the hash may wait for
    // the pool.
    let hash = app.hasher.run(move || users::hash_password(&password)).await??;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let (user_id, _key) = users::create_user(&tx, actor.realm_id, &email, &full_name, Some(hash), role::MEMBER).await?;
    users::join_default_streams(&tx, actor.realm_id, &[user_id]).await?;
    let recipients = users::active_user_ids(&tx, actor.realm_id).await?;
    let new_user = users::users_by_ids(&tx, actor.realm_id, &[user_id]).await?;
    tx.commit().await?;
    if let Some(u) = new_user.first() {
        let event = json!({"type": "realm_user", "op": "add", "person": u.api_dict(false)});
        app.tell(actor.realm_id, event, recipients, "realm_user add").await;
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

/// Longest `deactivation_notification_comment` (Zulip's cap).
const MAX_DEACTIVATION_COMMENT: usize = 2000;

/// Zulip's `access_user_by_id(..., for_admin=True)`: the user `user_id` of
/// the actor's realm, if the actor may administer them.
async fn access_user_for_admin(
    db: &impl deadpool_postgres::GenericClient,
    actor: &User,
    user_id: i64,
    allow_deactivated: bool,
    allow_bots: bool,
) -> Result<User, ApiError> {
    let found = users::users_by_ids(db, actor.realm_id, &[user_id]).await?;
    let Some(target) = found.into_iter().next() else { return Err(ApiError::bad_request("No such user")) };
    if target.is_bot && !allow_bots {
        return Err(ApiError::bad_request("No such user"));
    }
    if !target.is_active && !allow_deactivated {
        return Err(ApiError::bad_request("User is deactivated"));
    }
    if !actor.is_realm_admin() {
        return Err(ApiError::bad_request("Insufficient permission"));
    }
    Ok(target)
}

/// Zulip's `CannotDeactivateLastUserError`.
fn cannot_deactivate_last(is_last_owner: bool) -> ApiError {
    let entity = if is_last_owner { "organization owner" } else { "user" };
    ApiError::with_code("CANNOT_DEACTIVATE_LAST_USER", format!("Cannot deactivate the only {entity}."))
        .field("is_last_owner", is_last_owner)
        .field("entity", entity)
}

/// `DELETE /users/{user_id}`: an administrator deactivates a user (an
/// owner only by an owner, never the last one). Squall sends no account
/// emails, so `deactivation_notification_comment` is checked and unused.
pub async fn deactivate(app: &App, actor: &User, user_id: i64, p: &mut Params) -> ApiResult {
    if let Some(comment) = p.str("deactivation_notification_comment") {
        if comment.chars().count() > MAX_DEACTIVATION_COMMENT {
            return Err(ApiError::bad_request(format!(
                "deactivation_notification_comment is too long (limit: {MAX_DEACTIVATION_COMMENT} characters)"
            )));
        }
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let owners = lock_active_owners(&tx, actor.realm_id).await?;
    let target = access_user_for_admin(&tx, actor, user_id, false, false).await?;
    if target.role == role::OWNER && actor.role != role::OWNER {
        return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Must be an organization owner"));
    }
    if target.role == role::OWNER && owners == [target.id] {
        return Err(ApiError::bad_request("Cannot deactivate the only organization owner"));
    }
    let announcement = do_deactivate_user(&tx, &target).await?;
    tx.commit().await?;
    announcement.publish(app).await;
    Ok(Map::new())
}

/// `DELETE /users/me`: a user deactivates their own account (not the
/// realm's last active user, nor its last owner).
pub async fn deactivate_own(app: &App, actor: &User) -> ApiResult {
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let owners = lock_active_owners(&tx, actor.realm_id).await?;
    let active: i64 = tx
        .query_one("SELECT count(*) FROM userprofile WHERE realm_id = $1 AND is_active", &[&(actor.realm_id as i32)])
        .await?
        .get(0);
    if active <= 1 {
        return Err(cannot_deactivate_last(false));
    }
    if actor.role == role::OWNER && owners == [actor.id] {
        return Err(cannot_deactivate_last(true));
    }
    let announcement = do_deactivate_user(&tx, actor).await?;
    tx.commit().await?;
    announcement.publish(app).await;
    Ok(Map::new())
}

/// `POST /users/{user_id}/reactivate`: an administrator reactivates a user
/// (or bot).
pub async fn reactivate(app: &App, actor: &User, user_id: i64) -> ApiResult {
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let target = access_user_for_admin(&tx, actor, user_id, true, true).await?;
    let announcement = do_reactivate_user(&tx, &target).await?;
    tx.commit().await?;
    announcement.publish(app).await;
    Ok(Map::new())
}

/// `POST /users/me/api_key/regenerate`: a new API key for the caller
/// (humans only); the old one stops working at once, on `/events` too.
pub async fn regenerate_api_key(app: &App, actor: &User) -> ApiResult {
    if actor.is_bot {
        return Err(ApiError::bad_request("This endpoint does not accept bot requests."));
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let (key, announcement) = do_regenerate_api_key(&tx, actor).await?;
    tx.commit().await?;
    announcement.publish(app).await;
    let mut m = Map::new();
    m.insert("api_key".into(), key.into());
    Ok(m)
}

/// `PATCH /users/{user_id}`: an administrator changes a user's `full_name`
/// or `role` (owners only by owners; never the last owner's). Each change
/// is told to the realm as a `realm_user` update. Custom profile fields
/// (`profile_data`) do not exist yet.
pub async fn update(app: &App, actor: &User, user_id: i64, p: &mut Params) -> ApiResult {
    let full_name = p.str("full_name").map(|n| n.trim().to_owned());
    if let Some(name) = &full_name {
        if name.is_empty() {
            return Err(ApiError::bad_request("Name too short!"));
        }
        if name.chars().count() > 100 {
            return Err(ApiError::bad_request("Name too long!"));
        }
        if name.chars().any(|c| c.is_control() || matches!(c, '*' | '`' | '\\' | '>' | '"' | '@')) {
            return Err(ApiError::bad_request("Invalid characters in name!"));
        }
    }
    let new_role = match p.int("role")? {
        Some(r) if [role::OWNER, role::ADMIN, role::MODERATOR, role::MEMBER, role::GUEST].contains(&(r as i32)) => {
            Some(r as i32)
        }
        Some(_) => return Err(ApiError::bad_request("Invalid role")),
        None => None,
    };
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let owners = lock_active_owners(&tx, actor.realm_id).await?;
    let target = access_user_for_admin(&tx, actor, user_id, true, true).await?;
    let new_role = new_role.filter(|r| *r != target.role);
    if let Some(r) = new_role {
        if (r == role::OWNER || target.role == role::OWNER) && actor.role != role::OWNER {
            return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Must be an organization owner"));
        }
        if target.role == role::OWNER && owners == [target.id] {
            return Err(ApiError::bad_request(
                "The owner permission cannot be removed from the only organization owner.",
            ));
        }
        tx.execute("UPDATE userprofile SET role = $2 WHERE id = $1", &[&(target.id as i32), &r]).await?;
    }
    let full_name = full_name.filter(|n| *n != target.full_name);
    if let Some(name) = &full_name {
        tx.execute("UPDATE userprofile SET full_name = $2 WHERE id = $1", &[&(target.id as i32), name]).await?;
    }
    let everyone = users::active_user_ids(&tx, actor.realm_id).await?;
    tx.commit().await?;
    let mut events = Vec::new();
    if let Some(name) = full_name {
        events.push(json!({"type": "realm_user", "op": "update", "person": {"user_id": target.id, "full_name": name}}));
    }
    if let Some(r) = new_role {
        events.push(json!({"type": "realm_user", "op": "update", "person": {"user_id": target.id, "role": r}}));
    }
    for event in events {
        app.tell(actor.realm_id, event, everyone.clone(), "realm_user update").await;
    }
    Ok(Map::new())
}
