//! The queue-worker runtime: consumes the workers' RabbitMQ queues and
//! runs [`Workers::handle`] on each item, supervised.
//!
//! - Manual acknowledgements with a prefetch window: an item is
//!   acknowledged only after its handler succeeded, so a worker killed
//!   mid-item gets it again from RabbitMQ.
//! - A failed item is republished to `<queue>.retry.<n>` (n = the tries
//!   so far), whose messages expire after the retry base doubled n-1
//!   times and are then dead-lettered back into `<queue>`: one queue per
//!   delay, so a long delay never holds up a short one (RabbitMQ expires
//!   only the head of a queue). After `max_attempts` tries, or
//!   at once when retrying cannot help, the item goes to `<queue>.dead`
//!   with the error in its headers, and an error line is logged.
//! - Supervision: a consumer whose connection fails, or that panics, is
//!   restarted with backoff (0.5 s doubling to 30 s), and says so in the
//!   log; a handler that panics counts as a failed try of its item.

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::Value;
use squall_backend::workers::{Failure, JobQueue, Workers};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Header counting an item's failed tries.
const ATTEMPTS: &str = "x-squall-attempts";
/// Header with the last error of a dead-lettered item.
const ERROR: &str = "x-squall-error";

/// Starts consumers for `queues` and the workers' background duties on
/// the current tokio runtime; they run until the process ends.
pub fn spawn(workers: Arc<Workers>, amqp_url: &str, queues: Vec<&'static str>, name: &str) {
    if queues.is_empty() {
        return;
    }
    tracing::info!(queues = ?queues, "queue workers starting");
    for queue in queues.iter().copied() {
        let (w, url, name) = (workers.clone(), amqp_url.to_owned(), format!("{name} worker {queue}"));
        supervise(format!("{queue} consumer"), move || consume(w.clone(), url.clone(), name.clone(), queue));
    }
    let w = workers;
    supervise("worker background duties".into(), move || {
        let (w, queues) = (w.clone(), queues.clone());
        async move {
            w.background(queues).await;
            Ok(())
        }
    });
}

/// Runs `task()` forever: whenever it returns or panics, logs it and starts
/// it again after a backoff (reset once a run lasted a minute).
fn supervise<F, Fut>(what: String, task: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let started = Instant::now();
            match tokio::spawn(task()).await {
                Ok(Ok(())) => tracing::warn!(what, retry_in = ?backoff, "worker stopped; restarting"),
                Ok(Err(e)) => tracing::warn!(what, error = %e, retry_in = ?backoff, "worker failed; restarting"),
                Err(e) => tracing::error!(what, error = %e, retry_in = ?backoff, "worker crashed; restarting"),
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_millis(500);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    });
}

fn retry_queue(queue: &str, attempt: u32) -> String {
    format!("{queue}.retry.{attempt}")
}

fn dead_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Declares `queue`, its retry queues (one per try that can fail and be
/// retried) and its dead-letter queue.
async fn declare(channel: &Channel, queue: &str, max_attempts: u32) -> Result<(), String> {
    crate::cluster::broker::declare(channel, queue).await?;
    crate::cluster::broker::declare(channel, &dead_queue(queue)).await?;
    for attempt in 1..max_attempts.max(1) {
        declare_retry(channel, queue, attempt).await?;
    }
    Ok(())
}

/// Declares retry queue `attempt` of `queue` (again before each use: a
/// process with a higher `max_attempts` may need one no other declared,
/// and a message published to no queue would be dropped).
async fn declare_retry(channel: &Channel, queue: &str, attempt: u32) -> Result<String, String> {
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(queue.into()));
    let name = retry_queue(queue, attempt);
    channel
        .queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args)
        .await
        .map_err(|e| format!("declaring {name}: {e}"))?;
    Ok(name)
}

async fn consume(workers: Arc<Workers>, url: String, name: String, queue: &'static str) -> Result<(), String> {
    let (_conn, channel) = crate::cluster::broker::connect(&url, &name).await?;
    declare(&channel, queue, workers.config().max_attempts).await?;
    let prefetch = workers.config().prefetch.max(1);
    channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(|e| e.to_string())?;
    let mut consumer = channel
        .basic_consume(queue.into(), name.as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(queue, "worker consuming");
    let slots = Arc::new(Semaphore::new(prefetch as usize));
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| e.to_string())?;
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let (w, channel) = (workers.clone(), channel.clone());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = process(&w, &channel, queue, delivery).await {
                // The item stays unacknowledged: RabbitMQ hands it out
                // again when this channel goes.
                tracing::warn!(queue, error = %e, "worker could not settle an item");
            }
        });
    }
    Err("the broker ended the consumer".into())
}

