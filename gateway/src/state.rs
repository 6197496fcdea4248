//! What one core owns and how it changes: the queues of the users placed on
//! it, their parked long-polls, their heartbeat deadlines, the credentials
//! it has recently checked, and the handling of every inbox item.
//!
//! This is plain single-threaded code with no I/O: the shard loop
//! (`shard.rs`) feeds it inbox items and clock ticks. Time is passed in as
//! unix seconds, so tests drive it without sleeping.

use crate::auth::AuthCache;
use crate::descriptor::Descriptor;
use crate::notify::{on_last_queue_gone, Notification};
use crate::park::{Answer, Slot, HEAD_ROOM};
use crate::queue::{EventBody, EventQueue};
use crate::registry::Registry;
use crate::stats::{CoreStats, Stats};
use futures_channel::oneshot;
use serde_json::Value;
use squall_proto::envelope::Notice;
use squall_proto::error::ApiError;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_proto::Shard;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::Arc;

/// How often each core collects expired queues (Zulip: 60 s).
pub const GC_INTERVAL_SECS: u64 = 60;

/// An item in a core's inbox.
pub enum Item {
    /// Create a queue; reply with its id.
    Allocate {
        /// Queue options.
        spec: QueueSpec,
        /// Gets the new queue id.
        reply: oneshot::Sender<QueueId>,
    },
    /// Read a queue's events without waiting or acknowledging (register).
    Peek {
        /// Who asks (must own the queue).
        user_id: i64,
        /// The queue.
        queue_id: QueueId,
        /// Gets the events, or `None` for an unknown queue.
        reply: oneshot::Sender<Option<Vec<Value>>>,
    },
    /// Deliver an event.
    Notice(Notice),
    /// A client connection handed over by another core or process: its
    /// socket and the bytes already read from it (the request that named
    /// this core's queue, and anything after it).
    Connection(crate::cores::Moving),
    /// Nothing: wakes the core (to notice a stop requested meanwhile).
    Wake,
    /// Answer once everything this core did before taking this item is in
    /// its journal on disk (at once without a journal). Follows each
    /// notice, so that a request is acknowledged only once its events would
    /// survive a crash.
    Durable(oneshot::Sender<()>),
    /// Send `web_reload_client` to up to `max` restored queues.
    Reload {
        /// At most this many.
        max: usize,
        /// The event's `immediate`.
        immediate: bool,
        /// Gets how many were sent.
        reply: oneshot::Sender<usize>,
    },
    /// The client of a parked poll on this queue went away.
    Disconnected(QueueId),
    /// Stop the core.
    Shutdown,
}

/// What became of a `/events` call.
#[derive(Debug)]
pub enum PollResult {
    /// Answered at once.
    Answer(Answer),
    /// Parked: the answer will come through the connection's slot.
    Parked,
}

/// `GET` or `DELETE /events`.
#[derive(Debug)]
pub enum EventsOp {
    /// Poll a queue.
    Poll {
        /// The queue.
        queue_id: QueueId,
        /// Highest event id the client has processed (required; its
        /// absence is reported by the core, after the queue check).
        last_event_id: Option<i64>,
        /// Answer at once even if empty.
        dont_block: bool,
    },
    /// `GET` without a queue id: creates one with `dont_block`, else is an
    /// error.
    Create {
        /// Answer at once (required for creation).
        dont_block: bool,
        /// The new queue's options (boxed: it is large).
        spec: Box<QueueSpec>,
    },
    /// Delete a queue.
    Delete {
        /// The queue.
        queue_id: QueueId,
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

/// Bounds on what one user's queues may hold (beyond Zulip, which has
/// none): past them a queue is dropped as if it had expired, and its client
/// registers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Events a queue may hold unread; the event that would exceed it drops
    /// the queue instead.
    pub max_events_per_queue: usize,
    /// Queues a user may have on this core; a new one drops the user's
    /// least recently polled queue.
    pub max_queues_per_user: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits { max_events_per_queue: 10_000, max_queues_per_user: 100 }
    }
}

