//! Editing and deleting messages: Zulip's `update_message` and
//! `do_delete_messages`, with their permission rules, time limits and
//! events (`update_message` with per-user flags, `delete_message`). A
//! content edit renders and recomputes mention flags through
//! [`super::mention`], exactly as a send does.

use crate::actions::mention::{self, MENTION_FLAGS};
use crate::actions::send::addressee::{check_topic, normalize_body};
use crate::markdown;
use crate::streams::{self, Stream};
use crate::users::{self, User};
use crate::App;
use deadpool_postgres::GenericClient;
use serde_json::{json, Map, Value};
use squall_proto::envelope::{Envelope, Notice, PerUserData};
use squall_proto::error::ApiError;
use squall_proto::flags;
use std::collections::HashMap;
use std::sync::Arc;

/// Grace period Zulip adds to edit limits (requests in flight).
const EDIT_LIMIT_BUFFER_SECS: i64 = 20;

/// The realm's editing policy (`PATCH /realm`); a `None` limit is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EditPolicy {
    /// Senders may edit their messages' content.
    pub allow_message_editing: bool,
    /// How long a sender may edit a message's content (Zulip's default 600).
    pub content_edit_limit: Option<i64>,
    /// How long a sender may delete their own message (default 600).
    pub delete_limit: Option<i64>,
    /// How long a non-moderator may move a message to another topic
    /// (default a week).
    pub move_within_stream_limit: Option<i64>,
}

impl EditPolicy {
    /// Reads the policy of `realm_id`.
    pub async fn of_realm(db: &impl GenericClient, realm_id: i64) -> Result<Self, ApiError> {
        let r = db
            .query_one(
                "SELECT allow_message_editing, message_content_edit_limit_seconds, message_content_delete_limit_seconds,
                        move_messages_within_stream_limit_seconds FROM realm WHERE id = $1",
                &[&(realm_id as i32)],
            )
            .await?;
        let limit = |i: usize| r.get::<_, Option<i32>>(i).map(i64::from);
        Ok(EditPolicy {
            allow_message_editing: r.get(0),
            content_edit_limit: limit(1),
            delete_limit: limit(2),
            move_within_stream_limit: limit(3),
        })
    }
}

/// Whether `age` seconds is past `limit` (with Zulip's grace period).
fn past(limit: Option<i64>, age: i64) -> bool {
    limit.is_some_and(|l| age > l + EDIT_LIMIT_BUFFER_SECS)
}

/// A message as an edit or delete sees it.
pub(crate) struct Target {
    sender_id: i64,
    recipient_id: i64,
    subject: String,
    pub(crate) content: String,
    rendered_content: String,
    date_sent: i64,
    edit_history: Option<Value>,
    stream: Option<Stream>,
}

fn now_secs() -> i64 {
    crate::unix_time().as_secs() as i64
}

/// Loads a message the user may access, else Zulip's `Invalid message(s)`.
pub(crate) async fn load_accessible(db: &impl GenericClient, user: &User, id: i64) -> Result<Target, ApiError> {
    let invalid = || ApiError::bad_request("Invalid message(s)");
    let row = db
        .query_opt(
            "SELECT m.sender_id, m.recipient_id, m.subject, m.content, m.rendered_content,
                    extract(epoch from m.date_sent)::bigint, m.edit_history, r.type, r.type_id,
                    EXISTS (SELECT 1 FROM usermessage um WHERE um.message_id = m.id AND um.user_profile_id = $3)
             FROM message m JOIN recipient r ON r.id = m.recipient_id WHERE m.id = $1 AND m.realm_id = $2",
            &[&id, &(user.realm_id as i32), &(user.id as i32)],
        )
        .await?
        .ok_or_else(invalid)?;
    let stream = if row.get::<_, i16>(7) == 2 {
        streams::stream_by_id(db, user.realm_id, row.get::<_, i32>(8) as i64).await?
    } else {
        None
    };
    let has_row: bool = row.get(9);
    let accessible = has_row
        || match &stream {
            Some(s) if s.is_public() && !user.is_guest() => true,
            Some(s) => s.history_public_to_subscribers && streams::is_subscribed(db, user.id, s).await?,
            None => false,
        };
    if !accessible {
        return Err(invalid());
    }
    Ok(Target {
        sender_id: row.get::<_, i32>(0) as i64,
        recipient_id: row.get::<_, i32>(1) as i64,
        subject: row.get(2),
        content: row.get(3),
        rendered_content: row.get(4),
        date_sent: row.get(5),
        edit_history: row.get(6),
        stream,
    })
}

