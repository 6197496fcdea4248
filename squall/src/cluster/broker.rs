//! The event bus between a cluster's backends and its gateway processes,
//! on RabbitMQ: one durable queue per gateway process
//! (`squall.events.<node>.<process>`), persistent messages, publisher
//! confirms on one side and manual acknowledgements on the other.
//!
//! A message carries the parts of one event for one process (each part
//! for one of its cores, already split by the shard-router). The backend
//! publishes and waits for the broker's confirm; the gateway process
//! acknowledges only once every part sits in its core's inbox. An event
//! published while its gateway process restarts waits in the queue.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use squall_proto::envelope::Notice;
use std::time::Duration;

/// How long a connection attempt may take before the broker counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The queue of gateway process `process` of node `node`.
pub fn queue_name(node: u16, process: u16) -> String {
    format!("squall.events.{node}.{process}")
}

/// What one message carries: the parts of one event for one process.
#[derive(Debug, Serialize, Deserialize)]
pub struct Batch {
    /// When the backend published it (unix milliseconds), for the bus lag.
    pub sent_ms: u64,
    /// One per core of the process that the event concerns.
    pub parts: Vec<Part>,
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One core's part of an event.
#[derive(Debug, Serialize, Deserialize)]
pub struct Part {
    /// The core (node-wide index).
    pub core: u16,
    /// What it must deliver.
    pub notice: Notice,
}

/// Connects, with a bounded wait, and opens a channel with publisher
/// confirms. The connection lives as long as a clone of the channel.
pub async fn connect(url: &str, name: &str) -> Result<(Connection, Channel), String> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let attempt = async {
        let conn = Connection::connect(url, props).await.map_err(|e| e.to_string())?;
        let channel = conn.create_channel().await.map_err(|e| e.to_string())?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, channel))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from RabbitMQ within {CONNECT_TIMEOUT:?}")),
    }
}

/// Declares `queue` (durable; every side declares it alike, so whoever
/// comes first creates it and nothing published before a consumer exists
/// is dropped).
pub async fn declare(channel: &Channel, queue: &str) -> Result<(), String> {
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), FieldTable::default())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Publishes `body` persistently to `queue` and waits for the broker's
/// confirm.
pub async fn publish(channel: &Channel, queue: &str, body: &[u8]) -> Result<(), String> {
    let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
    publish_with(channel, queue, body, props).await
}

/// [`publish`] with the given message properties.
pub async fn publish_with(channel: &Channel, queue: &str, body: &[u8], props: BasicProperties) -> Result<(), String> {
    let confirm = channel
        .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, props)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    if confirm.is_nack() {
        return Err("RabbitMQ refused the message".into());
    }
    Ok(())
}
