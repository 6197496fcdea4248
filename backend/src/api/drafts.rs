//! Message drafts synchronised between a user's clients: `GET`/`POST
//! /drafts`, `PATCH`/`DELETE /drafts/{id}`, the register `drafts` section
//! and `drafts` events — only while the user's
//! `enable_drafts_synchronization` is on, as in Zulip.

use crate::actions::send::addressee::normalize_body;
use crate::users::{self, User};
use crate::{streams, App};
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::api::Params;
use squall_proto::error::{ApiError, ApiResult};

/// Longest topic kept (Zulip truncates draft topics to it).
const MAX_TOPIC_LENGTH: usize = 60;

/// A checked draft, ready to store.
struct Draft {
    kind: String,
    to: Vec<i64>,
    topic: String,
    content: String,
    timestamp: i64,
}

fn draft_json(id: i64, d: &Draft) -> Value {
    json!({"id": id, "type": d.kind, "to": d.to, "topic": d.topic, "content": d.content, "timestamp": d.timestamp})
}

/// Whether the user keeps drafts on the server.
async fn synchronised(db: &impl GenericClient, user: &User) -> Result<bool, ApiError> {
    let settings: Value =
        db.query_one("SELECT settings FROM userprofile WHERE id = $1", &[&(user.id as i32)]).await?.get(0);
    Ok(crate::settings::value_of(&settings, "enable_drafts_synchronization").and_then(|v| v.as_bool()).unwrap_or(true))
}

/// The user's drafts, most recently edited first (empty when not synchronised).
pub async fn drafts(db: &impl GenericClient, user: &User) -> Result<Vec<Value>, ApiError> {
    if !synchronised(db, user).await? {
        return Ok(Vec::new());
    }
    Ok(db
        .query(
            "SELECT id, type, to_ids, topic, content, last_edit_time FROM draft
             WHERE user_profile_id = $1 ORDER BY last_edit_time DESC, id DESC",
            &[&(user.id as i32)],
        )
        .await?
        .iter()
        .map(|r| {
            let to: Vec<i32> = r.get(2);
            let d = Draft {
                kind: r.get(1),
                to: to.into_iter().map(i64::from).collect(),
                topic: r.get(3),
                content: r.get(4),
                timestamp: r.get(5),
            };
            draft_json(r.get(0), &d)
        })
        .collect())
}

/// Checks one draft object as Zulip's `further_validated_draft_dict` does.
async fn check_draft(db: &impl GenericClient, user: &User, v: &Value) -> Result<Draft, ApiError> {
    let field = |k: &str| v.get(k).ok_or_else(|| ApiError::bad_request(format!("draft[{k}] is missing")));
    let kind = field("type")?.as_str().ok_or_else(|| ApiError::bad_request("draft[type] is not a string"))?;
    if !matches!(kind, "" | "stream" | "private") {
        return Err(ApiError::bad_request("Invalid draft[type]"));
    }
    let to: Vec<i64> = field("to")?
        .as_array()
        .ok_or_else(|| ApiError::bad_request("draft[to] is not a list"))?
        .iter()
        .map(|x| x.as_i64().ok_or_else(|| ApiError::bad_request("draft[to] is not a list of integers")))
        .collect::<Result<_, _>>()?;
    let topic = field("topic")?.as_str().ok_or_else(|| ApiError::bad_request("draft[topic] is not a string"))?;
    let content = field("content")?.as_str().ok_or_else(|| ApiError::bad_request("draft[content] is not a string"))?;
    let content = normalize_body(content)?;
    let timestamp = match v.get("timestamp") {
        None | Some(Value::Null) => crate::unix_time().as_secs() as i64,
        Some(t) => {
            let t = t.as_f64().ok_or_else(|| ApiError::bad_request("draft[timestamp] is not a number"))?;
            if t < 0.0 {
                return Err(ApiError::bad_request("Timestamp must not be negative."));
            }
            t as i64
        }
    };
    let (to, topic) = match kind {
        "stream" => {
            let topic: String = topic.chars().take(MAX_TOPIC_LENGTH).collect();
            if topic.contains('\0') {
                return Err(ApiError::bad_request("Topic must not contain null bytes"));
            }
            let [stream_id] = to[..] else {
                return Err(ApiError::bad_request("Must specify exactly 1 channel ID for channel messages"));
            };
            match streams::stream_by_id(db, user.realm_id, stream_id).await? {
                Some(s) if s.is_public() && !user.is_guest() => {}
                Some(s) if streams::is_subscribed(db, user.id, &s).await? => {}
                _ => return Err(ApiError::bad_request("Invalid channel ID")),
            }
            (to, topic)
        }
        "private" => {
            let mut ids = to.clone();
            ids.sort_unstable();
            ids.dedup();
            let found = users::users_by_ids(db, user.realm_id, &ids).await?;
            if let Some(missing) = ids.iter().find(|id| !found.iter().any(|u| u.id == **id)) {
                return Err(ApiError::bad_request(format!("Invalid user ID {missing}")));
            }
            (ids, String::new())
        }
        _ => (Vec::new(), String::new()),
    };
    Ok(Draft { kind: kind.to_owned(), to, topic, content, timestamp })
}