impl Target {
    /// The message's channel, for a channel message.
    pub(crate) fn stream(&self) -> Option<&Stream> {
        self.stream.as_ref()
    }

    /// `GET /messages/{id}/history`'s `message_history` (Zulip's
    /// `fill_edit_history_entries`): oldest first, from the message as
    /// sent to what it is now, each entry with the content and topic it
    /// left the message with, and what changed. (Zulip also sends
    /// `content_html_diff`, a highlighted diff of the two renderings; Squall
    /// does not compute one yet: it is optional in the API.)
    pub(crate) fn history(&self) -> Vec<Value> {
        let mut content = self.content.clone();
        let mut rendered = self.rendered_content.clone();
        let mut topic = self.subject.clone();
        let mut out = Vec::new();
        let edits = match &self.edit_history {
            Some(Value::Array(list)) => list.as_slice(),
            _ => &[],
        };
        for edit in edits {
            let mut entry = Map::new();
            entry.insert("content".into(), content.clone().into());
            entry.insert("rendered_content".into(), rendered.clone().into());
            entry.insert("timestamp".into(), edit.get("timestamp").cloned().unwrap_or(Value::Null));
            entry.insert("topic".into(), topic.clone().into());
            entry.insert("user_id".into(), edit.get("user_id").cloned().unwrap_or(Value::Null));
            if let Some(prev) = edit.get("prev_topic").and_then(Value::as_str) {
                topic = prev.to_owned();
                entry.insert("prev_topic".into(), prev.into());
            }
            if let Some(prev) = edit.get("prev_content").and_then(Value::as_str) {
                content = prev.to_owned();
                rendered = edit.get("prev_rendered_content").and_then(Value::as_str).unwrap_or_default().to_owned();
                entry.insert("prev_content".into(), content.clone().into());
                entry.insert("prev_rendered_content".into(), rendered.clone().into());
            }
            out.push(Value::Object(entry));
        }
        let mut first = Map::new();
        first.insert("content".into(), content.into());
        first.insert("rendered_content".into(), rendered.into());
        first.insert("timestamp".into(), self.date_sent.into());
        first.insert("topic".into(), topic.into());
        first.insert("user_id".into(), self.sender_id.into());
        if let Some(s) = &self.stream {
            first.insert("stream".into(), s.id.into());
        }
        out.push(Value::Object(first));
        out.reverse();
        out
    }
}

/// Who hears about a change to a message (an edit, a reaction): everyone
/// with a row for it, and for a channel whose history is public the other
/// active subscribers.
pub(crate) async fn message_audience(
    db: &impl GenericClient,
    message_id: i64,
    stream: Option<&Stream>,
) -> Result<Vec<i64>, ApiError> {
    let mut users: Vec<i64> = row_holders(db, message_id).await?.into_iter().map(|(u, _)| u).collect();
    if let Some(s) = stream.filter(|s| s.history_public_to_subscribers) {
        users.extend(streams::active_nonidle_subscriber_ids(db, s.recipient_id).await?);
    }
    users.sort_unstable();
    users.dedup();
    Ok(users)
}

async fn publish(app: &App, realm_id: i64, notice: Notice) {
    if let Err(e) = app.bus.publish(Envelope { realm_id, notice }).await {
        tracing::warn!(error = %e, "edit/delete event not delivered");
    }
}

/// Active, not soft-deactivated users with a row for `message_id`, and
/// their flags.
pub(crate) async fn row_holders(db: &impl GenericClient, message_id: i64) -> Result<Vec<(i64, i64)>, ApiError> {
    Ok(db
        .query(
            "SELECT um.user_profile_id, um.flags FROM usermessage um JOIN userprofile u ON u.id = um.user_profile_id
             WHERE um.message_id = $1 AND u.is_active AND NOT u.long_term_idle ORDER BY 1",
            &[&message_id],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, i32>(0) as i64, r.get(1)))
        .collect())
}

