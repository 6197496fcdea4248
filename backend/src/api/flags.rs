//! `POST /messages/flags`, `/mark_all_as_read`, `/mark_stream_as_read`,
//! `/mark_topic_as_read`.

use crate::actions::flags;
use crate::error::{ApiError, ApiResult};
use crate::request::Params;
use crate::streams;
use crate::users::User;
use crate::App;
use serde_json::{json, Map, Value};

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
