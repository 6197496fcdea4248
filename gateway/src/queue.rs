//! Event queues and client descriptors (Zulip's `EventQueue` and
//! `ClientDescriptor`): pure logic, no I/O, no runtime.
//!
//! Events are stored pre-serialised: a generic event's JSON is made once per
//! notice and shared by every queue (`Rc<str>`); a message event shares the
//! payload of its content variant and keeps only the per-queue parts (flags,
//! `local_message_id`), which are spliced in when a response is written.

use crate::notify::InternalData;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use squall_proto::flags;
use std::collections::VecDeque;
use std::rc::Rc;

/// The body of a queued event (its `id` is added when rendering).
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// A JSON object shared between queues.
    Shared(Rc<str>),
    /// A message event: shared payload plus per-queue parts.
    Message {
        /// The message object for this queue's variant.
        payload: Rc<str>,
        /// This user's flag bits.
        flags: i64,
        /// Echo of the sender's `local_id`, on the sender's queue only.
        local_message_id: Option<String>,
    },
    /// `{"type":"heartbeat"}`.
    Heartbeat,
}

/// A queued event.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedEvent {
    /// Per-queue event id.
    pub id: i64,
    /// What it says.
    pub body: EventBody,
    /// Notification state of a recipient's message event: kept for the GC
    /// hook and across restarts, never sent to clients.
    pub internal: Option<Rc<InternalData>>,
}

impl QueuedEvent {
    /// The event's type name.
    pub fn type_name(&self) -> &str {
        match &self.body {
            EventBody::Message { .. } => "message",
            EventBody::Heartbeat => "heartbeat",
            EventBody::Shared(_) => "other",
        }
    }

    /// Appends this event as a JSON object to `out`; allocates nothing.
    pub fn render(&self, out: &mut Vec<u8>) {
        match &self.body {
            EventBody::Shared(json) => {
                // `json` is a non-empty serialised object: "{...}".
                let inner = json.strip_prefix('{').unwrap_or("}");
                out.extend_from_slice(b"{\"id\":");
                push_int(out, self.id);
                if inner != "}" {
                    out.push(b',');
                }
                out.extend_from_slice(inner.as_bytes());
            }
            EventBody::Message { payload, flags: bits, local_message_id } => {
                out.extend_from_slice(b"{\"type\":\"message\",\"message\":");
                out.extend_from_slice(payload.as_bytes());
                out.extend_from_slice(b",\"flags\":[");
                for (i, name) in flags::names(*bits).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.push(b'"');
                    out.extend_from_slice(name.as_bytes());
                    out.push(b'"');
                }
                out.push(b']');
                if let Some(local) = local_message_id {
                    out.extend_from_slice(b",\"local_message_id\":");
                    // Writing a string into a Vec cannot fail.
                    let _ = serde_json::to_writer(&mut *out, local);
                }
                out.extend_from_slice(b",\"id\":");
                push_int(out, self.id);
                out.push(b'}');
            }
            EventBody::Heartbeat => {
                out.extend_from_slice(b"{\"type\":\"heartbeat\",\"id\":");
                push_int(out, self.id);
                out.push(b'}');
            }
        }
    }
}

/// Appends `n` in decimal.
pub fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    squall_proto::ids::push_decimal(out, n.unsigned_abs());
}

/// The highest event id a queue gives (far beyond any real queue's: it
/// only bounds what a damaged journal or a client's `last_event_id` can
/// push the ids to, so that counting on never overflows).
pub const MAX_EVENT_ID: i64 = 1 << 53;

/// How far ids jump in a queue recovered after a crash (see
/// [`EventQueue::recovered`]).
pub const RECOVERY_ID_GAP: i64 = 1000;

/// Why a poll was refused (Zulip's messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneError {
    /// `last_event_id` is older than what was already pruned.
    AlreadyPruned(i64),
    /// `last_event_id` names no event this queue delivered.
    NotInQueue(i64),
}

