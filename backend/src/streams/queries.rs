//! Stream and subscription SQL: creating streams, looking them up,
//! subscribing, and the subscriber sets that events and sends fan out to.
//! Callers are the API handlers (`api/streams`, `api/register`, ...) and
//! the actions; the rules these rows are checked against live in
//! [`super::policy`].

use super::{Stream, SubscriptionProps, STREAM_COLUMNS, STREAM_COLUMN_COUNT};
use crate::users::User;
use deadpool_postgres::GenericClient;
use serde_json::Value;
use squall_proto::error::ApiError;
use std::collections::HashMap;
use tokio_postgres::Row;

/// A palette of subscription colours, assigned round-robin by stream id.
const COLORS: [&str; 8] = ["#76ce90", "#fae589", "#a6c7e5", "#e79ab5", "#bfd56f", "#f4ae55", "#b0a5fd", "#addfe5"];

/// Creates a stream with its recipient row.
pub async fn create_stream(
    db: &impl GenericClient,
    realm_id: i64,
    name: &str,
    description: &str,
    invite_only: bool,
    creator_id: Option<i64>,
) -> Result<Stream, ApiError> {
    let rendered = crate::markdown::render_plain(description);
    let creator = creator_id.map(|c| c as i32);
    let row = db
        .query_one(
            "INSERT INTO stream (realm_id, name, description, rendered_description, invite_only, creator_id,
                                 can_remove_subscribers_group_id)
             VALUES ($1, $2, $3, $4, $5, $6,
                     (SELECT id FROM usergroup WHERE realm_id = $1 AND name = 'role:administrators'))
             RETURNING id",
            &[&(realm_id as i32), &name, &description, &rendered, &invite_only, &creator],
        )
        .await?;
    let id: i32 = row.get(0);
    let rid: i32 =
        db.query_one("INSERT INTO recipient (type, type_id) VALUES (2, $1) RETURNING id", &[&id]).await?.get(0);
    db.execute("UPDATE stream SET recipient_id = $1 WHERE id = $2", &[&rid, &id]).await?;
    stream_by_id(db, realm_id, id as i64).await?.ok_or_else(|| ApiError::internal("stream vanished after creation"))
}

/// Streams named (lower-cased) in `lower_names` that `user` can see, as
/// (id, name): public ones unless the user is a guest, and any they are
/// subscribed to. What `#**channel**` links may point at.
pub async fn linkable_streams(
    db: &impl GenericClient,
    user: &User,
    lower_names: &[String],
) -> Result<Vec<(i64, String)>, ApiError> {
    if lower_names.is_empty() {
        return Ok(Vec::new());
    }
    let rows = db
        .query(
            "SELECT st.id, st.name FROM stream st
             WHERE st.realm_id = $1 AND lower(st.name) = ANY($2)
               AND ((NOT st.invite_only AND NOT $4) OR EXISTS (
                   SELECT 1 FROM subscription s WHERE s.recipient_id = st.recipient_id
                     AND s.user_profile_id = $3 AND s.active))",
            &[&(user.realm_id as i32), &lower_names, &(user.id as i32), &user.is_guest()],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get::<_, i32>(0) as i64, r.get(1))).collect())
}

/// A stream of the realm by (case-insensitive) name; archived ones have
/// none.
pub async fn stream_by_name(db: &impl GenericClient, realm_id: i64, name: &str) -> Result<Option<Stream>, ApiError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM stream s WHERE s.realm_id = $1 AND lower(s.name) = lower($2) AND NOT s.deactivated"
    );
    Ok(crate::db::query_opt_cached(db, &sql, &[&(realm_id as i32), &name]).await?.as_ref().map(Stream::from_row))
}