/// Everything one core owns.
pub struct CoreState {
    pub(crate) shard: Shard,
    pub(crate) timing: Timing,
    pub(crate) limits: QueueLimits,
    /// Queues past `max_events_per_queue`, dropped once the delivery that
    /// filled them is done.
    pub(crate) overflowed: Vec<QueueId>,
    pub(crate) reg: Registry,
    /// Credentials recently authenticated on this core (for whichever
    /// user; revocations reach every core, see [`CoreState::revoke`]).
    pub(crate) auth: AuthCache,
    /// Notifications not yet handed to the sink (all of them, without one).
    pub(crate) notifications: Vec<Notification>,
    /// Where notifications go as soon as they are decided.
    sink: Option<Box<dyn FnMut(Notification)>>,
    /// Restored queues still to be told to reload, in realm order.
    pub(crate) reload_pending: Vec<(i64, QueueId)>,
    /// Heartbeat deadlines, earliest first; entries whose queue re-parked
    /// later are moved when they come up.
    heartbeats: BinaryHeap<Reverse<(u64, QueueId)>>,
    next_gc: u64,
    stats: Arc<Stats>,
    /// Every change to the queues, recorded for crash recovery (when the
    /// core has a state directory).
    pub(crate) journal: Option<crate::journal::Journal>,
}

/// A success body with the queue's pending events (and, for deferred
/// answers, its id), rendered into a pooled buffer.
fn events_answer(d: &mut Descriptor, queue_id: Option<QueueId>) -> Answer {
    let mut body = crate::pool::take();
    body.resize(HEAD_ROOM, 0);
    body.extend_from_slice(b"{\"result\":\"success\",\"msg\":\"\",\"events\":");
    d.queue.render_events_into(&mut body);
    if let Some(q) = queue_id {
        body.extend_from_slice(b",\"queue_id\":\"");
        q.write_to(&mut body);
        body.push(b'"');
    }
    body.push(b'}');
    Answer { status: 200, body, room: HEAD_ROOM, deferred: queue_id.is_some() }
}

/// Reading a queue turns its compressed flag events into plain ones: the
/// journal has to know when.
fn note_read(journal: &mut Option<crate::journal::Journal>, queue_id: QueueId, d: &Descriptor) {
    if let Some(j) = journal {
        if !d.queue.virtual_events().is_empty() {
            j.materialized(queue_id);
        }
    }
}

fn error_answer(e: ApiError) -> Answer {
    Answer::plain(e.status, e.body())
}

/// `BAD_EVENT_QUEUE_ID`, exactly as Zulip returns it.
pub fn bad_queue(queue_id: &str) -> ApiError {
    ApiError::with_code("BAD_EVENT_QUEUE_ID", format!("Bad event queue ID: {queue_id}")).field("queue_id", queue_id)
}

impl CoreState {
    /// An empty core with counters of its own.
    pub fn new(shard: Shard, timing: Timing) -> Self {
        Self::with_stats(shard, timing, Arc::new(Stats::new(shard.core + 1)))
    }

    /// An empty core reporting into `stats` (slot `shard.core`).
    pub fn with_stats(shard: Shard, timing: Timing, stats: Arc<Stats>) -> Self {
        CoreState {
            shard,
            timing,
            limits: QueueLimits::default(),
            overflowed: Vec::new(),
            reg: Registry::default(),
            auth: AuthCache::default(),
            notifications: Vec::new(),
            sink: None,
            reload_pending: Vec::new(),
            heartbeats: BinaryHeap::new(),
            next_gc: 0,
            stats,
            journal: None,
        }
    }

    /// Schedules the first expiry pass a full interval after `now` (unix
    /// seconds), as Zulip does at start, so the clients of restored queues
    /// have time to come back. Without it the first tick collects.
    pub fn start_expiry(&mut self, now: u64) {
        self.next_gc = now + GC_INTERVAL_SECS;
    }

    pub(crate) fn counters(&self) -> &CoreStats {
        self.stats.core(self.shard.core)
    }

    /// Sets the bounds on queues.
    pub fn set_queue_limits(&mut self, limits: QueueLimits) {
        self.limits = limits;
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
        self.reg.len()
    }

    /// Creates a queue; returns its id.
    pub fn allocate(&mut self, spec: QueueSpec, now: u64) -> QueueId {
        self.make_room_for_queue(spec.user_id);
        let id = QueueId::new_random(self.shard);
        self.insert_queue(id, spec, EventQueue::new(), now);
        if let (Some(j), Some(d)) = (self.journal.as_mut(), self.reg.get(id)) {
            j.allocated(id, d);
        }
        id
    }

