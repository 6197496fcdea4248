//! Sending a message: Zulip's `check_message` validation and
//! `do_send_messages` (one Message row, UserMessage rows in bulk, one event).

use crate::markdown::{self, MentionRef, MentionTarget};
use crate::streams::{self, is_unprintable, Stream};
use crate::users::{self, User};
use crate::App;
use serde_json::Value;
use squall_proto::envelope::{
    Destination, Envelope, MessageNotice, MessageRecipient, Notice, NotifySets, Participant, WideMessage,
};
use squall_proto::error::ApiError;
use squall_proto::flags;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Longest message Zulip stores (characters).
pub const MAX_MESSAGE_LENGTH: usize = 10_000;
/// Longest topic (characters).
pub const MAX_TOPIC_LENGTH: usize = 60;

/// Clients whose messages are marked read for their sender by default.
const READ_BY_SENDER_CLIENTS: [&str; 10] = [
    "zulipandroid",
    "zulipios",
    "zulipdesktop",
    "zulipmobile",
    "zulipelectron",
    "zulipterminal",
    "snipe",
    "website",
    "ios",
    "android",
];

/// Where a message is addressed, as parsed from `to`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRef {
    /// By name.
    Name(String),
    /// By id.
    Id(i64),
}

/// Direct-message recipients, as parsed from `to`.
#[derive(Debug, Clone, PartialEq)]
pub enum UserRefs {
    /// Emails.
    Emails(Vec<String>),
    /// User ids.
    Ids(Vec<i64>),
}

/// Zulip's `extract_stream_indicator`.
pub fn extract_stream_indicator(to: &str) -> Result<StreamRef, ApiError> {
    let data: Value = match serde_json::from_str(to) {
        Ok(v) => v,
        Err(_) => return Ok(StreamRef::Name(to.to_owned())),
    };
    let data = match data {
        Value::Array(mut items) => {
            if items.len() > 1 {
                return Err(ApiError::bad_request("Cannot send to multiple channels"));
            }
            match items.pop() {
                Some(v) => v,
                None => return Err(ApiError::bad_request("Missing channel")),
            }
        }
        other => other,
    };
    match data {
        Value::String(s) => Ok(StreamRef::Name(s)),
        Value::Number(n) => {
            n.as_i64().map(StreamRef::Id).ok_or_else(|| ApiError::bad_request("Invalid data type for channel"))
        }
        _ => Err(ApiError::bad_request("Invalid data type for channel")),
    }
}

/// Zulip's `extract_private_recipients`: a JSON list of emails or ids, a JSON
/// string, or a comma-separated list of emails. De-duplicated.
pub fn extract_private_recipients(to: &str) -> Result<UserRefs, ApiError> {
    let data: Value = match serde_json::from_str(to) {
        Ok(v) => v,
        Err(_) => {
            let emails: Vec<String> =
                to.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            return Ok(UserRefs::Emails(dedup(emails)));
        }
    };
    let items = match data {
        Value::Array(items) => items,
        Value::String(s) => vec![Value::String(s)],
        Value::Number(n) => vec![Value::Number(n)],
        _ => return Err(ApiError::bad_request("Invalid data type for recipients")),
    };
    if items.iter().all(Value::is_string) {
        let emails = items.into_iter().filter_map(|v| v.as_str().map(|s| s.trim().to_owned())).collect();
        Ok(UserRefs::Emails(dedup(emails)))
    } else if items.iter().all(|v| v.as_i64().is_some()) {
        Ok(UserRefs::Ids(dedup(items.iter().filter_map(Value::as_i64).collect())))
    } else if items.iter().all(|v| v.is_string() || v.as_i64().is_some()) {
        Err(ApiError::bad_request("Recipient lists may contain emails or user IDs, but not both."))
    } else {
        Err(ApiError::bad_request("Invalid data type for recipients"))
    }
}

