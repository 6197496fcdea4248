//! Missed-message emails (Zulip's `MissedMessageWorker` and
//! `handle_missedmessage_emails`).
//!
//! An item from the gateway says "user U may want an email about message
//! M". [`schedule`] writes it to `scheduled_message_email`, due after the
//! user's batching period, and only then is the item acknowledged. The
//! batch loop ([`send_batches_forever`]) picks every user with a row that
//! fell due, takes all of that user's waiting rows (row locks, so several
//! workers share the table), drops messages the user has read meanwhile
//! or that came before the user was last active (presence: they are back
//! and have seen them; Zulip checks only the read flag), and sends one
//! email per conversation for the rest; the rows are marked done in the
//! transaction that sent it. Redelivered items hit the unique key, so a
//! worker killed at any point neither loses an email nor sends one twice
//! (the window left is between the SMTP server's "250 OK" and the commit).

use super::config::EmailConfig;
use super::{escape_html, field, Failure, Workers};
use lettre::message::{header, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;
use squall_proto::flags;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Sends email, or (with no SMTP host configured) logs what it would send.
pub enum Mailer {
    /// An SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// No server: each email is logged with its recipient and subject.
    Log,
}

impl Mailer {
    /// The mailer `cfg` describes.
    pub fn new(cfg: &EmailConfig) -> Result<Self, String> {
        if cfg.host.is_empty() {
            return Ok(Mailer::Log);
        }
        let builder = if cfg.use_ssl {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| format!("email host: {e}"))?
        } else if cfg.use_tls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host).map_err(|e| format!("email host: {e}"))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
        };
        let mut builder = builder.port(cfg.port).timeout(Some(Duration::from_secs(cfg.timeout_secs.max(1))));
        if !cfg.host_user.is_empty() {
            builder = builder.credentials(Credentials::new(cfg.host_user.clone(), cfg.host_password.clone()));
        }
        Ok(Mailer::Smtp(builder.build()))
    }

    /// Sends `email` to its recipients.
    pub async fn send(&self, email: lettre::Message) -> Result<(), String> {
        match self {
            Mailer::Smtp(t) => t.send(email).await.map(|_| ()).map_err(|e| format!("SMTP: {e}")),
            Mailer::Log => {
                let h = email.headers();
                tracing::info!(
                    to = h.get_raw("To").unwrap_or_default(),
                    subject = h.get_raw("Subject").unwrap_or_default(),
                    "email not sent: no email host is configured (set SQUALL_EMAIL_HOST)"
                );
                Ok(())
            }
        }
    }
}

/// Writes one item to the schedule: due with the user's batch already
/// waiting, or after the user's batching period (Zulip's `consume`).
pub async fn schedule(w: &Workers, item: &Value) -> Result<(), Failure> {
    let user_id: i32 = field(item, "user_profile_id")?;
    let message_id: i64 = field(item, "message_id")?;
    let trigger: String = field(item, "trigger")?;
    let group: Option<i32> = field(item, "mentioned_user_group_id")?;
    let default_delay = w.cfg.email.missed_message_delay_secs as f64;
    let db = w.app.pool.get().await?;
    db.execute(
        "INSERT INTO scheduled_message_email
             (user_profile_id, message_id, trigger, mentioned_user_group_id, scheduled_timestamp)
         SELECT u.id, $2, $3, $4, COALESCE(
                    (SELECT min(scheduled_timestamp) FROM scheduled_message_email
                     WHERE user_profile_id = $1 AND done_at IS NULL AND scheduled_timestamp > now()),
                    now() + make_interval(secs =>
                        COALESCE((u.settings->>'email_notifications_batching_period_seconds')::float8, $5)))
         FROM userprofile u WHERE u.id = $1
         ON CONFLICT (user_profile_id, message_id) DO NOTHING",
        &[&user_id, &message_id, &trigger, &group, &default_delay],
    )
    .await?;
    Ok(())
}

