//! `POST /typing`: typing notifications for direct messages and topics.

use crate::streams;
use crate::users::{self, User};
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// Streams with more subscribers than this get no typing events
/// (Zulip's `MAX_STREAM_SIZE_FOR_TYPING_NOTIFICATIONS`).
pub const MAX_STREAM_SIZE_FOR_TYPING_NOTIFICATIONS: usize = 100;

/// `POST /typing`.
pub async fn set_typing_status(app: &App, user: &User, p: &mut Params) -> ApiResult {
    // Zulip validates its typed parameters in signature order.
    let kind = p.str("type").unwrap_or_else(|| "direct".into());
    if !matches!(kind.as_str(), "direct" | "private" | "stream" | "channel") {
        return Err(ApiError::bad_request("Invalid type"));
    }
    let op = p.req_str("op")?;
    if op != "start" && op != "stop" {
        return Err(ApiError::bad_request("Invalid op"));
    }
    let to = match p.json("to")? {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_i64().ok_or_else(|| ApiError::bad_request(format!("to[{i}] is not an integer"))))
                .collect::<Result<Vec<i64>, _>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("to is not a list")),
    };
    let stream_id = p.int("stream_id")?;
    let topic = p.str("topic");
    let sender = json!({"user_id": user.id, "email": user.email});
    let client = app.pool.get().await?;
    // The sender's privacy settings.
    let channel = kind == "stream" || kind == "channel";
    let own: Value =
        client.query_one("SELECT settings FROM userprofile WHERE id = $1", &[&(user.id as i32)]).await?.get(0);
    let (setting, refusal) = if channel {
        ("send_stream_typing_notifications", "User has disabled typing notifications for channel messages")
    } else {
        ("send_private_typing_notifications", "User has disabled typing notifications for direct messages")
    };
    if crate::settings::value_of(&own, setting) == Some(Value::Bool(false)) {
        return Err(ApiError::bad_request(refusal));
    }
    let (event, recipients) = if channel {
        let stream_id = stream_id.ok_or_else(|| ApiError::missing("stream_id"))?;
        let topic = topic.ok_or_else(|| ApiError::bad_request("Missing topic"))?;
        let stream = streams::stream_by_id(&client, user.realm_id, stream_id).await?;
        let stream = match stream {
            Some(s) if (s.is_public() && !user.is_guest()) || streams::is_subscribed(&client, user.id, &s).await? => s,
            _ => return Err(ApiError::bad_request("Invalid channel ID")),
        };
        let subscribers = streams::active_nonidle_subscriber_ids(&client, stream.recipient_id).await?;
        if subscribers.len() > MAX_STREAM_SIZE_FOR_TYPING_NOTIFICATIONS {
            return Ok(Map::new());
        }
        let event = json!({"type": "typing", "message_type": "stream", "op": op, "sender": sender,
                           "stream_id": stream.id, "topic": topic});
        (event, subscribers)
    } else {
        let to = to.ok_or_else(|| ApiError::missing("to"))?;
        if to.is_empty() {
            return Err(ApiError::bad_request("Empty 'to' list"));
        }
        let found = users::users_by_ids(&client, user.realm_id, &to).await?;
        if let Some(bad) = to.iter().find(|id| !found.iter().any(|u| u.id == **id)) {
            return Err(ApiError::bad_request(format!("Invalid user ID {bad}")));
        }
        let mut participants: Vec<&User> = found.iter().chain(std::iter::once(user)).collect();
        participants.sort_by_key(|u| u.id);
        participants.dedup_by_key(|u| u.id);
        let recipients: Vec<Value> = participants.iter().map(|u| json!({"user_id": u.id, "email": u.email})).collect();
        let event = json!({"type": "typing", "message_type": "direct", "op": op, "sender": sender,
                           "recipients": recipients});
        (event, participants.iter().filter(|u| u.is_active).map(|u| u.id).collect())
    };
    // Only to those who want typing notifications.
    let ids: Vec<i32> = recipients.iter().map(|&u| u as i32).collect();
    let recipients: Vec<i64> = client
        .query(
            "SELECT id FROM userprofile WHERE id = ANY($1)
             AND coalesce((settings ->> 'receives_typing_notifications')::boolean, true)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect();
    // Typing is ephemeral: sent right away, never stored.
    app.tell(user.realm_id, event, recipients, "typing").await;
    Ok(Map::new())
}
