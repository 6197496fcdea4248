//! The `unread_msgs` section of register: a user's unread messages grouped
//! the way clients keep their unread counts.

use deadpool_postgres::GenericClient;
use serde_json::{json, Value};
use squall_proto::error::ApiError;
use squall_proto::flags;
use std::collections::BTreeMap;

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
    let mut mentions = Vec::new();
    for r in rows.iter().rev() {
        let id: i64 = r.get(0);
        let bits: i64 = r.get(1);
        let sender = r.get::<_, i32>(2) as i64;
        match r.get::<_, i16>(3) {
            2 => streams.entry((r.get::<_, i32>(4) as i64, r.get(5))).or_default().push(id),
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
        if bits & (flags::MENTIONED | flags::STREAM_WILDCARD_MENTIONED | flags::TOPIC_WILDCARD_MENTIONED) != 0 {
            mentions.push(id);
        }
    }
    Ok(json!({
        "count": rows.len(),
        "pms": pms.into_iter().map(|(other, ids)| json!({"other_user_id": other, "sender_id": other, "unread_message_ids": ids})).collect::<Vec<_>>(),
        "streams": streams.into_iter().map(|((sid, topic), ids)| json!({"stream_id": sid, "topic": topic, "unread_message_ids": ids})).collect::<Vec<_>>(),
        "huddles": huddles.into_iter().map(|(k, ids)| json!({"user_ids_string": k, "unread_message_ids": ids})).collect::<Vec<_>>(),
        "mentions": mentions,
        "old_unreads_missing": old_unreads_missing,
    }))
}