impl PruneError {
    /// Zulip's error message.
    pub fn message(&self) -> String {
        match self {
            PruneError::AlreadyPruned(id) => format!("An event newer than {id} has already been pruned!"),
            PruneError::NotInQueue(id) => format!("Event {id} was not in this queue"),
        }
    }
}

/// A compressed `update_message_flags` event: its key (see
/// [`virtual_key`]), the id of its latest constituent, the merged event.
pub type VirtualEvent = (String, i64, Map<String, Value>);

/// One client's queue of pending events.
#[derive(Debug, Default)]
pub struct EventQueue {
    events: VecDeque<QueuedEvent>,
    /// Compressed `update_message_flags` events since the last read.
    virtual_events: Vec<VirtualEvent>,
    next_event_id: i64,
    newest_pruned_id: i64,
    /// Restored from the journal after a crash and not polled since: its
    /// client may have seen events that were not journaled yet (see
    /// [`EventQueue::recovered`]).
    recovered: bool,
}

/// A queue as saved across restarts (Zulip's `EventQueue.to_dict`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedQueue {
    /// Queue id.
    pub id: String,
    /// Next id to assign.
    pub next_event_id: i64,
    /// Pending events, each with its `id`.
    pub queue: Vec<Value>,
    /// Compressed events by key, each with its `id`.
    #[serde(default)]
    pub virtual_events: Map<String, Value>,
    /// Last acknowledged id; absent in old dumps.
    #[serde(default = "minus_one")]
    pub newest_pruned_id: i64,
}

fn minus_one() -> i64 {
    -1
}

/// Zulip's compression key of an event: `flags/<op>/<flag>` for
/// `update_message_flags` with `all: false`, `all_flags/<flag>/<op>` with
/// `all: true`, else the type.
pub fn virtual_key(event: &Value) -> String {
    let ty = event.get("type").and_then(Value::as_str).unwrap_or("");
    if ty != "update_message_flags" {
        return ty.to_owned();
    }
    let op = event.get("operation").or_else(|| event.get("op")).and_then(Value::as_str).unwrap_or("");
    let flag = event.get("flag").and_then(Value::as_str).unwrap_or("");
    if event.get("all").and_then(Value::as_bool).unwrap_or(false) {
        format!("all_flags/{flag}/{op}")
    } else {
        format!("flags/{op}/{flag}")
    }
}

/// Whether events with this key are merged: flag changes, except
/// `remove`/`read` (which carries `message_details`) and `all: true`.
pub fn is_compressible(key: &str) -> bool {
    key.starts_with("flags/") && !key.starts_with("flags/remove/read")
}

impl EventQueue {
    /// An empty queue (first id 0, nothing pruned: -1).
    pub fn new() -> Self {
        EventQueue {
            events: VecDeque::new(),
            virtual_events: Vec::new(),
            next_event_id: 0,
            newest_pruned_id: -1,
            recovered: false,
        }
    }

    /// Pushes an event object, compressing flag events as Zulip does.
    /// Returns the id it was given (merged events still consume an id).
    pub fn push_value(&mut self, event: Map<String, Value>, shared: Option<Rc<str>>) -> i64 {
        let key = virtual_key(&Value::Object(event.clone()));
        if !is_compressible(&key) {
            let body = shared.unwrap_or_else(|| Rc::from(Value::Object(event).to_string()));
            return self.push(EventBody::Shared(body));
        }
        let id = self.next_event_id;
        self.next_event_id += 1;
        match self.virtual_events.iter_mut().find(|(k, _, _)| *k == key) {
            None => self.virtual_events.push((key, id, event)),
            Some((_, vid, merged)) => {
                *vid = id;
                if let Some(Value::Array(more)) = event.get("messages") {
                    if let Some(Value::Array(list)) = merged.get_mut("messages") {
                        list.extend(more.iter().cloned());
                    }
                }
                if let Some(ts) = event.get("timestamp") {
                    merged.insert("timestamp".into(), ts.clone());
                }
            }
        }
        id
    }

