//! Zulip's `check_message`: turns an [`Outgoing`] request into a
//! [`SendMessageRequest`] (the stream or the direct-message participants it
//! goes to, its topic, its rendered content and mentions, and every
//! UserMessage row with its flags), reading the database and writing
//! nothing. `do_send_messages` stores and delivers what it returns.

use super::addressee::{Addressee, Outgoing, StreamRef, UserRefs};
use super::personal::{self, Audience, MessageKind, PersonalFacts};
use crate::actions::mention::{self, RenderedMessage};
use crate::cache::Caches;
use crate::db::messages::{self, RecipientFacts, RecipientsOf};
use crate::markdown;
use crate::streams::{self, Stream};
use crate::users::{self, User};
use deadpool_postgres::GenericClient;
use squall_proto::envelope::NotifySets;
use squall_proto::error::ApiError;
use squall_proto::flags;
use squall_proto::notify::{NotificationData, NotifyIndex};
use std::collections::BTreeSet;
use std::sync::Arc;

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

/// Where a checked message goes.
pub(crate) enum Target {
    /// A stream; the topic is [`SendMessageRequest::topic`].
    Stream(Stream),
    /// A direct message: all participants including the sender, sorted by id.
    Direct { participants: Vec<User>, recipient: DirectRecipient },
}

/// The recipient row of a direct message.
pub(crate) enum DirectRecipient {
    /// It exists: the other user's personal recipient (the sender's own
    /// for a message to oneself), or that of a group written to before.
    Existing(i64),
    /// A group's first message: `do_send_messages` creates the recipient.
    NewGroup,
}

/// The UserMessage rows of a message, and what its notifications need to
/// know about the recipients.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Recipients {
    /// Users who get a row: the sender first when a recipient (as Zulip
    /// orders an event's users), then by id.
    pub user_ids: Vec<i64>,
    /// Each row's flags, in `user_ids` order.
    pub flags: Vec<i64>,
    /// Whom the message's notifications may reach, and how.
    pub notify: NotifySets,
    /// Soft-deactivated recipients to bring back once the message is
    /// stored: those a direct message or a personal or topic mention notifies.
    pub reactivate: Vec<i64>,
}

/// A message that passed every check: what `do_send_messages` writes and
/// publishes.
pub(crate) struct SendMessageRequest<'a> {
    /// Who sends it.
    pub sender: &'a User,
    /// Where it goes; the sender may post there.
    pub target: Target,
    /// Validated topic; empty for direct messages.
    pub topic: String,
    /// Normalised content.
    pub content: String,
    /// Rendered content and whom it mentions; wildcards passed the realm's policy.
    pub rendered: RenderedMessage,
    /// A `/me` message.
    pub is_me_message: bool,
    /// Rows and notification facts.
    pub recipients: Recipients,
    /// Sending client's name.
    pub client: String,
    /// Sender's queue, for local echo.
    pub queue_id: Option<String>,
    /// Local echo id.
    pub local_id: Option<String>,
}