    /// Drops the user's least recently polled queues (those not parked
    /// first) until a new one fits under `max_queues_per_user`.
    fn make_room_for_queue(&mut self, user_id: i64) {
        let max = self.limits.max_queues_per_user.max(1);
        while self.reg.of_user(user_id).len() >= max {
            let oldest = self.reg.of_user(user_id).iter().copied().min_by_key(|&q| {
                let d = self.reg.get(q);
                (d.is_some_and(|d| d.parked()), d.map_or(0, |d| d.last_connection_time))
            });
            let Some(q) = oldest else { return };
            tracing::info!(user_id, queue = %q, "a user's queue dropped: too many queues");
            CoreStats::bump(&self.counters().queues_dropped);
            self.remove_queue(q);
        }
    }

    /// Drops the queues that went past `max_events_per_queue`.
    pub(crate) fn drop_overflowed(&mut self) {
        for q in std::mem::take(&mut self.overflowed) {
            tracing::info!(queue = %q, "a queue dropped: too many unread events");
            CoreStats::bump(&self.counters().queues_dropped);
            self.remove_queue(q);
        }
    }

    /// Adds a queue under `id`.
    pub(crate) fn insert_queue(&mut self, id: QueueId, spec: QueueSpec, queue: EventQueue, last_connection_time: u64) {
        let jitter = match self.timing.heartbeat_jitter_secs {
            0 => 0,
            j => (rand::random::<u64>() % (j.min(255) + 1)) as u8,
        };
        self.reg.insert(id, Descriptor::new(spec, queue, last_connection_time, jitter));
        CoreStats::add(&self.counters().queues, 1);
    }

    /// Events of a queue as JSON values (register's race check).
    pub fn peek(&mut self, user_id: i64, queue_id: QueueId) -> Option<Vec<Value>> {
        let d = self.reg.owned_mut(queue_id, user_id)?;
        note_read(&mut self.journal, queue_id, d);
        serde_json::from_str(&d.queue.render_events()).ok()
    }

    /// Answers a queue's parked poll, if any, with what the queue holds.
    pub(crate) fn complete(&mut self, queue_id: QueueId) {
        let stats = self.stats.clone();
        let Some(d) = self.reg.get_mut(queue_id) else { return };
        let Some(slot) = d.waiter.take() else { return };
        d.heartbeat_due = None;
        let c = stats.core(self.shard.core);
        CoreStats::add(&c.parked, -1);
        if !d.queue.is_empty() {
            CoreStats::bump(&c.deliveries);
        }
        note_read(&mut self.journal, queue_id, d);
        slot.fulfil(events_answer(d, Some(queue_id)));
    }

    /// Handles one inbox item at `now_ms` (unix milliseconds). Gives back
    /// what is not the state's business: [`Item::Shutdown`] and handed-over
    /// connections.
    pub fn handle(&mut self, item: Item, now_ms: u64) -> Option<Item> {
        match item {
            Item::Shutdown | Item::Connection(_) => return Some(item),
            Item::Wake => {}
            Item::Allocate { spec, reply } => {
                let _ = reply.send(self.allocate(spec, now_ms / 1000));
            }
            Item::Peek { user_id, queue_id, reply } => {
                let _ = reply.send(self.peek(user_id, queue_id));
            }
            Item::Notice(notice) => self.deliver(notice),
            Item::Reload { max, immediate, reply } => {
                let _ = reply.send(self.send_reload(max, immediate));
            }
            Item::Disconnected(queue_id) => self.disconnected(queue_id),
            Item::Durable(reply) => match self.journal.as_mut() {
                Some(j) => j.when_durable(reply),
                None => {
                    let _ = reply.send(());
                }
            },
        }
        None
    }

