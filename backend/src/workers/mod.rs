//! Zulip's queue processors: what happens after a message is stored, away
//! from the request that stored it. Items arrive on RabbitMQ queues named
//! as in Zulip; the consuming runtime (acknowledgements, retries,
//! dead-lettering, supervision) lives in the `squall` binary, and calls
//! [`Workers::handle`] for each item. A handler returns `Ok` only once its
//! side effect is done (or durably scheduled), so an item is acknowledged
//! only then.
//!
//! - [`email`]: missed-message emails, batched per user, over SMTP.
//! - [`push`]: mobile push notifications through a push bouncer.
//! - [`webhook`]: outgoing-webhook bots.
//! - [`preview`]: link previews (`embed_links`).

pub mod config;
pub mod email;
pub mod net;
pub mod preview;
pub mod push;
pub mod webhook;

use crate::App;
use config::WorkersConfig;
use serde_json::Value;
use std::sync::Arc;

/// Missed-message emails (published by the gateway).
pub const EMAIL_QUEUE: &str = "missedmessage_emails";
/// Mobile push notifications (published by the gateway and on reads).
pub const MOBILE_QUEUE: &str = "missedmessage_mobile_notifications";
/// Messages for outgoing-webhook bots (published by the send path).
pub const OUTGOING_WEBHOOKS_QUEUE: &str = "outgoing_webhooks";
/// Messages whose links want previews (published by the send path).
pub const EMBED_LINKS_QUEUE: &str = "embed_links";
/// Every queue a worker consumes.
pub const QUEUES: [&str; 4] = [EMAIL_QUEUE, MOBILE_QUEUE, OUTGOING_WEBHOOKS_QUEUE, EMBED_LINKS_QUEUE];

/// Where the backend puts work for the workers. Never blocks: an
/// implementation buffers and publishes on its own.
pub trait JobQueue: Send + Sync {
    /// Queues `payload` on `queue`.
    fn enqueue(&self, queue: &'static str, payload: Value);
}

/// No queue: work is dropped, with a debug line (a server without RabbitMQ).
pub struct NoJobs;

impl JobQueue for NoJobs {
    fn enqueue(&self, queue: &'static str, _payload: Value) {
        tracing::debug!(queue, "no RabbitMQ: worker item dropped");
    }
}

/// Why an item was not done.
#[derive(Debug)]
pub enum Failure {
    /// Worth trying again later (a server down, a timeout).
    Retry(String),
    /// Trying again cannot help (an unreadable item); straight to the
    /// dead-letter queue.
    Permanent(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(s) => write!(f, "{s}"),
            Failure::Permanent(s) => write!(f, "{s} (not retried)"),
        }
    }
}

impl From<squall_proto::error::ApiError> for Failure {
    fn from(e: squall_proto::error::ApiError) -> Self {
        let cause = e.cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default();
        Failure::Retry(format!("{}{cause}", e.msg))
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Retry(format!("database: {e}"))
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Failure::Retry(format!("database pool: {e}"))
    }
}

/// Decodes the HTML entities rendered messages and pages use most.
pub(crate) fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Escapes text for HTML (also inside double-quoted attributes).
pub(crate) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The value of attribute `name` inside an HTML tag (`tag` without its
/// angle brackets), entities decoded.
pub(crate) fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let start = from + at;
        from = start + name.len();
        let before_ok = start == 0 || lower.as_bytes()[start - 1].is_ascii_whitespace();
        let rest = lower[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_at = tag.len() - rest.len() + 1;
        let value = tag[value_at..].trim_start();
        let (quote, body) = match value.chars().next() {
            Some(q @ ('"' | '\'')) => (Some(q), &value[1..]),
            _ => (None, value),
        };
        let end = match quote {
            Some(q) => body.find(q).unwrap_or(body.len()),
            None => body.find(|c: char| c.is_ascii_whitespace() || c == '>').unwrap_or(body.len()),
        };
        return Some(decode_entities(&body[..end]));
    }
    None
}

/// The participants (id, full name) of a direct-message group, by its
/// recipient id: its subscriptions, as `streams::group_members` reads them.
pub(crate) async fn group_participants(
    db: &impl deadpool_postgres::GenericClient,
    recipient_id: i32,
) -> Result<Vec<(i64, String)>, Failure> {
    let rows = db
        .query(
            "SELECT u.id, u.full_name FROM subscription s JOIN userprofile u ON u.id = s.user_profile_id
             WHERE s.recipient_id = $1 ORDER BY u.id",
            &[&recipient_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get::<_, i32>(0) as i64, r.get(1))).collect())
}

/// Reads a field of an item.
pub(crate) fn field<T: serde::de::DeserializeOwned>(item: &Value, name: &str) -> Result<T, Failure> {
    let v = item.get(name).cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| Failure::Permanent(format!("item field {name:?}: {e}")))
}

/// The workers of one process: the backend they act through and what they
/// send with.
pub struct Workers {
    pub(crate) app: App,
    pub(crate) cfg: WorkersConfig,
    pub(crate) mailer: email::Mailer,
    /// For the push bouncer and bots' servers (previews use their own,
    /// pinned to checked addresses).
    pub(crate) http: reqwest::Client,
}

impl Workers {
    /// Workers acting through `app`. Fails on a configuration that cannot
    /// work (an SMTP host that is not a host name).
    pub fn new(app: App, cfg: WorkersConfig) -> Result<Arc<Self>, String> {
        let mailer = email::Mailer::new(&cfg.email)?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(cfg.outgoing_webhook_timeout_secs.max(1)))
            .user_agent(concat!("Squall/", env!("CARGO_PKG_VERSION"), " (Zulip-compatible)"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Arc::new(Workers { app, cfg, mailer, http }))
    }

    /// The configuration.
    pub fn config(&self) -> &WorkersConfig {
        &self.cfg
    }

    /// Does one item of `queue`. `final_try`: the runtime gives the item
    /// up if this try fails (some handlers then tell the user).
    pub async fn handle(&self, queue: &str, item: &Value, final_try: bool) -> Result<(), Failure> {
        match queue {
            EMAIL_QUEUE => email::schedule(self, item).await,
            MOBILE_QUEUE => push::handle(self, item).await,
            OUTGOING_WEBHOOKS_QUEUE => webhook::handle(self, item, final_try).await,
            EMBED_LINKS_QUEUE => preview::handle(self, item).await,
            other => Err(Failure::Permanent(format!("no worker for queue {other:?}"))),
        }
    }

    /// Background duties of the queues in `queues` that are not driven by
    /// items (the email batches falling due); runs forever.
    pub async fn background(self: Arc<Self>, queues: Vec<&'static str>) {
        if queues.contains(&EMAIL_QUEUE) {
            email::send_batches_forever(self).await;
        } else {
            std::future::pending::<()>().await;
        }
    }
}
