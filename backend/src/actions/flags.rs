//! Changing message flags: Zulip's `do_update_message_flags` and the
//! mark-as-read family. Every change sends one `update_message_flags`
//! event to the acting user.

use crate::users::User;
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::error::ApiError;
use squall_proto::flags::{self, FLAG_NAMES};
use std::collections::{HashMap, HashSet};

/// Flags no API call may set or clear.
const NON_EDITABLE: [&str; 8] = [
    "has_alert_word",
    "mentioned",
    "stream_wildcard_mentioned",
    "topic_wildcard_mentioned",
    "group_mentioned",
    "historical",
    "force_expand",
    "force_collapse",
];
/// Flags that do not exist for the API at all.
const NON_API: [&str; 2] = ["is_private", "active_mobile_push_notification"];
/// What a message without a UserMessage row counts as.
const DEFAULT_HISTORICAL_FLAGS: i64 = flags::READ | flags::HISTORICAL;

/// Zulip's order of checks: flag known, flag editable, operation valid.
/// Returns the flag's bit and whether it is being added.
pub fn check_flag_change(flag: &str, op: &str) -> Result<(i64, bool), ApiError> {
    if !FLAG_NAMES.contains(&flag) || NON_API.contains(&flag) {
        return Err(ApiError::bad_request(format!("Invalid flag: '{flag}'")));
    }
    if NON_EDITABLE.contains(&flag) {
        return Err(ApiError::bad_request(format!("Flag not editable: '{flag}'")));
    }
    let adding = match op {
        "add" => true,
        "remove" => false,
        _ => return Err(ApiError::bad_request(format!("Invalid message flag operation: '{op}'"))),
    };
    let bit = flags::bit_of(flag).ok_or_else(|| ApiError::bad_request(format!("Invalid flag: '{flag}'")))?;
    Ok((bit, adding))
}

async fn publish(app: &App, user: &User, event: Value) {
    app.tell(user.realm_id, event, vec![user.id], "update_message_flags").await;
}

/// Zulip's `do_clear_mobile_push_notifications_for_ids`, for messages a
/// user has just read: those with a mobile notification showing (the
/// `active_mobile_push_notification` flag, which the push worker clears
/// once the removal went out) get one `remove` item.
/// `db` is the caller's connection.
pub(crate) async fn clear_mobile_push(app: &App, db: &impl GenericClient, user_id: i64) {
    let found = async {
        let rows = db
            .query(
                "SELECT message_id FROM usermessage
                 WHERE user_profile_id = $1 AND (flags & 4096) <> 0 AND (flags & 1) <> 0
                 ORDER BY message_id DESC LIMIT 10000",
                &[&(user_id as i32)],
            )
            .await?;
        Ok::<Vec<i64>, ApiError>(rows.iter().map(|r| r.get(0)).collect())
    };
    match found.await {
        Ok(ids) if !ids.is_empty() => app.jobs.enqueue(
            crate::workers::MOBILE_QUEUE,
            json!({"type": "remove", "user_profile_id": user_id, "message_ids": ids}),
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e.msg, user_id, "could not look for mobile notifications to remove"),
    }
}