/// Sends the batches that fall due, forever: looks every second (or
/// sooner when the delay is shorter) and purges done rows older than a
/// day once an hour.
pub async fn send_batches_forever(w: Arc<Workers>) {
    let tick = Duration::from_millis((w.cfg.email.missed_message_delay_secs * 1000 / 4).clamp(100, 1000));
    let mut last_purge = std::time::Instant::now();
    loop {
        if let Err(e) = send_due_batches(&w).await {
            tracing::warn!(error = %e, "missed-message emails: looking for due batches failed");
        }
        if last_purge.elapsed() > Duration::from_secs(3600) {
            last_purge = std::time::Instant::now();
            if let Ok(db) = w.app.pool.get().await {
                let _ = db
                    .execute("DELETE FROM scheduled_message_email WHERE done_at < now() - interval '1 day'", &[])
                    .await;
            }
        }
        tokio::time::sleep(tick).await;
    }
}

/// Sends every batch due now; returns how many users it looked at.
pub async fn send_due_batches(w: &Workers) -> Result<usize, Failure> {
    let users: Vec<i32> = {
        let db = w.app.pool.get().await?;
        db.query(
            "SELECT DISTINCT user_profile_id FROM scheduled_message_email
             WHERE done_at IS NULL AND scheduled_timestamp <= now() LIMIT 500",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    for &user_id in &users {
        if let Err(e) = send_batch(w, user_id).await {
            tracing::warn!(user_id, error = %e, "missed-message email: batch failed; it stays scheduled");
        }
    }
    Ok(users.len())
}

/// One message as the email shows it.
#[derive(Debug, Clone)]
pub struct MissedMessage {
    /// Message id.
    pub id: i64,
    /// Sender's id.
    pub sender_id: i64,
    /// Sender's full name.
    pub sender_name: String,
    /// `Some((stream id, stream name, topic))` for a stream message.
    pub stream: Option<(i64, String, String)>,
    /// Every participant but the reader (id, name), for a direct message.
    pub dm_others: Vec<(i64, String)>,
    /// Markdown source.
    pub content: String,
    /// Rendered HTML.
    pub rendered: String,
    /// Why the user is told (the item's trigger).
    pub trigger: String,
    /// The mentioned group's name, for a group mention.
    pub mentioned_group: Option<String>,
}

async fn send_batch(w: &Workers, user_id: i32) -> Result<(), Failure> {
    let mut db = w.app.pool.get().await?;
    let tx = db.transaction().await?;
    let rows = tx
        .query(
            "SELECT id, message_id, trigger, attempts, mentioned_user_group_id FROM scheduled_message_email
             WHERE user_profile_id = $1 AND done_at IS NULL ORDER BY message_id FOR UPDATE SKIP LOCKED",
            &[&user_id],
        )
        .await?;
    if rows.is_empty() {
        return Ok(());
    }
    let message_ids: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    let attempts = rows.iter().map(|r| r.get::<_, i32>(3)).max().unwrap_or(0);
    let items: HashMap<i64, (String, Option<i32>)> =
        rows.iter().map(|r| (r.get::<_, i64>(1), (r.get::<_, String>(2), r.get::<_, Option<i32>>(4)))).collect();
    let user = tx
        .query_opt(
            "SELECT u.delivery_email, u.full_name, u.is_active AND NOT r.deactivated, u.is_bot,
                    COALESCE((u.settings->>'enable_offline_email_notifications')::boolean, true),
                    r.string_id, r.name, u.unsubscribe_key
             FROM userprofile u JOIN realm r ON r.id = u.realm_id WHERE u.id = $1",
            &[&user_id],
        )
        .await?;
    // What became of each scheduled message.
    let mut outcome: HashMap<i64, String> = HashMap::new();
    let mut retry: Option<String> = None;
    match user {
        None => outcome.extend(message_ids.iter().map(|id| (*id, "skipped: no such user".to_owned()))),
        Some(u) if !u.get::<_, bool>(2) || u.get::<_, bool>(3) => {
            outcome.extend(message_ids.iter().map(|id| (*id, "skipped: deactivated or a bot".to_owned())))
        }
        Some(u) if !u.get::<_, bool>(4) => {
            outcome.extend(message_ids.iter().map(|id| (*id, "skipped: email notifications off".to_owned())))
        }
        Some(u) => {
            let messages = unread_messages(&tx, user_id, &message_ids, &items).await?;
            let realm_url = crate::api::server::realm_url(&w.app, &u.get::<_, String>(5));
            let reader = Reader {
                user_id: user_id as i64,
                email: u.get(0),
                name: u.get(1),
                realm_name: u.get(6),
                unsubscribe_url: format!("{realm_url}{}{}", crate::api::unsubscribe::PREFIX, u.get::<_, String>(7)),
                realm_url,
            };
            for bucket in buckets(&messages) {
                let ids: Vec<i64> = bucket.iter().map(|m| m.id).collect();
                let sent = match compose(&reader, &w.sender_address(), &bucket) {
                    Ok(email) => w.mailer.send(email).await,
                    Err(e) => Err(e),
                };
                let result = match sent {
                    Ok(()) if matches!(w.mailer, Mailer::Log) => "logged: no email host".to_owned(),
                    Ok(()) => {
                        tracing::info!(user_id, to = reader.email, messages = ids.len(), "missed-message email sent");
                        "sent".to_owned()
                    }
                    Err(e) if attempts + 1 >= w.cfg.max_attempts as i32 => {
                        tracing::error!(user_id, to = reader.email, error = %e, attempts = attempts + 1,
                            "missed-message email dead-lettered: giving up after repeated failures");
                        format!("failed: {e}")
                    }
                    Err(e) => {
                        retry = Some(e);
                        continue;
                    }
                };
                outcome.extend(ids.into_iter().map(|id| (id, result.clone())));
            }
            for id in &message_ids {
                if !messages.iter().any(|m| m.id == *id) {
                    outcome.insert(*id, "skipped: read or active since".to_owned());
                }
            }
        }
    }
    let (done_ids, done_outcomes): (Vec<i64>, Vec<String>) = outcome.into_iter().unzip();
    tx.execute(
        "UPDATE scheduled_message_email s SET done_at = now(), outcome = d.outcome
         FROM unnest($2::bigint[], $3::text[]) AS d(message_id, outcome)
         WHERE s.user_profile_id = $1 AND s.message_id = d.message_id",
        &[&user_id, &done_ids, &done_outcomes],
    )
    .await?;
    if let Some(e) = &retry {
        let retry_in = w.cfg.retry_base_ms.saturating_mul(1 << attempts.min(16)) as f64 / 1000.0;
        tx.execute(
            "UPDATE scheduled_message_email SET attempts = attempts + 1, last_error = $2,
                 scheduled_timestamp = now() + make_interval(secs => $3)
             WHERE user_profile_id = $1 AND done_at IS NULL",
            &[&user_id, e, &retry_in],
        )
        .await?;
    }
    tx.commit().await?;
    match retry {
        Some(e) => Err(Failure::Retry(e)),
        None => Ok(()),
    }
}

/// The messages of `message_ids` the user still has unread, oldest first.
async fn unread_messages(
    db: &impl deadpool_postgres::GenericClient,
    user_id: i32,
    message_ids: &[i64],
    items: &HashMap<i64, (String, Option<i32>)>,
) -> Result<Vec<MissedMessage>, Failure> {
    let rows = db
        .query(
            "SELECT m.id, m.sender_id, s.full_name, r.type, r.type_id, st.name, m.subject, m.content,
                    m.rendered_content, um.flags, m.recipient_id
             FROM message m
             JOIN usermessage um ON um.message_id = m.id AND um.user_profile_id = $1
             JOIN userprofile s ON s.id = m.sender_id
             JOIN recipient r ON r.id = m.recipient_id
             LEFT JOIN stream st ON r.type = 2 AND st.id = r.type_id
             WHERE m.id = ANY($2)
               -- Active again since the message came: they have seen it
               -- (presence keeps whole seconds).
               AND NOT EXISTS (SELECT 1 FROM userpresence p WHERE p.user_profile_id = $1
                               AND p.last_active_time >= date_trunc('second', m.date_sent))
             ORDER BY m.id",
            &[&user_id, &message_ids],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        if r.get::<_, i64>(9) & flags::READ != 0 || r.get::<_, String>(7) == "(deleted)" {
            continue;
        }
        let id: i64 = r.get(0);
        let kind: i16 = r.get(3);
        let type_id: i32 = r.get(4);
        let stream = (kind == 2).then(|| (type_id as i64, r.get::<_, Option<String>>(5).unwrap_or_default(), r.get(6)));
        let sender_id = r.get::<_, i32>(1) as i64;
        let dm_others = if kind == 2 {
            Vec::new()
        } else {
            dm_participants(db, kind, type_id, r.get(10), sender_id)
                .await?
                .into_iter()
                .filter(|(id, _)| *id != user_id as i64)
                .collect()
        };
        let group = items.get(&id).and_then(|i| i.1);
        let mentioned_group = match group {
            Some(g) => {
                db.query_opt("SELECT name FROM usergroup WHERE id = $1", &[&g]).await?.map(|r| r.get::<_, String>(0))
            }
            None => None,
        };
        out.push(MissedMessage {
            id,
            sender_id,
            sender_name: r.get(2),
            stream,
            dm_others,
            content: r.get(7),
            rendered: r.get(8),
            trigger: items.get(&id).map(|i| i.0.clone()).unwrap_or_default(),
            mentioned_group,
        });
    }
    Ok(out)
}

/// The participants of a direct-message conversation (id, name).
async fn dm_participants(
    db: &impl deadpool_postgres::GenericClient,
    kind: i16,
    type_id: i32,
    recipient_id: i32,
    sender_id: i64,
) -> Result<Vec<(i64, String)>, Failure> {
    if kind != 1 {
        return super::group_participants(db, recipient_id).await;
    }
    let rows = db
        .query(
            "SELECT id, full_name FROM userprofile WHERE id = $1 OR id = $2 ORDER BY id",
            &[&type_id, &(sender_id as i32)],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get::<_, i32>(0) as i64, r.get(1))).collect())
}