/// A stream of the realm by id, archived or not (see [`Stream::deactivated`]).
pub async fn stream_by_id(db: &impl GenericClient, realm_id: i64, id: i64) -> Result<Option<Stream>, ApiError> {
    let Ok(id32) = i32::try_from(id) else { return Ok(None) };
    let sql = format!("SELECT {STREAM_COLUMNS} FROM stream s WHERE s.realm_id = $1 AND s.id = $2");
    Ok(crate::db::query_opt_cached(db, &sql, &[&(realm_id as i32), &id32]).await?.as_ref().map(Stream::from_row))
}

/// Whether `user_id` has an active subscription to `stream`.
pub async fn is_subscribed(db: &impl GenericClient, user_id: i64, stream: &Stream) -> Result<bool, ApiError> {
    Ok(crate::db::query_opt_cached(
        db,
        "SELECT 1 FROM subscription WHERE user_profile_id = $1 AND recipient_id = $2 AND active",
        &[&(user_id as i32), &(stream.recipient_id as i32)],
    )
    .await?
    .is_some())
}

/// Active subscribers of a stream who are active users, in id order.
pub async fn active_subscriber_ids(db: &impl GenericClient, recipient_id: i64) -> Result<Vec<i64>, ApiError> {
    Ok(db
        .query(
            "SELECT s.user_profile_id FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = $1 AND s.active AND u.is_active ORDER BY 1",
            &[&(recipient_id as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect())
}

/// Active subscribers who are active and not soft-deactivated, in id
/// order: who hears about edits, deletes and stream typing.
pub async fn active_nonidle_subscriber_ids(db: &impl GenericClient, recipient_id: i64) -> Result<Vec<i64>, ApiError> {
    Ok(db
        .query(
            "SELECT s.user_profile_id FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = $1 AND s.active AND u.is_active AND NOT u.long_term_idle ORDER BY 1",
            &[&(recipient_id as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect())
}

/// Subscribes users; returns the newly subscribed ones with their colour,
/// in id order (already active subscriptions are left alone; inactive ones
/// are reactivated).
pub async fn add_subscriptions(
    db: &impl GenericClient,
    stream: &Stream,
    user_ids: &[i64],
) -> Result<Vec<(i64, String)>, ApiError> {
    let ids: Vec<i32> = user_ids.iter().map(|&u| u as i32).collect();
    let color = COLORS[(stream.id as usize) % COLORS.len()];
    let rows = db
        .query(
            "INSERT INTO subscription (user_profile_id, recipient_id, color)
             SELECT u, $2, $3 FROM unnest($1::int[]) AS u
             ON CONFLICT (user_profile_id, recipient_id) DO UPDATE SET active = true
             WHERE NOT subscription.active
             RETURNING user_profile_id, color, xmax = 0",
            &[&ids, &(stream.recipient_id as i32), &color],
        )
        .await?;
    let mut out: Vec<(i64, String)> = rows.iter().map(|r| (r.get::<_, i32>(0) as i64, r.get(1))).collect();
    out.sort_unstable();
    // The subscription log add_missing_messages reads (xmax = 0: inserted,
    // not reactivated).
    let (created, reactivated): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.get::<_, bool>(2));
    let ids_of = |rows: Vec<&Row>| rows.iter().map(|r| r.get::<_, i32>(0) as i64).collect::<Vec<i64>>();
    use crate::soft_deactivation::{audit, log_subscription_changes};
    log_subscription_changes(db, stream.realm_id, stream.id, &ids_of(created), audit::SUBSCRIPTION_CREATED).await?;
    log_subscription_changes(db, stream.realm_id, stream.id, &ids_of(reactivated), audit::SUBSCRIPTION_ACTIVATED)
        .await?;
    Ok(out)
}

/// The user's active subscriptions with their settings, by stream name.
pub async fn user_subscriptions(
    db: &impl GenericClient,
    user_id: i64,
) -> Result<Vec<(Stream, SubscriptionProps)>, ApiError> {
    let sql = format!(
        "SELECT {STREAM_COLUMNS}, sub.is_muted, sub.pin_to_top, sub.color, sub.desktop_notifications,
                sub.email_notifications, sub.wildcard_mentions_notify, sub.push_notifications, sub.audible_notifications
         FROM subscription sub JOIN stream s ON s.recipient_id = sub.recipient_id
         WHERE sub.user_profile_id = $1 AND sub.active ORDER BY lower(s.name)"
    );
    let rows = db.query(&sql, &[&(user_id as i32)]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let n = STREAM_COLUMN_COUNT;
            (
                Stream::from_row(r),
                SubscriptionProps {
                    is_muted: r.get(n),
                    pin_to_top: r.get(n + 1),
                    color: r.get(n + 2),
                    notifications: std::array::from_fn(|i| r.get(n + 3 + i)),
                },
            )
        })
        .collect())
}

/// The user's subscription dictionaries, with subscriber lists when asked
/// (register's `subscriptions`, `GET /users/me/subscriptions`).
pub async fn subscription_dicts(
    db: &impl GenericClient,
    user_id: i64,
    include_subscribers: bool,
) -> Result<Vec<Value>, ApiError> {
    let subs = user_subscriptions(db, user_id).await?;
    let members = if include_subscribers {
        let rids: Vec<i64> = subs.iter().map(|(s, _)| s.recipient_id).collect();
        Some(subscribers_of(db, &rids).await?)
    } else {
        None
    };
    Ok(subs
        .iter()
        .map(|(s, props)| {
            let subscribers = members.as_ref().map(|m| m.get(&s.recipient_id).cloned().unwrap_or_default());
            s.subscription_dict(props, subscribers.as_deref())
        })
        .collect())
}

/// Who hears about subscription changes of `stream` (Zulip's peer
/// events): everyone who can see its subscribers — every active non-guest
/// user for a public stream, administrators for a private one, plus the
/// subscribers — except the users whose subscription changed.
pub async fn peer_audience(
    db: &impl GenericClient,
    stream: &Stream,
    subscribers: &[i64],
    altered: &[i64],
) -> Result<Vec<i64>, ApiError> {
    let sql = if stream.is_public() {
        "SELECT id FROM userprofile WHERE realm_id = $1 AND is_active AND role <> 600"
    } else {
        "SELECT id FROM userprofile WHERE realm_id = $1 AND is_active AND role <= 200"
    };
    let mut ids: Vec<i64> =
        db.query(sql, &[&(stream.realm_id as i32)]).await?.iter().map(|r| r.get::<_, i32>(0) as i64).collect();
    ids.extend_from_slice(subscribers);
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|u| !altered.contains(u));
    Ok(ids)
}

/// Members of direct-message groups, by the groups' recipient ids (all
/// members, active or not: they are the conversation's participants).
pub async fn group_members(
    db: &impl GenericClient,
    group_recipient_ids: &[i32],
) -> Result<HashMap<i64, Vec<i64>>, ApiError> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    if group_recipient_ids.is_empty() {
        return Ok(out);
    }
    for r in db
        .query(
            "SELECT recipient_id, user_profile_id FROM subscription WHERE recipient_id = ANY($1) ORDER BY 1, 2",
            &[&group_recipient_ids],
        )
        .await?
    {
        out.entry(r.get::<_, i32>(0) as i64).or_default().push(r.get::<_, i32>(1) as i64);
    }
    Ok(out)
}

/// Subscriber ids of each of `recipient_ids` (active users only).
pub async fn subscribers_of(
    db: &impl GenericClient,
    recipient_ids: &[i64],
) -> Result<HashMap<i64, Vec<i64>>, ApiError> {
    let ids: Vec<i32> = recipient_ids.iter().map(|&r| r as i32).collect();
    let rows = db
        .query(
            "SELECT s.recipient_id, s.user_profile_id FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = ANY($1) AND s.active AND u.is_active ORDER BY 1, 2",
            &[&ids],
        )
        .await?;
    let mut map: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in rows {
        map.entry(r.get::<_, i32>(0) as i64).or_default().push(r.get::<_, i32>(1) as i64);
    }
    Ok(map)
}