/// `do_update_message_flags`. Returns how many messages changed.
pub async fn update_message_flags(
    app: &App,
    user: &User,
    op: &str,
    flag: &str,
    requested: &[i64],
) -> Result<usize, ApiError> {
    let (bit, adding) = check_flag_change(flag, op)?;
    let target = if adding { bit } else { 0 };
    let uid = user.id as i32;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let mut ids: Vec<i64> = requested.to_vec();
    if flag == "read" && !adding {
        // Unread stream messages must be in streams the user is subscribed to.
        let unsubscribed: HashSet<i64> = tx
            .query(
                "SELECT m.id FROM message m JOIN recipient r ON r.id = m.recipient_id
                 WHERE m.id = ANY($1) AND r.type = 2 AND NOT EXISTS (
                     SELECT 1 FROM subscription s WHERE s.recipient_id = m.recipient_id
                       AND s.user_profile_id = $2 AND s.active)",
                &[&ids, &uid],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        ids.retain(|id| !unsubscribed.contains(id));
    }
    let rows: HashMap<i64, i64> = tx
        .query(
            "SELECT message_id, flags FROM usermessage WHERE user_profile_id = $1 AND message_id = ANY($2) FOR UPDATE",
            &[&uid, &ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    ids.retain(|id| rows.get(id).copied().unwrap_or(DEFAULT_HISTORICAL_FLAGS) & bit != target);
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(*id));
    if DEFAULT_HISTORICAL_FLAGS & bit != target {
        let historical: Vec<i64> = ids.iter().copied().filter(|id| !rows.contains_key(id)).collect();
        if !historical.is_empty() {
            let accessible = accessible_without_row(&tx, user, &historical).await?;
            if accessible.len() != historical.len() {
                return Err(ApiError::bad_request("Invalid message(s)"));
            }
            let new_flags = if adding { DEFAULT_HISTORICAL_FLAGS | bit } else { DEFAULT_HISTORICAL_FLAGS & !bit };
            tx.execute(
                "INSERT INTO usermessage (user_profile_id, message_id, flags)
                 SELECT $1, m, $3 FROM unnest($2::bigint[]) AS m ON CONFLICT DO NOTHING",
                &[&uid, &historical, &new_flags],
            )
            .await?;
        }
    }
    let existing: Vec<i64> = ids.iter().copied().filter(|id| rows.contains_key(id)).collect();
    let sql = if adding {
        "UPDATE usermessage SET flags = flags | $3 WHERE user_profile_id = $1 AND message_id = ANY($2)"
    } else {
        "UPDATE usermessage SET flags = flags & ~$3::bigint WHERE user_profile_id = $1 AND message_id = ANY($2)"
    };
    tx.execute(sql, &[&uid, &existing, &bit]).await?;
    let details = if flag == "read" && !adding { Some(unread_details(&tx, user, &ids).await?) } else { None };
    tx.commit().await?;

    let mut event = json!({"type": "update_message_flags", "op": op, "operation": op, "flag": flag,
                           "messages": ids, "all": false});
    if let (Some(d), Some(obj)) = (details, event.as_object_mut()) {
        obj.insert("message_details".into(), Value::Object(d));
    }
    if flag == "read" && adding && !ids.is_empty() {
        clear_mobile_push(app, &client, user.id).await;
    }
    // Back to the pool before the event goes out (see do_send_messages).
    drop(client);
    publish(app, user, event).await;
    Ok(ids.len())
}

/// Of `ids` (messages the user has no row for), those the user may access:
/// messages in public streams of the realm (not for guests), or in private
/// streams the user is subscribed to whose history is public.
async fn accessible_without_row(db: &impl GenericClient, user: &User, ids: &[i64]) -> Result<Vec<i64>, ApiError> {
    Ok(db
        .query(
            "SELECT m.id FROM message m JOIN recipient r ON r.id = m.recipient_id AND r.type = 2
             JOIN stream s ON s.id = r.type_id
             WHERE m.id = ANY($1) AND s.realm_id = $2 AND (
                 (NOT s.invite_only AND NOT $4)
                 OR (s.history_public_to_subscribers AND EXISTS (
                     SELECT 1 FROM subscription sub WHERE sub.recipient_id = r.id
                       AND sub.user_profile_id = $3 AND sub.active)))",
            &[&ids, &(user.realm_id as i32), &(user.id as i32), &user.is_guest()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// `message_details` of a remove/read event: what a client needs to put
/// the messages back into its unread counts.
async fn unread_details(db: &impl GenericClient, user: &User, ids: &[i64]) -> Result<Map<String, Value>, ApiError> {
    let rows = db
        .query(
            "SELECT m.id, r.type, r.type_id, m.subject, m.sender_id, coalesce(um.flags, 0)
             FROM message m JOIN recipient r ON r.id = m.recipient_id
             LEFT JOIN usermessage um ON um.message_id = m.id AND um.user_profile_id = $2
             WHERE m.id = ANY($1)",
            &[&ids, &(user.id as i32)],
        )
        .await?;
    let mut out = Map::new();
    for r in rows {
        let id: i64 = r.get(0);
        let kind: i16 = r.get(1);
        let type_id: i32 = r.get(2);
        let bits: i64 = r.get(5);
        let mut d = Map::new();
        if kind == 2 {
            d.insert("type".into(), "stream".into());
            d.insert("stream_id".into(), i64::from(type_id).into());
            d.insert("topic".into(), Value::String(r.get(3)));
            d.insert("unmuted_stream_msg".into(), true.into());
        } else {
            let sender = r.get::<_, i32>(4) as i64;
            let participants: Vec<i64> = if kind == 1 {
                vec![sender, i64::from(type_id)]
            } else {
                db.query(
                    "SELECT s.user_profile_id FROM subscription s JOIN recipient r ON r.id = s.recipient_id
                     WHERE r.type = 3 AND r.type_id = $1",
                    &[&type_id],
                )
                .await?
                .iter()
                .map(|row| row.get::<_, i32>(0) as i64)
                .collect()
            };
            let mut others: Vec<i64> = participants.into_iter().filter(|u| *u != user.id).collect();
            others.sort_unstable();
            others.dedup();
            d.insert("type".into(), "private".into());
            d.insert("user_ids".into(), json!(others));
        }
        if bits & (flags::MENTIONED | flags::STREAM_WILDCARD_MENTIONED | flags::TOPIC_WILDCARD_MENTIONED) != 0 {
            d.insert("mentioned".into(), true.into());
        }
        out.insert(id.to_string(), Value::Object(d));
    }
    Ok(out)
}

/// Marks messages read; `None` = every unread message of the user, else
/// those of a stream (optionally one topic). Sends the `all: true` event
/// for the first, the ids for the others (nothing when nothing changed).
pub async fn mark_as_read(
    app: &App,
    user: &User,
    stream_recipient: Option<(i64, Option<String>)>,
) -> Result<usize, ApiError> {
    let client = app.pool.get().await?;
    let uid = user.id as i32;
    let changed: Vec<i64> = match &stream_recipient {
        None => client
            .query(
                "UPDATE usermessage SET flags = flags | 1 WHERE user_profile_id = $1 AND (flags & 1) = 0
                 RETURNING message_id",
                &[&uid],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        Some((rid, topic)) => client
            .query(
                "UPDATE usermessage um SET flags = um.flags | 1 FROM message m
                 WHERE um.user_profile_id = $1 AND (um.flags & 1) = 0 AND m.id = um.message_id
                   AND m.recipient_id = $2 AND ($3::text IS NULL OR lower(m.subject) = lower($3))
                 RETURNING um.message_id",
                &[&uid, &(*rid as i32), topic],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    if !changed.is_empty() {
        clear_mobile_push(app, &client, user.id).await;
    }
    // Back to the pool before the event goes out (see do_send_messages).
    drop(client);
    match stream_recipient {
        None => {
            let event = json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "read",
                               "messages": [], "all": true});
            publish(app, user, event).await;
        }
        Some(_) if !changed.is_empty() => {
            let mut ids = changed.clone();
            ids.sort_unstable();
            let event = json!({"type": "update_message_flags", "op": "add", "operation": "add", "flag": "read",
                               "messages": ids, "all": false});
            publish(app, user, event).await;
        }
        Some(_) => {}
    }
    Ok(changed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_checks_in_zulips_order() {
        for bad in ["invalid", "is_private", "active_mobile_push_notification", "wildcard_mentioned"] {
            assert_eq!(check_flag_change(bad, "add").unwrap_err().msg, format!("Invalid flag: '{bad}'"));
        }
        assert_eq!(check_flag_change("mentioned", "add").unwrap_err().msg, "Flag not editable: 'mentioned'");
        assert_eq!(check_flag_change("historical", "bogus").unwrap_err().msg, "Flag not editable: 'historical'");
        assert_eq!(check_flag_change("read", "bogus").unwrap_err().msg, "Invalid message flag operation: 'bogus'");
        assert_eq!(check_flag_change("starred", "add").unwrap(), (flags::STARRED, true));
        assert_eq!(check_flag_change("read", "remove").unwrap(), (flags::READ, false));
        assert_eq!(check_flag_change("collapsed", "add").unwrap(), (4, true));
    }
}
