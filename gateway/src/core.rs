//! What one core owns and how it changes: the queues of the users placed on
//! it, their parked long-polls, and the handling of every inbox item.
//!
//! This is plain single-threaded code with no I/O: the shard loop
//! (`shard.rs`) feeds it inbox items and timer ticks and carries out what it
//! returns (e.g. "arm a heartbeat timer"). Time is passed in as unix
//! seconds, so tests drive it without sleeping.

use crate::http::Response;
use crate::notify::{on_last_queue_gone, Notification};
use crate::queue::{EventBody, EventQueue};
use futures_channel::oneshot;
use serde_json::Value;
use squall_proto::envelope::Notice;
use squall_proto::error::ApiError;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_proto::Shard;
use std::collections::HashMap;

/// An item in a core's inbox.
pub enum Item {
    /// Create a queue; reply with its id.
    Allocate {
        /// Queue options.
        spec: QueueSpec,
        /// Gets the new queue id.
        reply: oneshot::Sender<String>,
    },
    /// Read a queue's events without waiting or acknowledging (register).
    Peek {
        /// Who asks (must own the queue).
        user_id: i64,
        /// The queue.
        queue_id: String,
        /// Gets the events, or `None` for an unknown queue.
        reply: oneshot::Sender<Option<Vec<Value>>>,
    },
    /// Deliver an event.
    Notice(Notice),
    /// A `/events` request handed to this core.
    Events(EventsCall),
    /// Send `web_reload_client` to up to `max` restored queues.
    Reload {
        /// At most this many.
        max: usize,
        /// The event's `immediate`.
        immediate: bool,
        /// Gets how many were sent.
        reply: oneshot::Sender<usize>,
    },
    /// Stop the core.
    Shutdown,
}

/// A `/events` request for the owning core.
pub struct EventsCall {
    /// The authenticated user.
    pub user_id: i64,
    /// What to do.
    pub op: EventsOp,
    /// Where the response goes (possibly much later, for a long-poll).
    pub reply: oneshot::Sender<Response>,
}

/// `GET` or `DELETE /events`.
pub enum EventsOp {
    /// Poll (or create with `dont_block` and no queue id).
    Get {
        /// Queue to poll; `None` to create one.
        queue_id: Option<String>,
        /// Highest event id the client has processed.
        last_event_id: Option<i64>,
        /// Answer at once even if empty.
        dont_block: bool,
        /// Options for a queue created by this request (boxed: it is large
        /// and most polls do not create a queue).
        new_queue: Box<QueueSpec>,
    },
    /// Delete a queue.
    Delete {
        /// The queue.
        queue_id: String,
    },
}

/// Timing knobs of a core.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Heartbeat delay lower bound (Zulip: 45 s).
    pub heartbeat_min_secs: u64,
    /// Extra random delay, inclusive upper bound (Zulip: 10 s).
    pub heartbeat_jitter_secs: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { heartbeat_min_secs: 45, heartbeat_jitter_secs: 10 }
    }
}

/// A heartbeat the shard loop must schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatTimer {
    /// Queue to beat.
    pub queue_id: String,
    /// Which park this is for; a newer park makes the timer stale.
    pub park_gen: u64,
    /// Delay.
    pub delay_secs: u64,
}

/// Zulip's client descriptor.
pub(crate) struct Descriptor {
    pub(crate) spec: QueueSpec,
    pub(crate) queue: EventQueue,
    pub(crate) last_connection_time: u64,
    pub(crate) waiter: Option<oneshot::Sender<Response>>,
    pub(crate) park_gen: u64,
}

impl Descriptor {
    fn parked(&self) -> bool {
        self.waiter.as_ref().is_some_and(|w| !w.is_canceled())
    }
}

/// Everything one core owns.
pub struct CoreState {
    pub(crate) shard: Shard,
    pub(crate) timing: Timing,
    pub(crate) queues: HashMap<String, Descriptor>,
    pub(crate) by_user: HashMap<i64, Vec<String>>,
    /// Realm → queues that receive every public-stream message of the realm.
    pub(crate) watchers: HashMap<i64, Vec<String>>,
    /// Notifications not yet handed to the sink (all of them, without one).
    pub(crate) notifications: Vec<Notification>,
    /// Where notifications go as soon as they are decided.
    sink: Option<Box<dyn FnMut(Notification)>>,
    /// Restored queues still to be told to reload, by realm id.
    pub(crate) reload_pending: Vec<(i64, String)>,
}

