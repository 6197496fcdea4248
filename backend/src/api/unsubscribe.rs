//! The one-click unsubscribe link of missed-message emails:
//! `GET` or `POST /accounts/unsubscribe/missed_messages/{key}` (Zulip's
//! path; the email's `List-Unsubscribe` header and footer carry it, and
//! mail clients `POST` it for `List-Unsubscribe-Post: One-Click`). No
//! login: the key is the user's own secret (`userprofile.unsubscribe_key`).
//! It turns `enable_offline_email_notifications` off through `PATCH
//! /settings`'s path, so the user's clients hear of it.

use crate::App;
use serde_json::Map;
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// The path prefix, without the key.
pub const PREFIX: &str = "/accounts/unsubscribe/missed_messages/";

/// Handles the link for `key`.
pub async fn missed_messages(app: &App, key: &str) -> ApiResult {
    let not_found = || ApiError::new(404, "BAD_REQUEST", "Unknown or invalid unsubscribe link");
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let user = {
        let db = app.pool.get().await?;
        let Some(row) = db
            .query_opt("SELECT id, realm_id FROM userprofile WHERE unsubscribe_key = $1 AND is_active", &[&key])
            .await?
        else {
            return Err(not_found());
        };
        let (id, realm) = (row.get::<_, i32>(0) as i64, row.get::<_, i32>(1) as i64);
        crate::users::users_by_ids(&db, realm, &[id]).await?.into_iter().next().ok_or_else(not_found)?
    };
    let mut p = Params::from_pairs(&[("enable_offline_email_notifications", "false")]);
    crate::settings::update(app, &user, &mut p).await?;
    let mut m = Map::new();
    m.insert("msg".into(), "You have been unsubscribed from missed-message emails.".into());
    Ok(m)
}
