//! Users: the row model, Zulip's user dictionaries, and creation.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use deadpool_postgres::GenericClient;
use md5::{Digest, Md5};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use squall_proto::error::ApiError;
use tokio_postgres::Row;

pub use squall_proto::user::role;

/// Columns [`User::from_row`] expects, for `userprofile u JOIN realm r`.
pub const USER_COLUMNS: &str = "u.id, u.realm_id, r.string_id, r.deactivated, r.name, u.email, \
    u.delivery_email, u.full_name, u.role, u.is_active, u.is_bot, u.bot_type, u.long_term_idle, \
    u.timezone, u.avatar_version, \
    to_char(u.date_joined AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')";

/// How many columns [`USER_COLUMNS`] selects.
pub const USER_COLUMN_COUNT: usize = 16;

/// A user with the realm facts requests need.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// User id.
    pub id: i64,
    /// Realm id.
    pub realm_id: i64,
    /// Realm subdomain.
    pub realm_string_id: String,
    /// Whether the realm is deactivated.
    pub realm_deactivated: bool,
    /// Realm display name.
    pub realm_name: String,
    /// API email.
    pub email: String,
    /// Real email.
    pub delivery_email: String,
    /// Full name.
    pub full_name: String,
    /// Role (see [`role`]).
    pub role: i32,
    /// Not deactivated.
    pub is_active: bool,
    /// Is a bot.
    pub is_bot: bool,
    /// Bot type, for bots.
    pub bot_type: Option<i32>,
    /// Soft-deactivated.
    pub long_term_idle: bool,
    /// IANA time zone or empty.
    pub timezone: String,
    /// Avatar version.
    pub avatar_version: i32,
    /// ISO 8601 join time.
    pub date_joined: String,
}

impl User {
    /// Reads a row selected with [`USER_COLUMNS`].
    pub fn from_row(r: &Row) -> Self {
        User {
            id: r.get::<_, i32>(0) as i64,
            realm_id: r.get::<_, i32>(1) as i64,
            realm_string_id: r.get(2),
            realm_deactivated: r.get(3),
            realm_name: r.get(4),
            email: r.get(5),
            delivery_email: r.get(6),
            full_name: r.get(7),
            role: r.get(8),
            is_active: r.get(9),
            is_bot: r.get(10),
            bot_type: r.get(11),
            long_term_idle: r.get(12),
            timezone: r.get(13),
            avatar_version: r.get(14),
            date_joined: r.get(15),
        }
    }

    /// An active human user with `role`, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(role: i32) -> Self {
        User {
            id: 5,
            realm_id: 1,
            realm_string_id: String::new(),
            realm_deactivated: false,
            realm_name: "R".into(),
            email: "g@example.com".into(),
            delivery_email: "g@example.com".into(),
            full_name: "G".into(),
            role,
            is_active: true,
            is_bot: false,
            bot_type: None,
            long_term_idle: false,
            timezone: String::new(),
            avatar_version: 1,
            date_joined: String::new(),
        }
    }

    /// Owner or administrator.
    pub fn is_realm_admin(&self) -> bool {
        self.role <= role::ADMIN
    }

    /// Guest.
    pub fn is_guest(&self) -> bool {
        self.role == role::GUEST
    }

    /// What the event server needs to know about this user.
    pub fn authed(&self) -> squall_proto::user::AuthedUser {
        squall_proto::user::AuthedUser { id: self.id, realm_id: self.realm_id, role: self.role }
    }

    /// Gravatar URL of this user.
    pub fn avatar_url(&self) -> String {
        gravatar_url(&self.email, self.avatar_version)
    }

    /// Zulip's user dictionary (`GET /users`, `realm_users`). With
    /// `client_gravatar`, `avatar_url` is null (Squall only has Gravatar
    /// avatars, and emails are visible to everyone).
    pub fn api_dict(&self, client_gravatar: bool) -> Value {
        json!({
            "user_id": self.id,
            "email": self.email,
            "delivery_email": self.delivery_email,
            "full_name": self.full_name,
            "date_joined": self.date_joined,
            "is_active": self.is_active,
            "is_owner": self.role == role::OWNER,
            "is_admin": self.is_realm_admin(),
            "is_guest": self.is_guest(),
            "is_billing_admin": false,
            "is_bot": self.is_bot,
            "bot_type": self.bot_type,
            "bot_owner_id": Value::Null,
            "role": self.role,
            "timezone": self.timezone,
            "avatar_url": if client_gravatar { Value::Null } else { self.avatar_url().into() },
            "avatar_version": self.avatar_version,
            "profile_data": {},
        })
    }
}

/// `https://secure.gravatar.com/avatar/<md5(lowercased email)>?d=identicon&version=N`
pub fn gravatar_url(email: &str, version: i32) -> String {
    let digest = Md5::digest(email.trim().to_lowercase().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("https://secure.gravatar.com/avatar/{hex}?d=identicon&version={version}")
}

/// A fresh 32-character alphanumeric API key.
pub fn new_api_key() -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect()
}