fn success_body(events: &str, queue_id: Option<&str>) -> Vec<u8> {
    let mut s = String::with_capacity(events.len() + 96);
    s.push_str("{\"result\":\"success\",\"msg\":\"\",\"events\":");
    s.push_str(events);
    if let Some(q) = queue_id {
        s.push_str(",\"queue_id\":");
        s.push_str(&serde_json::to_string(q).unwrap_or_else(|_| "null".into()));
    }
    s.push('}');
    s.into_bytes()
}

fn error_response(e: ApiError) -> Response {
    Response { status: e.status, headers: e.headers.clone(), body: e.body() }
}

/// `BAD_EVENT_QUEUE_ID`, exactly as Zulip returns it.
pub fn bad_queue(queue_id: &str) -> Response {
    error_response(
        ApiError::with_code("BAD_EVENT_QUEUE_ID", format!("Bad event queue ID: {queue_id}"))
            .field("queue_id", queue_id),
    )
}

/// A deferred (long-poll) completion always carries `queue_id`.
pub(crate) fn deferred(queue_id: &str, d: &mut Descriptor) -> Response {
    let mut r = Response::json(200, success_body(&d.queue.render_events(), Some(queue_id)));
    r.headers.push(("Vary", "Accept-Language, Cookie".into()));
    r
}

impl CoreState {
    /// An empty core.
    pub fn new(shard: Shard, timing: Timing) -> Self {
        CoreState {
            shard,
            timing,
            queues: HashMap::new(),
            by_user: HashMap::new(),
            watchers: HashMap::new(),
            notifications: Vec::new(),
            sink: None,
            reload_pending: Vec::new(),
        }
    }

    /// Sends every notification decided from now on to `sink` (which must
    /// not block: the core's event path calls it).
    pub fn set_notification_sink(&mut self, sink: Box<dyn FnMut(Notification)>) {
        self.sink = Some(sink);
    }

