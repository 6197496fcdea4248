//! Unauthenticated endpoints: `GET /server_settings`, `POST /fetch_api_key`.

use crate::auth::subdomain_for_host;
use crate::users::{check_password, User, USER_COLUMNS};
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::{ApiRequest, Params};
use squall_proto::error::{ApiError, ApiResult};
use squall_proto::{ZULIP_FEATURE_LEVEL, ZULIP_MERGE_BASE, ZULIP_VERSION};

/// The realm's URL as clients should use it.
pub fn realm_url(app: &App, subdomain: &str) -> String {
    let s = &app.settings;
    if subdomain.is_empty() {
        format!("{}://{}", s.scheme, s.external_host)
    } else {
        format!("{}://{}.{}", s.scheme, subdomain, s.external_host)
    }
}

/// `GET /server_settings`.
pub async fn server_settings(app: &App, req: &ApiRequest) -> ApiResult {
    let mut m = Map::new();
    m.insert(
        "authentication_methods".into(),
        json!({"password": true, "dev": false, "email": true, "ldap": false, "remoteuser": false,
               "github": false, "azuread": false, "gitlab": false, "apple": false, "google": false,
               "saml": false, "openid connect": false}),
    );
    m.insert("external_authentication_methods".into(), json!([]));
    m.insert("zulip_feature_level".into(), ZULIP_FEATURE_LEVEL.into());
    m.insert("zulip_version".into(), ZULIP_VERSION.into());
    m.insert("zulip_merge_base".into(), ZULIP_MERGE_BASE.into());
    m.insert("push_notifications_enabled".into(), false.into());
    m.insert("is_incompatible".into(), false.into());
    let sub = subdomain_for_host(req.header("host"), &app.settings.external_host);
    let client = app.pool.get().await?;
    let realm = client
        .query_opt("SELECT name, description FROM realm WHERE string_id = $1 AND NOT deactivated", &[&sub])
        .await?;
    if let Some(r) = realm {
        let url = realm_url(app, &sub);
        m.insert("email_auth_enabled".into(), true.into());
        m.insert("require_email_format_usernames".into(), true.into());
        m.insert("realm_url".into(), url.clone().into());
        m.insert("realm_uri".into(), url.into());
        m.insert("realm_name".into(), Value::String(r.get(0)));
        m.insert("realm_icon".into(), "https://secure.gravatar.com/avatar/?d=identicon".into());
        m.insert("realm_description".into(), crate::markdown::render_plain(r.get::<_, &str>(1)).into());
        m.insert("realm_web_public_access_enabled".into(), false.into());
    }
    Ok(m)
}

/// `POST /fetch_api_key`: email + password → API key.
pub async fn fetch_api_key(app: &App, req: &ApiRequest, p: &mut Params) -> ApiResult {
    let username = p.req_str("username")?;
    let password = p.req_str("password")?;
    let sub = subdomain_for_host(req.header("host"), &app.settings.external_host);
    let client = app.pool.get().await?;
    let sql = format!(
        "SELECT {USER_COLUMNS}, u.password, u.api_key FROM userprofile u JOIN realm r ON r.id = u.realm_id
         WHERE r.string_id = $1 AND lower(u.delivery_email) = lower($2)"
    );
    let row = client.query_opt(&sql, &[&sub, &username.trim()]).await?;
    let failed = || ApiError {
        status: 401,
        ..ApiError::with_code("AUTHENTICATION_FAILED", "Your username or password is incorrect")
    };
    // An unknown user's password is hashed too (see check_password): the
    // answer takes as long as for a known user with a wrong password.
    let hash: Option<String> = row.as_ref().and_then(|r| r.get(16));
    let ok = app.hasher.run(move || check_password(&password, hash.as_deref())).await?;
    let (Some(row), true) = (row, ok) else { return Err(failed()) };
    let user = User::from_row(&row);
    let api_key: String = row.get(17);
    if user.realm_deactivated {
        return Err(ApiError {
            status: 401,
            ..ApiError::with_code("REALM_DEACTIVATED", "This organization has been deactivated")
        });
    }
    if !user.is_active {
        return Err(ApiError { status: 401, ..ApiError::with_code("USER_DEACTIVATED", "Account is deactivated") });
    }
    let mut m = Map::new();
    m.insert("api_key".into(), api_key.into());
    m.insert("email".into(), user.email.into());
    m.insert("user_id".into(), user.id.into());
    Ok(m)
}

/// A time limit parameter: seconds (at least 1) or `"unlimited"` (none).
fn time_limit(p: &mut Params, name: &str) -> Result<Option<Option<i32>>, ApiError> {
    let Some(raw) = p.str(name) else { return Ok(None) };
    if raw == "unlimited" {
        return Ok(Some(None));
    }
    match raw.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(Some(Some(n))),
        _ => Err(ApiError::bad_request(format!("Invalid {name}"))),
    }
}

