//! Delivering a notice to this core's queues: Zulip's
//! `process_notification` and `process_message_event`.
//!
//! Each event is serialised once per variant a queue can need (slim
//! presence, legacy per-message deletes, downgraded pronouns fields, content
//! variants of messages), never once per queue; queues share the bytes.

use crate::filter::{accepts_event, accepts_messages, narrow_matches};
use crate::fxhash::{FxHashMap, FxHashSet};
use crate::notify::{maybe_enqueue, InternalData, NotificationData};
use crate::queue::{is_compressible, virtual_key, EventBody};
use crate::state::CoreState;
use crate::stats::CoreStats;
use serde_json::{Map, Value};
use squall_proto::envelope::{MessageNotice, Notice, NotifySets, PerUserData, Variant};
use squall_proto::flags;
use squall_proto::ids::QueueId;
use squall_proto::notify::NotifyIndex;
use squall_proto::queue_spec::QueueSpec;
use std::rc::Rc;

/// Keys of `update_message` that are for the event server only.
fn is_internal_update_key(k: &str) -> bool {
    k == "prior_mention_user_ids" || k == "disable_external_notifications" || k.ends_with("_user_ids")
}

/// What an `update_message` notice says about notifications.
struct EditContext {
    sets: NotifyIndex,
    prior_mentions: Vec<i64>,
    private: bool,
    editor: i64,
    message_id: i64,
}

impl EditContext {
    fn from_template(t: &Map<String, Value>) -> Self {
        let ids = |k: &str| -> Vec<i64> {
            t.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default()
        };
        EditContext {
            sets: NotifyIndex::new(&serde_json::from_value::<NotifySets>(Value::Object(t.clone())).unwrap_or_default()),
            prior_mentions: ids("prior_mention_user_ids"),
            // Direct messages carry no stream name.
            private: t.get("stream_name").is_none() && t.get("stream_id").is_none(),
            editor: t.get("user_id").and_then(Value::as_i64).unwrap_or(0),
            message_id: t.get("message_id").and_then(Value::as_i64).unwrap_or(0),
        }
    }
}

/// Custom profile field type ids: PRONOUNS is shown as SHORT_TEXT to
/// clients that do not know it.
const PRONOUNS: i64 = 8;
const SHORT_TEXT: i64 = 1;

/// An event ready to push: compression key, structure, serialised form.
struct Ready {
    key: String,
    map: Map<String, Value>,
    json: Rc<str>,
}

impl Ready {
    fn new(map: Map<String, Value>) -> Self {
        let value = Value::Object(map);
        let key = virtual_key(&value);
        let json: Rc<str> = Rc::from(value.to_string());
        let Value::Object(map) = value else { unreachable!("built from a map") };
        Ready { key, map, json }
    }
}

/// The queue options that choose a generic event's variant (copied out of
/// the descriptor so the core can be mutated while they are in use).
#[derive(Clone, Copy)]
struct VariantNeeds {
    slim_presence: bool,
    bulk_message_deletion: bool,
    pronouns_field_type_supported: bool,
}

impl VariantNeeds {
    fn of(spec: &QueueSpec) -> Self {
        VariantNeeds {
            slim_presence: spec.slim_presence,
            bulk_message_deletion: spec.bulk_message_deletion,
            pronouns_field_type_supported: spec.pronouns_field_type_supported,
        }
    }
}

/// The per-queue variants of one generic event, built on first use.
struct Variants {
    base: Ready,
    slim: Option<Ready>,
    per_message: Option<Vec<Ready>>,
    downgraded: Option<Ready>,
}

impl Variants {
    fn for_queue(&mut self, spec: VariantNeeds) -> &[Ready] {
        let ty = self.base.map.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "presence" if spec.slim_presence => {
                let base = &self.base.map;
                std::slice::from_ref(self.slim.get_or_insert_with(|| {
                    let mut m = base.clone();
                    m.remove("email");
                    Ready::new(m)
                }))
            }
            "delete_message" if !spec.bulk_message_deletion => {
                let base = &self.base.map;
                self.per_message.get_or_insert_with(|| {
                    let ids = base.get("message_ids").and_then(Value::as_array).cloned().unwrap_or_default();
                    ids.into_iter()
                        .map(|id| {
                            let mut m = base.clone();
                            m.remove("message_ids");
                            m.insert("message_id".into(), id);
                            Ready::new(m)
                        })
                        .collect()
                })
            }
            "custom_profile_fields" if !spec.pronouns_field_type_supported => {
                let base = &self.base.map;
                std::slice::from_ref(self.downgraded.get_or_insert_with(|| {
                    let mut m = base.clone();
                    if let Some(Value::Array(fields)) = m.get_mut("fields") {
                        for f in fields.iter_mut() {
                            if f.get("type").and_then(Value::as_i64) == Some(PRONOUNS) {
                                f["type"] = SHORT_TEXT.into();
                            }
                        }
                    }
                    Ready::new(m)
                }))
            }
            _ => std::slice::from_ref(&self.base),
        }
    }
}