impl Workers {
    /// The sender of notification emails (Zulip's NOREPLY_EMAIL_ADDRESS,
    /// by default `noreply@` the external host).
    fn sender_address(&self) -> String {
        if !self.cfg.email.noreply_address.is_empty() {
            return self.cfg.email.noreply_address.clone();
        }
        let host = self.app.settings.external_host.split(':').next().unwrap_or("localhost");
        // An address literal (`noreply@[127.0.0.1]`) is not accepted
        // as an envelope sender everywhere: a server known by its IP
        // address sends as noreply@localhost.
        match host.parse::<std::net::IpAddr>() {
            Ok(_) => "noreply@localhost".into(),
            Err(_) => format!("noreply@{host}"),
        }
    }
}

/// Who the email is for.
pub struct Reader {
    /// User id.
    pub user_id: i64,
    /// Delivery address.
    pub email: String,
    /// Full name.
    pub name: String,
    /// Their organization's name.
    pub realm_name: String,
    /// Their organization's URL.
    pub realm_url: String,
    /// Their one-click unsubscribe link.
    pub unsubscribe_url: String,
}

/// Zulip's email buckets: a one-to-one conversation per sender, a stream
/// topic (case-insensitively) or a group conversation; in the order of
/// their newest message.
pub fn buckets(messages: &[MissedMessage]) -> Vec<Vec<MissedMessage>> {
    let key = |m: &MissedMessage| match &m.stream {
        Some((id, _, topic)) => format!("s{id}:{}", topic.to_lowercase()),
        None if m.dm_others.len() <= 1 => format!("d{}", m.sender_id),
        None => {
            let ids: Vec<String> = m.dm_others.iter().map(|(id, _)| id.to_string()).collect();
            format!("g{}", ids.join(","))
        }
    };
    let mut out: Vec<(String, Vec<MissedMessage>)> = Vec::new();
    for m in messages {
        let k = key(m);
        match out.iter_mut().find(|(bk, _)| *bk == k) {
            Some((_, list)) => list.push(m.clone()),
            None => out.push((k, vec![m.clone()])),
        }
    }
    out.sort_by_key(|(_, list)| list.iter().map(|m| m.id).max().unwrap_or(0));
    out.into_iter().map(|(_, list)| list).collect()
}

