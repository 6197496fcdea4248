//! The gateway side of the backend's [`EventBus`]: in-process delivery into
//! the per-core inboxes (single-node mode).
//!
//! Called from the backend's threads on any runtime. A full inbox holds the
//! sender until the core makes room: back-pressure, never a dropped event.

use crate::inbox::Inbox;
use crate::state::Item;
use futures_channel::oneshot;
use futures_util::future::BoxFuture;
use serde_json::Value;
use squall_proto::bus::{BusError, EventBus};
use squall_proto::envelope::Envelope;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_shard_router::placement::Topology;
use squall_shard_router::split::split_for_node;
use std::sync::Arc;

/// Handle on this node's cores.
#[derive(Clone)]
pub struct LocalBus {
    inboxes: Arc<Vec<Arc<Inbox>>>,
    topo: Topology,
    node: u16,
}

impl LocalBus {
    /// A bus over `inboxes` (one per core).
    pub fn new(inboxes: Arc<Vec<Arc<Inbox>>>, node: u16, topo: Topology) -> Self {
        LocalBus { inboxes, topo, node }
    }

    async fn push(&self, core: u16, item: Item) -> Result<(), BusError> {
        let inbox = self.inboxes.get(core as usize).ok_or_else(|| BusError::Unavailable(format!("no core {core}")))?;
        inbox.push_wait(item).await;
        Ok(())
    }
}

impl EventBus for LocalBus {
    fn allocate_queue(&self, spec: QueueSpec) -> BoxFuture<'static, Result<String, BusError>> {
        let this = self.clone();
        Box::pin(async move {
            let core = this.topo.shard_of(spec.user_id).core;
            let (reply, rx) = oneshot::channel();
            this.push(core, Item::Allocate { spec, reply }).await?;
            rx.await.map(|id| id.to_string()).map_err(|_| BusError::Unavailable("core stopped".into()))
        })
    }

    fn peek_events(&self, user_id: i64, queue_id: String) -> BoxFuture<'static, Result<Vec<Value>, BusError>> {
        let this = self.clone();
        Box::pin(async move {
            let id = QueueId::parse(&queue_id).ok_or_else(|| BusError::BadQueue(queue_id.clone()))?;
            let (reply, rx) = oneshot::channel();
            if id.shard.node != this.node {
                return Err(BusError::BadQueue(queue_id));
            }
            this.push(id.shard.core, Item::Peek { user_id, queue_id: id, reply }).await?;
            rx.await.map_err(|_| BusError::Unavailable("core stopped".into()))?.ok_or(BusError::BadQueue(queue_id))
        })
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), BusError>> {
        let this = self.clone();
        Box::pin(async move {
            for (core, part) in split_for_node(&envelope.notice, this.topo, this.node) {
                this.push(core, Item::Notice(part)).await?;
            }
            Ok(())
        })
    }
}