impl CoreState {
    /// Delivers a notice to this core's queues.
    pub fn deliver(&mut self, notice: Notice) {
        match notice {
            Notice::Message(m) => self.deliver_message(*m),
            Notice::Generic { event, users } => self.deliver_generic(&event, &users),
            Notice::PerUser { event, users } => self.deliver_per_user(&event, users),
            Notice::Revoke { users, delete_queues } => self.revoke(&users, delete_queues),
        }
        if !self.overflowed.is_empty() {
            self.drop_overflowed();
        }
    }

    /// Appends to one queue, merging flag events, and completes its parked
    /// long-poll.
    fn push_ready(&mut self, queue_id: QueueId, r: &Ready) {
        let Some(d) = self.reg.get_mut(queue_id) else { return };
        if is_compressible(&r.key) {
            let id = d.queue.push_value(r.map.clone(), None);
            if let Some(j) = self.journal.as_mut() {
                j.appended_virtual(queue_id, id, &r.map);
            }
        } else {
            d.queue.push(EventBody::Shared(r.json.clone()));
            if let (Some(j), Some(e)) = (self.journal.as_mut(), d.queue.last()) {
                j.appended(queue_id, e);
            }
        }
        self.wake(queue_id);
    }

    /// Appends a prepared body to one queue and completes its long-poll.
    pub(crate) fn push_body(&mut self, queue_id: QueueId, body: EventBody) {
        self.push_body_with(queue_id, body, None);
    }

    fn push_body_with(&mut self, queue_id: QueueId, body: EventBody, internal: Option<Rc<InternalData>>) {
        let Some(d) = self.reg.get_mut(queue_id) else { return };
        d.queue.push_with(body, internal);
        if let (Some(j), Some(e)) = (self.journal.as_mut(), d.queue.last()) {
            j.appended(queue_id, e);
        }
        self.wake(queue_id);
    }

    /// Whether none of the user's queues accepts messages (Zulip's
    /// `receiver_is_off_zulip`).
    fn off_zulip(&self, user: i64) -> bool {
        !self.reg.of_user(user).iter().any(|&q| self.reg.get(q).is_some_and(|d| accepts_messages(&d.spec)))
    }

    /// Counts an appended event and completes the queue's parked poll.
    fn wake(&mut self, queue_id: QueueId) {
        CoreStats::bump(&self.counters().events_queued);
        if self.reg.get(queue_id).is_some_and(|d| d.queue.len() > self.limits.max_events_per_queue) {
            self.overflowed.push(queue_id);
            return;
        }
        self.complete(queue_id);
    }

    fn queues_of(&self, user: i64) -> Vec<QueueId> {
        self.reg.of_user(user).to_vec()
    }

