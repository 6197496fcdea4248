//! HTTP Basic authentication with Zulip's exact failures, and realm
//! selection by Host.
//!
//! Users are cached by API key ([`crate::cache`]); a miss is one indexed
//! lookup (a statement prepared once per connection). Every change to a
//! cached user reaches every process's cache through PostgreSQL
//! notifications. The gateway keeps its own short-lived
//! per-core cache in front of this for `/events`.

use crate::cache::Cache;
use crate::users::{User, USER_COLUMNS, USER_COLUMN_COUNT};
use base64::Engine;
use deadpool_postgres::Pool;
use squall_proto::api::ApiRequest;
use squall_proto::error::ApiError;

/// The realm subdomain a request is for. Hosts that are IP addresses,
/// `localhost`, or the configured external host itself map to the root
/// realm (`""`); `sub.<external host>` maps to `sub`.
pub fn subdomain_for_host(host: Option<&str>, external_host: &str) -> String {
    let Some(host) = host else { return String::new() };
    let host = host.trim().to_ascii_lowercase();
    let external = external_host.to_ascii_lowercase();
    let bare = |h: &str| -> String {
        // Strip a port, keeping IPv6 literals intact.
        if h.starts_with('[') {
            h.split(']').next().unwrap_or(h).trim_start_matches('[').to_owned()
        } else {
            h.rsplit_once(':').map(|(a, _)| a.to_owned()).unwrap_or_else(|| h.to_owned())
        }
    };
    let (h, ext) = (bare(&host), bare(&external));
    if h == ext || h == "localhost" || h.parse::<std::net::IpAddr>().is_ok() {
        return String::new();
    }
    match h.strip_suffix(&format!(".{ext}")) {
        Some(sub) if !sub.contains('.') => sub.to_owned(),
        _ => String::new(),
    }
}

fn valid_api_key_shape(key: &str) -> bool {
    key.len() == 32 && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// How fresh `userprofile.last_activity` is kept: an authenticated request
/// rewrites it only when it is older than this.
pub const ACTIVITY_RESOLUTION_SECS: u32 = 900;

/// Authenticates `req` by HTTP Basic `email:api_key`. `json_path` selects
/// the session-style challenge used on `/json/...` paths.
pub async fn authenticate(
    pool: &Pool,
    cache: &Cache<String, User>,
    req: &ApiRequest,
    external_host: &str,
    json_path: bool,
) -> Result<User, ApiError> {
    let Some(header) = req.header("authorization") else {
        return Err(ApiError::unauthorized("Not logged in: API authentication or user session required", json_path));
    };
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::bad_request("This endpoint requires HTTP basic authentication."));
    }
    let invalid = || ApiError::unauthorized("Invalid authorization header for basic auth", json_path);
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (email, key) = decoded.split_once(':').ok_or_else(invalid)?;
    let (email, key) = (email.trim(), key.trim());
    if !valid_api_key_shape(key) {
        return Err(ApiError::unauthorized("Malformed API key", json_path));
    }
    if let Some(user) = cache.get(key) {
        return check(user, email, req, external_host, json_path);
    }
    let generation = cache.generation();
    let client = pool.get().await?;
    // The last column says whether the user's activity stamp (which soft
    // deactivation reads) is stale enough to be worth a write.
    let sql = format!(
        "SELECT {USER_COLUMNS}, coalesce(u.last_activity < now() - make_interval(secs => {ACTIVITY_RESOLUTION_SECS}), true)
         FROM userprofile u JOIN realm r ON r.id = u.realm_id WHERE u.api_key = $1"
    );
    let row = crate::db::query_opt_cached(&client, &sql, &[&key]).await?;
    let Some(row) = row else {
        return Err(ApiError::unauthorized("Invalid API key", json_path));
    };
    let user = User::from_row(&row);
    cache.put(key.to_owned(), &user, generation);
    let user = check(user, email, req, external_host, json_path)?;
    let activity_stale: bool = row.get(USER_COLUMN_COUNT);
    if activity_stale {
        crate::db::execute_cached(
            &client,
            "UPDATE userprofile SET last_activity = now() WHERE id = $1",
            &[&(user.id as i32)],
        )
        .await?;
    }
    Ok(user)
}

/// Zulip's checks of the account behind a valid key, in its order.
fn check(user: User, email: &str, req: &ApiRequest, external_host: &str, json_path: bool) -> Result<User, ApiError> {
    if !user.delivery_email.eq_ignore_ascii_case(email) {
        return Err(ApiError::unauthorized("Invalid API key", json_path));
    }
    if user.realm_deactivated {
        return Err(ApiError::unauthorized("This organization has been deactivated", json_path));
    }
    if !user.is_active {
        return Err(ApiError::unauthorized("Account is deactivated", json_path));
    }
    let sub = subdomain_for_host(req.header("host"), external_host);
    if sub != user.realm_string_id {
        return Err(ApiError::unauthorized("Account is not associated with this subdomain", json_path));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        let ext = "chat.example.com";
        assert_eq!(subdomain_for_host(Some("127.0.0.1:9991"), ext), "");
        assert_eq!(subdomain_for_host(Some("[::1]:9991"), ext), "");
        assert_eq!(subdomain_for_host(Some("localhost:9991"), ext), "");
        assert_eq!(subdomain_for_host(Some("chat.example.com"), ext), "");
        assert_eq!(subdomain_for_host(Some("Lear.chat.example.com:443"), ext), "lear");
        assert_eq!(subdomain_for_host(Some("a.b.chat.example.com"), ext), "");
        assert_eq!(subdomain_for_host(None, ext), "");
    }

    #[test]
    fn api_key_shape() {
        assert!(valid_api_key_shape("abcdefghijklmnopqrstuvwxyz012345"));
        assert!(!valid_api_key_shape("abcdefghijklmnopqrstuvwxyz01234"));
        assert!(!valid_api_key_shape("abcdefghijklmnopqrstuvwxyz01234!"));
    }
}
