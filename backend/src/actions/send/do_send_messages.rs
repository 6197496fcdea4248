//! Zulip's `do_send_messages`, for one message `check_message` accepted:
//! writes the Message row and its UserMessage rows, then builds the event
//! (the wide message, each recipient's flags, the notification sets) and
//! publishes it on the bus.
//! Soft-deactivated users the message notifies are brought back after the
//! commit, off the request path.

use super::check_message::{DirectRecipient, SendMessageRequest, Target};
use crate::db::messages::{self, NewMessage};
use crate::db::writer;
use crate::users::User;
use crate::App;
use deadpool_postgres::Object;
use squall_proto::envelope::{
    Destination, Envelope, MessageNotice, MessageRecipient, Notice, Participant, WideMessage,
};
use squall_proto::error::ApiError;
use std::sync::Arc;

/// Stores `m` and publishes its event. Returns the new message id.
///
/// Most messages are one statement (the Message row, its UserMessage rows
/// and, in a stream that has none yet, its first-message id: one round
/// trip and one commit), shared with the other messages being sent at the
/// same moment ([`crate::db::writer`]); a direct-message group's first
/// message and big recipient lists (sent with COPY) take a transaction.
pub(crate) async fn do_send_messages(
    app: &App,
    mut client: Object,
    mut m: SendMessageRequest<'_>,
) -> Result<i64, ApiError> {
    let user_ids: Vec<i32> = m.recipients.user_ids.iter().map(|&u| u as i32).collect();
    let service_bots = service_bot_triggers(&m);
    let existing = match &m.target {
        Target::Stream(s) => Some(s.recipient_id),
        Target::Direct { recipient: DirectRecipient::Existing(id), .. } => Some(*id),
        Target::Direct { recipient: DirectRecipient::NewGroup, .. } => None,
    };
    // Every stream send carries the guarded first-message update (it
    // changes nothing once the stream has one), so no copy of the stream,
    // cached or not, decides it.
    let stream_id = match &m.target {
        Target::Stream(s) => s.id,
        Target::Direct { .. } => 0,
    };
    let preview = crate::workers::preview::candidate(app, m.sender, &m.content, &m.rendered.rendered.html);
    let realm_id = m.sender.realm_id;
    let preview = crate::workers::preview::if_wanted(&client, realm_id, preview).await;
    let (recipient_id, message_id, timestamp) = match existing {
        Some(recipient_id) if user_ids.len() < messages::COPY_THRESHOLD => {
            // Written with whatever else is being sent now (group commit);
            // the connection goes back first, for the writer to use.
            drop(client);
            let row = new_message(&m, recipient_id);
            let pending = writer::Pending::of(&row, stream_id, user_ids, m.recipients.flags.clone());
            let (id, ts) = app.writer.write(&app.pool, pending).await?;
            (recipient_id, id, ts)
        }
        _ => {
            let tx = client.transaction().await?;
            let recipient_id = match &m.target {
                Target::Stream(s) => s.recipient_id,
                Target::Direct { recipient: DirectRecipient::Existing(id), .. } => *id,
                Target::Direct { participants, recipient: DirectRecipient::NewGroup } => {
                    messages::create_group_recipient(&tx, participants).await?
                }
            };
            let row = new_message(&m, recipient_id);
            let (message_id, timestamp) = messages::insert_message_with_rows(&tx, &row, stream_id, &[], &[]).await?;
            messages::insert_usermessages(&tx, &user_ids, message_id, &m.recipients.flags).await?;
            tx.commit().await?;
            // The connection goes back to the pool before the event goes
            // out: delivering can wait on busy gateway cores (their inboxes
            // are bounded), and a connection held meanwhile is one another
            // send cannot use.
            drop(client);
            (recipient_id, message_id, timestamp)
        }
    };

    let reactivate = std::mem::take(&mut m.recipients.reactivate);
    let envelope = message_envelope(m, recipient_id, message_id, timestamp);
    let for_bots = match &envelope.notice {
        Notice::Message(notice) if !service_bots.is_empty() => Some(notice.message.clone()),
        _ => None,
    };
    if !reactivate.is_empty() {
        spawn_reactivation(app, reactivate);
    }
    // The message is committed; a delivery failure must not turn the send
    // into an error (clients would resend a stored message).
    if let Err(e) = app.bus.publish(envelope).await {
        tracing::error!(message_id, error = %e, "message stored but its event was not delivered");
    }
    if let Some(message) = for_bots {
        enqueue_service_bot_events(app, &message, &service_bots);
    }
    if let Some(candidate) = preview {
        crate::workers::preview::enqueue(app, realm_id, message_id, candidate);
    }
    Ok(message_id)
}

