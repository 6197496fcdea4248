//! Zulip's client descriptor: one event queue with its options, its parked
//! long-poll (if any) and its timing facts.

use crate::park::Slot;
use crate::queue::EventQueue;
use squall_proto::queue_spec::QueueSpec;
use std::rc::Rc;

/// Zulip's client descriptor.
pub struct Descriptor {
    pub(crate) spec: QueueSpec,
    pub(crate) queue: EventQueue,
    pub(crate) last_connection_time: u64,
    /// The parked poll's connection, if one waits.
    pub(crate) waiter: Option<Rc<Slot>>,
    /// When the parked poll gets a heartbeat (unix ms).
    pub(crate) heartbeat_due: Option<u64>,
    /// Whether the heartbeat heap holds an entry for this queue (at most one).
    pub(crate) heartbeat_listed: bool,
    /// This queue's share of the heartbeat jitter, seconds. Fixed per queue
    /// so that a re-park's deadline is never earlier than the previous
    /// one's: one heap entry per queue is then enough.
    pub(crate) jitter_secs: u8,
}

impl Descriptor {
    pub(crate) fn new(spec: QueueSpec, queue: EventQueue, last_connection_time: u64, jitter_secs: u8) -> Self {
        Descriptor {
            spec,
            queue,
            last_connection_time,
            waiter: None,
            heartbeat_due: None,
            heartbeat_listed: false,
            jitter_secs,
        }
    }

    /// Whether a client is waiting (and has not gone away).
    pub(crate) fn parked(&self) -> bool {
        self.waiter.as_ref().is_some_and(|w| !w.is_gone())
    }
}