/// `DELETE /messages/{id}`.
pub async fn delete_message(app: &App, user: &User, id: i64) -> Result<(), ApiError> {
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let m = load_accessible(&tx, user, id).await?;
    if !user.is_realm_admin() {
        if m.sender_id != user.id {
            return Err(ApiError::bad_request("You don't have permission to delete this message"));
        }
        if past(EditPolicy::of_realm(&tx, user.realm_id).await?.delete_limit, now_secs() - m.date_sent) {
            return Err(ApiError::bad_request("The time limit for deleting this message has passed"));
        }
    }
    let holders: Vec<i64> = row_holders(&tx, id).await?.into_iter().map(|(u, _)| u).collect();
    let mut users: Vec<i64> = match &m.stream {
        Some(s) => {
            let subs = streams::active_nonidle_subscriber_ids(&tx, m.recipient_id).await?;
            if s.history_public_to_subscribers {
                subs
            } else {
                subs.into_iter().filter(|u| holders.contains(u)).collect()
            }
        }
        None => holders,
    };
    users.push(user.id);
    users.sort_unstable();
    users.dedup();
    tx.execute("DELETE FROM usermessage WHERE message_id = $1", &[&id]).await?;
    tx.execute("DELETE FROM message WHERE id = $1", &[&id]).await?;
    let mut first_update = None;
    if let Some(s) = &m.stream {
        if s.first_message_id == Some(id) {
            let next: Option<i64> = tx
                .query_one("SELECT min(id) FROM message WHERE recipient_id = $1", &[&(m.recipient_id as i32)])
                .await?
                .get(0);
            tx.execute("UPDATE stream SET first_message_id = $1 WHERE id = $2", &[&next, &(s.id as i32)]).await?;
            let audience =
                if s.is_public() { users::active_user_ids(&tx, user.realm_id).await? } else { users.clone() };
            first_update = Some((next, audience));
        }
    }
    tx.commit().await?;
    let generic = |event: Value, users: Vec<i64>| Notice::Generic { event: Arc::new(event), users };
    if let (Some((next, audience)), Some(s)) = (first_update, &m.stream) {
        let event = json!({"type": "stream", "op": "update", "property": "first_message_id", "value": next,
                           "stream_id": s.id, "name": s.name});
        publish(app, user.realm_id, generic(event, audience)).await;
    }
    let event = match &m.stream {
        Some(s) => json!({"type": "delete_message", "message_type": "stream", "message_ids": [id],
                          "stream_id": s.id, "topic": m.subject}),
        None => json!({"type": "delete_message", "message_type": "private", "message_ids": [id]}),
    };
    publish(app, user.realm_id, generic(event, users)).await;
    Ok(())
}

/// What `PATCH /messages/{id}` asks for.
#[derive(Debug, Clone, Default)]
pub struct EditRequest {
    /// New content.
    pub content: Option<String>,
    /// New topic.
    pub topic: Option<String>,
    /// `change_one`, `change_later` or `change_all`.
    pub propagate_mode: String,
    /// Move to another stream (not supported yet).
    pub stream_id: Option<i64>,
}

