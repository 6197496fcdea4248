//! Event queues and client descriptors (Zulip's `EventQueue` and
//! `ClientDescriptor`): pure logic, no I/O, no runtime.
//!
//! Events are stored pre-serialised: a generic event's JSON is made once per
//! notice and shared by every queue (`Rc<str>`); a message event shares the
//! payload of its content variant and keeps only the per-queue parts (flags,
//! `local_message_id`), which are spliced in when a response is written.

use squall_shard_router::envelope::{QueueSpec, WideMessage};
use squall_shard_router::flags;
use std::collections::VecDeque;
use std::fmt::Write;
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

    /// Appends this event as a JSON object to `out`.
    pub fn render(&self, out: &mut String) {
        match &self.body {
            EventBody::Shared(json) => {
                // `json` is a non-empty serialised object: "{...}".
                let inner = json.strip_prefix('{').unwrap_or("}");
                let _ = write!(out, "{{\"id\":{}", self.id);
                if inner != "}" {
                    out.push(',');
                }
                out.push_str(inner);
            }
            EventBody::Message { payload, flags: bits, local_message_id } => {
                out.push_str("{\"type\":\"message\",\"message\":");
                out.push_str(payload);
                out.push_str(",\"flags\":");
                out.push_str(&serde_json::to_string(&flags::api_names(*bits)).unwrap_or_else(|_| "[]".into()));
                if let Some(local) = local_message_id {
                    out.push_str(",\"local_message_id\":");
                    out.push_str(&serde_json::to_string(local).unwrap_or_else(|_| "null".into()));
                }
                let _ = write!(out, ",\"id\":{}}}", self.id);
            }
            EventBody::Heartbeat => {
                let _ = write!(out, "{{\"type\":\"heartbeat\",\"id\":{}}}", self.id);
            }
        }
    }
}

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

/// One client's queue of pending events.
#[derive(Debug, Default)]
pub struct EventQueue {
    events: VecDeque<QueuedEvent>,
    next_event_id: i64,
    newest_pruned_id: i64,
}

impl EventQueue {
    /// An empty queue (first id 0, nothing pruned: -1).
    pub fn new() -> Self {
        EventQueue { events: VecDeque::new(), next_event_id: 0, newest_pruned_id: -1 }
    }

    /// Appends an event; returns its id.
    pub fn push(&mut self, body: EventBody) -> i64 {
        let id = self.next_event_id;
        self.next_event_id += 1;
        self.events.push_back(QueuedEvent { id, body });
        id
    }