/// `PATCH /realm`: an administrator changes the organization's `name`,
/// `description`, `waiting_period_threshold` (days before a member is a
/// full member), `wildcard_mention_policy` or editing policy
/// (`allow_message_editing` and the content-edit, delete and topic-move
/// time limits). Answers with what changed; each change is told to
/// everyone as a `realm` `update` event, the editing policy as one
/// `update_dict`.
pub async fn update_realm(app: &App, actor: &crate::users::User, p: &mut Params) -> ApiResult {
    let name = p.str("name").map(|n| n.trim().to_owned());
    if let Some(n) = &name {
        if n.is_empty() {
            return Err(ApiError::bad_request("Organization name can't be empty."));
        }
        if n.chars().count() > 40 {
            return Err(ApiError::bad_request("name is too long (limit: 40 characters)"));
        }
    }
    let description = p.str("description");
    if description.as_ref().is_some_and(|d| d.chars().count() > 1000) {
        return Err(ApiError::bad_request("description is too long (limit: 1000 characters)"));
    }
    let waiting = match p.int("waiting_period_threshold")? {
        Some(n) if (0..=i32::MAX as i64).contains(&n) => Some(n as i32),
        Some(_) => return Err(ApiError::bad_request("Invalid waiting_period_threshold")),
        None => None,
    };
    let wildcard = match p.int("wildcard_mention_policy")? {
        Some(n) if [1, 2, 3, 5, 6, 7].contains(&n) => Some(n as i16),
        Some(_) => return Err(ApiError::bad_request("Invalid wildcard_mention_policy")),
        None => None,
    };
    let allow_editing = p.bool("allow_message_editing")?;
    let embed_preview = p.bool("inline_url_embed_preview")?;
    let edit_limit = time_limit(p, "message_content_edit_limit_seconds")?;
    let delete_limit = time_limit(p, "message_content_delete_limit_seconds")?;
    let move_limit = time_limit(p, "move_messages_within_stream_limit_seconds")?;
    if !actor.is_realm_admin() {
        return Err(ApiError::with_code("UNAUTHORIZED_PRINCIPAL", "Must be an organization administrator"));
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let rid = actor.realm_id as i32;
    let row = tx
        .query_one(
            "SELECT name, description, waiting_period_threshold, wildcard_mention_policy, allow_message_editing,
                    message_content_edit_limit_seconds, message_content_delete_limit_seconds,
                    move_messages_within_stream_limit_seconds, inline_url_embed_preview
             FROM realm WHERE id = $1 FOR UPDATE",
            &[&rid],
        )
        .await?;
    // Only what differs is a change; one statement stores them all.
    let name = name.filter(|n| *n != row.get::<_, String>(0));
    let description = description.filter(|d| *d != row.get::<_, String>(1));
    let waiting = waiting.filter(|w| *w != row.get::<_, i32>(2));
    let wildcard = wildcard.filter(|w| *w != row.get::<_, i16>(3));
    let allow_editing = allow_editing.filter(|a| *a != row.get::<_, bool>(4));
    let embed_preview = embed_preview.filter(|a| *a != row.get::<_, bool>(8));
    // A limit is (changed, new value or None for none).
    let limit_change = |new: Option<Option<i32>>, i: usize| new.filter(|n| *n != row.get::<_, Option<i32>>(i));
    let (edit_limit, delete_limit, move_limit) =
        (limit_change(edit_limit, 5), limit_change(delete_limit, 6), limit_change(move_limit, 7));
    tx.execute(
        "UPDATE realm SET name = coalesce($2, name), description = coalesce($3, description),
                waiting_period_threshold = coalesce($4, waiting_period_threshold),
                wildcard_mention_policy = coalesce($5, wildcard_mention_policy),
                allow_message_editing = coalesce($6, allow_message_editing),
                message_content_edit_limit_seconds = CASE WHEN $7 THEN $8 ELSE message_content_edit_limit_seconds END,
                message_content_delete_limit_seconds = CASE WHEN $9 THEN $10 ELSE message_content_delete_limit_seconds END,
                move_messages_within_stream_limit_seconds =
                    CASE WHEN $11 THEN $12 ELSE move_messages_within_stream_limit_seconds END,
                inline_url_embed_preview = coalesce($13, inline_url_embed_preview)
         WHERE id = $1",
        &[
            &rid,
            &name,
            &description,
            &waiting,
            &wildcard,
            &allow_editing,
            &edit_limit.is_some(),
            &edit_limit.flatten(),
            &delete_limit.is_some(),
            &delete_limit.flatten(),
            &move_limit.is_some(),
            &move_limit.flatten(),
            &embed_preview,
        ],
    )
    .await?;
    let mut changed = Map::new();
    let values = [
        ("name", name.map(Value::from)),
        ("description", description.map(Value::from)),
        ("waiting_period_threshold", waiting.map(Value::from)),
        ("wildcard_mention_policy", wildcard.map(Value::from)),
        ("inline_url_embed_preview", embed_preview.map(Value::from)),
    ];
    for (property, value) in values {
        if let Some(v) = value {
            changed.insert(property.into(), v);
        }
    }
    // The editing policy goes out as one `update_dict`, as Zulip's does.
    let mut editing = Map::new();
    let limits = [
        ("message_content_edit_limit_seconds", edit_limit),
        ("message_content_delete_limit_seconds", delete_limit),
        ("move_messages_within_stream_limit_seconds", move_limit),
    ];
    if let Some(a) = allow_editing {
        editing.insert("allow_message_editing".into(), a.into());
    }
    for (property, value) in limits {
        if let Some(v) = value {
            editing.insert(property.into(), v.map_or(Value::Null, Value::from));
        }
    }
    let everyone = crate::users::active_user_ids(&tx, actor.realm_id).await?;
    tx.commit().await?;
    for (property, value) in &changed {
        let event = serde_json::json!({"type": "realm", "op": "update", "property": property, "value": value});
        app.tell(actor.realm_id, event, everyone.clone(), "realm update").await;
    }
    if !editing.is_empty() {
        let event = serde_json::json!({"type": "realm", "op": "update_dict", "property": "default", "data": editing});
        app.tell(actor.realm_id, event, everyone.clone(), "realm update").await;
    }
    changed.extend(editing);
    Ok(changed)
}