fn attempts_of(props: &BasicProperties) -> u32 {
    let Some(headers) = props.headers() else { return 0 };
    match headers.inner().get(&ShortString::from(ATTEMPTS)) {
        Some(AMQPValue::LongLongInt(n)) => (*n).max(0) as u32,
        Some(AMQPValue::LongInt(n)) => (*n).max(0) as u32,
        Some(AMQPValue::LongUInt(n)) => *n,
        _ => 0,
    }
}

/// Runs the handler on one item and settles it: ack, retry or dead-letter.
async fn process(
    w: &Arc<Workers>,
    channel: &Channel,
    queue: &'static str,
    delivery: lapin::message::Delivery,
) -> Result<(), String> {
    let attempts = attempts_of(&delivery.properties);
    let outcome = match serde_json::from_slice::<Value>(&delivery.data) {
        Err(e) => Err(Failure::Permanent(format!("unreadable item: {e}"))),
        Ok(item) => {
            let (w2, timeout) = (w.clone(), Duration::from_secs(w.config().item_timeout_secs.max(1)));
            let final_try = attempts + 1 >= w.config().max_attempts;
            let run =
                tokio::spawn(async move { tokio::time::timeout(timeout, w2.handle(queue, &item, final_try)).await });
            match run.await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err(Failure::Retry(format!("took longer than {timeout:?}"))),
                Err(e) => Err(Failure::Retry(format!("the handler crashed: {e}"))),
            }
        }
    };
    let cfg = w.config();
    match outcome {
        Ok(()) => {}
        Err(Failure::Retry(e)) if attempts + 1 < cfg.max_attempts => {
            let delay = cfg.retry_base_ms.saturating_mul(1 << attempts.min(16));
            tracing::warn!(queue, attempt = attempts + 1, error = %e, retry_in_ms = delay, "worker item failed; will retry");
            let props = properties(attempts + 1, None).with_expiration(delay.to_string().into());
            let republished = match declare_retry(channel, queue, attempts + 1).await {
                Ok(retry) => crate::cluster::broker::publish_with(channel, &retry, &delivery.data, props).await,
                Err(e) => Err(e),
            };
            if let Err(pe) = republished {
                delivery
                    .nack(BasicNackOptions { requeue: true, ..Default::default() })
                    .await
                    .map_err(|e| e.to_string())?;
                return Err(format!("could not schedule the retry: {pe}"));
            }
        }
        Err(failure) => {
            let e = failure.to_string();
            tracing::error!(queue, attempts = attempts + 1, error = %e, dead_letter_queue = dead_queue(queue),
                "worker item dead-lettered: giving up on it");
            if let Err(pe) = crate::cluster::broker::publish_with(
                channel,
                &dead_queue(queue),
                &delivery.data,
                properties(attempts + 1, Some(&e)),
            )
            .await
            {
                delivery
                    .nack(BasicNackOptions { requeue: true, ..Default::default() })
                    .await
                    .map_err(|e| e.to_string())?;
                return Err(format!("could not dead-letter the item: {pe}"));
            }
        }
    }
    delivery.ack(BasicAckOptions::default()).await.map(|_| ()).map_err(|e| e.to_string())
}

fn properties(attempts: u32, error: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(ATTEMPTS.into(), AMQPValue::LongLongInt(attempts as i64));
    if let Some(e) = error {
        headers.insert(ERROR.into(), AMQPValue::LongString(e.into()));
    }
    BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into()).with_headers(headers)
}

/// The backend's way onto the worker queues: the notification publisher.
pub struct Jobs(pub crate::amqp::Publisher);

impl JobQueue for Jobs {
    fn enqueue(&self, queue: &'static str, payload: Value) {
        self.0.publish(squall_gateway::notify::Notification { queue, payload });
    }
}

/// The event bus of a worker on a single node, which has none: only the
/// queues that send no events (email, push) may run there.
struct NoBus;

