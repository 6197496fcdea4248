//! Message SQL of the send path. `check_message` reads here (direct-message
//! recipients, topic participants, the facts about each recipient that
//! decide their flags and notifications); `do_send_messages` writes here
//! (the Message row, its UserMessage rows in bulk, a new direct-message
//! group). Every function runs on the caller's connection or transaction.

use crate::users::User;
use deadpool_postgres::{GenericClient, Transaction};
use squall_proto::error::ApiError;
use std::collections::BTreeSet;

/// Recipient counts from which COPY beats one array INSERT (COPY has a
/// fixed start-up cost; measured here: COPY BINARY ~350k rows/s, UNNEST
/// ~210k rows/s with the primary key).
pub const COPY_THRESHOLD: usize = 500;

/// A Message row to insert.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    /// Realm of the sender.
    pub realm_id: i64,
    /// Sender.
    pub sender_id: i64,
    /// Recipient row (stream, personal or group).
    pub recipient_id: i64,
    /// Topic; empty for direct messages.
    pub subject: &'a str,
    /// Normalised Markdown.
    pub content: &'a str,
    /// Rendered HTML.
    pub rendered_content: &'a str,
    /// Sending client's name.
    pub sending_client: &'a str,
    /// A `/me` message.
    pub is_me_message: bool,
}

/// Inserts a message and its UserMessage rows (`users[i]` gets
/// `user_flags[i]`) in one statement, and makes it its stream's first
/// message (`stream_id`; 0 for a direct message) if the stream has none:
/// one round trip, one commit outside a transaction. Returns the message id and its unix time. For fewer than
/// [`COPY_THRESHOLD`] rows; with none, the message alone (its rows then
/// go in by [`insert_usermessages`]).
pub async fn insert_message_with_rows(
    db: &impl GenericClient,
    m: &NewMessage<'_>,
    stream_id: i64,
    users: &[i32],
    user_flags: &[i64],
) -> Result<(i64, i64), ApiError> {
    let row = super::query_one_cached(
        db,
        "WITH m AS (
             INSERT INTO message (realm_id, sender_id, recipient_id, subject, content, rendered_content,
                                  sending_client, is_me_message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id, extract(epoch from date_sent)::bigint AS ts),
         rows AS (
             INSERT INTO usermessage (user_profile_id, message_id, flags)
             SELECT t.u, m.id, t.f FROM m, unnest($9::int[], $10::bigint[]) AS t(u, f)),
         first AS (
             UPDATE stream SET first_message_id = m.id FROM m WHERE stream.id = $11 AND stream.first_message_id IS NULL)
         SELECT id, ts FROM m",
        &[
            &(m.realm_id as i32),
            &(m.sender_id as i32),
            &(m.recipient_id as i32),
            &m.subject,
            &m.content,
            &m.rendered_content,
            &m.sending_client,
            &m.is_me_message,
            &users,
            &user_flags,
            &(stream_id as i32),
        ],
    )
    .await?;
    Ok((row.get(0), row.get(1)))
}

