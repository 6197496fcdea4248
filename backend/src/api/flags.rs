//! `POST /messages/flags`, `/messages/flags/narrow`, `/mark_all_as_read`, `/mark_stream_as_read`,
//! `/mark_topic_as_read`.

use crate::actions::flags;
use crate::api::messages;
use crate::streams;
use crate::users::User;
use crate::App;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// `POST /messages/flags`: `messages` (JSON list of ids), `op`, `flag`.
pub async fn update(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let messages = match p.json("messages")? {
        None => return Err(ApiError::missing("messages")),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_i64().ok_or_else(|| ApiError::bad_request(format!("messages[{i}] is not an integer"))))
            .collect::<Result<Vec<i64>, _>>()?,
        Some(_) => return Err(ApiError::bad_request("messages is not a list")),
    };
    let op = p.req_str("op")?;
    let flag = p.req_str("flag")?;
    flags::update_message_flags(app, user, &op, &flag, &messages).await?;
    let mut m = Map::new();
    m.insert("messages".into(), json!(messages));
    Ok(m)
}

/// `POST /mark_all_as_read`.
pub async fn mark_all(app: &App, user: &User) -> ApiResult {
    flags::mark_as_read(app, user, None).await?;
    let mut m = Map::new();
    m.insert("complete".into(), true.into());
    Ok(m)
}

async fn stream_recipient(app: &App, user: &User, p: &mut Params) -> Result<streams::Stream, ApiError> {
    let id = p.int("stream_id")?.ok_or_else(|| ApiError::missing("stream_id"))?;
    let client = app.pool.get().await?;
    let stream = streams::stream_by_id(&client, user.realm_id, id).await?;
    match stream {
        Some(s) if s.is_public() && !user.is_guest() => Ok(s),
        Some(s) if streams::is_subscribed(&client, user.id, &s).await? => Ok(s),
        _ => Err(ApiError::bad_request("Invalid channel ID")),
    }
}

/// `POST /mark_stream_as_read`: `stream_id`.
pub async fn mark_stream(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let stream = stream_recipient(app, user, p).await?;
    flags::mark_as_read(app, user, Some((stream.recipient_id, None))).await?;
    Ok(Map::new())
}

/// `POST /mark_topic_as_read`: `stream_id`, `topic_name`.
pub async fn mark_topic(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let stream = stream_recipient(app, user, p).await?;
    let topic = p.req_str("topic_name")?;
    let client = app.pool.get().await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM message WHERE recipient_id = $1 AND lower(subject) = lower($2) LIMIT 1",
            &[&(stream.recipient_id as i32), &topic],
        )
        .await?
        .is_some();
    if !exists {
        return Err(ApiError::bad_request(format!("No such topic '{topic}'")));
    }
    flags::mark_as_read(app, user, Some((stream.recipient_id, Some(topic)))).await?;
    Ok(Map::new())
}

/// Most messages one `POST /messages/flags/narrow` touches (Zulip's
/// MAX_MESSAGES_PER_UPDATE).
pub const MAX_MESSAGES_PER_UPDATE: i64 = 5000;

/// `POST /messages/flags/narrow`: `anchor`, `include_anchor`,
/// `num_before`, `num_after`, `narrow`, `op`, `flag`.
pub async fn update_narrow(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let anchor = p.req_str("anchor")?;
    let include_anchor = p.bool("include_anchor")?.unwrap_or(true);
    let mut num_before = p.int("num_before")?.ok_or_else(|| ApiError::missing("num_before"))?;
    let mut num_after = p.int("num_after")?.ok_or_else(|| ApiError::missing("num_after"))?;
    let narrow = match p.json("narrow")? {
        None => return Err(ApiError::missing("narrow")),
        Some(Value::Null) => Vec::new(),
        Some(v) => messages::parse_narrow(v)?,
    };
    let op = p.req_str("op")?;
    let flag = p.req_str("flag")?;
    for (name, n) in [("num_before", num_before), ("num_after", num_after)] {
        if n < 0 {
            return Err(ApiError::bad_request(format!("{name} is too small")));
        }
    }
    if num_before > 0 && num_after > 0 && !include_anchor {
        return Err(ApiError::bad_request("The anchor can only be excluded at an end of the range"));
    }
    if anchor == "first_unread" {
        return Err(ApiError::bad_request("Invalid anchor"));
    }
    // Validate before reading anything.
    flags::check_flag_change(&flag, &op)?;
    // Zulip clamps the range rather than refusing it.
    num_before = num_before.min(MAX_MESSAGES_PER_UPDATE);
    num_after = num_after.min(MAX_MESSAGES_PER_UPDATE - num_before);

    let range = {
        let client = app.pool.get().await?;
        messages::fetch_range(&client, user, narrow, Some(&anchor), include_anchor, num_before, num_after).await?
    };
    let ids: Vec<i64> = range.rows.iter().map(|(id, _)| *id).collect();
    let updated = if ids.is_empty() { 0 } else { flags::update_message_flags(app, user, &op, &flag, &ids).await? };
    let mut m = Map::new();
    m.insert("processed_count".into(), ids.len().into());
    m.insert("updated_count".into(), updated.into());
    m.insert("first_processed_id".into(), ids.first().copied().into());
    m.insert("last_processed_id".into(), ids.last().copied().into());
    m.insert("found_oldest".into(), range.found_oldest.into());
    m.insert("found_newest".into(), range.found_newest.into());
    Ok(m)
}