fn dedup<T: Ord + Clone>(v: Vec<T>) -> Vec<T> {
    let mut seen = BTreeSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

/// Zulip's `normalize_body`: strip trailing whitespace and leading
/// newlines; refuse empty and NUL; truncate to 10,000 characters.
pub fn normalize_body(raw: &str) -> Result<String, ApiError> {
    let body = raw.trim_end().trim_start_matches(['\n', '\r']);
    if body.is_empty() {
        return Err(ApiError::bad_request("Message must not be empty"));
    }
    if body.contains('\0') {
        return Err(ApiError::bad_request("Message must not contain null bytes"));
    }
    Ok(truncate(body, MAX_MESSAGE_LENGTH, "\n[message truncated]"))
}

fn truncate(s: &str, max_chars: usize, suffix: &str) -> String {
    if s.chars().count() <= max_chars {
        return s.to_owned();
    }
    let keep = max_chars - suffix.chars().count();
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(suffix);
    out
}

/// Zulip's topic rules: stripped, non-empty, printable; over 60 characters
/// truncated to 57 + `...`.
pub fn check_topic(raw: &str) -> Result<String, ApiError> {
    let topic = raw.trim();
    if topic.is_empty() {
        return Err(ApiError::bad_request("Topic can't be empty!"));
    }
    if let Some(pos) = topic.chars().position(is_unprintable) {
        return Err(ApiError::bad_request(format!("Invalid character in topic, at position {}!", pos + 1)));
    }
    Ok(truncate(topic, MAX_TOPIC_LENGTH, "..."))
}

/// A validated send request.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Stream or direct addressing.
    pub to: Addressee,
    /// Raw content (not yet normalised).
    pub content: String,
    /// Sending client name.
    pub client: String,
    /// Sender's queue, for local echo.
    pub queue_id: Option<String>,
    /// Local echo id.
    pub local_id: Option<String>,
    /// Explicit `read_by_sender`.
    pub read_by_sender: Option<bool>,
}

/// Addressing after the `legacy_build` checks.
#[derive(Debug, Clone)]
pub enum Addressee {
    /// Stream + validated topic.
    Stream(StreamRef, String),
    /// Direct-message recipients.
    Direct(UserRefs),
}

/// Zulip's `Addressee.legacy_build`.
pub fn build_addressee(kind: &str, to: Option<&str>, topic: Option<&str>) -> Result<Addressee, ApiError> {
    match kind {
        "stream" | "channel" => {
            let to = to.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::bad_request("Missing channel"))?;
            let stream = extract_stream_indicator(to)?;
            let topic = topic.ok_or_else(|| ApiError::bad_request("Missing topic"))?;
            Ok(Addressee::Stream(stream, check_topic(topic)?))
        }
        "direct" | "private" => {
            let refs = match to {
                None => UserRefs::Emails(vec![]),
                Some(t) => extract_private_recipients(t)?,
            };
            let empty = match &refs {
                UserRefs::Emails(e) => e.is_empty(),
                UserRefs::Ids(i) => i.is_empty(),
            };
            if empty {
                return Err(ApiError::bad_request("Message must have recipients"));
            }
            Ok(Addressee::Direct(refs))
        }
        _ => Err(ApiError::bad_request("Invalid type")),
    }
}

