//! Presence: storage, Zulip's two response formats, and the event rules.

use crate::users::User;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::error::ApiError;

/// Seconds without activity after which a user counts as offline.
pub const OFFLINE_THRESHOLD_SECS: i64 = 200;
/// How often clients report presence.
pub const PRESENCE_PING_INTERVAL_SECS: i64 = 60;
/// Stored timestamps younger than this are not rewritten.
pub const PRESENCE_UPDATE_MIN_FREQ_SECONDS: i64 = 55;
/// An `active` report after this long without activity is a transition to
/// online (and produces an event).
pub const ONLINE_TRANSITION_SECS: i64 = OFFLINE_THRESHOLD_SECS - PRESENCE_PING_INTERVAL_SECS - 10;
/// Realms with more active users than this get no presence events.
pub const USER_LIMIT_FOR_SENDING_PRESENCE_UPDATE_EVENTS: usize = 100;
/// Legacy events call a user active if their last activity is at most this
/// much older than their last connection.
const LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS: i64 = 70;
/// Presence older than this is not reported by default.
pub const DEFAULT_HISTORY_DAYS: i64 = 14;

/// One user's stored presence (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// Last report of any kind.
    pub last_connected: i64,
    /// Last `active` report, if any.
    pub last_active: Option<i64>,
}

/// Modern format: `{"active_timestamp", "idle_timestamp"}`.
pub fn modern(p: Presence) -> Value {
    json!({"active_timestamp": p.last_active.unwrap_or(p.last_connected), "idle_timestamp": p.last_connected})
}

/// Legacy format: `{"website": {...}, "aggregated": {...}}`, as of `now`.
pub fn legacy(p: Presence, now: i64) -> Value {
    let (status, ts) = match p.last_active {
        Some(a) if now - a <= 120 => ("active", a),
        _ => ("idle", p.last_connected),
    };
    json!({"website": {"client": "website", "status": status, "timestamp": ts, "pushable": false},
           "aggregated": {"client": "website", "status": status, "timestamp": ts}})
}

/// `GET /users/{id}/presence`'s object: the legacy status and timestamp
/// under `website` and `aggregated`, `offline` once older than the offline
/// threshold.
pub fn single_user(p: Presence, now: i64) -> Value {
    let (mut status, ts) = match p.last_active {
        Some(a) if now - a <= 120 => ("active", a),
        _ => ("idle", p.last_connected),
    };
    if now - ts > OFFLINE_THRESHOLD_SECS {
        status = "offline";
    }
    let one = json!({"status": status, "timestamp": ts});
    json!({"website": one, "aggregated": one})
}

/// One user's stored presence.
pub async fn user_presence(db: &impl GenericClient, user_id: i64) -> Result<Option<Presence>, ApiError> {
    Ok(db
        .query_opt(
            "SELECT extract(epoch from last_connected_time)::bigint, extract(epoch from last_active_time)::bigint
             FROM userpresence WHERE user_profile_id = $1",
            &[&(user_id as i32)],
        )
        .await?
        .map(|r| Presence { last_connected: r.get(0), last_active: r.get(1) }))
}

/// The `presence` object of a presence event, right after an update.
pub fn event_dict(p: Presence) -> Value {
    let (status, ts) = match p.last_active {
        Some(a) if a + LEGACY_EVENT_OFFSET_FOR_ACTIVITY_SECONDS >= p.last_connected => ("active", a),
        _ => ("idle", p.last_connected),
    };
    json!({"website": {"client": "website", "status": status, "timestamp": ts, "pushable": false}})
}

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The stored presence afterwards.
    pub presence: Presence,
    /// Whether other users should hear of it (new row, or back online).
    pub notify: bool,
}

/// Zulip's update rule for a report of `active` (or idle) at `now`, given
/// what was stored: timestamps younger than 55 s are kept.
pub fn apply_report(old: Option<Presence>, active: bool, now: i64) -> Update {
    let Some(old) = old else {
        return Update { presence: Presence { last_connected: now, last_active: active.then_some(now) }, notify: true };
    };
    let fresh = |t: i64| now - t < PRESENCE_UPDATE_MIN_FREQ_SECONDS;
    let last_connected = if fresh(old.last_connected) { old.last_connected } else { now };
    let last_active = match old.last_active {
        Some(a) if !active || fresh(a) => Some(a),
        None if !active => None,
        _ => Some(now),
    };
    let back_online = active && old.last_active.is_none_or(|a| now - a > ONLINE_TRANSITION_SECS);
    Update { presence: Presence { last_connected, last_active }, notify: back_online }
}