async fn tell(app: &App, user: &User, event: Value) {
    app.tell(user.realm_id, event, vec![user.id], "drafts").await;
}

fn disabled() -> ApiError {
    ApiError::bad_request("User has disabled synchronizing drafts.")
}

fn missing_draft() -> ApiError {
    ApiError::new(404, "BAD_REQUEST", "Draft does not exist")
}

/// `GET /drafts`.
pub async fn list(app: &App, user: &User) -> ApiResult {
    let client = app.pool.get().await?;
    let list = drafts(&client, user).await?;
    let mut m = Map::new();
    m.insert("count".into(), list.len().into());
    m.insert("drafts".into(), list.into());
    Ok(m)
}

/// `POST /drafts`: `drafts`, a list of drafts; answers their ids.
pub async fn create(app: &App, user: &User, p: &mut Params) -> ApiResult {
    let data = p.json("drafts")?.ok_or_else(|| ApiError::missing("drafts"))?;
    let Value::Array(items) = data else { return Err(ApiError::bad_request("drafts is not a list")) };
    let mut client = app.pool.get().await?;
    if !synchronised(&client, user).await? {
        return Err(disabled());
    }
    let mut checked = Vec::with_capacity(items.len());
    for item in &items {
        checked.push(check_draft(&client, user, item).await?);
    }
    let tx = client.transaction().await?;
    let mut ids = Vec::with_capacity(checked.len());
    for d in &checked {
        let to: Vec<i32> = d.to.iter().map(|&i| i as i32).collect();
        let id: i64 = tx
            .query_one(
                "INSERT INTO draft (user_profile_id, type, to_ids, topic, content, last_edit_time)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&(user.id as i32), &d.kind, &to, &d.topic, &d.content, &d.timestamp],
            )
            .await?
            .get(0);
        ids.push(id);
    }
    tx.commit().await?;
    let list: Vec<Value> = ids.iter().zip(&checked).map(|(id, d)| draft_json(*id, d)).collect();
    tell(app, user, json!({"type": "drafts", "op": "add", "drafts": list})).await;
    let mut m = Map::new();
    m.insert("ids".into(), json!(ids));
    Ok(m)
}

/// `PATCH /drafts/{id}`: `draft`, the new draft.
pub async fn edit(app: &App, user: &User, id: i64, p: &mut Params) -> ApiResult {
    let data = p.json("draft")?.ok_or_else(|| ApiError::missing("draft"))?;
    let client = app.pool.get().await?;
    if !synchronised(&client, user).await? {
        return Err(disabled());
    }
    let d = check_draft(&client, user, &data).await?;
    let to: Vec<i32> = d.to.iter().map(|&i| i as i32).collect();
    let changed = client
        .execute(
            "UPDATE draft SET type = $3, to_ids = $4, topic = $5, content = $6, last_edit_time = $7
             WHERE id = $1 AND user_profile_id = $2",
            &[&id, &(user.id as i32), &d.kind, &to, &d.topic, &d.content, &d.timestamp],
        )
        .await?;
    if changed == 0 {
        return Err(missing_draft());
    }
    tell(app, user, json!({"type": "drafts", "op": "update", "draft": draft_json(id, &d)})).await;
    Ok(Map::new())
}

/// `DELETE /drafts/{id}`.
pub async fn delete(app: &App, user: &User, id: i64) -> ApiResult {
    let client = app.pool.get().await?;
    if !synchronised(&client, user).await? {
        return Err(disabled());
    }
    let gone =
        client.execute("DELETE FROM draft WHERE id = $1 AND user_profile_id = $2", &[&id, &(user.id as i32)]).await?;
    if gone == 0 {
        return Err(missing_draft());
    }
    tell(app, user, json!({"type": "drafts", "op": "remove", "draft_id": id})).await;
    Ok(Map::new())
}
