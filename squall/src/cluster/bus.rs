//! The backend's [`EventBus`] in a cluster: events go to the gateway
//! processes through RabbitMQ (see [`super::broker`]); queues are
//! allocated and peeked over HTTP at the owning node's internal endpoints
//! (which hand the request to the owning process), as Zulip's Django
//! reaches its Tornado shards.

use super::broker::{self, Batch, Part};
use futures_util::future::BoxFuture;
use lapin::{Channel, Connection};
use serde_json::Value;
use squall_proto::bus::{BusError, EventBus};
use squall_proto::envelope::Envelope;
use squall_proto::ids::QueueId;
use squall_proto::queue_spec::QueueSpec;
use squall_shard_router::placement::Topology;
use squall_shard_router::split::split_for_node;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a stored message's event keeps being retried while the broker
/// is away.
const PUBLISH_PATIENCE: Duration = Duration::from_secs(10);
/// How long a queue call to a gateway may take.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster's event bus, as a backend sees it.
#[derive(Clone)]
pub struct ClusterBus {
    inner: Arc<Inner>,
}

struct Inner {
    topo: Topology,
    cores_per_process: u16,
    /// `http://host:port` of each node.
    gateways: Vec<String>,
    secret: String,
    http: reqwest::Client,
    amqp_url: String,
    name: String,
    link: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl ClusterBus {
    /// A bus to the gateway nodes at `gateways` (`host:port`), each with
    /// `processes` processes of `cores_per_process` cores, through the
    /// broker at `amqp_url`. `name` names the connection in RabbitMQ.
    pub fn new(
        gateways: &[String],
        processes: u16,
        cores_per_process: u16,
        amqp_url: &str,
        secret: &str,
        name: &str,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(RPC_TIMEOUT).build()?;
        Ok(ClusterBus {
            inner: Arc::new(Inner {
                topo: Topology {
                    nodes: gateways.len().max(1) as u16,
                    cores: processes.max(1) * cores_per_process.max(1),
                },
                cores_per_process: cores_per_process.max(1),
                gateways: gateways.iter().map(|g| format!("http://{g}")).collect(),
                secret: secret.to_owned(),
                http,
                amqp_url: amqp_url.to_owned(),
                name: name.to_owned(),
                link: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

impl Inner {
    /// The channel to the broker, connecting (and declaring every gateway
    /// process's queue) when there is none or it broke.
    async fn channel(&self) -> Result<Channel, String> {
        let mut link = self.link.lock().await;
        if let Some((conn, channel)) = link.as_ref() {
            if conn.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *link = None;
        let (conn, channel) = broker::connect(&self.amqp_url, &self.name).await?;
        let processes = self.topo.cores / self.cores_per_process;
        for node in 0..self.topo.nodes {
            for process in 0..processes {
                broker::declare(&channel, &broker::queue_name(node, process)).await?;
            }
        }
        tracing::info!("connected to RabbitMQ for events");
        *link = Some((conn, channel.clone()));
        Ok(channel)
    }

    /// Forgets `channel` if it is still the current one (it failed).
    async fn drop_channel(&self, channel: &Channel) {
        let mut link = self.link.lock().await;
        if link.as_ref().is_some_and(|(_, c)| c.id() == channel.id() && !c.status().connected()) {
            *link = None;
        }
    }

    /// Publishes `body` to `queue`, reconnecting and retrying for up to
    /// [`PUBLISH_PATIENCE`]: the message is stored already, so a broker
    /// that blinks must not cost its recipients the event.
    async fn publish(&self, queue: &str, body: &[u8]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + PUBLISH_PATIENCE;
        let mut pause = Duration::from_millis(50);
        loop {
            let outcome = match self.channel().await {
                Ok(channel) => {
                    let r = broker::publish(&channel, queue, body).await;
                    if r.is_err() {
                        self.drop_channel(&channel).await;
                    }
                    r
                }
                Err(e) => Err(format!("RabbitMQ unreachable: {e}")),
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() + pause > deadline => return Err(e),
                Err(e) => {
                    tracing::warn!(queue, error = %e, "publishing an event failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Calls `path` on gateway node `node` with `form` (plus the secret).
    async fn call(&self, node: u16, path: &str, form: &[(&str, &str)]) -> Result<Value, BusError> {
        let base = self
            .gateways
            .get(node as usize)
            .ok_or_else(|| BusError::Unavailable(format!("no gateway node {node} in cluster.gateways")))?;
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("secret", &self.secret));
        let resp = self
            .http
            .post(format!("{base}{path}"))
            .form(&fields)
            .send()
            .await
            .map_err(|e| BusError::Unavailable(format!("gateway node {node}: {e}")))?;
        let status = resp.status();
        let body: Value =
            resp.json().await.map_err(|e| BusError::Unavailable(format!("gateway node {node} answered: {e}")))?;
        if status.is_success() {
            return Ok(body);
        }
        let msg = body["msg"].as_str().unwrap_or("").to_owned();
        match body["code"].as_str() {
            Some("BAD_EVENT_QUEUE_ID") => Err(BusError::BadQueue(body["queue_id"].as_str().unwrap_or("").to_owned())),
            _ => Err(BusError::Unavailable(format!("gateway node {node}: {status} {msg}"))),
        }
    }
}

impl EventBus for ClusterBus {
    fn allocate_queue(&self, spec: QueueSpec) -> BoxFuture<'static, Result<String, BusError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let node = inner.topo.shard_of(spec.user_id).node;
            let spec = serde_json::to_string(&spec).map_err(|e| BusError::Unavailable(e.to_string()))?;
            let body = inner.call(node, "/api/internal/squall/allocate_queue", &[("spec", &spec)]).await?;
            body["queue_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| BusError::Unavailable(format!("gateway node {node} sent no queue_id")))
        })
    }

    fn peek_events(&self, user_id: i64, queue_id: String) -> BoxFuture<'static, Result<Vec<Value>, BusError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let node = QueueId::parse(&queue_id).ok_or_else(|| BusError::BadQueue(queue_id.clone()))?.shard.node;
            let user = user_id.to_string();
            let body = inner
                .call(node, "/api/internal/squall/peek_events", &[("user_id", &user), ("queue_id", &queue_id)])
                .await?;
            match body.get("events") {
                Some(Value::Array(events)) => Ok(events.clone()),
                _ => Err(BusError::Unavailable(format!("gateway node {node} sent no events"))),
            }
        })
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'static, Result<(), BusError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // One message per gateway process, with the parts of its cores.
            let mut batches: BTreeMap<(u16, u16), Vec<Part>> = BTreeMap::new();
            for node in 0..inner.topo.nodes {
                for (core, notice) in split_for_node(&envelope.notice, inner.topo, node) {
                    batches.entry((node, core / inner.cores_per_process)).or_default().push(Part { core, notice });
                }
            }
            let sent = futures_util::future::join_all(batches.into_iter().map(|((node, process), parts)| {
                let inner = inner.clone();
                async move {
                    let batch = Batch { sent_ms: broker::now_ms(), parts };
                    let body = serde_json::to_vec(&batch).map_err(|e| e.to_string())?;
                    inner.publish(&broker::queue_name(node, process), &body).await
                }
            }))
            .await;
            match sent.into_iter().find_map(Result::err) {
                Some(e) => Err(BusError::Unavailable(e)),
                None => Ok(()),
            }
        })
    }

    fn ready(&self) -> BoxFuture<'static, Result<(), BusError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.channel().await.map(|_| ()).map_err(BusError::Unavailable) })
    }
}
