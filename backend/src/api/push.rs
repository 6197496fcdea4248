//! Mobile device registration: `POST` / `DELETE /users/me/apns_device_token`
//! and `/users/me/android_gcm_reg_id` (Zulip's `add_push_device_token` and
//! `remove_push_device_token`). The push worker sends to the devices
//! registered here, through the push bouncer.

use crate::users::User;
use crate::workers::push::{APNS, FCM};
use crate::App;
use serde_json::{json, Map};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// Which kind of device an endpoint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Apple (APNs).
    Apple,
    /// Android (FCM).
    Android,
}

impl Kind {
    fn code(self) -> i16 {
        match self {
            Kind::Apple => APNS,
            Kind::Android => FCM,
        }
    }
}

fn human_only(user: &User) -> Result<(), ApiError> {
    if user.is_bot {
        return Err(ApiError::bad_request("This endpoint does not accept bot requests."));
    }
    Ok(())
}

/// The `token` parameter, checked as Zulip does.
fn token(p: &mut Params, kind: Kind) -> Result<String, ApiError> {
    let token = p.req_str("token")?;
    if token.is_empty() || token.len() > 4096 {
        return Err(ApiError::bad_request("Empty or invalid length token"));
    }
    if kind == Kind::Apple {
        let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
        let b64 = token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !hex && !b64 {
            return Err(ApiError::bad_request("Invalid APNS token"));
        }
    }
    Ok(token)
}

/// `POST`: registers a device (again: a known token is refreshed).
pub async fn add(app: &App, user: &User, kind: Kind, p: &mut Params) -> ApiResult {
    human_only(user)?;
    let token = token(p, kind)?;
    let app_id = match kind {
        Kind::Apple => {
            let id = p.req_str("appid")?;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
                return Err(ApiError::bad_request("Invalid app ID"));
            }
            Some(id)
        }
        Kind::Android => None,
    };
    let db = app.pool.get().await?;
    db.execute(
        "INSERT INTO push_device_token (user_profile_id, kind, token, ios_app_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_profile_id, kind, token) DO UPDATE SET last_updated = now(), ios_app_id = $4",
        &[&(user.id as i32), &kind.code(), &token, &app_id],
    )
    .await?;
    // The push bouncer delivers only to devices registered with it (the
    // push worker registers it, as Zulip's queue item does).
    app.jobs.enqueue(
        crate::workers::MOBILE_QUEUE,
        json!({"type": "register_push_device_to_bouncer", "user_profile_id": user.id, "token": token,
               "token_kind": kind.code(), "ios_app_id": app_id}),
    );
    Ok(Map::new())
}

/// `DELETE`: forgets a device.
pub async fn remove(app: &App, user: &User, kind: Kind, p: &mut Params) -> ApiResult {
    human_only(user)?;
    let token = token(p, kind)?;
    let db = app.pool.get().await?;
    let n = db
        .execute(
            "DELETE FROM push_device_token WHERE user_profile_id = $1 AND kind = $2 AND token = $3",
            &[&(user.id as i32), &kind.code(), &token],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::bad_request("Token does not exist"));
    }
    app.jobs.enqueue(
        crate::workers::MOBILE_QUEUE,
        json!({"type": "unregister_push_device_from_bouncer", "user_profile_id": user.id, "token": token,
               "token_kind": kind.code()}),
    );
    Ok(Map::new())
}
