//! The backend's view of the event system: allocate queues, read a new
//! queue's first events (register's atomicity), publish events.
//!
//! In single-node mode the gateway implements this with its in-process
//! per-core inboxes; across nodes a RabbitMQ implementation will (a later
//! issue). The backend never knows which.

use crate::envelope::Envelope;
use crate::queue_spec::QueueSpec;
use futures_util::future::BoxFuture;
use serde_json::Value;

/// Why the event system could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The event system is not running or not reachable.
    #[error("event system unavailable: {0}")]
    Unavailable(String),
    /// The queue does not exist (or belongs to someone else).
    #[error("bad event queue id {0}")]
    BadQueue(String),
}

/// The event system, as the backend uses it.
pub trait EventBus: Send + Sync + 'static {
    /// Creates a queue for `spec.user_id`; returns its id.
    fn allocate_queue(&self, spec: QueueSpec) -> BoxFuture<'static, Result<String, BusError>>;

    /// Every event currently in `queue_id` (which must belong to
    /// `user_id`), without waiting and without acknowledging anything.
    fn peek_events(&self, user_id: i64, queue_id: String) -> BoxFuture<'static, Result<Vec<Value>, BusError>>;

    /// Delivers `envelope` to its users' queues. Resolves once every owning
    /// core has accepted it (bounded inboxes exert back-pressure here).
    fn publish(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), BusError>>;

    /// Whether events can go out now. The backend asks before it stores a
    /// message, so a send whose event could not be delivered is refused
    /// (5xx) rather than stored unseen. An in-process bus always can.
    fn ready(&self) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async { Ok(()) })
    }
}