    /// Moves the virtual events into the queue at their ids; later flag
    /// events start new virtual events (Zulip's `contents`).
    pub(crate) fn materialize(&mut self) {
        if self.virtual_events.is_empty() {
            return;
        }
        for (_, id, event) in self.virtual_events.drain(..) {
            self.events.push_back(QueuedEvent {
                id,
                body: EventBody::Shared(Rc::from(Value::Object(event).to_string())),
                internal: None,
            });
        }
        self.events.make_contiguous().sort_by_key(|e| e.id);
    }

    /// Appends an event; returns its id.
    pub fn push(&mut self, body: EventBody) -> i64 {
        self.push_with(body, None)
    }

    /// Appends an event with its internal notification data.
    pub fn push_with(&mut self, body: EventBody, internal: Option<Rc<InternalData>>) -> i64 {
        let id = self.next_event_id;
        self.next_event_id += 1;
        self.events.push_back(QueuedEvent { id, body, internal });
        id
    }

    /// Replays an append the journal recorded: the event gets `id` (ids
    /// left out by appends that were not recorded, heartbeats, are
    /// skipped). False, and nothing appended, if `id` is not ahead.
    pub(crate) fn push_at(&mut self, id: i64, body: EventBody, internal: Option<Rc<InternalData>>) -> bool {
        if id < self.next_event_id || id > MAX_EVENT_ID {
            return false;
        }
        self.next_event_id = id;
        self.push_with(body, internal);
        true
    }

    /// Replays a compressible push the journal recorded at `id`.
    pub(crate) fn push_value_at(&mut self, id: i64, event: Map<String, Value>) -> bool {
        if id < self.next_event_id || id > MAX_EVENT_ID {
            return false;
        }
        self.next_event_id = id;
        self.push_value(event, None);
        true
    }

    /// The latest appended event.
    pub(crate) fn last(&self) -> Option<&QueuedEvent> {
        self.events.back()
    }

    /// Internal data of every pending message event.
    pub fn internal_data(&self) -> impl Iterator<Item = &InternalData> {
        self.events.iter().filter_map(|e| e.internal.as_deref())
    }

    /// Drops events up to `last_event_id` with Zulip's checks.
    pub fn prune(&mut self, last_event_id: i64) -> Result<(), PruneError> {
        if last_event_id < self.newest_pruned_id {
            return Err(PruneError::AlreadyPruned(last_event_id));
        }
        if std::mem::take(&mut self.recovered) {
            self.prune_through(last_event_id);
            return Ok(());
        }
        while self.events.front().is_some_and(|e| e.id <= last_event_id) {
            if let Some(e) = self.events.pop_front() {
                self.newest_pruned_id = e.id;
            }
        }
        if last_event_id != self.newest_pruned_id {
            return Err(PruneError::NotInQueue(last_event_id));
        }
        Ok(())
    }

    /// Events waiting to be read (compressed flag events count once each).
    pub fn len(&self) -> usize {
        self.events.len() + self.virtual_events.len()
    }

