//! The `unread_msgs` section of register: a user's unread messages grouped
//! the way clients keep their unread counts.

use deadpool_postgres::GenericClient;
use serde_json::{json, Value};
use squall_proto::error::ApiError;
use squall_proto::flags;
use std::collections::{BTreeMap, HashMap, HashSet};

/// At most this many unread messages are reported (Zulip's limit); the
/// oldest beyond it are left out and `old_unreads_missing` is set.
pub const MAX_UNREAD_MESSAGES: i64 = 50_000;

/// Builds `unread_msgs` for `user_id`.
pub async fn unread_msgs(db: &impl GenericClient, user_id: i64) -> Result<Value, ApiError> {
    let rows = db
        .query(
            "SELECT um.message_id, um.flags, m.sender_id, r.type, r.type_id, m.subject, m.recipient_id
             FROM usermessage um JOIN message m ON m.id = um.message_id JOIN recipient r ON r.id = m.recipient_id
             WHERE um.user_profile_id = $1 AND (um.flags & 1) = 0
             ORDER BY um.message_id DESC LIMIT $2",
            &[&(user_id as i32), &(MAX_UNREAD_MESSAGES + 1)],
        )
        .await?;
    let old_unreads_missing = rows.len() as i64 > MAX_UNREAD_MESSAGES;
    let rows = &rows[..rows.len().min(MAX_UNREAD_MESSAGES as usize)];
    // Group members of the direct-message groups involved.
    let group_rids: Vec<i32> = rows.iter().filter(|r| r.get::<_, i16>(3) == 3).map(|r| r.get(6)).collect();
    let members = crate::streams::group_members(db, &group_rids).await?;
    let mut streams: BTreeMap<(i64, String), Vec<i64>> = BTreeMap::new();
    let mut pms: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut huddles: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    // Messages in muted streams and topics are listed but not counted (as
    // Zulip's `aggregate_unread_data`); their wildcard mentions are not
    // mentions.
    let muted_streams: HashSet<i64> = db
        .query(
            "SELECT s.id FROM subscription sub JOIN stream s ON s.recipient_id = sub.recipient_id
             WHERE sub.user_profile_id = $1 AND sub.active AND sub.is_muted",
            &[&(user_id as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect();
    let policies: HashMap<(i64, String), i16> = db
        .query(
            "SELECT stream_id, topic_name, visibility_policy FROM usertopic WHERE user_profile_id = $1",
            &[&(user_id as i32)],
        )
        .await?
        .iter()
        // Both sides folded in Rust, so they fold alike.
        .map(|r| ((r.get::<_, i32>(0) as i64, r.get::<_, String>(1).to_lowercase()), r.get::<_, i16>(2)))
        .collect();
    let unmuted = |stream_id: i64, topic: &str| {
        let policy = policies.get(&(stream_id, topic.to_lowercase())).copied().unwrap_or(0);
        if muted_streams.contains(&stream_id) {
            policy == 2 || policy == 3
        } else {
            policy != 1
        }
    };
    let mut mentions = Vec::new();
    let mut count = 0;
    for r in rows.iter().rev() {
        let id: i64 = r.get(0);
        let bits: i64 = r.get(1);
        let sender = r.get::<_, i32>(2) as i64;
        let mut counted = true;
        match r.get::<_, i16>(3) {
            2 => {
                let stream_id = r.get::<_, i32>(4) as i64;
                let topic: String = r.get(5);
                counted = unmuted(stream_id, &topic);
                streams.entry((stream_id, topic)).or_default().push(id)
            }
            1 => {
                let to = r.get::<_, i32>(4) as i64;
                let other = if sender == user_id { to } else { sender };
                pms.entry(other).or_default().push(id);
            }
            _ => {
                let mut ids = members.get(&(r.get::<_, i32>(6) as i64)).cloned().unwrap_or_default();
                ids.sort_unstable();
                let key = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                huddles.entry(key).or_default().push(id);
            }
        }
        let wildcard = bits & (flags::STREAM_WILDCARD_MENTIONED | flags::TOPIC_WILDCARD_MENTIONED) != 0;
        if bits & flags::MENTIONED != 0 || (wildcard && counted) {
            mentions.push(id);
        }
        count += usize::from(counted);
    }
    Ok(json!({
        "count": count,
        "pms": pms.into_iter().map(|(other, ids)| json!({"other_user_id": other, "sender_id": other, "unread_message_ids": ids})).collect::<Vec<_>>(),
        "streams": streams.into_iter().map(|((sid, topic), ids)| json!({"stream_id": sid, "topic": topic, "unread_message_ids": ids})).collect::<Vec<_>>(),
        "huddles": huddles.into_iter().map(|(k, ids)| json!({"user_ids_string": k, "unread_message_ids": ids})).collect::<Vec<_>>(),
        "mentions": mentions,
        "old_unreads_missing": old_unreads_missing,
    }))
}