/// Zulip's `check_message`, on `db` (the transaction `do_send_messages`
/// then writes in). `out.content` is already normalised.
pub(crate) async fn check_message<'a>(
    db: &deadpool_postgres::Client,
    caches: &Caches,
    sender: &'a User,
    out: Outgoing,
) -> Result<SendMessageRequest<'a>, ApiError> {
    let (target, topic) = match &out.to {
        Addressee::Stream(sref, topic) => {
            let stream = stream_for_send(db, caches, sender, sref).await?;
            if !out.skip_stream_access_check {
                access_stream_for_send_message(db, sender, &stream).await?;
            } else if stream.deactivated {
                return Err(ApiError::bad_request(format!("Not authorized to send to channel '{}'", stream.name)));
            }
            (Target::Stream(stream), topic.clone())
        }
        Addressee::Direct(refs) => (direct_target(db, sender, refs).await?, String::new()),
    };
    let topic_of = match &target {
        Target::Stream(s) => Some((s.recipient_id, topic.as_str())),
        Target::Direct { .. } => None,
    };
    let rendered = mention::render_incoming_message(db, sender, &out.content, topic_of).await?;
    if let Target::Stream(s) = &target {
        check_wildcard_mentions(db, sender, s, &rendered).await?;
    }
    let stream_topic = match &target {
        Target::Stream(s) => Some((s.id, topic.as_str())),
        Target::Direct { .. } => None,
    };
    let audience = target_people(&target);
    let (mut people, personal) = futures_util::try_join!(
        recipient_facts(db, caches, &target, &rendered),
        PersonalFacts::read(db, sender.id, &audience, stream_topic)
    )?;
    let alerted = personal.alerted(&out.content);
    // A soft-deactivated subscriber whose alert word the message has gets
    // a row too (rarely needed: a second read).
    // (Alert words are read for the stream's subscribers only, so these
    // are subscribers the recipient query left out as idle.)
    let missing: Vec<i32> = alerted.iter().filter(|u| !people.iter().any(|p| p.id == **u)).map(|&u| u as i32).collect();
    if !missing.is_empty() && stream_topic.is_some() {
        people.extend(messages::recipient_facts(db, RecipientsOf::Users(&missing)).await?);
        people.sort_by_key(|p| p.id);
        people.dedup_by_key(|p| p.id);
    }
    let read_by_sender =
        out.read_by_sender.unwrap_or_else(|| READ_BY_SENDER_CLIENTS.contains(&out.client.to_lowercase().as_str()));
    let is_private = matches!(target, Target::Direct { .. });
    let personal_flags = |u: i64| {
        let mut f = 0;
        if u != sender.id && personal.muted_sender.contains(&u) {
            f |= flags::READ;
        }
        if alerted.contains(&u) {
            f |= flags::HAS_ALERT_WORD;
        }
        f
    };
    let mut recipients = user_message_rows(sender.id, &people, &rendered, is_private, read_by_sender, personal_flags);
    let with_row: BTreeSet<i64> = recipients.user_ids.iter().copied().collect();
    let kind = MessageKind {
        is_private,
        stream_wildcard: rendered.rendered.stream_wildcard,
        topic_participants: &rendered.topic_participants,
    };
    recipients.notify = personal::notify_sets(&people, &with_row, &personal, &kind);
    recipients.notify.presence_idle_user_ids = presence_idle_user_ids(db, sender.id, &recipients, is_private).await?;
    Ok(SendMessageRequest {
        sender,
        target,
        topic,
        is_me_message: markdown::is_me_message(&out.content),
        content: out.content,
        rendered,
        recipients,
        client: out.client,
        queue_id: out.queue_id,
        local_id: out.local_id,
    })
}

/// The stream `sref` names in the sender's realm.
async fn stream_for_send(
    db: &impl GenericClient,
    caches: &Caches,
    sender: &User,
    sref: &StreamRef,
) -> Result<Stream, ApiError> {
    match sref {
        StreamRef::Name(raw) => {
            let name = streams::check_stream_name(raw)?;
            // Keyed by the name as written: PostgreSQL's lower() and
            // Rust's lowercase differ for a few letters, so a folded key
            // could name another stream.
            let key = (sender.realm_id, name.clone());
            if let Some(stream) = caches.streams.get(&key) {
                return Ok(stream);
            }
            let generation = caches.streams.generation();
            let found = streams::stream_by_name(db, sender.realm_id, &name).await?;
            if let Some(stream) = &found {
                caches.streams.put(key, stream, generation);
            }
            found.ok_or_else(|| {
                ApiError::with_code("STREAM_DOES_NOT_EXIST", format!("Channel '{}' does not exist", html_escape(&name)))
                    .field("stream", name.clone())
            })
        }
        StreamRef::Id(id) => streams::stream_by_id(db, sender.realm_id, *id).await?.ok_or_else(|| {
            ApiError::with_code("STREAM_DOES_NOT_EXIST", format!("Channel with ID '{id}' does not exist"))
                .field("stream_id", *id)
        }),
    }
}

/// Zulip's `access_stream_for_send_message`: the posting policy, then
/// whether the sender can reach the stream at all.
async fn access_stream_for_send_message(
    db: &impl GenericClient,
    sender: &User,
    stream: &Stream,
) -> Result<(), ApiError> {
    let provisional = stream.stream_post_policy == streams::post_policy::RESTRICT_NEW_MEMBERS
        && !sender.is_realm_admin()
        && streams::is_provisional_member(db, sender).await?;
    streams::check_post_policy(stream, sender, provisional)?;
    let allowed = !stream.deactivated
        && ((stream.is_public() && !sender.is_guest())
            || stream.is_web_public
            || streams::is_subscribed(db, sender.id, stream).await?);
    if !allowed {
        return Err(ApiError::bad_request(format!("Not authorized to send to channel '{}'", stream.name)));
    }
    Ok(())
}