/// Argon2 hash of `password` (PHC string).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("hashing password: {e}")))
}

/// Whether `password` matches the stored PHC `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
}

/// A hash of a random secret with [`hash_password`]'s algorithm and cost,
/// made once: what [`check_password`] verifies against when an account has
/// no hash to check.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(new_api_key().as_bytes(), &salt)
            .map(|h| h.to_string())
            // Default parameters and a generated salt: nothing can be invalid.
            .expect("argon2 with default parameters hashes any input")
    })
}

/// Whether `password` is right for an account whose stored hash is
/// `stored`. With no hash (no such account, or one without a password) the
/// password is verified all the same, against [`dummy_hash`], and refused:
/// a refusal that came at once would tell who has an account.
pub fn check_password(password: &str, stored: Option<&str>) -> bool {
    check_password_with(password, stored, verify_password)
}

fn check_password_with(password: &str, stored: Option<&str>, verify: impl FnOnce(&str, &str) -> bool) -> bool {
    let matched = verify(password, stored.unwrap_or_else(|| dummy_hash()));
    matched && stored.is_some()
}

/// Checks an email address the way a signup form would: one `@`, a
/// non-empty local part, a domain with a dot, no whitespace.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(char::is_whitespace)
}

/// Creates a user (with a password hashed by [`hash_password`], or none)
/// and its personal recipient in `realm_id`. Returns the id
/// and API key. Fails with Zulip's message when the email is taken.
pub async fn create_user(
    db: &impl GenericClient,
    realm_id: i64,
    email: &str,
    full_name: &str,
    password_hash: Option<String>,
    role: i32,
) -> Result<(i64, String), ApiError> {
    let exists = db
        .query_opt(
            "SELECT 1 FROM userprofile WHERE realm_id = $1 AND lower(delivery_email) = lower($2)",
            &[&(realm_id as i32), &email],
        )
        .await?;
    if exists.is_some() {
        return Err(ApiError::bad_request(format!("Email '{email}' already in use")));
    }
    let api_key = new_api_key();
    let hash = password_hash;
    let row = db
        .query_one(
            "INSERT INTO userprofile (realm_id, email, delivery_email, full_name, role, api_key, password)
             VALUES ($1, $2, $2, $3, $4, $5, $6) RETURNING id",
            &[&(realm_id as i32), &email, &full_name, &role, &api_key, &hash],
        )
        .await?;
    let id: i32 = row.get(0);
    db.execute("INSERT INTO recipient (type, type_id) VALUES (1, $1)", &[&id]).await?;
    Ok((id as i64, api_key))
}

/// Loads users of a realm by id (any state).
pub async fn users_by_ids(db: &impl GenericClient, realm_id: i64, ids: &[i64]) -> Result<Vec<User>, ApiError> {
    let ids32: Vec<i32> = ids.iter().filter_map(|&i| i32::try_from(i).ok()).collect();
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM userprofile u JOIN realm r ON r.id = u.realm_id
         WHERE u.realm_id = $1 AND u.id = ANY($2)"
    );
    Ok(db.query(&sql, &[&(realm_id as i32), &ids32]).await?.iter().map(User::from_row).collect())
}

/// Loads users of a realm by (case-insensitive) delivery email.
pub async fn users_by_emails(db: &impl GenericClient, realm_id: i64, emails: &[String]) -> Result<Vec<User>, ApiError> {
    let lower: Vec<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM userprofile u JOIN realm r ON r.id = u.realm_id
         WHERE u.realm_id = $1 AND lower(u.delivery_email) = ANY($2)"
    );
    Ok(db.query(&sql, &[&(realm_id as i32), &lower]).await?.iter().map(User::from_row).collect())
}

/// Ids of the realm's active users.
pub async fn active_user_ids(db: &impl GenericClient, realm_id: i64) -> Result<Vec<i64>, ApiError> {
    Ok(db
        .query("SELECT id FROM userprofile WHERE realm_id = $1 AND is_active ORDER BY id", &[&(realm_id as i32)])
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect())
}

/// All users of a realm.
pub async fn realm_users(db: &impl GenericClient, realm_id: i64) -> Result<Vec<User>, ApiError> {
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM userprofile u JOIN realm r ON r.id = u.realm_id
         WHERE u.realm_id = $1 ORDER BY u.id"
    );
    Ok(db.query(&sql, &[&(realm_id as i32)]).await?.iter().map(User::from_row).collect())
}

/// An account made by [`create_users_bulk`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BulkAccount {
    /// User id.
    pub user_id: i64,
    /// Email (also the delivery email).
    pub email: String,
    /// API key.
    pub api_key: String,
}