    fn deliver_generic(&mut self, event: &Value, users: &[i64]) {
        let Some(obj) = event.as_object() else { return };
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
        let op = obj.get("op").and_then(Value::as_str).unwrap_or("");
        if ty == "cleanup_queue" {
            let queue_id = obj.get("queue_id").and_then(Value::as_str).unwrap_or("");
            let id = QueueId::parse(queue_id);
            let owner = id.and_then(|id| self.reg.get(id)).map(|d| d.spec.user_id);
            match (id, owner) {
                (Some(id), Some(owner)) if users.first() == Some(&owner) => self.remove_queue(id),
                _ => tracing::warn!(queue_id, "cleanup_queue for an unknown or foreign queue"),
            }
            return;
        }
        let mut base = obj.clone();
        let inaccessible = ty == "realm_user"
            && op == "add"
            && base.remove("inaccessible_user").and_then(|v| v.as_bool()).unwrap_or(false);
        let deactivated_group = ty == "user_group"
            && op == "update"
            && base.get("data").is_some_and(|d| d.get("name").is_some())
            && base.remove("deactivated").and_then(|v| v.as_bool()).unwrap_or(false);
        let filter_view = Value::Object(base.clone());
        let mut variants = Variants { base: Ready::new(base), slim: None, per_message: None, downgraded: None };
        for &user in users {
            for qid in self.queues_of(user) {
                let Some(d) = self.reg.get(qid) else { continue };
                if !accepts_event(&d.spec, &filter_view)
                    || (inaccessible && d.spec.user_list_incomplete)
                    || (deactivated_group && !d.spec.include_deactivated_groups)
                {
                    continue;
                }
                let needs = VariantNeeds::of(&d.spec);
                for r in variants.for_queue(needs) {
                    self.push_ready(qid, r);
                }
            }
        }
    }

    fn deliver_per_user(&mut self, event: &Value, users: Vec<PerUserData>) {
        let Some(template) = event.as_object() else { return };
        let edit = (template.get("type").and_then(Value::as_str) == Some("update_message")
            && !template.get("rendering_only").and_then(Value::as_bool).unwrap_or(false))
        .then(|| EditContext::from_template(template));
        for u in users {
            if let Some(edit) = &edit {
                self.notify_edit(edit, u.id, &u.data);
            }
            let mut m = template.clone();
            for (k, v) in u.data {
                if k != "id" {
                    m.insert(k, v);
                }
            }
            m.retain(|k, _| !is_internal_update_key(k));
            let filter_view = Value::Object(m.clone());
            let ready = Ready::new(m);
            for qid in self.queues_of(u.id) {
                if self.reg.get(qid).is_some_and(|d| accepts_event(&d.spec, &filter_view)) {
                    self.push_ready(qid, &ready);
                }
            }
        }
    }