/// Stores a report; returns the update and the realm's new update id (when
/// anything changed).
pub async fn record(db: &impl GenericClient, user: &User, active: bool, now: i64) -> Result<(Update, i64), ApiError> {
    let uid = user.id as i32;
    let rid = user.realm_id as i32;
    let old = db
        .query_opt(
            "SELECT extract(epoch from last_connected_time)::bigint, extract(epoch from last_active_time)::bigint
             FROM userpresence WHERE user_profile_id = $1 FOR UPDATE",
            &[&uid],
        )
        .await?
        .map(|r| Presence { last_connected: r.get(0), last_active: r.get(1) });
    let update = apply_report(old, active, now);
    if old == Some(update.presence) {
        let last: i64 = db
            .query_opt("SELECT last_update_id FROM presencesequence WHERE realm_id = $1", &[&rid])
            .await?
            .map(|r| r.get(0))
            .unwrap_or(0);
        return Ok((update, last));
    }
    let seq: i64 = db
        .query_one(
            "INSERT INTO presencesequence (realm_id, last_update_id) VALUES ($1, 1)
             ON CONFLICT (realm_id) DO UPDATE SET last_update_id = presencesequence.last_update_id + 1
             RETURNING last_update_id",
            &[&rid],
        )
        .await?
        .get(0);
    db.execute(
        "INSERT INTO userpresence (user_profile_id, realm_id, last_connected_time, last_active_time, last_update_id)
         VALUES ($1, $2, to_timestamp($3), to_timestamp($4), $5)
         ON CONFLICT (user_profile_id) DO UPDATE SET last_connected_time = EXCLUDED.last_connected_time,
             last_active_time = EXCLUDED.last_active_time, last_update_id = EXCLUDED.last_update_id",
        &[&uid, &rid, &(update.presence.last_connected as f64), &update.presence.last_active.map(|a| a as f64), &seq],
    )
    .await?;
    Ok((update, seq))
}

/// Longest presence history looked at: a century (longer asks reach dates
/// PostgreSQL cannot hold).
pub const MAX_HISTORY_DAYS: i64 = 36_500;

/// The start (unix seconds) of a presence history of `days` days before
/// `now`, with `days` kept within 0..=[`MAX_HISTORY_DAYS`].
pub fn history_start(now: i64, days: i64) -> i64 {
    now - days.clamp(0, MAX_HISTORY_DAYS) * 86_400
}

/// The realm's presences: modern (keyed by user id) or legacy (keyed by
/// email), active humans seen within `history_days`, and only those
/// changed after `since` when given. Returns them with the realm's last
/// update id.
pub async fn realm_presences(
    db: &impl GenericClient,
    realm_id: i64,
    modern_format: bool,
    since: Option<i64>,
    history_days: i64,
    now: i64,
) -> Result<(Map<String, Value>, i64), ApiError> {
    let rows = db
        .query(
            "SELECT u.id, u.email, extract(epoch from p.last_connected_time)::bigint,
                    extract(epoch from p.last_active_time)::bigint
             FROM userpresence p JOIN userprofile u ON u.id = p.user_profile_id
             WHERE p.realm_id = $1 AND u.is_active AND NOT u.is_bot AND p.last_update_id > $2
               AND p.last_connected_time >= to_timestamp($3)",
            &[&(realm_id as i32), &since.unwrap_or(-1), &(history_start(now, history_days) as f64)],
        )
        .await?;
    let mut out = Map::new();
    for r in rows {
        let p = Presence { last_connected: r.get(2), last_active: r.get(3) };
        if modern_format {
            out.insert(r.get::<_, i32>(0).to_string(), modern(p));
        } else {
            out.insert(r.get(1), legacy(p, now));
        }
    }
    let last: i64 = db
        .query_opt("SELECT last_update_id FROM presencesequence WHERE realm_id = $1", &[&(realm_id as i32)])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(0);
    Ok((out, last.max(since.unwrap_or(0))))
}

