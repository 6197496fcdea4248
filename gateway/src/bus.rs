//! The gateway side of the backend's [`EventBus`]: delivery into this
//! process's per-core inboxes, and to sibling gateway processes through
//! [`crate::cores::Peers`] for the cores they own.
//!
//! Called from the backend's threads on any runtime. A full inbox holds the
//! sender until the core makes room: back-pressure, never a dropped event.
//! Queues are allocated and peeked only here: `POST /register` reaches the
//! process that owns the user (the edge hands the connection over).

use crate::cores::Cores;
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
    cores: Arc<Cores>,
    topo: Topology,
    node: u16,
}

impl LocalBus {
    /// A bus over `cores` of node `node` shaped `topo`.
    pub fn new(cores: Arc<Cores>, node: u16, topo: Topology) -> Self {
        LocalBus { cores, topo, node }
    }

    async fn push(&self, core: u16, item: Item) -> Result<(), BusError> {
        let inbox = self
            .cores
            .inbox(core)
            .ok_or_else(|| BusError::Unavailable(format!("core {core} belongs to another gateway process")))?;
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
            // Every part goes out, whatever happens to the others; the
            // first failure is reported.
            let parts = split_for_node(&envelope.notice, this.topo, this.node);
            let sent = futures_util::future::join_all(parts.into_iter().map(|(core, part)| {
                let cores = this.cores.clone();
                async move { cores.deliver(core, part).await.map_err(|e| format!("core {core}: {e}")) }
            }))
            .await;
            match sent.into_iter().find_map(Result::err) {
                Some(e) => Err(BusError::Unavailable(e)),
                None => Ok(()),
            }
        })
    }
}