impl squall_proto::bus::EventBus for NoBus {
    fn allocate_queue(
        &self,
        _spec: squall_proto::queue_spec::QueueSpec,
    ) -> futures_util::future::BoxFuture<'static, Result<String, squall_proto::bus::BusError>> {
        Box::pin(async { Err(no_bus()) })
    }
    fn peek_events(
        &self,
        _user_id: i64,
        _queue_id: String,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<Value>, squall_proto::bus::BusError>> {
        Box::pin(async { Err(no_bus()) })
    }
    fn publish(
        &self,
        _envelope: squall_proto::envelope::Envelope,
    ) -> futures_util::future::BoxFuture<'static, Result<(), squall_proto::bus::BusError>> {
        Box::pin(async { Err(no_bus()) })
    }
    fn ready(&self) -> futures_util::future::BoxFuture<'static, Result<(), squall_proto::bus::BusError>> {
        Box::pin(async { Err(no_bus()) })
    }
}

fn no_bus() -> squall_proto::bus::BusError {
    squall_proto::bus::BusError::Unavailable("a single-node worker has no event bus".into())
}

/// `squall worker`: consumes `queues` (or the configuration's) until
/// SIGINT/SIGTERM.
pub fn run(cfg: crate::config::Config, queues: Option<Vec<String>>) -> anyhow::Result<()> {
    use anyhow::Context;
    use squall_backend::workers::{config::WorkersConfig, EMAIL_QUEUE, MOBILE_QUEUE};
    let names = queues.unwrap_or_else(|| cfg.workers.queues.clone());
    let queues = WorkersConfig::resolve_queues(&names).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        !queues.is_empty(),
        "no queues to consume: pass --queues with one or more of {}, or all",
        squall_backend::workers::QUEUES.join(", ")
    );
    anyhow::ensure!(!cfg.amqp_url.is_empty(), "squall worker needs RabbitMQ: set amqp_url (SQUALL_AMQP_URL)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.backend.worker_threads.max(1))
        .thread_name("squall-worker")
        .enable_all()
        .build()
        .context("starting the worker runtime")?;
    let bus: Arc<dyn squall_proto::bus::EventBus> = if cfg.cluster.enabled() {
        cfg.check_cluster()?;
        let processes = cfg.gateway_processes.max(1);
        Arc::new(crate::cluster::bus::ClusterBus::new(
            &cfg.cluster.gateways,
            processes,
            cfg.cores_per_process(processes),
            &cfg.amqp_url,
            &cfg.shared_secret,
            "squall worker",
        )?)
    } else {
        let eventful: Vec<&str> = queues.iter().copied().filter(|q| ![EMAIL_QUEUE, MOBILE_QUEUE].contains(q)).collect();
        anyhow::ensure!(
            eventful.is_empty(),
            "{} send events, which a single node delivers from `squall serve` only: run them there \
             (its [workers] queues), or give this host the cluster's configuration",
            eventful.join(" and ")
        );
        Arc::new(NoBus)
    };
    let pool = squall_backend::db::connect_with_wait(
        &cfg.backend.database_url,
        cfg.workers.pool_size.max(2),
        Some(Duration::from_secs(10)),
    )?;
    let settings = squall_backend::Settings {
        external_host: match () {
            _ if !cfg.external_host.is_empty() => cfg.external_host.clone(),
            _ if cfg.cluster.enabled() => cfg.cluster.router_listen.clone(),
            _ => cfg.listen.clone(),
        },
        scheme: "http".into(),
        server_generation: squall_backend::unix_time().as_secs() as i64,
        rate_limit_per_user: 0,
        rate_limit_per_ip: 0,
    };
    let publisher = crate::amqp::Publisher::spawn(rt.handle(), &cfg.amqp_url);
    let app = squall_backend::App::new(pool, bus, settings).with_jobs(Arc::new(Jobs(publisher)));
    rt.spawn(app.cache_listener(&cfg.backend.database_url));
    let workers = squall_backend::workers::Workers::new(app, cfg.workers.clone()).map_err(anyhow::Error::msg)?;
    rt.block_on(async move {
        spawn(workers, &cfg.amqp_url, queues, "squall");
        crate::serve::wait_for_signal().await?;
        tracing::info!("worker shutting down");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_round_trip_through_headers() {
        assert_eq!(attempts_of(&BasicProperties::default()), 0);
        assert_eq!(attempts_of(&properties(3, Some("boom"))), 3);
        assert_eq!(retry_queue("embed_links", 2), "embed_links.retry.2");
        assert_eq!(dead_queue("embed_links"), "embed_links.dead");
    }
}