/// Zulip's `get_service_bot_events`: the outgoing-webhook bots `m` is
/// for, with why (`mention` in a stream, `direct_message`). Nothing for a
/// message from a bot (no bot loops). No query: DM participants and the
/// mention lookup already know who is such a bot.
fn service_bot_triggers(m: &SendMessageRequest<'_>) -> Vec<(i64, &'static str)> {
    if m.sender.is_bot {
        return Vec::new();
    }
    let webhook = Some(crate::api::bots::bot_type::OUTGOING_WEBHOOK);
    match &m.target {
        Target::Direct { participants, .. } => participants
            .iter()
            .filter(|u| u.bot_type == webhook && u.is_active && u.id != m.sender.id)
            .map(|u| (u.id, "direct_message"))
            .collect(),
        Target::Stream(_) => m.rendered.mentioned_webhook_bots.iter().map(|&id| (id, "mention")).collect(),
    }
}

/// Queues the message for each outgoing-webhook bot it triggers.
fn enqueue_service_bot_events(app: &App, message: &WideMessage, bots: &[(i64, &'static str)]) {
    let variant = squall_proto::envelope::Variant { apply_markdown: false, client_gravatar: false };
    let mut dict: serde_json::Value = match serde_json::from_str(&message.client_json(variant, None)) {
        Ok(v) => v,
        Err(_) => return,
    };
    if let Some(o) = dict.as_object_mut() {
        o.insert("rendered_content".into(), message.rendered_content.clone().into());
    }
    for &(bot_id, trigger) in bots {
        app.jobs.enqueue(
            crate::workers::OUTGOING_WEBHOOKS_QUEUE,
            serde_json::json!({"message": dict, "trigger": trigger, "user_profile_id": bot_id}),
        );
    }
}

/// The Message row of `m`.
fn new_message<'m>(m: &'m SendMessageRequest<'_>, recipient_id: i64) -> NewMessage<'m> {
    NewMessage {
        realm_id: m.sender.realm_id,
        sender_id: m.sender.id,
        recipient_id,
        subject: &m.topic,
        content: &m.content,
        rendered_content: &m.rendered.rendered.html,
        sending_client: &m.client,
        is_me_message: m.is_me_message,
    }
}

/// The `message` event of a stored message.
fn message_envelope(m: SendMessageRequest<'_>, recipient_id: i64, message_id: i64, timestamp: i64) -> Envelope {
    let SendMessageRequest {
        sender,
        target,
        topic,
        content,
        rendered,
        is_me_message,
        mut recipients,
        client,
        queue_id,
        local_id,
    } = m;
    let notify = std::mem::take(&mut recipients.notify);
    let (public_stream, invite_only) = match &target {
        Target::Stream(s) => (s.is_public(), s.invite_only),
        Target::Direct { .. } => (false, false),
    };
    let destination = match target {
        Target::Stream(s) => Destination::Stream { stream_id: s.id, name: s.name },
        Target::Direct { participants, .. } => Destination::Private { participants: display_recipient(&participants) },
    };
    let users = recipients
        .user_ids
        .iter()
        .zip(&recipients.flags)
        .map(|(&id, &flags)| MessageRecipient {
            id,
            flags,
            mentioned_user_group_id: rendered.mentioned_user_group_id(id),
        })
        .collect();
    let message = WideMessage {
        id: message_id,
        sender_id: sender.id,
        sender_email: sender.email.clone(),
        sender_full_name: sender.full_name.clone(),
        sender_realm_str: sender.realm_string_id.clone(),
        recipient_id,
        timestamp,
        client,
        subject: topic,
        content,
        rendered_content: rendered.rendered.html,
        is_me_message,
        avatar_url: sender.avatar_url(),
        avatar_is_gravatar: true,
        destination,
        last_edit_timestamp: None,
        edit_history: None,
    };
    Envelope {
        realm_id: sender.realm_id,
        notice: Notice::Message(Box::new(MessageNotice {
            message: Arc::new(message),
            users,
            sender_queue_id: queue_id,
            local_id,
            realm_id: sender.realm_id,
            public_stream,
            invite_only,
            notify,
        })),
    }
}

/// Brings soft-deactivated users back in the background; a failure is
/// logged (they catch up at their next `POST /register`).
fn spawn_reactivation(app: &App, user_ids: Vec<i64>) {
    let app = app.clone();
    tokio::spawn(async move {
        for user_id in user_ids {
            let result = match app.pool.get().await {
                Ok(mut db) => crate::soft_deactivation::reactivate(&app, &mut db, user_id).await.map(|_| ()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = result {
                tracing::warn!(user_id, error = ?e, "soft reactivation failed");
            }
        }
    });
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