/// `PATCH /messages/{id}`.
pub async fn edit_message(app: &App, user: &User, id: i64, req: EditRequest) -> Result<(), ApiError> {
    if req.content.is_none() && req.topic.is_none() && req.stream_id.is_none() {
        return Err(ApiError::bad_request("Nothing to change"));
    }
    if !matches!(req.propagate_mode.as_str(), "change_one" | "change_later" | "change_all") {
        return Err(ApiError::bad_request("Invalid propagate_mode"));
    }
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;
    let m = load_accessible(&tx, user, id).await?;
    if m.stream.is_none() {
        if req.stream_id.is_some() {
            return Err(ApiError::bad_request("Direct messages cannot be moved to channels."));
        }
        if req.topic.is_some() {
            return Err(ApiError::bad_request("Direct messages cannot have topics."));
        }
    }
    if req.propagate_mode != "change_one" && req.topic.is_none() && req.stream_id.is_none() {
        return Err(ApiError::bad_request("Invalid propagate_mode without topic edit"));
    }
    if req.content.is_some() && req.stream_id.is_some() {
        return Err(ApiError::bad_request("Cannot change message content while changing channel"));
    }
    if req.stream_id.is_some() {
        return Err(ApiError::bad_request("Moving messages between channels is not supported yet"));
    }
    let now = now_secs();
    let age = now - m.date_sent;
    let policy = EditPolicy::of_realm(&tx, user.realm_id).await?;
    if req.content.is_some() {
        if !policy.allow_message_editing {
            return Err(ApiError::bad_request("Your organization has turned off message editing"));
        }
        if m.sender_id != user.id {
            return Err(ApiError::bad_request("You don't have permission to edit this message"));
        }
        if past(policy.content_edit_limit, age) {
            return Err(ApiError::bad_request("The time limit for editing this message has passed"));
        }
    }
    // Repeating the current topic is no topic change (clients such as the
    // terminal one send the topic with every content edit).
    let new_topic = req.topic.as_deref().map(check_topic).transpose()?.filter(|t| *t != m.subject);
    if new_topic.is_none() && req.content.is_none() {
        return Ok(());
    }
    if new_topic.is_some() && user.role > users::role::MODERATOR && past(policy.move_within_stream_limit, age) {
        return Err(ApiError::bad_request("The time limit for editing this message's topic has passed"));
    }

    let mut template = Map::new();
    let mut history = Map::new();
    history.insert("user_id".into(), user.id.into());
    history.insert("timestamp".into(), now.into());
    let holders = row_holders(&tx, id).await?;
    let prior_mentions: Vec<i64> = holders.iter().filter(|(_, f)| f & flags::MENTIONED != 0).map(|(u, _)| *u).collect();
    let mut wildcard = false;
    // Links of new content may want previews (after the commit).
    let mut preview = None;

    if let Some(raw) = &req.content {
        let content = normalize_body(raw)?;
        let topic = m.stream.as_ref().map(|_| (m.recipient_id, m.subject.as_str()));
        let message = mention::render_incoming_message(&tx, user, &content, topic).await?;
        let rendered = &message.rendered;
        let is_me = markdown::is_me_message(&content);
        wildcard = rendered.stream_wildcard && m.stream.is_some();
        // Recompute each holder's mention flags from the new content.
        let (ids, bits): (Vec<i32>, Vec<i64>) =
            holders.iter().map(|&(u, _)| (u as i32, message.mention_flags(u))).unzip();
        tx.execute(
            "UPDATE usermessage um SET flags = (um.flags & ~$3::bigint) | t.b
             FROM unnest($1::int[], $2::bigint[]) AS t(u, b)
             WHERE um.user_profile_id = t.u AND um.message_id = $4",
            &[&ids, &bits, &MENTION_FLAGS, &id],
        )
        .await?;
        tx.execute(
            "UPDATE message SET content = $1, rendered_content = $2, is_me_message = $3 WHERE id = $4",
            &[&content, &rendered.html, &is_me, &id],
        )
        .await?;
        preview = crate::workers::preview::candidate(app, user, &content, &rendered.html);
        history.insert("prev_content".into(), m.content.clone().into());
        history.insert("prev_rendered_content".into(), m.rendered_content.clone().into());
        for (k, v) in [
            ("orig_content", json!(m.content)),
            ("orig_rendered_content", json!(m.rendered_content)),
            ("content", json!(content)),
            ("rendered_content", json!(rendered.html)),
            ("is_me_message", json!(is_me)),
        ] {
            template.insert(k.into(), v);
        }
    }

    let mut message_ids = vec![id];
    if let Some(topic) = &new_topic {
        let rid = m.recipient_id as i32;
        let rows = match req.propagate_mode.as_str() {
            "change_later" => {
                tx.query(
                    "UPDATE message SET subject = $4
                     WHERE recipient_id = $1 AND lower(subject) = lower($2) AND id >= $3 RETURNING id",
                    &[&rid, &m.subject, &id, topic],
                )
                .await?
            }
            "change_all" => {
                tx.query(
                    "UPDATE message SET subject = $3 WHERE recipient_id = $1 AND lower(subject) = lower($2) RETURNING id",
                    &[&rid, &m.subject, topic],
                )
                .await?
            }
            _ => tx.query("UPDATE message SET subject = $2 WHERE id = $1 RETURNING id", &[&id, topic]).await?,
        };
        message_ids = rows.iter().map(|r| r.get(0)).collect();
        message_ids.sort_unstable();
        history.insert("prev_topic".into(), m.subject.clone().into());
        history.insert("topic".into(), topic.clone().into());
        for (k, v) in [
            ("orig_subject", json!(m.subject)),
            ("subject", json!(topic)),
            ("topic_links", json!([])),
            ("propagate_mode", json!(req.propagate_mode)),
        ] {
            template.insert(k.into(), v);
        }
    }
    let mut entries = match m.edit_history.clone() {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    entries.insert(0, Value::Object(history));
    tx.execute(
        "UPDATE message SET last_edit_time = to_timestamp($1), edit_history = $2 WHERE id = ANY($3)",
        &[&(now as f64), &Value::Array(entries), &message_ids],
    )
    .await?;

    // Recipients: everyone with a row (their flags), and for streams whose
    // history is public, the other active subscribers (as read).
    let after: HashMap<i64, i64> = row_holders(&tx, id).await?.into_iter().collect();
    let mut recipients: Vec<(i64, i64)> = after.iter().map(|(u, f)| (*u, *f)).collect();
    if let Some(s) = m.stream.as_ref().filter(|s| s.history_public_to_subscribers) {
        for u in streams::active_nonidle_subscriber_ids(&tx, s.recipient_id).await? {
            if !after.contains_key(&u) {
                recipients.push((u, flags::READ | flags::HISTORICAL));
            }
        }
    }
    recipients.sort_unstable();
    let all_ids: Vec<i64> = recipients.iter().map(|(u, _)| *u).collect();
    let presence_idle = crate::presence::idle_users(&tx, &all_ids, now).await?;
    // Each recipient's own choices, as at send time: online push, and
    // whether they muted the sender (then nothing notifies them).
    let ids32: Vec<i32> = all_ids.iter().map(|&u| u as i32).collect();
    let choices = tx
        .query(
            "SELECT u.id, u.settings,
                    EXISTS (SELECT 1 FROM muteduser mu WHERE mu.user_profile_id = u.id AND mu.muted_user_id = $2)
             FROM userprofile u WHERE u.id = ANY($1) ORDER BY 1",
            &[&ids32, &(m.sender_id as i32)],
        )
        .await?;
    let id_of = |r: &tokio_postgres::Row| r.get::<_, i32>(0) as i64;
    let online_push: Vec<i64> = choices
        .iter()
        .filter(|r| {
            crate::settings::value_of(&r.get::<_, Value>(1), "enable_online_push_notifications")
                .and_then(|v| v.as_bool())
                .unwrap_or(false)
        })
        .map(id_of)
        .collect();
    let muted_sender: Vec<i64> = choices.iter().filter(|r| r.get::<_, bool>(2)).map(id_of).collect();
    tx.commit().await?;
    let preview = crate::workers::preview::if_wanted(&client, user.realm_id, preview).await;
    // Back to the pool before the event goes out (see do_send_messages).
    drop(client);

    for (k, v) in [
        ("type", json!("update_message")),
        ("user_id", json!(user.id)),
        ("edit_timestamp", json!(now)),
        ("message_id", json!(id)),
        ("message_ids", json!(message_ids)),
        ("rendering_only", json!(false)),
        // For the event server's notification decisions (stripped before
        // clients see the event).
        ("prior_mention_user_ids", json!(prior_mentions)),
        ("presence_idle_user_ids", json!(presence_idle)),
        ("online_push_user_ids", json!(online_push)),
        ("muted_sender_user_ids", json!(muted_sender)),
        ("stream_wildcard_mention_user_ids", json!(if wildcard { all_ids.clone() } else { vec![] })),
    ] {
        template.insert(k.into(), v);
    }
    if let Some(s) = &m.stream {
        template.insert("stream_id".into(), s.id.into());
        template.insert("stream_name".into(), s.name.clone().into());
    }
    let users = recipients
        .into_iter()
        .map(|(id, bits)| {
            let mut data = Map::new();
            data.insert("id".into(), id.into());
            data.insert("flags".into(), json!(flags::api_names(bits)));
            PerUserData { id, data }
        })
        .collect();
    publish(app, user.realm_id, Notice::PerUser { event: Arc::new(Value::Object(template)), users }).await;
    if let Some(candidate) = preview {
        crate::workers::preview::enqueue(app, user.realm_id, id, candidate);
    }
    Ok(())
}
