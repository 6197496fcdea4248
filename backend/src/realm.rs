//! Realms (organizations): creation with their owner and defaults.

use crate::streams;
use crate::users::{self, role};
use deadpool_postgres::Pool;
use squall_proto::error::ApiError;

/// What `squall admin create-realm` reports.
#[derive(Debug, Clone)]
pub struct CreatedRealm {
    /// Realm id.
    pub realm_id: i64,
    /// Owner's user id.
    pub owner_id: i64,
    /// Owner's API key.
    pub api_key: String,
}

/// Validates a subdomain: empty (the root realm) or 1–40 of `[a-z0-9-]`,
/// not starting or ending with `-`.
pub fn check_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 40 {
        return Err("Subdomain too long (limit: 40 characters)".into());
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || s.starts_with('-')
        || s.ends_with('-')
    {
        return Err("Subdomain can only have lowercase letters, numbers, and '-'s.".into());
    }
    Ok(())
}

/// Creates a realm, its system groups, its owner, and a default `general`
/// stream the owner is subscribed to.
pub async fn create_realm(
    pool: &Pool,
    subdomain: &str,
    name: &str,
    owner_email: &str,
    owner_name: &str,
    owner_password: &str,
) -> Result<CreatedRealm, ApiError> {
    check_subdomain(subdomain).map_err(ApiError::bad_request)?;
    if !users::valid_email(owner_email) {
        return Err(ApiError::bad_request(format!("Invalid email '{owner_email}'")));
    }
    let password = owner_password.to_owned();
    let owner_hash =
        tokio::task::spawn_blocking(move || users::hash_password(&password)).await.map_err(ApiError::internal)??;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if tx.query_opt("SELECT 1 FROM realm WHERE string_id = $1", &[&subdomain]).await?.is_some() {
        return Err(ApiError::bad_request(format!("Subdomain '{subdomain}' is already in use")));
    }
    let realm_id: i32 = tx
        .query_one("INSERT INTO realm (string_id, name) VALUES ($1, $2) RETURNING id", &[&subdomain, &name])
        .await?
        .get(0);
    for (group, description) in crate::user_groups::SYSTEM_GROUPS {
        tx.execute(
            "INSERT INTO usergroup (realm_id, name, description) VALUES ($1, $2, $3)",
            &[&realm_id, &group, &description],
        )
        .await?;
    }
    let (owner_id, api_key) =
        users::create_user(&tx, realm_id as i64, owner_email, owner_name, Some(owner_hash), role::OWNER).await?;
    let general = streams::create_stream(
        &tx,
        realm_id as i64,
        "general",
        "Everyone is added to this channel by default.",
        false,
        Some(owner_id),
    )
    .await?;
    tx.execute("INSERT INTO defaultstream (realm_id, stream_id) VALUES ($1, $2)", &[&realm_id, &(general.id as i32)])
        .await?;
    streams::add_subscriptions(&tx, &general, &[owner_id]).await?;
    tx.commit().await?;
    Ok(CreatedRealm { realm_id: realm_id as i64, owner_id, api_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomain_rules() {
        assert!(check_subdomain("").is_ok());
        assert!(check_subdomain("zulip-dev2").is_ok());
        assert!(check_subdomain("-x").is_err());
        assert!(check_subdomain("Caps").is_err());
        assert!(check_subdomain(&"a".repeat(41)).is_err());
    }
}
