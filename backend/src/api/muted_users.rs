//! Muted users: `POST` and `DELETE /users/me/muted_users/{id}`, the register
//! `muted_users` section and `muted_users` events. A muted user's new
//! messages are stored read for whoever muted them and notify nobody who
//! did (`send/personal`).

use crate::users::{self, User};
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::error::{ApiError, ApiResult};

/// The register `muted_users` list: `{id, timestamp}`, oldest first.
pub async fn muted_users(db: &impl GenericClient, user_id: i64) -> Result<Vec<Value>, ApiError> {
    Ok(db
        .query(
            "SELECT muted_user_id, extract(epoch from date_muted)::bigint FROM muteduser
             WHERE user_profile_id = $1 ORDER BY date_muted, muted_user_id",
            &[&(user_id as i32)],
        )
        .await?
        .iter()
        .map(|r| json!({"id": r.get::<_, i32>(0), "timestamp": r.get::<_, i64>(1)}))
        .collect())
}

/// `POST /users/me/muted_users/{id}` (`mute`) and `DELETE` (unmute).
pub async fn change(app: &App, user: &User, target: i64, mute: bool) -> ApiResult {
    if target == user.id {
        return Err(ApiError::bad_request(if mute { "Cannot mute self" } else { "User is not muted" }));
    }
    let mut client = app.pool.get().await?;
    if users::users_by_ids(&client, user.realm_id, &[target]).await?.is_empty() {
        return Err(ApiError::bad_request("No such user"));
    }
    let tx = client.transaction().await?;
    let changed = if mute {
        tx.execute(
            "INSERT INTO muteduser (user_profile_id, muted_user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&(user.id as i32), &(target as i32)],
        )
        .await?
    } else {
        tx.execute(
            "DELETE FROM muteduser WHERE user_profile_id = $1 AND muted_user_id = $2",
            &[&(user.id as i32), &(target as i32)],
        )
        .await?
    };
    if changed == 0 {
        return Err(ApiError::bad_request(if mute { "User already muted" } else { "User is not muted" }));
    }
    let list = muted_users(&tx, user.id).await?;
    tx.commit().await?;
    let event = json!({"type": "muted_users", "muted_users": list});
    app.tell(user.realm_id, event, vec![user.id], "muted_users").await;
    Ok(Map::new())
}
