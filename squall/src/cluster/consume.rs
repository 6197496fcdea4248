//! A gateway process's side of the cluster's event bus: consumes its own
//! durable queue and puts every part into its core's inbox, acknowledging
//! a message only once all its parts are there (a process that dies before
//! gets it again). One message at a time, in order: the events of a queue
//! arrive as they were published. Reconnects with backoff when the broker
//! goes away.

use super::broker::{self, Batch};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use squall_gateway::cores::Cores;
use squall_gateway::stats::Stats;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Messages the broker may send ahead of acknowledgements.
const PREFETCH: u16 = 256;

/// Consumes `squall.events.<node>.<process>` into `cores`, for ever.
/// Reports into `stats.bus` (the process's `/metrics`).
pub async fn run(url: String, node: u16, process: u16, cores: Arc<Cores>, stats: Arc<Stats>) {
    stats.bus.enabled.store(true, Ordering::Relaxed);
    let queue = broker::queue_name(node, process);
    let name = format!("squall gateway {node}.{process}");
    let mut backoff = Duration::from_millis(250);
    loop {
        match consume(&url, &name, &queue, &cores, &stats).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(queue, error = %e, retry_in = ?backoff, "event bus: RabbitMQ link lost");
            }
        }
        stats.bus.connected.store(0, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's worth of consuming; returns when it breaks.
async fn consume(url: &str, name: &str, queue: &str, cores: &Cores, stats: &Stats) -> Result<(), String> {
    let (_conn, channel) = broker::connect(url, name).await?;
    broker::declare(&channel, queue).await?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(|e| e.to_string())?;
    let mut consumer = channel
        .basic_consume(queue.into(), name.into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| e.to_string())?;
    stats.bus.connected.store(1, Ordering::Relaxed);
    tracing::info!(queue, "event bus: consuming");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| e.to_string())?;
        let batch: Batch = match serde_json::from_slice(&delivery.data) {
            Ok(b) => b,
            Err(e) => {
                // Not ours to retry: it would fail the same way for ever.
                tracing::error!(queue, error = %e, "event bus: unreadable message dropped");
                delivery
                    .nack(BasicNackOptions { requeue: false, ..Default::default() })
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
        };
        for part in batch.parts {
            let core = part.core;
            if let Err(e) = cores.deliver(core, part.notice).await {
                // A core no process of this node has: the cluster's shapes
                // disagree; retrying cannot help.
                tracing::error!(queue, core, error = %e, "event bus: part of an event not delivered");
            }
        }
        delivery.ack(BasicAckOptions::default()).await.map_err(|e| e.to_string())?;
        stats.bus.messages.fetch_add(1, Ordering::Relaxed);
        stats.bus.record_lag(broker::now_ms().saturating_sub(batch.sent_ms));
    }
    Err("the broker ended the consumer".into())
}
