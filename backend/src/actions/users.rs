//! An account's lifecycle: Zulip's `do_deactivate_user`,
//! `do_reactivate_user` and `do_regenerate_api_key`.
//!
//! Each is two halves. The database half runs inside the caller's
//! transaction (so the caller's permission checks and the change are one
//! decision) and returns what is to be announced. The announcing half runs
//! after the commit: first, for a deactivation or a new key, the gateways
//! are told to forget the user's cached credentials (`Notice::Revoke`, to
//! every core), and only once every core has that notice does the request
//! return, so the old credentials fail on `/events` from the very next
//! request; then Zulip's events.

use crate::streams::{self, Stream};
use crate::users::{self, User};
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Value};
use squall_proto::envelope::{Envelope, Notice};
use squall_proto::error::ApiError;
use std::sync::Arc;

/// Zulip's RealmAuditLog event types for accounts.
pub mod audit {
    /// `USER_DEACTIVATED`.
    pub const USER_DEACTIVATED: i16 = 103;
    /// `USER_REACTIVATED`.
    pub const USER_REACTIVATED: i16 = 104;
    /// `USER_API_KEY_CHANGED`.
    pub const USER_API_KEY_CHANGED: i16 = 127;
}

/// Events decided inside the transaction, sent after its commit.
#[must_use = "announce it after the commit"]
pub struct Announcement {
    realm_id: i64,
    /// Users whose cached credentials must go, and whether their queues go
    /// too.
    revoke: Option<(Vec<i64>, bool)>,
    events: Vec<(Value, Vec<i64>)>,
}

impl Announcement {
    fn new(realm_id: i64) -> Self {
        Announcement { realm_id, revoke: None, events: Vec::new() }
    }

    /// Publishes the revocation (waiting until every gateway core has it),
    /// then the events. A failure is logged, not returned: the change is
    /// committed, and a credential a core still holds expires with its
    /// cache entry.
    pub async fn publish(self, app: &App) {
        let realm_id = self.realm_id;
        if let Some((users, delete_queues)) = self.revoke {
            let env = Envelope { realm_id, notice: Notice::Revoke { users, delete_queues } };
            if let Err(e) = app.bus.publish(env).await {
                tracing::warn!(error = %e, "revocation not delivered; cached credentials stay valid until they expire");
            }
        }
        for (event, users) in self.events {
            if users.is_empty() {
                continue;
            }
            let env = Envelope { realm_id, notice: Notice::Generic { event: Arc::new(event), users } };
            if let Err(e) = app.bus.publish(env).await {
                tracing::warn!(error = %e, "account event not delivered");
            }
        }
    }
}

/// The realm's active human owners, locked until the transaction ends, so
/// that two owners deactivating or demoting each other cannot both pass the
/// last-owner check.
pub async fn lock_active_owners(db: &impl GenericClient, realm_id: i64) -> Result<Vec<i64>, ApiError> {
    let rows = db
        .query(
            "SELECT id FROM userprofile WHERE realm_id = $1 AND role = $2 AND is_active AND NOT is_bot
             ORDER BY id FOR UPDATE",
            &[&(realm_id as i32), &users::role::OWNER],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, i32>(0) as i64).collect())
}

async fn log(db: &impl GenericClient, user: &User, event_type: i16) -> Result<(), ApiError> {
    db.execute(
        "INSERT INTO realmauditlog (realm_id, modified_user_id, event_type) VALUES ($1, $2, $3)",
        &[&(user.realm_id as i32), &(user.id as i32), &event_type],
    )
    .await?;
    Ok(())
}

/// Sets `is_active` on the user and their subscriptions (Zulip's
/// `change_user_is_active`); false when it already had that value.
async fn change_user_is_active(db: &impl GenericClient, user: &User, active: bool) -> Result<bool, ApiError> {
    let changed = db
        .execute(
            "UPDATE userprofile SET is_active = $2 WHERE id = $1 AND is_active <> $2",
            &[&(user.id as i32), &active],
        )
        .await?;
    db.execute("UPDATE subscription SET is_user_active = $2 WHERE user_profile_id = $1", &[&(user.id as i32), &active])
        .await?;
    Ok(changed > 0)
}

/// The streams `user` is subscribed to, each with who hears of that
/// subscriber appearing or going (Zulip's peer events), as the database is
/// now.
async fn peer_audiences(db: &impl GenericClient, user: &User) -> Result<Vec<(Stream, Vec<i64>)>, ApiError> {
    let mut out = Vec::new();
    for (stream, _) in streams::user_subscriptions(db, user.id).await? {
        let subscribers = streams::active_subscriber_ids(db, stream.recipient_id).await?;
        let audience = streams::peer_audience(db, &stream, &subscribers, &[user.id]).await?;
        out.push((stream, audience));
    }
    Ok(out)
}

/// Deactivates `user` (Zulip's `do_deactivate_user`); nothing to announce
/// if they already were. Announced: the revocation with their queues, a
/// `peer_remove` per stream they were subscribed to, and `realm_user`
/// `update` with `is_active: false` to the realm's active users.
pub async fn do_deactivate_user(db: &impl GenericClient, user: &User) -> Result<Announcement, ApiError> {
    let mut out = Announcement::new(user.realm_id);
    if !change_user_is_active(db, user, false).await? {
        return Ok(out);
    }
    log(db, user, audit::USER_DEACTIVATED).await?;
    out.revoke = Some((vec![user.id], true));
    for (stream, audience) in peer_audiences(db, user).await? {
        let event =
            json!({"type": "subscription", "op": "peer_remove", "stream_ids": [stream.id], "user_ids": [user.id]});
        out.events.push((event, audience));
    }
    let event = json!({"type": "realm_user", "op": "update", "person": {"user_id": user.id, "is_active": false}});
    out.events.push((event, users::active_user_ids(db, user.realm_id).await?));
    Ok(out)
}

/// Reactivates `user` (Zulip's `do_reactivate_user`). Announced:
/// `realm_user` `update` with `is_active: true` to the realm's active users
/// and a `peer_add` per stream they are subscribed to. (Nothing to revoke:
/// gateways cache successes only.)
pub async fn do_reactivate_user(db: &impl GenericClient, user: &User) -> Result<Announcement, ApiError> {
    let mut out = Announcement::new(user.realm_id);
    change_user_is_active(db, user, true).await?;
    log(db, user, audit::USER_REACTIVATED).await?;
    let event = json!({"type": "realm_user", "op": "update", "person": {"user_id": user.id, "is_active": true}});
    out.events.push((event, users::active_user_ids(db, user.realm_id).await?));
    for (stream, audience) in peer_audiences(db, user).await? {
        let event = json!({"type": "subscription", "op": "peer_add", "stream_ids": [stream.id], "user_ids": [user.id]});
        out.events.push((event, audience));
    }
    Ok(out)
}

/// Gives `user` a new API key (Zulip's `do_regenerate_api_key`); returns
/// it. Announced: the revocation of the old one (their queues stay).
pub async fn do_regenerate_api_key(db: &impl GenericClient, user: &User) -> Result<(String, Announcement), ApiError> {
    let key = users::new_api_key();
    db.execute("UPDATE userprofile SET api_key = $2 WHERE id = $1", &[&(user.id as i32), &key]).await?;
    log(db, user, audit::USER_API_KEY_CHANGED).await?;
    let mut out = Announcement::new(user.realm_id);
    out.revoke = Some((vec![user.id], false));
    Ok((key, out))
}