/// Creates members `{prefix}{i}@{domain}` for `i` in `0..count` in a few
/// statements (for load tests: no password, so `fetch_api_key` refuses
/// them; their API keys are returned instead). Existing accounts are kept
/// and returned as they are. New users join the realm's default streams,
/// as with `POST /users`.
pub async fn create_users_bulk(
    db: &impl GenericClient,
    realm_id: i64,
    prefix: &str,
    domain: &str,
    count: usize,
) -> Result<Vec<BulkAccount>, ApiError> {
    let emails: Vec<String> = (0..count).map(|i| format!("{prefix}{i}@{domain}")).collect();
    if let Some(bad) = emails.iter().find(|e| !valid_email(e)) {
        return Err(ApiError::bad_request(format!("Invalid email: {bad}")));
    }
    let realm = realm_id as i32;
    let existing = db
        .query(
            "SELECT lower(delivery_email) FROM userprofile WHERE realm_id = $1 AND lower(delivery_email) = ANY($2)",
            &[&realm, &emails.iter().map(|e| e.to_lowercase()).collect::<Vec<_>>()],
        )
        .await?;
    let taken: std::collections::HashSet<String> = existing.iter().map(|r| r.get(0)).collect();
    let new: Vec<&String> = emails.iter().filter(|e| !taken.contains(&e.to_lowercase())).collect();
    let names: Vec<String> = new.iter().map(|e| e.split('@').next().unwrap_or("user").to_owned()).collect();
    let keys: Vec<String> = new.iter().map(|_| new_api_key()).collect();
    let rows = db
        .query(
            "INSERT INTO userprofile (realm_id, email, delivery_email, full_name, role, api_key)
             SELECT $1, e, e, n, $5, k FROM unnest($2::text[], $3::text[], $4::text[]) AS t(e, n, k)
             RETURNING id",
            &[&realm, &new, &names, &keys, &role::MEMBER],
        )
        .await?;
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    db.execute("INSERT INTO recipient (type, type_id) SELECT 1, unnest($1::int[])", &[&ids]).await?;
    let new_ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    join_default_streams(db, realm_id, &new_ids).await?;
    let lowered: Vec<String> = emails.iter().map(|e| e.to_lowercase()).collect();
    let all = db
        .query(
            "SELECT id, delivery_email, api_key FROM userprofile WHERE realm_id = $1 AND lower(delivery_email) = ANY($2)",
            &[&realm, &lowered],
        )
        .await?;
    let mut by_email: std::collections::HashMap<String, BulkAccount> = all
        .iter()
        .map(|r| {
            let email: String = r.get(1);
            (email.to_lowercase(), BulkAccount { user_id: r.get::<_, i32>(0) as i64, email, api_key: r.get(2) })
        })
        .collect();
    Ok(lowered.iter().filter_map(|e| by_email.remove(e)).collect())
}

/// Subscribes new users to their realm's default streams.
pub async fn join_default_streams(db: &impl GenericClient, realm_id: i64, user_ids: &[i64]) -> Result<(), ApiError> {
    let defaults = db.query("SELECT stream_id FROM defaultstream WHERE realm_id = $1", &[&(realm_id as i32)]).await?;
    for row in defaults {
        let sid: i32 = row.get(0);
        if let Some(stream) = crate::streams::stream_by_id(db, realm_id, sid as i64).await? {
            crate::streams::add_subscriptions(db, &stream, user_ids).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gravatar_matches_known_digest() {
        // md5("test@example.com") is well known.
        assert_eq!(
            gravatar_url(" Test@Example.com", 1),
            "https://secure.gravatar.com/avatar/55502f40dc8b7c769880b10874abc9d0?d=identicon&version=1"
        );
    }

    #[test]
    fn api_keys_and_passwords() {
        let k = new_api_key();
        assert_eq!(k.len(), 32);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric()));
        let h = hash_password("secret").unwrap();
        assert!(verify_password("secret", &h));
        assert!(!verify_password("Secret", &h));
        assert!(!verify_password("secret", "not a hash"));
    }

    #[test]
    fn accounts_without_a_hash_are_checked_against_a_dummy_of_the_same_cost() {
        // The same verification runs whether or not there is a stored hash.
        let stored = hash_password("secret").unwrap();
        for hash in [Some(stored.as_str()), None] {
            let mut verified = None;
            let ok = check_password_with("secret", hash, |_, h| {
                verified = Some(h.to_owned());
                true
            });
            assert_eq!(verified.as_deref(), Some(hash.unwrap_or(dummy_hash())), "one verification, always");
            assert_eq!(ok, hash.is_some(), "without a stored hash nothing matches");
        }
        // And the dummy costs what a real hash costs: same algorithm,
        // version and parameters.
        let (real, dummy) = (PasswordHash::new(&stored).unwrap(), PasswordHash::new(dummy_hash()).unwrap());
        assert_eq!((real.algorithm, real.version), (dummy.algorithm, dummy.version));
        assert_eq!(real.params, dummy.params);
        assert_eq!(real.hash.map(|h| h.len()), dummy.hash.map(|h| h.len()));
        assert!(check_password("secret", Some(&stored)));
        assert!(!check_password("Secret", Some(&stored)));
        assert!(!check_password("secret", None));
    }

    #[test]
    fn emails() {
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@b.co"));
        assert!(!valid_email("a b@c.co"));
        assert!(!valid_email("a@b@c.co"));
    }
}