/// Whose facts [`recipient_facts`] reads.
enum RecipientsOf<'a> {
    /// Active subscribers of a stream's recipient, leaving out
    /// soft-deactivated ones unless `keep_idle` or they are in `idle_kept`
    /// (users the message may flag).
    Stream { recipient_id: i64, keep_idle: bool, idle_kept: &'a [i32] },
    /// These users (direct-message participants).
    Users(&'a [i32]),
}

/// What sending needs to know about a recipient.
struct RecipientFacts {
    id: i64,
    is_bot: bool,
    /// Not active within the offline threshold.
    presence_idle: bool,
    /// Soft-deactivated.
    long_term_idle: bool,
}

/// Recipients with their bot and presence facts, in id order.
async fn recipient_facts(
    db: &impl deadpool_postgres::GenericClient,
    of: RecipientsOf<'_>,
    now: i64,
) -> Result<Vec<RecipientFacts>, ApiError> {
    let since = (now - crate::presence::OFFLINE_THRESHOLD_SECS) as f64;
    let select = "SELECT u.id, u.is_bot, coalesce(p.last_active_time >= to_timestamp($2), false), u.long_term_idle";
    let rows = match of {
        RecipientsOf::Stream { recipient_id, keep_idle, idle_kept } => {
            // Filtering idle users here, not after, is what makes a stream
            // of mostly idle subscribers cheap to send to.
            let sql = format!(
                "{select} FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
                 LEFT JOIN userpresence p ON p.user_profile_id = u.id
                 WHERE s.recipient_id = $1 AND s.active AND u.is_active
                   AND (NOT u.long_term_idle OR $3 OR u.id = ANY($4)) ORDER BY 1"
            );
            db.query(&sql, &[&(recipient_id as i32), &since, &keep_idle, &idle_kept]).await?
        }
        RecipientsOf::Users(ids) => {
            let sql = format!(
                "{select} FROM userprofile u LEFT JOIN userpresence p ON p.user_profile_id = u.id
                 WHERE u.id = ANY($1) ORDER BY 1"
            );
            db.query(&sql, &[&ids, &since]).await?
        }
    };
    Ok(rows
        .iter()
        .map(|r| RecipientFacts {
            id: r.get::<_, i32>(0) as i64,
            is_bot: r.get(1),
            presence_idle: !r.get::<_, bool>(2),
            long_term_idle: r.get(3),
        })
        .collect())
}

/// Resolved recipient of a message.
enum Target {
    Stream(Stream),
    /// Personal to `other` (may be the sender), or a group; all participants
    /// including the sender, sorted by id.
    Direct {
        participants: Vec<User>,
        recipient_id: i64,
    },
}

/// `check_message` + `do_send_messages`. Returns the new message id.
pub async fn send_message(app: &App, sender: &User, out: Outgoing) -> Result<i64, ApiError> {
    let content = normalize_body(&out.content)?;
    let mut client = app.pool.get().await?;
    let tx = client.transaction().await?;

    // Resolve the destination and check access.
    let (target, topic) = match &out.to {
        Addressee::Stream(sref, topic) => {
            let stream = match sref {
                StreamRef::Name(raw) => {
                    let name = streams::check_stream_name(raw)?;
                    streams::stream_by_name(&tx, sender.realm_id, &name).await?.ok_or_else(|| {
                        ApiError::with_code(
                            "STREAM_DOES_NOT_EXIST",
                            format!("Channel '{}' does not exist", html_escape(&name)),
                        )
                        .field("stream", name.clone())
                    })?
                }
                StreamRef::Id(id) => streams::stream_by_id(&tx, sender.realm_id, *id).await?.ok_or_else(|| {
                    ApiError::with_code("STREAM_DOES_NOT_EXIST", format!("Channel with ID '{id}' does not exist"))
                        .field("stream_id", *id)
                })?,
            };
            let provisional = stream.stream_post_policy == streams::post_policy::RESTRICT_NEW_MEMBERS
                && !sender.is_realm_admin()
                && streams::is_provisional_member(&tx, sender).await?;
            streams::check_post_policy(&stream, sender, provisional)?;
            let allowed = (stream.is_public() && !sender.is_guest())
                || stream.is_web_public
                || streams::is_subscribed(&tx, sender.id, &stream).await?;
            if !allowed {
                return Err(ApiError::bad_request(format!("Not authorized to send to channel '{}'", stream.name)));
            }
            (Target::Stream(stream), topic.clone())
        }
        Addressee::Direct(refs) => {
            let found = match refs {
                UserRefs::Emails(emails) => {
                    let found = users::users_by_emails(&tx, sender.realm_id, emails).await?;
                    if let Some(bad) =
                        emails.iter().find(|e| !found.iter().any(|u| u.delivery_email.eq_ignore_ascii_case(e.trim())))
                    {
                        return Err(ApiError::bad_request(format!("Invalid email '{bad}'")));
                    }
                    found
                }
                UserRefs::Ids(ids) => {
                    let found = users::users_by_ids(&tx, sender.realm_id, ids).await?;
                    if let Some(bad) = ids.iter().find(|i| !found.iter().any(|u| u.id == **i)) {
                        return Err(ApiError::bad_request(format!("Invalid user ID {bad}")));
                    }
                    found
                }
            };
            if let Some(gone) = found.iter().find(|u| !u.is_active) {
                return Err(ApiError::bad_request(format!("'{}' is no longer using Zulip.", gone.email)));
            }
            let others: Vec<User> = found.into_iter().filter(|u| u.id != sender.id).collect();
            let mut participants = others.clone();
            participants.push(sender.clone());
            participants.sort_by_key(|u| u.id);
            participants.dedup_by_key(|u| u.id);
            let recipient_id = match others.len() {
                0 => personal_recipient(&tx, sender.id).await?,
                1 => personal_recipient(&tx, others[0].id).await?,
                _ => group_recipient(&tx, &participants).await?,
            };
            (Target::Direct { participants, recipient_id }, String::new())
        }
    };

    // Render, resolving mentions against the realm's users.
    let rendered = render_message(&tx, sender, &content).await?;

    // Who gets a row, with what the notification sets need about them (one
    // query: for a big stream this is the expensive read).
    let now = crate::unix_time().as_secs() as i64;
    let topic_participants: BTreeSet<i64> = match &target {
        Target::Stream(s) if rendered.topic_wildcard => {
            let mut set: BTreeSet<i64> = tx
                .query(
                    "SELECT DISTINCT sender_id FROM message WHERE recipient_id = $1 AND lower(subject) = lower($2)",
                    &[&(s.recipient_id as i32), &topic],
                )
                .await?
                .iter()
                .map(|r| r.get::<_, i32>(0) as i64)
                .collect();
            set.insert(sender.id);
            set
        }
        _ => BTreeSet::new(),
    };
    if let Target::Stream(s) = &target {
        if rendered.stream_wildcard || rendered.topic_wildcard {
            let sql = format!(
                "SELECT r.wildcard_mention_policy, {},
                        (SELECT count(*) FROM subscription s JOIN userprofile su ON su.id = s.user_profile_id
                         WHERE s.recipient_id = $2 AND s.active AND su.is_active)
                 FROM userprofile u JOIN realm r ON r.id = u.realm_id WHERE u.id = $1",
                streams::PROVISIONAL_MEMBER
            );
            let row = tx.query_one(&sql, &[&(sender.id as i32), &(s.recipient_id as i32)]).await?;
            let (policy, provisional, subscribers): (i16, bool, i64) = (row.get(0), row.get(1), row.get(2));
            if rendered.stream_wildcard
                && !streams::wildcard_mention_allowed(policy, sender, subscribers as usize, provisional)
            {
                return Err(ApiError::with_code(
                    "STREAM_WILDCARD_MENTION_NOT_ALLOWED",
                    "You do not have permission to use channel wildcard mentions in this channel.",
                ));
            }
            if rendered.topic_wildcard
                && !streams::wildcard_mention_allowed(policy, sender, topic_participants.len(), provisional)
            {
                return Err(ApiError::with_code(
                    "TOPIC_WILDCARD_MENTION_NOT_ALLOWED",
                    "You do not have permission to use topic wildcard mentions in this topic.",
                ));
            }
        }
    }
    let (recipient_id, people, is_private) = match &target {
        Target::Stream(s) => {
            let idle_kept: Vec<i32> =
                rendered.mentioned_user_ids.iter().chain(&topic_participants).map(|&u| u as i32).collect();
            let of = RecipientsOf::Stream {
                recipient_id: s.recipient_id,
                keep_idle: rendered.stream_wildcard,
                idle_kept: &idle_kept,
            };
            (s.recipient_id, recipient_facts(&tx, of, now).await?, false)
        }
        Target::Direct { participants, recipient_id } => {
            let ids: Vec<i32> = participants.iter().map(|u| u.id as i32).collect();
            (*recipient_id, recipient_facts(&tx, RecipientsOf::Users(&ids), now).await?, true)
        }
    };
    let mut recipients: Vec<i64> = people.iter().map(|p| p.id).collect();
    let bots: Vec<i64> = people.iter().filter(|p| p.is_bot).map(|p| p.id).collect();
    let presence_idle: Vec<i64> = people.iter().filter(|p| p.presence_idle).map(|p| p.id).collect();
    // The sender first when a recipient, as Zulip orders the event's users.
    recipients.sort_by_key(|&u| (u != sender.id, u));
    let read_by_sender =
        out.read_by_sender.unwrap_or_else(|| READ_BY_SENDER_CLIENTS.contains(&out.client.to_lowercase().as_str()));
    let mut base = 0;
    if rendered.stream_wildcard {
        base |= flags::STREAM_WILDCARD_MENTIONED;
    }
    if is_private {
        base |= flags::IS_PRIVATE;
    }
    let mut user_flags: Vec<i64> = recipients
        .iter()
        .map(|&u| {
            let mut f = base;
            if u == sender.id && read_by_sender {
                f |= flags::READ;
            }
            if rendered.mentioned_user_ids.contains(&u) {
                f |= flags::MENTIONED;
            }
            if topic_participants.contains(&u) {
                f |= flags::TOPIC_WILDCARD_MENTIONED;
            }
            f
        })
        .collect();
    // Soft-deactivated users get a stream message's row only when it flags
    // them; DMs always get one. Those about to be notified of a DM or a
    // personal mention come back (after the commit).
    let long_term_idle: BTreeSet<i64> = people.iter().filter(|p| p.long_term_idle).map(|p| p.id).collect();
    let mut reactivate: Vec<i64> = Vec::new();
    if !long_term_idle.is_empty() {
        let mut kept = Vec::with_capacity(recipients.len());
        let mut kept_flags = Vec::with_capacity(recipients.len());
        for (&u, &f) in recipients.iter().zip(&user_flags) {
            if long_term_idle.contains(&u) {
                if !is_private && f == 0 {
                    continue;
                }
                if u != sender.id && (is_private || f & (flags::MENTIONED | flags::TOPIC_WILDCARD_MENTIONED) != 0) {
                    reactivate.push(u);
                }
            }
            kept.push(u);
            kept_flags.push(f);
        }
        recipients = kept;
        user_flags = kept_flags;
    }

    // One Message row, UserMessage rows in one bulk statement.
    let is_me = markdown::is_me_message(&content);
    let row = tx
        .query_one(
            "INSERT INTO message (realm_id, sender_id, recipient_id, subject, content, rendered_content,
                                  sending_client, is_me_message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id, extract(epoch from date_sent)::bigint",
            &[
                &(sender.realm_id as i32),
                &(sender.id as i32),
                &(recipient_id as i32),
                &topic,
                &content,
                &rendered.html,
                &out.client,
                &is_me,
            ],
        )
        .await?;
    let message_id: i64 = row.get(0);
    let timestamp: i64 = row.get(1);
    let ids32: Vec<i32> = recipients.iter().map(|&u| u as i32).collect();
    insert_usermessages(&tx, &ids32, message_id, &user_flags).await?;
    // Only the stream's first message ever needs this write.
    if let Target::Stream(s) = &target {
        if s.first_message_id.is_none() {
            tx.execute(
                "UPDATE stream SET first_message_id = $1 WHERE id = $2 AND first_message_id IS NULL",
                &[&message_id, &(s.id as i32)],
            )
            .await?;
        }
    }
    tx.commit().await?;

    // Notification id sets. Squall stores no per-user notification settings
    // yet, so every user has Zulip's defaults: push while online, offline
    // email and push for DMs and mentions, no stream notifications,
    // wildcard mentions notify. Users not active within the offline
    // threshold are presence-idle.
    let notify = NotifySets {
        presence_idle_user_ids: presence_idle,
        online_push_user_ids: recipients.clone(),
        stream_wildcard_mention_user_ids: if rendered.stream_wildcard && !is_private {
            recipients.clone()
        } else {
            Vec::new()
        },
        topic_wildcard_mention_user_ids: recipients
            .iter()
            .copied()
            .filter(|u| topic_participants.contains(u))
            .collect(),
        all_bot_user_ids: bots,
        ..NotifySets::default()
    };

    let (public_stream, invite_only) = match &target {
        Target::Stream(s) => (s.is_public(), s.invite_only),
        Target::Direct { .. } => (false, false),
    };
    let destination = match target {
        Target::Stream(s) => Destination::Stream { stream_id: s.id, name: s.name },
        Target::Direct { participants, .. } => Destination::Private { participants: display_recipient(&participants) },
    };
    let message = WideMessage {
        id: message_id,
        sender_id: sender.id,
        sender_email: sender.email.clone(),
        sender_full_name: sender.full_name.clone(),
        sender_realm_str: sender.realm_string_id.clone(),
        recipient_id,
        timestamp,
        client: out.client.clone(),
        subject: topic,
        content,
        rendered_content: rendered.html,
        is_me_message: is_me,
        avatar_url: sender.avatar_url(),
        avatar_is_gravatar: true,
        destination,
        last_edit_timestamp: None,
        edit_history: None,
    };
    let users = recipients
        .iter()
        .zip(&user_flags)
        .map(|(&id, &flags)| MessageRecipient { id, flags, mentioned_user_group_id: None })
        .collect();
    let envelope = Envelope {
        realm_id: sender.realm_id,
        notice: Notice::Message(Box::new(MessageNotice {
            message: Arc::new(message),
            users,
            sender_queue_id: out.queue_id,
            local_id: out.local_id,
            realm_id: sender.realm_id,
            public_stream,
            invite_only,
            notify,
        })),
    };
    if !reactivate.is_empty() {
        let app = app.clone();
        tokio::spawn(async move {
            for user_id in reactivate {
                let result = match app.pool.get().await {
                    Ok(mut db) => crate::soft_deactivation::reactivate_user(&mut db, user_id).await.map(|_| ()),
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = result {
                    tracing::warn!(user_id, error = ?e, "soft reactivation failed");
                }
            }
        });
    }
    // The message is committed; a delivery failure must not turn the send
    // into an error (clients would resend a stored message).
    if let Err(e) = app.bus.publish(envelope).await {
        tracing::error!(message_id, error = %e, "message stored but its event was not delivered");
    }
    Ok(message_id)
}

/// Recipient counts from which COPY beats one array INSERT (COPY has a
/// fixed start-up cost; measured here: COPY BINARY ~350k rows/s, UNNEST
/// ~210k rows/s with the primary key).
const COPY_THRESHOLD: usize = 500;

/// Writes the UserMessage rows of one message in bulk.
async fn insert_usermessages(
    tx: &deadpool_postgres::Transaction<'_>,
    users: &[i32],
    message_id: i64,
    user_flags: &[i64],
) -> Result<(), ApiError> {
    if users.len() < COPY_THRESHOLD {
        tx.execute(
            "INSERT INTO usermessage (user_profile_id, message_id, flags)
             SELECT u, $2, f FROM unnest($1::int[], $3::bigint[]) AS t(u, f)",
            &[&users, &message_id, &user_flags],
        )
        .await?;
        return Ok(());
    }
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let sink = tx.copy_in("COPY usermessage (user_profile_id, message_id, flags) FROM STDIN BINARY").await?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::INT8, Type::INT8]);
    futures_util::pin_mut!(writer);
    for (u, f) in users.iter().zip(user_flags) {
        writer.as_mut().write(&[u, &message_id, f]).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// `display_recipient` for direct messages: participants sorted by email.
pub fn display_recipient(participants: &[User]) -> Vec<Participant> {
    let mut out: Vec<Participant> = participants
        .iter()
        .map(|u| Participant {
            id: u.id,
            email: u.email.clone(),
            full_name: u.full_name.clone(),
            is_mirror_dummy: false,
        })
        .collect();
    out.sort_by(|a, b| a.email.cmp(&b.email));
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#x27;")
}

async fn personal_recipient(db: &impl deadpool_postgres::GenericClient, user_id: i64) -> Result<i64, ApiError> {
    let row = db.query_opt("SELECT id FROM recipient WHERE type = 1 AND type_id = $1", &[&(user_id as i32)]).await?;
    match row {
        Some(r) => Ok(r.get::<_, i32>(0) as i64),
        None => Err(ApiError::internal(format!("user {user_id} has no personal recipient"))),
    }
}

/// The recipient of the direct-message group of exactly `members`, created
/// on first use (with member subscriptions, as Zulip models groups).
async fn group_recipient(db: &impl deadpool_postgres::GenericClient, members: &[User]) -> Result<i64, ApiError> {
    let hash = members.iter().map(|u| u.id.to_string()).collect::<Vec<_>>().join(",");
    if let Some(r) =
        db.query_opt("SELECT recipient_id FROM direct_message_group WHERE huddle_hash = $1", &[&hash]).await?
    {
        return Ok(r.get::<_, i32>(0) as i64);
    }
    let gid: i32 = db
        .query_one(
            "INSERT INTO direct_message_group (huddle_hash) VALUES ($1)
             ON CONFLICT (huddle_hash) DO UPDATE SET huddle_hash = EXCLUDED.huddle_hash RETURNING id",
            &[&hash],
        )
        .await?
        .get(0);
    let rid: i32 = db
        .query_one(
            "INSERT INTO recipient (type, type_id) VALUES (3, $1)
             ON CONFLICT (type, type_id) DO UPDATE SET type_id = EXCLUDED.type_id RETURNING id",
            &[&gid],
        )
        .await?
        .get(0);
    db.execute("UPDATE direct_message_group SET recipient_id = $1 WHERE id = $2", &[&rid, &gid]).await?;
    let ids: Vec<i32> = members.iter().map(|u| u.id as i32).collect();
    db.execute(
        "INSERT INTO subscription (user_profile_id, recipient_id) SELECT u, $2 FROM unnest($1::int[]) u
         ON CONFLICT DO NOTHING",
        &[&ids, &rid],
    )
    .await?;
    Ok(rid as i64)
}

/// Renders message content as `author` writes it: user mentions resolved
/// against the realm's active users, channel links against the channels
/// the author can see.
pub(crate) async fn render_message(
    db: &impl deadpool_postgres::GenericClient,
    author: &User,
    content: &str,
) -> Result<markdown::Rendered, ApiError> {
    let refs = markdown::mention_refs(content);
    let candidates = mention_candidates(db, author.realm_id, &refs).await?;
    let names: Vec<String> = markdown::channel_refs(content).iter().map(|n| n.to_lowercase()).collect();
    let mut channels: HashMap<String, markdown::StreamTarget> = HashMap::new();
    if !names.is_empty() {
        let rows = db
            .query(
                "SELECT st.id, st.name FROM stream st
                 WHERE st.realm_id = $1 AND lower(st.name) = ANY($2)
                   AND ((NOT st.invite_only AND NOT $4) OR EXISTS (
                       SELECT 1 FROM subscription s WHERE s.recipient_id = st.recipient_id
                         AND s.user_profile_id = $3 AND s.active))",
                &[&(author.realm_id as i32), &names, &(author.id as i32), &author.is_guest()],
            )
            .await?;
        for r in rows {
            let t = markdown::StreamTarget { id: r.get::<_, i32>(0) as i64, name: r.get(1) };
            channels.insert(t.name.to_lowercase(), t);
        }
    }
    Ok(markdown::render_with(content, &|r| resolve_mention(&candidates, r), &|name| {
        channels.get(&name.to_lowercase()).cloned()
    }))
}

/// Active users of the realm that `refs` could name: by lower-cased full
/// name and by id.
pub(crate) async fn mention_candidates(
    db: &impl deadpool_postgres::GenericClient,
    realm_id: i64,
    refs: &BTreeSet<MentionRef>,
) -> Result<(HashMap<String, Vec<MentionTarget>>, HashMap<i64, MentionTarget>), ApiError> {
    let mut names = Vec::new();
    let mut ids = Vec::new();
    for r in refs {
        match r {
            MentionRef::Name(n) => names.push(n.to_lowercase()),
            MentionRef::Id(i) => {
                if let Ok(i) = i32::try_from(*i) {
                    ids.push(i)
                }
            }
        }
    }
    let (mut by_name, mut by_id) = (HashMap::new(), HashMap::new());
    if names.is_empty() && ids.is_empty() {
        return Ok((by_name, by_id));
    }
    let rows = db
        .query(
            "SELECT id, full_name FROM userprofile
             WHERE realm_id = $1 AND is_active AND (lower(full_name) = ANY($2) OR id = ANY($3))",
            &[&(realm_id as i32), &names, &ids],
        )
        .await?;
    for r in rows {
        let t = MentionTarget { id: r.get::<_, i32>(0) as i64, full_name: r.get(1) };
        by_name.entry(t.full_name.to_lowercase()).or_insert_with(Vec::new).push(t.clone());
        by_id.insert(t.id, t);
    }
    Ok((by_name, by_id))
}

pub(crate) fn resolve_mention(
    (by_name, by_id): &(HashMap<String, Vec<MentionTarget>>, HashMap<i64, MentionTarget>),
    r: &MentionRef,
) -> Option<MentionTarget> {
    match r {
        MentionRef::Id(id) => by_id.get(id).cloned(),
        // An ambiguous name (two users share it) mentions nobody, as in Zulip.
        MentionRef::Name(n) => match by_name.get(&n.to_lowercase()) {
            Some(list) if list.len() == 1 => list.first().cloned(),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_indicator_forms() {
        assert_eq!(extract_stream_indicator("Denmark").unwrap(), StreamRef::Name("Denmark".into()));
        assert_eq!(extract_stream_indicator("\"Denmark\"").unwrap(), StreamRef::Name("Denmark".into()));
        assert_eq!(extract_stream_indicator("5").unwrap(), StreamRef::Id(5));
        assert_eq!(extract_stream_indicator("[\"Denmark\"]").unwrap(), StreamRef::Name("Denmark".into()));
        assert_eq!(extract_stream_indicator("[7]").unwrap(), StreamRef::Id(7));
        assert_eq!(extract_stream_indicator("[\"a\",\"b\"]").unwrap_err().msg, "Cannot send to multiple channels");
        assert_eq!(extract_stream_indicator("{}").unwrap_err().msg, "Invalid data type for channel");
    }

    #[test]
    fn private_recipient_forms() {
        assert_eq!(
            extract_private_recipients("a@x.com, b@x.com,a@x.com").unwrap(),
            UserRefs::Emails(vec!["a@x.com".into(), "b@x.com".into()])
        );
        assert_eq!(extract_private_recipients("[3, 4, 3]").unwrap(), UserRefs::Ids(vec![3, 4]));
        assert_eq!(extract_private_recipients("[\"a@x.com\"]").unwrap(), UserRefs::Emails(vec!["a@x.com".into()]));
        assert_eq!(
            extract_private_recipients("[\"a@x.com\", 3]").unwrap_err().msg,
            "Recipient lists may contain emails or user IDs, but not both."
        );
        assert_eq!(extract_private_recipients("{}").unwrap_err().msg, "Invalid data type for recipients");
    }

    #[test]
    fn body_normalisation() {
        assert_eq!(normalize_body("\n\nhello  \n ").unwrap(), "hello");
        assert_eq!(normalize_body("  \n").unwrap_err().msg, "Message must not be empty");
        assert_eq!(normalize_body("a\0b").unwrap_err().msg, "Message must not contain null bytes");
        let long = normalize_body(&"x".repeat(10_005)).unwrap();
        assert_eq!(long.chars().count(), 10_000);
        assert!(long.ends_with("\n[message truncated]"));
    }

    #[test]
    fn topic_rules() {
        assert_eq!(check_topic("  hi ").unwrap(), "hi");
        assert_eq!(check_topic("   ").unwrap_err().msg, "Topic can't be empty!");
        assert_eq!(check_topic("abcd\u{1}").unwrap_err().msg, "Invalid character in topic, at position 5!");
        let t = check_topic(&"t".repeat(61)).unwrap();
        assert_eq!(t, format!("{}...", "t".repeat(57)));
        assert_eq!(check_topic(&"t".repeat(60)).unwrap().len(), 60);
    }

    #[test]
    fn addressee_errors() {
        assert_eq!(build_addressee("bogus", None, None).unwrap_err().msg, "Invalid type");
        assert_eq!(build_addressee("stream", None, Some("t")).unwrap_err().msg, "Missing channel");
        assert_eq!(build_addressee("stream", Some("s"), None).unwrap_err().msg, "Missing topic");
        assert_eq!(build_addressee("direct", None, None).unwrap_err().msg, "Message must have recipients");
        assert_eq!(build_addressee("private", Some("[]"), None).unwrap_err().msg, "Message must have recipients");
        assert!(matches!(build_addressee("channel", Some("s"), Some("t")).unwrap(), Addressee::Stream(..)));
    }
}