    /// Notifications decided so far and not handed to a sink.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.notifications)
    }

    /// Hands decided notifications to the sink, if there is one.
    pub(crate) fn flush_notifications(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            for n in self.notifications.drain(..) {
                sink(n);
            }
        }
    }

    /// Number of queues owned.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Creates a queue; returns its id.
    pub fn allocate(&mut self, spec: QueueSpec, now: u64) -> String {
        let id = QueueId::new_random(self.shard).to_string();
        self.insert_queue(id.clone(), spec, EventQueue::new(), now);
        id
    }

    /// Adds a queue under `id` to every index.
    pub(crate) fn insert_queue(&mut self, id: String, spec: QueueSpec, queue: EventQueue, last_connection_time: u64) {
        self.by_user.entry(spec.user_id).or_default().push(id.clone());
        if spec.is_realm_watcher() {
            self.watchers.entry(spec.realm_id).or_default().push(id.clone());
        }
        self.queues.insert(id, Descriptor { spec, queue, last_connection_time, waiter: None, park_gen: 0 });
    }

    /// Events of a queue as JSON values (register's race check).
    pub fn peek(&mut self, user_id: i64, queue_id: &str) -> Option<Vec<Value>> {
        let d = self.queues.get_mut(queue_id).filter(|d| d.spec.user_id == user_id)?;
        serde_json::from_str(&d.queue.render_events()).ok()
    }

    /// Handles a `/events` call; may return a heartbeat to schedule.
    pub fn events(&mut self, call: EventsCall, now: u64) -> Option<HeartbeatTimer> {
        let EventsCall { user_id, op, reply } = call;
        match op {
            EventsOp::Delete { queue_id } => {
                let owned = self.queues.get(&queue_id).is_some_and(|d| d.spec.user_id == user_id);
                let resp = if owned {
                    self.remove_queue(&queue_id);
                    Response::json(200, &b"{\"result\":\"success\",\"msg\":\"\"}"[..])
                } else {
                    bad_queue(&queue_id)
                };
                let _ = reply.send(resp);
                None
            }
            EventsOp::Get { queue_id: None, dont_block, new_queue, .. } => {
                if !dont_block {
                    let _ = reply.send(error_response(ApiError::bad_request("Missing 'queue_id' argument")));
                    return None;
                }
                let id = self.allocate(*new_queue, now);
                let _ = reply.send(Response::json(200, success_body("[]", Some(&id))));
                None
            }
            EventsOp::Get { queue_id: Some(queue_id), last_event_id, dont_block, .. } => {
                let Some(last_event_id) = last_event_id else {
                    let _ = reply.send(error_response(ApiError::bad_request("Missing 'last_event_id' argument")));
                    return None;
                };
                let Some(d) = self.queues.get_mut(&queue_id).filter(|d| d.spec.user_id == user_id) else {
                    let _ = reply.send(bad_queue(&queue_id));
                    return None;
                };
                if let Err(e) = d.queue.prune(last_event_id) {
                    let _ = reply.send(error_response(ApiError::bad_request(e.message())));
                    return None;
                }
                // A new poll supersedes a parked one.
                if let Some(old) = d.waiter.take() {
                    let _ = old.send(deferred(&queue_id, d));
                }
                if !d.queue.is_empty() || dont_block {
                    let _ = reply.send(Response::json(200, success_body(&d.queue.render_events(), None)));
                    return None;
                }
                d.waiter = Some(reply);
                d.last_connection_time = now;
                d.park_gen += 1;
                let jitter = if self.timing.heartbeat_jitter_secs > 0 {
                    rand::random::<u64>() % (self.timing.heartbeat_jitter_secs + 1)
                } else {
                    0
                };
                Some(HeartbeatTimer {
                    queue_id,
                    park_gen: d.park_gen,
                    delay_secs: self.timing.heartbeat_min_secs + jitter,
                })
            }
        }
    }

    /// A heartbeat timer fired: queue a heartbeat if the poll it was armed
    /// for is still parked.
    pub fn heartbeat(&mut self, t: &HeartbeatTimer) {
        let Some(d) = self.queues.get_mut(&t.queue_id) else { return };
        if d.park_gen != t.park_gen || !d.parked() {
            return;
        }
        d.queue.push(EventBody::Heartbeat);
        if let Some(w) = d.waiter.take() {
            let _ = w.send(deferred(&t.queue_id, d));
        }
    }

    pub(crate) fn remove_queue(&mut self, queue_id: &str) {
        let Some(mut d) = self.queues.remove(queue_id) else { return };
        // Complete a parked poll with what it had, as Zulip does.
        if let Some(w) = d.waiter.take() {
            let _ = w.send(deferred(queue_id, &mut d));
        }
        for (index, key) in [(&mut self.by_user, d.spec.user_id), (&mut self.watchers, d.spec.realm_id)] {
            if let Some(list) = index.get_mut(&key) {
                list.retain(|q| q != queue_id);
                if list.is_empty() {
                    index.remove(&key);
                }
            }
        }
        // The user's last queue: whatever is still queued for them is
        // re-checked as if they were away (Zulip's missedmessage_hook).
        if !self.by_user.contains_key(&d.spec.user_id) {
            for internal in d.queue.internal_data() {
                on_last_queue_gone(internal, &mut self.notifications);
            }
            self.flush_notifications();
        }
    }

    /// Sends `{"type":"web_reload_client","immediate":..}` to up to `max`
    /// queues restored at start (in realm order), each at most once; queues
    /// gone meanwhile are skipped. Returns how many got it.
    pub fn send_reload(&mut self, max: usize, immediate: bool) -> usize {
        let event = serde_json::json!({"type": "web_reload_client", "immediate": immediate});
        let body: std::rc::Rc<str> = std::rc::Rc::from(event.to_string());
        let mut sent = 0;
        while sent < max && !self.reload_pending.is_empty() {
            let (_, qid) = self.reload_pending.remove(0);
            if self.queues.contains_key(&qid) {
                self.push_body(&qid, EventBody::Shared(body.clone()));
                sent += 1;
            }
        }
        sent
    }

    /// Removes queues idle past their timeout; returns how many.
    pub fn gc(&mut self, now: u64) -> usize {
        let expired: Vec<String> = self
            .queues
            .iter_mut()
            .filter_map(|(id, d)| {
                if d.waiter.as_ref().is_some_and(|w| w.is_canceled()) {
                    d.waiter = None;
                }
                let idle = now.saturating_sub(d.last_connection_time);
                (!d.parked() && idle >= d.spec.queue_timeout_secs).then(|| id.clone())
            })
            .collect();
        for id in &expired {
            self.remove_queue(id);
        }
        expired.len()
    }

    /// Completes every parked poll (shutdown), so clients retry promptly.
    pub fn release_all(&mut self) {
        let ids: Vec<String> = self.queues.keys().cloned().collect();
        for id in ids {
            if let Some(d) = self.queues.get_mut(&id) {
                if let Some(w) = d.waiter.take() {
                    let _ = w.send(deferred(&id, d));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