/// Of `user_ids`, those not active within the offline threshold (no
/// presence at all counts as idle).
/// Nothing is read for no users; the statement is prepared once per
/// connection (the send path asks at every notifying message).
pub async fn idle_users(db: &impl GenericClient, user_ids: &[i64], now: i64) -> Result<Vec<i64>, ApiError> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i32> = user_ids.iter().map(|&u| u as i32).collect();
    let active: std::collections::HashSet<i64> = crate::db::query_cached(
        db,
        "SELECT user_profile_id FROM userpresence
         WHERE user_profile_id = ANY($1) AND last_active_time >= to_timestamp($2)",
        &[&ids, &((now - OFFLINE_THRESHOLD_SECS) as f64)],
    )
    .await?
    .iter()
    .map(|r| r.get::<_, i32>(0) as i64)
    .collect();
    Ok(user_ids.iter().copied().filter(|u| !active.contains(u)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_history_length_gives_a_date_postgres_can_hold() {
        let now = 1_800_000_000;
        assert_eq!(history_start(now, 14), now - 14 * 86_400);
        assert_eq!(history_start(now, -5), now);
        assert_eq!(history_start(now, i64::MAX), now - MAX_HISTORY_DAYS * 86_400);
        assert_eq!(history_start(now, 2_466_233_285), now - MAX_HISTORY_DAYS * 86_400);
    }

    #[test]
    fn first_report_creates_and_notifies() {
        let u = apply_report(None, true, 1000);
        assert_eq!(u, Update { presence: Presence { last_connected: 1000, last_active: Some(1000) }, notify: true });
        let idle = apply_report(None, false, 1000);
        assert_eq!(idle.presence.last_active, None);
        assert!(idle.notify);
    }

    #[test]
    fn frequent_reports_do_not_rewrite_and_idle_never_notifies() {
        let before = Presence { last_connected: 1000, last_active: Some(1000) };
        let old = Some(before);
        assert_eq!(apply_report(old, true, 1030).presence, before);
        assert!(!apply_report(old, true, 1030).notify);
        let later = apply_report(old, false, 1100);
        assert_eq!(later.presence, Presence { last_connected: 1100, last_active: Some(1000) });
        assert!(!later.notify, "a second client reporting idle is not news");
    }

    #[test]
    fn coming_back_after_130_seconds_is_an_online_transition() {
        let old = Some(Presence { last_connected: 1000, last_active: Some(1000) });
        assert!(!apply_report(old, true, 1000 + ONLINE_TRANSITION_SECS).notify);
        let back = apply_report(old, true, 1000 + ONLINE_TRANSITION_SECS + 1);
        assert!(back.notify);
        assert_eq!(back.presence.last_active, Some(1131));
        assert_eq!(ONLINE_TRANSITION_SECS, 130);
    }

    #[test]
    fn formats() {
        let p = Presence { last_connected: 1000, last_active: Some(990) };
        assert_eq!(modern(p), json!({"active_timestamp": 990, "idle_timestamp": 1000}));
        assert_eq!(legacy(p, 1050)["aggregated"], json!({"client": "website", "status": "active", "timestamp": 990}));
        assert_eq!(legacy(p, 1200)["aggregated"]["status"], "idle");
        assert_eq!(legacy(p, 1200)["website"]["timestamp"], 1000);
        assert_eq!(event_dict(p)["website"]["status"], "active");
        assert_eq!(event_dict(Presence { last_connected: 1000, last_active: Some(900) })["website"]["status"], "idle");
    }

    #[test]
    fn single_user_status_ages_to_offline() {
        let p = Presence { last_connected: 1000, last_active: Some(990) };
        assert_eq!(single_user(p, 1000)["aggregated"], json!({"status": "active", "timestamp": 990}));
        assert_eq!(single_user(p, 1150)["website"], json!({"status": "idle", "timestamp": 1000}));
        assert_eq!(single_user(p, 1000 + OFFLINE_THRESHOLD_SECS + 1)["aggregated"]["status"], "offline");
        let never_active = Presence { last_connected: 1000, last_active: None };
        assert_eq!(single_user(never_active, 1010)["aggregated"]["status"], "idle");
    }
}