/// Link to a message's conversation, near the message.
pub fn conversation_url(realm_url: &str, m: &MissedMessage, reader_id: i64) -> String {
    match &m.stream {
        Some((id, name, topic)) => format!(
            "{realm_url}{}/topic/{}/near/{}",
            crate::markdown::channel_narrow(*id, name),
            crate::markdown::hash_encode(topic),
            m.id
        ),
        None => {
            let mut ids: Vec<i64> = m.dm_others.iter().map(|(id, _)| *id).collect();
            if ids.len() > 1 {
                ids.push(reader_id);
            }
            ids.sort_unstable();
            ids.dedup();
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            let suffix = if m.dm_others.len() > 1 { "group" } else { "dm" };
            format!("{realm_url}/#narrow/dm/{}-{suffix}/near/{}", ids.join(","), m.id)
        }
    }
}

/// Names as Zulip lists the others of a group conversation: "A and B",
/// "A, B, and C", "A, B, and 3 others".
fn group_names(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [a] => (*a).to_owned(),
        [a, b] => format!("{a} and {b}"),
        [a, b, c] => format!("{a}, {b}, and {c}"),
        [a, b, rest @ ..] => format!("{a}, {b}, and {} others", rest.len()),
    }
}

/// The subject of a bucket's email (Zulip's `missed_message.subject.txt`).
pub fn subject(bucket: &[MissedMessage]) -> String {
    let Some(m) = bucket.first() else { return "New messages".into() };
    match &m.stream {
        Some((_, name, topic)) => match topic.strip_prefix("\u{2714} ") {
            Some(bare) => format!("[resolved] #{name} > {bare}"),
            None => format!("#{name} > {topic}"),
        },
        None if m.dm_others.len() <= 1 => format!("DMs with {}", m.sender_name),
        None => {
            let names: Vec<&str> = m.dm_others.iter().map(|(_, n)| n.as_str()).collect();
            format!("Group DMs with {}", group_names(&names))
        }
    }
}