    /// Drops events up to `last_event_id` with Zulip's checks.
    pub fn prune(&mut self, last_event_id: i64) -> Result<(), PruneError> {
        if last_event_id < self.newest_pruned_id {
            return Err(PruneError::AlreadyPruned(last_event_id));
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

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Pending events in id order.
    pub fn contents(&self) -> impl Iterator<Item = &QueuedEvent> {
        self.events.iter()
    }

    /// The JSON array of pending events.
    pub fn render_events(&self) -> String {
        let mut out = String::from("[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            e.render(&mut out);
        }
        out.push(']');
        out
    }
}

/// Whether a queue with these options wants an event of `event_type`
/// (Zulip's `accepts_event`, the type part).
pub fn accepts_type(spec: &QueueSpec, event_type: &str) -> bool {
    match &spec.event_types {
        None => true,
        Some(types) => types.iter().any(|t| t == event_type),
    }
}

/// Zulip's narrow predicate for message events; every term must match,
/// comparisons are case-insensitive.
pub fn narrow_matches(narrow: &[(String, String)], msg: &WideMessage, bits: i64) -> bool {
    narrow.iter().all(|(op, operand)| match op.as_str() {
        "stream" | "channel" => match &msg.destination {
            squall_shard_router::envelope::Destination::Stream { name, .. } => {
                name.to_lowercase() == operand.to_lowercase()
            }
            _ => false,
        },
        "topic" => msg.is_stream() && msg.subject.to_lowercase() == operand.to_lowercase(),
        "sender" => msg.sender_email.to_lowercase() == operand.to_lowercase(),
        "is" => match operand.as_str() {
            "dm" | "private" => !msg.is_stream(),
            "starred" => bits & flags::STARRED != 0,
            "unread" => bits & flags::READ == 0,
            "mentioned" | "alerted" => bits & flags::MENTIONED != 0,
            "resolved" => msg.is_stream() && msg.subject.starts_with("✔ "),
            _ => true,
        },
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_shard_router::envelope::{Destination, Participant};

    fn shared(s: &str) -> EventBody {
        EventBody::Shared(Rc::from(s))
    }

    #[test]
    fn first_event_has_id_zero() {
        let mut q = EventQueue::new();
        assert_eq!(q.push(shared(r#"{"type":"unknown","data":"x"}"#)), 0);
        assert_eq!(q.render_events(), r#"[{"id":0,"type":"unknown","data":"x"}]"#);
    }

    #[test]
    fn pruning_rules() {
        let mut q = EventQueue::new();
        // Fresh queue: only -1 is valid.
        assert_eq!(q.prune(0), Err(PruneError::NotInQueue(0)));
        assert_eq!(q.prune(-1), Ok(()));
        for _ in 0..3 {
            q.push(EventBody::Heartbeat);
        }
        assert_eq!(q.prune(1), Ok(()));
        assert_eq!(q.contents().map(|e| e.id).collect::<Vec<_>>(), vec![2]);
        // Idempotent retry with the same id.
        assert_eq!(q.prune(1), Ok(()));
        assert_eq!(q.prune(0).unwrap_err().message(), "An event newer than 0 has already been pruned!");
        assert_eq!(q.prune(5).unwrap_err().message(), "Event 5 was not in this queue");
        // The failed prune above still dropped event 2 (as Zulip does).
        assert!(q.is_empty());
    }

    #[test]
    fn message_rendering_splices_per_queue_parts() {
        let e = QueuedEvent {
            id: 7,
            body: EventBody::Message {
                payload: Rc::from(r#"{"id":1}"#),
                flags: flags::READ | flags::IS_PRIVATE,
                local_message_id: Some("1.5".into()),
            },
        };
        let mut out = String::new();
        e.render(&mut out);
        assert_eq!(out, r#"{"type":"message","message":{"id":1},"flags":["read"],"local_message_id":"1.5","id":7}"#);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], 7);
    }

    #[test]
    fn empty_shared_object_renders() {
        let mut out = String::new();
        QueuedEvent { id: 3, body: shared("{}") }.render(&mut out);
        assert_eq!(out, r#"{"id":3}"#);
    }

    fn msg(dest: Destination, subject: &str) -> WideMessage {
        WideMessage {
            id: 1,
            sender_id: 2,
            sender_email: "Hamlet@Zulip.com".into(),
            sender_full_name: "Hamlet".into(),
            sender_realm_str: "".into(),
            recipient_id: 3,
            timestamp: 0,
            client: "test".into(),
            subject: subject.into(),
            content: "x".into(),
            rendered_content: "<p>x</p>".into(),
            is_me_message: false,
            avatar_url: "u".into(),
            avatar_is_gravatar: true,
            destination: dest,
        }
    }

    #[test]
    fn narrow_predicate() {
        let n = |pairs: &[(&str, &str)]| pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let denmark = msg(Destination::Stream { stream_id: 1, name: "Denmark".into() }, "✔ done");
        let dm = msg(
            Destination::Private {
                participants: vec![Participant {
                    id: 2,
                    email: "a".into(),
                    full_name: "a".into(),
                    is_mirror_dummy: false,
                }],
            },
            "",
        );
        assert!(narrow_matches(&[], &dm, 0));
        assert!(narrow_matches(&n(&[("stream", "denmark")]), &denmark, 0));
        assert!(!narrow_matches(&n(&[("stream", "denmark")]), &dm, 0));
        assert!(narrow_matches(&n(&[("stream", "DENMARK"), ("topic", "✔ DONE")]), &denmark, 0));
        assert!(narrow_matches(&n(&[("sender", "hamlet@zulip.com")]), &dm, 0));
        assert!(narrow_matches(&n(&[("is", "dm")]), &dm, 0));
        assert!(!narrow_matches(&n(&[("is", "private")]), &denmark, 0));
        assert!(narrow_matches(&n(&[("is", "resolved")]), &denmark, 0));
        assert!(narrow_matches(&n(&[("is", "unread")]), &denmark, 0));
        assert!(!narrow_matches(&n(&[("is", "unread")]), &denmark, flags::READ));
        assert!(narrow_matches(&n(&[("is", "mentioned")]), &denmark, flags::MENTIONED));
        assert!(narrow_matches(&n(&[("is", "whatever")]), &denmark, 0));
    }

    #[test]
    fn type_filter() {
        let mut spec = QueueSpec::default();
        assert!(accepts_type(&spec, "message"));
        spec.event_types = Some(vec!["message".into()]);
        assert!(accepts_type(&spec, "message"));
        assert!(!accepts_type(&spec, "typing"));
    }
}