/// Writes the UserMessage rows of one message in bulk: `users[i]` gets
/// `user_flags[i]`.
pub async fn insert_usermessages(
    tx: &Transaction<'_>,
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

/// The personal recipient row of `user_id` (every user has one).
pub async fn personal_recipient(db: &impl GenericClient, user_id: i64) -> Result<i64, ApiError> {
    let row =
        super::query_opt_cached(db, "SELECT id FROM recipient WHERE type = 1 AND type_id = $1", &[&(user_id as i32)])
            .await?;
    match row {
        Some(r) => Ok(r.get::<_, i32>(0) as i64),
        None => Err(ApiError::internal(format!("user {user_id} has no personal recipient"))),
    }
}

/// Zulip's `huddle_hash` of a direct-message group: its member ids, in the
/// order given (callers sort them), comma-separated.
fn huddle_hash(members: &[User]) -> String {
    members.iter().map(|u| u.id.to_string()).collect::<Vec<_>>().join(",")
}

/// The recipient of the direct-message group of exactly `members` (sorted
/// by id), if the group has been written to before.
pub async fn group_recipient(db: &impl GenericClient, members: &[User]) -> Result<Option<i64>, ApiError> {
    let row = db
        .query_opt("SELECT recipient_id FROM direct_message_group WHERE huddle_hash = $1", &[&huddle_hash(members)])
        .await?;
    Ok(row.map(|r| r.get::<_, i32>(0) as i64))
}

/// Creates the direct-message group of `members` (sorted by id) with its
/// recipient and member subscriptions, as Zulip models groups; returns the
/// recipient. A group created concurrently is reused.
pub async fn create_group_recipient(db: &impl GenericClient, members: &[User]) -> Result<i64, ApiError> {
    let gid: i32 = db
        .query_one(
            "INSERT INTO direct_message_group (huddle_hash) VALUES ($1)
             ON CONFLICT (huddle_hash) DO UPDATE SET huddle_hash = EXCLUDED.huddle_hash RETURNING id",
            &[&huddle_hash(members)],
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

/// Everyone who has sent a message to the topic (case-insensitive) of the
/// stream recipient `recipient_id`.
pub async fn topic_participants(
    db: &impl GenericClient,
    recipient_id: i64,
    topic: &str,
) -> Result<BTreeSet<i64>, ApiError> {
    Ok(db
        .query(
            "SELECT DISTINCT sender_id FROM message WHERE recipient_id = $1 AND lower(subject) = lower($2)",
            &[&(recipient_id as i32), &topic],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i32>(0) as i64)
        .collect())
}

/// Whose facts [`recipient_facts`] reads.
pub enum RecipientsOf<'a> {
    /// These users (direct-message participants).
    Users(&'a [i32]),
}

/// What sending needs to know about a recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientFacts {
    /// User id.
    pub id: i64,
    /// A bot.
    pub is_bot: bool,
    /// Soft-deactivated.
    pub long_term_idle: bool,
    /// The personal settings that differ from Zulip's defaults (none: all
    /// defaults).
    pub settings: Option<serde_json::Value>,
    /// For a stream message: the subscription's own notification settings
    /// (push, email, wildcard mentions; none follows the user's) and
    /// whether the stream is muted.
    pub subscription: SubscriptionNotify,
}

/// A subscription's notification settings, as the send path reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SubscriptionNotify {
    /// `push_notifications`.
    pub push: Option<bool>,
    /// `email_notifications`.
    pub email: Option<bool>,
    /// `wildcard_mentions_notify`.
    pub wildcard_mentions: Option<bool>,
    /// `is_muted`.
    pub muted: bool,
}

/// Every active subscriber of the stream with `recipient_id` (active
/// users only, soft-deactivated ones included), in id order: what the
/// send path needs to know about them, the subscriber list the caches
/// keep ([`crate::cache::Caches::subscribers`]). One prepared statement,
/// planned once per connection (planning an unnamed statement for every
/// send cost more than executing it: 0.39 ms against 0.09 ms,
/// BENCHMARKS.md).
pub async fn stream_subscribers(
    db: &deadpool_postgres::Client,
    recipient_id: i64,
) -> Result<Vec<RecipientFacts>, ApiError> {
    let sql = "SELECT u.id, u.is_bot, u.long_term_idle, nullif(u.settings, '{}'::jsonb),
                      s.push_notifications, s.email_notifications, s.wildcard_mentions_notify, s.is_muted
               FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
               WHERE s.recipient_id = $1 AND s.active AND u.is_active ORDER BY 1";
    Ok(crate::db::query_cached(db, sql, &[&(recipient_id as i32)]).await?.iter().map(facts_of).collect())
}

fn facts_of(r: &tokio_postgres::Row) -> RecipientFacts {
    RecipientFacts {
        id: r.get::<_, i32>(0) as i64,
        is_bot: r.get(1),
        long_term_idle: r.get(2),
        settings: r.get(3),
        subscription: SubscriptionNotify {
            push: r.get(4),
            email: r.get(5),
            wildcard_mentions: r.get(6),
            muted: r.get(7),
        },
    }
}

/// Users' facts, in id order (a stream's recipients:
/// [`stream_subscribers`]).
pub async fn recipient_facts(
    db: &deadpool_postgres::Client,
    of: RecipientsOf<'_>,
) -> Result<Vec<RecipientFacts>, ApiError> {
    match of {
        RecipientsOf::Users(ids) => {
            let sql = "SELECT u.id, u.is_bot, u.long_term_idle, nullif(u.settings, '{}'::jsonb),
                              NULL::boolean, NULL::boolean, NULL::boolean, false
                       FROM userprofile u WHERE u.id = ANY($1) ORDER BY 1";
            Ok(crate::db::query_cached(db, sql, &[&ids]).await?.iter().map(facts_of).collect())
        }
    }
}