/// Why the reader is told of `m` (the footer's first line).
fn reason(m: &MissedMessage) -> String {
    let stream = m.stream.as_ref().map(|(_, n, _)| n.as_str()).unwrap_or_default();
    let topic = m.stream.as_ref().map(|(_, _, t)| t.as_str()).unwrap_or_default();
    match m.trigger.as_str() {
        "mentioned" => match &m.mentioned_group {
            Some(g) => format!("You are receiving this because @{g} was mentioned."),
            None => "You are receiving this because you were personally mentioned.".into(),
        },
        "stream_wildcard_mentioned" | "stream_wildcard_mentioned_in_followed_topic" | "wildcard_mentioned" => {
            format!("You are receiving this because everyone was mentioned in #{stream}.")
        }
        "topic_wildcard_mentioned" | "topic_wildcard_mentioned_in_followed_topic" => {
            format!("You are receiving this because all topic participants were mentioned in #{stream} > {topic}.")
        }
        "stream_email_notify" => {
            format!("You are receiving this because you have email notifications enabled for #{stream}.")
        }
        "followed_topic_email_notify" => {
            "You are receiving this because you have email notifications enabled for topics you follow.".into()
        }
        _ => "You are receiving this because you received a direct message.".into(),
    }
}

/// Plain text and HTML bodies of a bucket's email.
pub fn bodies(reader: &Reader, bucket: &[MissedMessage]) -> (String, String) {
    let mut text = String::new();
    let mut html = String::from("<html><body>");
    let mut last_sender = None;
    for m in bucket {
        let one_to_one = m.stream.is_none() && m.dm_others.len() <= 1;
        let new_sender = last_sender != Some(m.sender_id);
        if new_sender {
            if last_sender.is_some() {
                html.push_str("</div>");
            }
            html.push_str("<div class=\"missed_message\">");
            if !one_to_one {
                text.push_str(&format!("{}:\n", m.sender_name));
            }
        }
        last_sender = Some(m.sender_id);
        for line in m.content.trim().lines() {
            text.push_str("> ");
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
        let sender = format!("<b>{}</b>: ", escape_html(&m.sender_name));
        match m.rendered.find("<p>") {
            Some(at) if new_sender && !one_to_one => {
                html.push_str(&m.rendered[..at + 3]);
                html.push_str(&sender);
                html.push_str(&m.rendered[at + 3..]);
            }
            _ => html.push_str(&m.rendered),
        }
    }
    if last_sender.is_some() {
        html.push_str("</div>");
    }
    let Some(first) = bucket.first() else { return (text, html) };
    let url = conversation_url(&reader.realm_url, first, reader.user_id);
    let settings = format!("{}/#settings/notifications", reader.realm_url);
    let why = reason(first);
    let realm = &reader.realm_name;
    text.push_str(&format!(
        "--\n{why}\n\nReply in {realm} Zulip:\n{url}\n\n\
         Do not reply to this email. This Zulip server is not configured to accept\nincoming emails.\n\n\
         Manage email preferences:\n{settings}\n\n\
         Unsubscribe from these emails:\n{}\n",
        reader.unsubscribe_url
    ));
    html.push_str(&format!(
        "<hr><p>{}</p><p><a href=\"{}\">Reply in {} Zulip</a></p>\
         <p>Do not reply to this email. This Zulip server is not configured to accept incoming emails.</p>\
         <p><a href=\"{}\">Manage email preferences</a> · <a href=\"{}\">Unsubscribe</a></p></body></html>",
        escape_html(&why),
        escape_html(&url),
        escape_html(realm),
        escape_html(&settings),
        escape_html(&reader.unsubscribe_url)
    ));
    (text, html)
}

/// The email for one bucket, from `from` (an address).
pub fn compose(reader: &Reader, from: &str, bucket: &[MissedMessage]) -> Result<lettre::Message, String> {
    if bucket.is_empty() {
        return Err("no messages to tell of".into());
    }
    let (text, html) = bodies(reader, bucket);
    let installation = reader.realm_url.split("://").nth(1).unwrap_or(&reader.realm_url).trim_end_matches('/');
    let from_box = Mailbox::new(
        Some(format!("{installation} notifications")),
        from.parse().map_err(|e| format!("sender address {from:?}: {e}"))?,
    );
    let to_box = Mailbox::new(
        Some(reader.name.clone()),
        reader.email.parse().map_err(|e| format!("address {:?}: {e}", reader.email))?,
    );
    let host = installation.split(':').next().unwrap_or(installation);
    lettre::Message::builder()
        .from(from_box.clone())
        .reply_to(from_box)
        .to(to_box)
        .subject(subject(bucket))
        .raw_header(header::HeaderValue::new(
            header::HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".into(),
        ))
        .raw_header(header::HeaderValue::new(
            header::HeaderName::new_from_ascii_str("List-Id"),
            format!("\"{}\" <{host}>", reader.realm_name.replace('"', "")),
        ))
        .raw_header(header::HeaderValue::new(
            header::HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{}>", reader.unsubscribe_url),
        ))
        .raw_header(header::HeaderValue::new(
            header::HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".into(),
        ))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("building the email: {e}"))
}