    /// Handles a `/events` call by `user_id` at `now_ms` (unix
    /// milliseconds). A poll that has to wait parks `slot` on its queue.
    pub fn events(&mut self, user_id: i64, op: EventsOp, slot: &Rc<Slot>, now_ms: u64) -> PollResult {
        let answer = match op {
            EventsOp::Delete { queue_id } => {
                if self.reg.owned_mut(queue_id, user_id).is_some() {
                    self.remove_queue(queue_id);
                    Answer::plain(200, br#"{"result":"success","msg":""}"#.to_vec())
                } else {
                    error_answer(bad_queue(&queue_id.to_string()))
                }
            }
            EventsOp::Create { dont_block: true, spec } => {
                let id = self.allocate(*spec, now_ms / 1000);
                match self.reg.get_mut(id) {
                    Some(d) => {
                        note_read(&mut self.journal, id, d);
                        events_answer(d, Some(id))
                    }
                    None => error_answer(ApiError::internal("a new queue vanished")),
                }
            }
            EventsOp::Create { dont_block: false, .. } => {
                error_answer(ApiError::bad_request("Missing 'queue_id' argument"))
            }
            EventsOp::Poll { queue_id, last_event_id, dont_block } => {
                return self.poll(user_id, queue_id, last_event_id, dont_block, slot, now_ms);
            }
        };
        PollResult::Answer(answer)
    }

    /// `GET /events` on an existing queue: answers at once or parks.
    fn poll(
        &mut self,
        user_id: i64,
        queue_id: QueueId,
        last_event_id: Option<i64>,
        dont_block: bool,
        slot: &Rc<Slot>,
        now_ms: u64,
    ) -> PollResult {
        let Some(last_event_id) = last_event_id else {
            return PollResult::Answer(error_answer(ApiError::bad_request("Missing 'last_event_id' argument")));
        };
        let Some(d) = self.reg.owned_mut(queue_id, user_id) else {
            return PollResult::Answer(error_answer(bad_queue(&queue_id.to_string())));
        };
        let pruned_before = d.queue.newest_pruned_id();
        if let Err(e) = d.queue.prune(last_event_id) {
            return PollResult::Answer(error_answer(ApiError::bad_request(e.message())));
        }
        if let Some(j) = self.journal.as_mut() {
            if d.queue.newest_pruned_id() != pruned_before {
                j.pruned(queue_id, last_event_id);
            }
        }
        // A new poll supersedes a parked one.
        self.complete(queue_id);
        let Some(d) = self.reg.get_mut(queue_id) else {
            return PollResult::Answer(error_answer(bad_queue(&queue_id.to_string())));
        };
        if !d.queue.is_empty() || dont_block {
            note_read(&mut self.journal, queue_id, d);
            return PollResult::Answer(events_answer(d, None));
        }
        d.waiter = Some(slot.clone());
        d.last_connection_time = now_ms / 1000;
        let due = now_ms + (self.timing.heartbeat_min_secs + d.jitter_secs as u64) * 1000;
        d.heartbeat_due = Some(due);
        if !d.heartbeat_listed {
            d.heartbeat_listed = true;
            self.heartbeats.push(Reverse((due, queue_id)));
        }
        CoreStats::add(&self.counters().parked, 1);
        PollResult::Parked
    }

    /// Advances the core to `now_ms`: queue expiry every
    /// [`GC_INTERVAL_SECS`] (see [`CoreState::start_expiry`]), then
    /// heartbeats that are due. Expiry comes first so that a poll a late
    /// tick answers with a heartbeat is not also counted idle before its
    /// client could poll again. Returns how many queues expired.
    pub fn tick(&mut self, now_ms: u64) -> usize {
        let now = now_ms / 1000;
        let mut expired = 0;
        if now >= self.next_gc {
            self.next_gc = now + GC_INTERVAL_SECS;
            expired = self.gc(now);
        }
        while let Some(&Reverse((due, id))) = self.heartbeats.peek() {
            if due > now_ms {
                break;
            }
            self.heartbeats.pop();
            let Some(d) = self.reg.get_mut(id) else { continue };
            d.heartbeat_listed = false;
            match d.heartbeat_due {
                // Re-parked since this entry was listed: list it again.
                Some(later) if later > now_ms => {
                    d.heartbeat_listed = true;
                    self.heartbeats.push(Reverse((later, id)));
                }
                Some(_) if d.parked() => {
                    d.queue.push(EventBody::Heartbeat);
                    self.complete(id);
                }
                _ => {
                    d.heartbeat_due = None;
                    self.drop_vanished(id);
                }
            }
        }
        expired
    }

    /// The client of a queue's parked poll went away: forget the poll (the
    /// queue's idle time counts from when it parked) and its heartbeat.
    pub fn disconnected(&mut self, queue_id: QueueId) {
        self.drop_vanished(queue_id);
    }

    /// Drops a queue's waiter if its client is gone.
    fn drop_vanished(&mut self, queue_id: QueueId) {
        let Some(d) = self.reg.get_mut(queue_id) else { return };
        if d.waiter.as_ref().is_some_and(|w| w.is_gone()) {
            d.waiter = None;
            d.heartbeat_due = None;
            CoreStats::add(&self.counters().parked, -1);
        }
    }

    pub(crate) fn remove_queue(&mut self, queue_id: QueueId) {
        self.remove_queue_with(queue_id, true);
    }

    /// Removes a queue; with `missed_hook`, a user's last queue going away
    /// re-checks what it still held for notifications.
    pub(crate) fn remove_queue_with(&mut self, queue_id: QueueId, missed_hook: bool) {
        // Complete a parked poll with what it had, as Zulip does.
        self.complete(queue_id);
        let Some(d) = self.reg.remove(queue_id) else { return };
        if let Some(j) = self.journal.as_mut() {
            j.removed(queue_id);
        }
        CoreStats::add(&self.counters().queues, -1);
        // The user's last queue: whatever is still queued for them is
        // re-checked as if they were away (Zulip's missedmessage_hook).
        if missed_hook && !self.reg.has_user(d.spec.user_id) {
            for internal in d.queue.internal_data() {
                on_last_queue_gone(internal, &mut self.notifications);
            }
            self.flush_notifications();
        }
    }

    /// Applies a revocation (`Notice::Revoke`): forgets every credential of
    /// `users` cached here and, with `delete_queues` (a deactivation),
    /// removes their queues, answering any parked poll with what it held.
    /// A deactivated user is notified of nothing, so what their queues
    /// still held is not re-checked for notifications.
    pub fn revoke(&mut self, users: &[i64], delete_queues: bool) {
        self.auth.forget_users(users);
        if !delete_queues {
            return;
        }
        for &user in users {
            for queue_id in self.reg.of_user(user).to_vec() {
                self.remove_queue_with(queue_id, false);
            }
        }
    }

    /// Sends `{"type":"web_reload_client","immediate":..}` to up to `max`
    /// queues restored at start (in realm order), each at most once; queues
    /// gone meanwhile are skipped. Returns how many got it.
    pub fn send_reload(&mut self, max: usize, immediate: bool) -> usize {
        let event = serde_json::json!({"type": "web_reload_client", "immediate": immediate});
        let body: std::rc::Rc<str> = std::rc::Rc::from(event.to_string());
        let mut sent = 0;
        let mut taken = 0;
        while sent < max && taken < self.reload_pending.len() {
            let (_, qid) = self.reload_pending[taken];
            taken += 1;
            if self.reg.get(qid).is_some() {
                self.push_body(qid, EventBody::Shared(body.clone()));
                sent += 1;
            }
        }
        self.reload_pending.drain(..taken);
        self.drop_overflowed();
        sent
    }

    /// Removes queues idle past their timeout; returns how many.
    pub fn gc(&mut self, now: u64) -> usize {
        let mut vanished = 0;
        let expired: Vec<QueueId> = self
            .reg
            .iter_mut()
            .filter_map(|(id, d)| {
                if d.waiter.as_ref().is_some_and(|w| w.is_gone()) {
                    d.waiter = None;
                    d.heartbeat_due = None;
                    vanished += 1;
                }
                let idle = now.saturating_sub(d.last_connection_time);
                (!d.parked() && idle >= d.spec.queue_timeout_secs).then_some(*id)
            })
            .collect();
        CoreStats::add(&self.counters().parked, -vanished);
        for id in &expired {
            self.remove_queue(*id);
        }
        expired.len()
    }

    /// Completes every parked poll (shutdown), so clients retry promptly.
    pub fn release_all(&mut self) {
        let ids: Vec<QueueId> = self.reg.iter().filter(|(_, d)| d.waiter.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            self.complete(id);
        }
    }
}

#[cfg(test)]
mod tests;