    /// Zulip's `maybe_enqueue_notifications_for_message_update`: an edit
    /// may newly mention someone in a stream message.
    fn notify_edit(&mut self, edit: &EditContext, user: i64, data: &Map<String, Value>) {
        let bits = data
            .get("flags")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).filter_map(flags::bit_of).fold(0, |a, b| a | b))
            .unwrap_or(0);
        let d = NotificationData::from_index(user, bits, edit.private, &edit.sets);
        if d.sender_is_muted
            || edit.private
            || edit.prior_mentions.contains(&user)
            || d.stream_push_notify
            || d.stream_email_notify
            || d.followed_topic_push_notify
            || d.followed_topic_email_notify
        {
            return;
        }
        let idle = edit.sets.presence_idle(user) || self.off_zulip(user);
        maybe_enqueue(&d, edit.editor, edit.message_id, None, idle, (false, false), &mut self.notifications);
        self.flush_notifications();
    }

    fn deliver_message(&mut self, m: MessageNotice) {
        // Notifications first, per recipient: decided before the event lands
        // in any queue, and kept with the recipient's events for the GC
        // hook when there is anything left to decide.
        let private = !m.message.is_stream();
        let mut internal: Vec<Option<Rc<InternalData>>> = Vec::with_capacity(m.users.len());
        let index = NotifyIndex::new(&m.notify);
        for r in &m.users {
            let data = NotificationData::from_index(r.id, r.flags, private, &index);
            if !data.is_notifiable(m.message.sender_id, true) {
                internal.push(None);
                continue;
            }
            let mut record = InternalData {
                data,
                mentioned_user_group_id: r.mentioned_user_group_id,
                push_notified: false,
                email_notified: false,
                message_id: m.message.id,
                sender_id: m.message.sender_id,
            };
            let idle = self.off_zulip(r.id) || index.presence_idle(r.id);
            let (push, email) = maybe_enqueue(
                &record.data,
                m.message.sender_id,
                m.message.id,
                r.mentioned_user_group_id,
                idle,
                (false, false),
                &mut self.notifications,
            );
            record.push_notified = push;
            record.email_notified = email;
            internal.push(Some(Rc::new(record)));
        }
        self.flush_notifications();

        let mut out = MessageOut::new(&m);
        // Realm-wide watchers first (a recipient's own flags when the
        // watcher is a recipient's queue, else none), then every other
        // queue of each recipient.
        let watchers: Vec<QueueId> =
            if m.public_stream && !m.invite_only { self.reg.watchers_of(m.realm_id).to_vec() } else { Vec::new() };
        if watchers.is_empty() {
            for (r, data) in m.users.iter().zip(&internal) {
                for i in 0..self.reg.of_user(r.id).len() {
                    let qid = self.reg.of_user(r.id)[i];
                    self.push_message(&mut out, qid, r.flags, data.clone());
                }
            }
            return;
        }
        let by_user: FxHashMap<i64, (i64, Option<Rc<InternalData>>)> =
            m.users.iter().zip(&internal).map(|(r, data)| (r.id, (r.flags, data.clone()))).collect();
        let watching: FxHashSet<QueueId> = watchers.iter().copied().collect();
        for &qid in &watchers {
            let owner = self.reg.get(qid).map(|d| d.spec.user_id);
            let (bits, data) = owner.and_then(|u| by_user.get(&u).cloned()).unwrap_or((0, None));
            self.push_message(&mut out, qid, bits, data);
        }
        for (r, data) in m.users.iter().zip(&internal) {
            for i in 0..self.reg.of_user(r.id).len() {
                let qid = self.reg.of_user(r.id)[i];
                if !watching.contains(&qid) {
                    self.push_message(&mut out, qid, r.flags, data.clone());
                }
            }
        }
    }

    /// Appends a message event to one queue if the queue wants it.
    fn push_message(&mut self, out: &mut MessageOut<'_>, qid: QueueId, bits: i64, data: Option<Rc<InternalData>>) {
        let Some(d) = self.reg.get(qid) else { return };
        if !accepts_messages(&d.spec) || !narrow_matches(&d.spec.narrow, &out.m.message, bits) {
            return;
        }
        let queue_client = d.spec.client_type_name.as_str();
        // Mirror-loop guard: a mirroring client never gets back what it
        // mirrored in.
        if out.sender_mirror && same_client(&out.m.message.client, queue_client) {
            return;
        }
        let variant = Variant { apply_markdown: d.spec.apply_markdown, client_gravatar: d.spec.client_gravatar };
        let payload = out.payload(variant, is_mirror(queue_client) && out.m.invite_only);
        // The sender names their queue; only a queue that is theirs gets the
        // echo (anyone may name any queue id).
        let senders_queue = out.sender_queue == Some(qid) && d.spec.user_id == out.m.message.sender_id;
        let local_message_id = if senders_queue { out.m.local_id.clone() } else { None };
        self.push_body_with(qid, EventBody::Message { payload, flags: bits, local_message_id }, data);
    }
}

/// A message being delivered, with its payloads rendered once per variant.
struct MessageOut<'a> {
    m: &'a MessageNotice,
    sender_mirror: bool,
    sender_queue: Option<QueueId>,
    variants: [Option<Rc<str>>; 4],
    mirror_variants: [Option<Rc<str>>; 4],
}

impl<'a> MessageOut<'a> {
    fn new(m: &'a MessageNotice) -> Self {
        MessageOut {
            m,
            sender_mirror: is_mirror(&m.message.client),
            sender_queue: m.sender_queue_id.as_deref().and_then(QueueId::parse),
            variants: Default::default(),
            mirror_variants: Default::default(),
        }
    }

    /// The shared payload of `variant` (mirror clients of invite-only
    /// streams are told so).
    fn payload(&mut self, variant: Variant, mirror_invite_only: bool) -> Rc<str> {
        let m = self.m;
        if mirror_invite_only {
            return self.mirror_variants[variant.index()]
                .get_or_insert_with(|| {
                    let mut json = m.message.client_json(variant, None);
                    json.pop();
                    json.push_str(",\"invite_only_stream\":true}");
                    Rc::from(json)
                })
                .clone();
        }
        self.variants[variant.index()].get_or_insert_with(|| Rc::from(m.message.client_json(variant, None))).clone()
    }
}

/// Zulip compares client names lower-cased.
fn same_client(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.to_lowercase() == b.to_lowercase()
    }
}

/// Whether a client name says "mirror" (any case).
fn is_mirror(client: &str) -> bool {
    if client.is_ascii() {
        client.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"mirror"))
    } else {
        client.to_lowercase().contains("mirror")
    }
}

#[cfg(test)]
mod tests;
