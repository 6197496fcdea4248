//! Bots: `POST /bots` (Zulip's `add_bot_backend`; not in the OpenAPI
//! description, but what Zulip's web app and `zulip` clients use) and the
//! `realm_bots` register section. Outgoing-webhook bots (type 3) get a
//! Service row: the URL the `outgoing_webhooks` worker calls when the bot
//! is mentioned or sent a direct message.

use crate::users::{self, role, User};
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// Zulip's bot types.
pub mod bot_type {
    /// A generic bot (API access only).
    pub const DEFAULT: i32 = 1;
    /// Incoming webhooks.
    pub const INCOMING_WEBHOOK: i32 = 2;
    /// Called over HTTP when mentioned or sent a direct message.
    pub const OUTGOING_WEBHOOK: i32 = 3;
    /// Runs inside the server (Squall has none).
    pub const EMBEDDED: i32 = 4;
}

/// Service interfaces (Zulip's `Service.interface`).
pub mod interface {
    /// Zulip's JSON payload.
    pub const GENERIC: i16 = 1;
    /// Slack's form-encoded outgoing-webhook payload.
    pub const SLACK: i16 = 2;
}

fn valid_short_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 60 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The domain of bot emails: the server's host name.
fn bot_domain(app: &App) -> String {
    let host = app.settings.external_host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&app.settings.external_host);
    if host.parse::<std::net::IpAddr>().is_ok() || !host.contains('.') {
        // Addresses need a domain name; a server reached by IP address
        // names its bots under the reserved `.invalid` domain.
        "bots.invalid".into()
    } else {
        host.to_owned()
    }
}