    /// Whether nothing is pending (virtual events count).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.virtual_events.is_empty()
    }

    /// The queue as saved across restarts.
    pub fn save(&self, id: &str) -> SavedQueue {
        let queue = self
            .events
            .iter()
            .filter_map(|e| {
                let mut s = Vec::new();
                e.render(&mut s);
                let mut v: Value = serde_json::from_slice(&s).ok()?;
                if let (Some(internal), Value::Object(m)) = (&e.internal, &mut v) {
                    m.insert("internal_data".into(), serde_json::to_value(&**internal).ok()?);
                }
                Some(v)
            })
            .collect();
        let virtual_events = self
            .virtual_events
            .iter()
            .map(|(k, id, m)| {
                let mut m = m.clone();
                m.insert("id".into(), (*id).into());
                (k.clone(), Value::Object(m))
            })
            .collect();
        SavedQueue {
            id: id.to_owned(),
            next_event_id: self.next_event_id,
            queue,
            virtual_events,
            newest_pruned_id: self.newest_pruned_id,
        }
    }

    /// Rebuilds a saved queue. Events come back as opaque JSON (their
    /// per-queue parts are already spliced in).
    pub fn restore(saved: SavedQueue) -> Self {
        let take_id = |v: Value| -> Option<(i64, Map<String, Value>)> {
            let Value::Object(mut m) = v else { return None };
            let id = m.remove("id")?.as_i64()?;
            Some((id, m))
        };
        let events = saved
            .queue
            .into_iter()
            .filter_map(take_id)
            .map(|(id, mut m)| {
                let internal =
                    m.remove("internal_data").and_then(|v| serde_json::from_value::<InternalData>(v).ok()).map(Rc::new);
                QueuedEvent { id, body: EventBody::Shared(Rc::from(Value::Object(m).to_string())), internal }
            })
            .collect();
        let virtual_events =
            saved.virtual_events.into_iter().filter_map(|(k, v)| take_id(v).map(|(id, m)| (k, id, m))).collect();
        EventQueue::from_parts(events, virtual_events, saved.next_event_id, saved.newest_pruned_id)
    }

    /// A queue from its parts, as [`EventQueue::contents`],
    /// [`EventQueue::virtual_events`], [`EventQueue::next_event_id`] and
    /// [`EventQueue::newest_pruned_id`] give them.
    pub fn from_parts(
        events: VecDeque<QueuedEvent>,
        virtual_events: Vec<VirtualEvent>,
        next_event_id: i64,
        newest_pruned_id: i64,
    ) -> Self {
        EventQueue { events, virtual_events, next_event_id, newest_pruned_id, recovered: false }
    }

    /// Marks a queue restored from the journal after a crash. Its client
    /// may have been sent events whose records never reached the disk
    /// (heartbeats, events of requests never acknowledged), so ids jump by
    /// [`RECOVERY_ID_GAP`] (the `restart` event and what follows come after
    /// anything seen), and its next poll may acknowledge an id the queue
    /// does not hold: that is accepted, not refused, and ids continue past
    /// it.
    pub(crate) fn recovered(&mut self) {
        self.recovered = true;
        self.next_event_id = self.next_event_id.saturating_add(RECOVERY_ID_GAP).min(MAX_EVENT_ID);
    }

    /// Drops events up to `last_event_id` whether or not the queue holds
    /// that id (journal replay, and the first poll after a crash).
    pub(crate) fn prune_through(&mut self, last_event_id: i64) {
        while self.events.front().is_some_and(|e| e.id <= last_event_id) {
            self.events.pop_front();
        }
        // Whatever a client sends: ids stay where adding one cannot overflow.
        let last_event_id = last_event_id.min(MAX_EVENT_ID - 1);
        self.newest_pruned_id = self.newest_pruned_id.max(last_event_id);
        self.next_event_id = self.next_event_id.max(last_event_id + 1);
    }

    /// Compressed flag events not read yet.
    pub fn virtual_events(&self) -> &[VirtualEvent] {
        &self.virtual_events
    }

    /// Last acknowledged id (-1: none).
    pub fn newest_pruned_id(&self) -> i64 {
        self.newest_pruned_id
    }

    /// Next id to be assigned.
    pub fn next_event_id(&self) -> i64 {
        self.next_event_id
    }

    /// Pending events in id order.
    pub fn contents(&self) -> impl ExactSizeIterator<Item = &QueuedEvent> {
        self.events.iter()
    }

    /// Appends the JSON array of pending events to `out`. Reading ends
    /// compression: virtual events are materialised first.
    pub fn render_events_into(&mut self, out: &mut Vec<u8>) {
        self.materialize();
        out.push(b'[');
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            e.render(out);
        }
        out.push(b']');
    }

    /// The JSON array of pending events, as a string.
    pub fn render_events(&mut self) -> String {
        let mut out = Vec::new();
        self.render_events_into(&mut out);
        // Only UTF-8 goes in: JSON text and ASCII.
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