/// The participants of a direct message to `refs` and its recipient row,
/// if it has one yet.
async fn direct_target(db: &impl GenericClient, sender: &User, refs: &UserRefs) -> Result<Target, ApiError> {
    let found = match refs {
        UserRefs::Emails(emails) => {
            let found = users::users_by_emails(db, sender.realm_id, emails).await?;
            if let Some(bad) =
                emails.iter().find(|e| !found.iter().any(|u| u.delivery_email.eq_ignore_ascii_case(e.trim())))
            {
                return Err(ApiError::bad_request(format!("Invalid email '{bad}'")));
            }
            found
        }
        UserRefs::Ids(ids) => {
            let found = users::users_by_ids(db, sender.realm_id, ids).await?;
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
    let recipient = match others.as_slice() {
        [] => DirectRecipient::Existing(messages::personal_recipient(db, sender.id).await?),
        [other] => DirectRecipient::Existing(messages::personal_recipient(db, other.id).await?),
        _ => match messages::group_recipient(db, &participants).await? {
            Some(id) => DirectRecipient::Existing(id),
            None => DirectRecipient::NewGroup,
        },
    };
    Ok(Target::Direct { participants, recipient })
}

/// The realm's wildcard mention policy, for a stream message with a
/// `@**all**`-style or `@**topic**` mention.
async fn check_wildcard_mentions(
    db: &impl GenericClient,
    sender: &User,
    stream: &Stream,
    message: &RenderedMessage,
) -> Result<(), ApiError> {
    let r = &message.rendered;
    if !r.stream_wildcard && !r.topic_wildcard {
        return Ok(());
    }
    let facts = streams::wildcard_mention_facts(db, sender, stream.recipient_id).await?;
    if r.stream_wildcard
        && !streams::wildcard_mention_allowed(facts.policy, sender, facts.subscribers, facts.provisional)
    {
        return Err(ApiError::with_code(
            "STREAM_WILDCARD_MENTION_NOT_ALLOWED",
            "You do not have permission to use channel wildcard mentions in this channel.",
        ));
    }
    let participants = message.topic_participants.len();
    if r.topic_wildcard && !streams::wildcard_mention_allowed(facts.policy, sender, participants, facts.provisional) {
        return Err(ApiError::with_code(
            "TOPIC_WILDCARD_MENTION_NOT_ALLOWED",
            "You do not have permission to use topic wildcard mentions in this topic.",
        ));
    }
    Ok(())
}

/// Whose alert words count: a stream's subscribers or a direct message's
/// participants.
fn target_people(target: &Target) -> Audience {
    match target {
        Target::Stream(s) => Audience::Stream(s.recipient_id),
        Target::Direct { participants, .. } => Audience::Users(participants.iter().map(|u| u.id).collect()),
    }
}

/// Who may get a row, with what the send path needs to know about them.
/// A stream's subscribers come from the cache (one statement when it
/// misses: for a big stream this is the expensive read); soft-deactivated
/// subscribers are left out unless the message may flag them.
async fn recipient_facts(
    db: &deadpool_postgres::Client,
    caches: &Caches,
    target: &Target,
    message: &RenderedMessage,
) -> Result<Vec<RecipientFacts>, ApiError> {
    match target {
        Target::Stream(s) => {
            let all = match caches.subscribers.get(&s.recipient_id) {
                Some(all) => all,
                None => {
                    let generation = caches.subscribers.generation();
                    let all = Arc::new(messages::stream_subscribers(db, s.recipient_id).await?);
                    caches.subscribers.put_weighed(s.recipient_id, &all, generation, all.len().max(1));
                    all
                }
            };
            let keep_idle = message.rendered.stream_wildcard;
            let idle_kept: BTreeSet<i64> = message
                .rendered
                .mentioned_user_ids
                .iter()
                .chain(&message.topic_participants)
                .chain(message.group_mentioned.keys())
                .copied()
                .collect();
            Ok(all.iter().filter(|f| !f.long_term_idle || keep_idle || idle_kept.contains(&f.id)).cloned().collect())
        }
        Target::Direct { participants, .. } => {
            let ids: Vec<i32> = participants.iter().map(|u| u.id as i32).collect();
            messages::recipient_facts(db, RecipientsOf::Users(&ids)).await
        }
    }
}

/// Zulip's `presence_idle_user_ids`: of the recipients with a row for whom
/// the message would be notifiable if they were idle, those presence does
/// not show active. Most messages notify nobody, and then nothing is read.
async fn presence_idle_user_ids(
    db: &deadpool_postgres::Client,
    sender_id: i64,
    recipients: &Recipients,
    is_private: bool,
) -> Result<Vec<i64>, ApiError> {
    let index = NotifyIndex::new(&recipients.notify);
    let candidates: Vec<i64> = recipients
        .user_ids
        .iter()
        .zip(&recipients.flags)
        .filter(|(&u, &f)| NotificationData::from_index(u, f, is_private, &index).is_notifiable(sender_id, true))
        .map(|(&u, _)| u)
        .collect();
    crate::presence::idle_users(db, &candidates, crate::unix_time().as_secs() as i64).await
}

/// Each recipient's row and flags. Soft-deactivated users get a stream
/// message's row only when it flags them; direct messages always give
/// them one. Those a direct message or a personal or topic mention
/// notifies are to be brought back.
fn user_message_rows(
    sender_id: i64,
    people: &[RecipientFacts],
    message: &RenderedMessage,
    is_private: bool,
    read_by_sender: bool,
    personal_flags: impl Fn(i64) -> i64,
) -> Recipients {
    let mut user_ids: Vec<i64> = people.iter().map(|p| p.id).collect();
    user_ids.sort_by_key(|&u| (u != sender_id, u));
    let base = if is_private { flags::IS_PRIVATE } else { 0 };
    let row_flags = |u: i64| {
        let read = if u == sender_id && read_by_sender { flags::READ } else { 0 };
        base | read | message.mention_flags(u) | personal_flags(u)
    };
    let long_term_idle: BTreeSet<i64> = people.iter().filter(|p| p.long_term_idle).map(|p| p.id).collect();
    let mut out = Recipients::default();
    for u in user_ids {
        let f = row_flags(u);
        if long_term_idle.contains(&u) {
            if !is_private && f == 0 {
                continue;
            }
            if u != sender_id && (is_private || message.brings_back(u)) {
                out.reactivate.push(u);
            }
        }
        out.user_ids.push(u);
        out.flags.push(f);
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#x27;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: i64, long_term_idle: bool) -> RecipientFacts {
        RecipientFacts { id, is_bot: id == 9, long_term_idle, settings: None, subscription: Default::default() }
    }

    #[test]
    fn stream_rows_skip_idle_users_the_message_does_not_flag() {
        let people = [person(1, false), person(2, false), person(3, true), person(4, true), person(9, false)];
        let mut message = RenderedMessage::default();
        message.rendered.mentioned_user_ids.insert(4);
        let r = user_message_rows(2, &people, &message, false, true, |_| 0);
        assert_eq!(r.user_ids, vec![2, 1, 4, 9], "sender first; idle 3 unflagged, so no row");
        assert_eq!(r.flags, vec![flags::READ, 0, flags::MENTIONED, 0]);
        assert_eq!(r.reactivate, vec![4], "a personal mention brings an idle user back");
    }

    #[test]
    fn direct_rows_keep_idle_participants() {
        let people = [person(1, true), person(5, true)];
        let r = user_message_rows(1, &people, &RenderedMessage::default(), true, false, |_| 0);
        assert_eq!(r.user_ids, vec![1, 5]);
        assert_eq!(r.flags, vec![flags::IS_PRIVATE, flags::IS_PRIVATE], "read_by_sender off");
        assert_eq!(r.reactivate, vec![5], "the sender is not brought back by their own message");
    }

    #[test]
    fn stream_wildcard_keeps_every_row() {
        let people = [person(1, false), person(3, true)];
        let mut message = RenderedMessage::default();
        message.rendered.stream_wildcard = true;
        let r = user_message_rows(1, &people, &message, false, false, |_| 0);
        assert_eq!(r.user_ids, vec![1, 3]);
        assert_eq!(r.flags, vec![flags::STREAM_WILDCARD_MENTIONED; 2]);
        assert!(r.reactivate.is_empty(), "wildcards alone do not reactivate");
    }
}