/// `POST /bots`.
pub async fn create(app: &App, actor: &User, p: &mut Params) -> ApiResult {
    let full_name = p.req_str("full_name")?.trim().to_owned();
    let short_name = p.req_str("short_name")?.trim().to_lowercase();
    let kind = p.int("bot_type")?.unwrap_or(bot_type::DEFAULT as i64);
    let payload_url = match p.json("payload_url")? {
        None => String::new(),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::bad_request("payload_url is not a string")),
    };
    let service_name = p.str("service_name").unwrap_or_else(|| short_name.clone());
    let iface = p.int("interface_type")?.unwrap_or(interface::GENERIC as i64);
    if actor.is_guest() {
        return Err(ApiError::bad_request("Not allowed for guest users"));
    }
    if actor.is_bot {
        return Err(ApiError::bad_request("This endpoint does not accept bot requests."));
    }
    if full_name.is_empty() {
        return Err(ApiError::bad_request("Name too short!"));
    }
    if full_name.chars().count() > 100 {
        return Err(ApiError::bad_request("Name too long!"));
    }
    let kind = i32::try_from(kind).map_err(|_| ApiError::bad_request("Invalid bot type"))?;
    match kind {
        bot_type::DEFAULT | bot_type::INCOMING_WEBHOOK | bot_type::OUTGOING_WEBHOOK => {}
        bot_type::EMBEDDED => return Err(ApiError::bad_request("Embedded bots are not enabled.")),
        _ => return Err(ApiError::bad_request("Invalid bot type")),
    }
    if kind == bot_type::OUTGOING_WEBHOOK {
        if ![interface::GENERIC as i64, interface::SLACK as i64].contains(&iface) {
            return Err(ApiError::bad_request("Invalid interface type"));
        }
        let ok = payload_url.starts_with("http://") || payload_url.starts_with("https://");
        if !ok || payload_url.len() > 2048 || payload_url.chars().any(char::is_whitespace) {
            return Err(ApiError::bad_request("payload_url is not a URL"));
        }
    }
    let email = format!("{short_name}-bot@{}", bot_domain(app));
    if !valid_short_name(&short_name) || !users::valid_email(&email) {
        return Err(ApiError::bad_request("Bad name or username"));
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let taken = tx
        .query_opt(
            "SELECT 1 FROM userprofile WHERE realm_id = $1 AND lower(delivery_email) = lower($2)",
            &[&(actor.realm_id as i32), &email],
        )
        .await?;
    if taken.is_some() {
        return Err(ApiError::bad_request("Username already in use"));
    }
    let (bot_id, api_key) = users::create_user(&tx, actor.realm_id, &email, &full_name, None, role::MEMBER).await?;
    tx.execute(
        "UPDATE userprofile SET is_bot = true, bot_type = $2, bot_owner_id = $3 WHERE id = $1",
        &[&(bot_id as i32), &kind, &(actor.id as i32)],
    )
    .await?;
    if kind == bot_type::OUTGOING_WEBHOOK {
        tx.execute(
            "INSERT INTO service (user_profile_id, name, base_url, token, interface) VALUES ($1, $2, $3, $4, $5)",
            &[&(bot_id as i32), &service_name, &payload_url, &users::new_api_key(), &(iface as i16)],
        )
        .await?;
    }
    let everyone = users::active_user_ids(&tx, actor.realm_id).await?;
    let person = users::users_by_ids(&tx, actor.realm_id, &[bot_id]).await?;
    let bot = bots_where(&tx, actor.realm_id, "u.id = $2", bot_id).await?;
    let admins: Vec<i64> = tx
        .query(
            "SELECT id FROM userprofile WHERE realm_id = $1 AND is_active AND NOT is_bot AND role <= 200",
            &[&(actor.realm_id as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .chain(std::iter::once(actor.id))
        .collect();
    tx.commit().await?;
    if let Some(u) = person.first() {
        let mut person = u.api_dict(false);
        if let Some(o) = person.as_object_mut() {
            o.insert("bot_owner_id".into(), actor.id.into());
        }
        app.tell(
            actor.realm_id,
            json!({"type": "realm_user", "op": "add", "person": person}),
            everyone,
            "realm_user add",
        )
        .await;
    }
    if let Some(b) = bot.into_iter().next() {
        let mut admins = admins;
        admins.sort_unstable();
        admins.dedup();
        app.tell(actor.realm_id, json!({"type": "realm_bot", "op": "add", "bot": b}), admins, "realm_bot add").await;
    }
    let mut m = Map::new();
    m.insert("user_id".into(), bot_id.into());
    m.insert("api_key".into(), api_key.into());
    m.insert("avatar_url".into(), users::gravatar_url(&email, 1).into());
    m.insert("default_sending_stream".into(), Value::Null);
    m.insert("default_events_register_stream".into(), Value::Null);
    m.insert("default_all_public_streams".into(), false.into());
    Ok(m)
}

/// Bots of `realm_id` matching `condition` (on `u`, with `$2` = `arg`), as
/// `realm_bots` entries.
async fn bots_where(db: &impl GenericClient, realm_id: i64, condition: &str, arg: i64) -> Result<Vec<Value>, ApiError> {
    let sql = format!(
        "SELECT u.id, u.full_name, u.api_key, u.email, u.bot_type, u.is_active, u.avatar_version, u.bot_owner_id,
                COALESCE((SELECT json_agg(json_build_object('base_url', s.base_url, 'interface', s.interface,
                                                            'token', s.token) ORDER BY s.id)
                          FROM service s WHERE s.user_profile_id = u.id), '[]'::json)
         FROM userprofile u WHERE u.realm_id = $1 AND u.is_bot AND {condition} ORDER BY u.id"
    );
    let rows = db.query(sql.as_str(), &[&(realm_id as i32), &(arg as i32)]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let email: String = r.get(3);
            json!({
                "user_id": r.get::<_, i32>(0),
                "full_name": r.get::<_, String>(1),
                "api_key": r.get::<_, String>(2),
                "email": email,
                "bot_type": r.get::<_, Option<i32>>(4),
                "is_active": r.get::<_, bool>(5),
                "avatar_url": users::gravatar_url(&email, r.get(6)),
                "default_sending_stream": Value::Null,
                "default_events_register_stream": Value::Null,
                "default_all_public_streams": false,
                "owner_id": r.get::<_, Option<i32>>(7),
                "services": r.get::<_, Value>(8),
            })
        })
        .collect())
}

/// `realm_bots`: the bots `user` administers (an administrator: all of the
/// realm's; anyone else: those they own).
pub async fn realm_bots(db: &impl GenericClient, user: &User) -> Result<Value, ApiError> {
    let bots = if user.is_realm_admin() {
        bots_where(db, user.realm_id, "$2::int IS NOT NULL", 0).await?
    } else {
        bots_where(db, user.realm_id, "u.bot_owner_id = $2", user.id).await?
    };
    Ok(Value::Array(bots))
}
