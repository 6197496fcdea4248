//! Topic visibility policies (Zulip's `UserTopic`): `POST /user_topics`,
//! the register `user_topics` and legacy `muted_topics` sections, and the
//! `user_topic` / `muted_topics` events. The send path's notification lists
//! and register's unread `count` follow them (`send/personal`, `unread`).

use crate::streams;
use crate::users::User;
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// No policy: the topic follows its channel.
const INHERIT: i64 = 0;
/// Muted.
const MUTED: i64 = 1;
/// Longest topic (Zulip's `MAX_TOPIC_NAME_LENGTH`).
const MAX_TOPIC_LENGTH: usize = 60;

/// The register `user_topics` list.
pub async fn user_topics(db: &impl GenericClient, user_id: i64) -> Result<Vec<Value>, ApiError> {
    Ok(db
        .query(
            "SELECT stream_id, topic_name, extract(epoch from last_updated)::bigint, visibility_policy
             FROM usertopic WHERE user_profile_id = $1 ORDER BY last_updated, stream_id",
            &[&(user_id as i32)],
        )
        .await?
        .iter()
        .map(|r| {
            json!({
                "stream_id": r.get::<_, i32>(0),
                "topic_name": r.get::<_, String>(1),
                "last_updated": r.get::<_, i64>(2),
                "visibility_policy": r.get::<_, i16>(3),
            })
        })
        .collect())
}

/// The legacy `muted_topics`: `[channel name, topic, when]` of each muted topic.
pub async fn muted_topics(db: &impl GenericClient, user_id: i64) -> Result<Vec<Value>, ApiError> {
    Ok(db
        .query(
            "SELECT s.name, t.topic_name, extract(epoch from t.last_updated)::bigint
             FROM usertopic t JOIN stream s ON s.id = t.stream_id
             WHERE t.user_profile_id = $1 AND t.visibility_policy = $2 ORDER BY t.last_updated, t.stream_id",
            &[&(user_id as i32), &(MUTED as i16)],
        )
        .await?
        .iter()
        .map(|r| json!([r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, i64>(2)]))
        .collect())
}

/// `POST /user_topics`: `stream_id`, `topic`, `visibility_policy` (0
/// inherit, 1 muted, 2 unmuted, 3 followed).
pub async fn update(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let stream_id = p.int("stream_id")?.ok_or_else(|| ApiError::missing("stream_id"))?;
    let topic = p.req_str("topic")?;
    if topic.chars().count() > MAX_TOPIC_LENGTH {
        return Err(ApiError::bad_request(format!("topic is too long (limit: {MAX_TOPIC_LENGTH} characters)")));
    }
    let policy = p.int("visibility_policy")?.ok_or_else(|| ApiError::missing("visibility_policy"))?;
    if !(0..=3).contains(&policy) {
        return Err(ApiError::bad_request("Invalid visibility_policy"));
    }
    let mut client = app.pool.get().await?;
    let stream = streams::stream_by_id(&client, user.realm_id, stream_id).await?;
    let stream = match stream {
        // Removing a policy needs no access to the channel any more.
        Some(s) if policy == INHERIT => s,
        Some(s) if s.is_public() && !user.is_guest() => s,
        Some(s) if streams::is_subscribed(&client, user.id, &s).await? => s,
        _ => return Err(ApiError::bad_request("Invalid channel ID")),
    };
    let tx = client.transaction().await?;
    let now = crate::unix_time().as_secs() as i64;
    if policy == INHERIT {
        tx.execute(
            "DELETE FROM usertopic WHERE user_profile_id = $1 AND stream_id = $2 AND lower(topic_name) = lower($3)",
            &[&(user.id as i32), &(stream.id as i32), &topic],
        )
        .await?;
    } else {
        tx.execute(
            "INSERT INTO usertopic (user_profile_id, stream_id, topic_name, last_updated, visibility_policy)
             VALUES ($1, $2, $3, to_timestamp($4), $5)
             ON CONFLICT (user_profile_id, stream_id, lower(topic_name))
             DO UPDATE SET topic_name = $3, last_updated = to_timestamp($4), visibility_policy = $5",
            &[&(user.id as i32), &(stream.id as i32), &topic, &(now as f64), &(policy as i16)],
        )
        .await?;
    }
    let muted = muted_topics(&tx, user.id).await?;
    tx.commit().await?;
    let events = [
        json!({"type": "muted_topics", "muted_topics": muted}),
        json!({"type": "user_topic", "stream_id": stream.id, "topic_name": topic, "last_updated": now, "visibility_policy": policy}),
    ];
    for event in events {
        app.tell(user.realm_id, event, vec![user.id], "user_topic").await;
    }
    Ok(Map::new())
}
