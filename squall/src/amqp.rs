//! Publishing missed-message notifications and other worker items to
//! RabbitMQ.
//!
//! Cores decide notifications on their event path and hand them over with a
//! non-blocking `try_send` into a bounded channel; one task on the
//! backend's tokio runtime publishes them (lapin, durable queues named as
//! in Zulip, persistent messages, publisher confirms). When RabbitMQ is
//! down the task reconnects with backoff and keeps the item it holds; the
//! channel buffers the rest, and only when that is full are notifications
//! dropped (and logged) — the event path never waits for RabbitMQ.

use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use squall_gateway::notify::Notification;
use std::time::Duration;
use tokio::sync::mpsc;

/// Notifications buffered while RabbitMQ is slow or away.
pub const BUFFER: usize = 100_000;

/// The handle cores publish through.
#[derive(Clone)]
pub struct Publisher {
    tx: Option<mpsc::Sender<Notification>>,
}

impl Publisher {
    /// Starts the publishing task for `url` on `rt`; an empty `url`
    /// disables notifications (they are logged at debug level and dropped).
    pub fn spawn(rt: &tokio::runtime::Handle, url: &str) -> Self {
        if url.is_empty() {
            tracing::warn!("no AMQP URL: missed-message notifications are disabled");
            return Publisher { tx: None };
        }
        let (tx, rx) = mpsc::channel(BUFFER);
        rt.spawn(run(url.to_owned(), rx));
        Publisher { tx: Some(tx) }
    }

    /// Hands one notification over without waiting.
    pub fn publish(&self, n: Notification) {
        let Some(tx) = &self.tx else {
            tracing::debug!(queue = n.queue, "notification dropped: notifications disabled");
            return;
        };
        if let Err(e) = tx.try_send(n) {
            tracing::error!(error = %e, "notification dropped: the RabbitMQ publisher is {}", match e {
                mpsc::error::TrySendError::Full(_) => "backed up",
                mpsc::error::TrySendError::Closed(_) => "gone",
            });
        }
    }
}

async fn connect(url: &str) -> lapin::Result<(Connection, Channel)> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    for queue in squall_backend::workers::QUEUES {
        channel.queue_declare(queue.into(), QueueDeclareOptions::durable(), FieldTable::default()).await?;
    }
    Ok((conn, channel))
}

async fn publish(channel: &Channel, n: &Notification) -> Result<(), String> {
    let body = serde_json::to_vec(&n.payload).map_err(|e| e.to_string())?;
    crate::cluster::broker::publish(channel, n.queue, &body).await
}

async fn run(url: String, mut rx: mpsc::Receiver<Notification>) {
    let mut holding: Option<Notification> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let (conn, channel) = match connect(&url).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach RabbitMQ for notifications");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        tracing::info!("publishing missed-message notifications to RabbitMQ");
        loop {
            let n = match holding.take() {
                Some(n) => n,
                None => match rx.recv().await {
                    Some(n) => n,
                    None => return,
                },
            };
            if let Err(e) = publish(&channel, &n).await {
                tracing::warn!(error = %e, "publishing a notification failed; reconnecting");
                holding = Some(n);
                break;
            }
        }
        drop(conn);
    }
}
