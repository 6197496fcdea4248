//! Settings of the queue workers (the `[workers]` section of the `squall`
//! TOML file; `SQUALL_*` environment variables override them, named after
//! Zulip's settings where Zulip has one).

use serde::{Deserialize, Serialize};

/// Everything the workers need to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Which queues `squall serve` consumes itself: queue names, or
    /// `["all"]`, or `[]` for none (run them with `squall worker`
    /// instead). `SQUALL_WORKERS=all|none|name,name`.
    pub queues: Vec<String>,
    /// Items one consumer works on at once (RabbitMQ prefetch).
    pub prefetch: u16,
    /// Database connections of the workers of a process (their own pool,
    /// apart from the API's).
    pub pool_size: usize,
    /// Tries of an item before it goes to `<queue>.dead`
    /// (`SQUALL_WORKER_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one
    /// (`SQUALL_WORKER_RETRY_BASE_MS`).
    pub retry_base_ms: u64,
    /// Longest one item may take before it counts as failed.
    pub item_timeout_secs: u64,
    /// Missed-message email.
    pub email: EmailConfig,
    /// Mobile push notifications.
    pub push: PushConfig,
    /// Link previews.
    pub previews: PreviewConfig,
    /// Seconds an outgoing-webhook bot's server has to answer.
    pub outgoing_webhook_timeout_secs: u64,
    /// Let outgoing-webhook bots call servers on loopback, private and
    /// link-local addresses (a bot server on this host or network). Off,
    /// a member could make the server call internal hosts and read their
    /// answers through a bot (`SQUALL_OUTGOING_WEBHOOK_ALLOW_PRIVATE`).
    pub outgoing_webhook_allow_private: bool,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            queues: vec!["all".into()],
            prefetch: 8,
            pool_size: 8,
            max_attempts: 4,
            retry_base_ms: 1_000,
            item_timeout_secs: 120,
            email: EmailConfig::default(),
            push: PushConfig::default(),
            previews: PreviewConfig::default(),
            outgoing_webhook_timeout_secs: 10,
            outgoing_webhook_allow_private: false,
        }
    }
}

/// Zulip's `EMAIL_*` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server; empty = log the emails instead of sending them
    /// (`SQUALL_EMAIL_HOST`).
    pub host: String,
    /// `SQUALL_EMAIL_PORT` (default 25; 587 is usual with `use_tls`).
    pub port: u16,
    /// Login, if the server wants one (`SQUALL_EMAIL_HOST_USER`).
    pub host_user: String,
    /// Its password (`SQUALL_EMAIL_HOST_PASSWORD`).
    pub host_password: String,
    /// STARTTLS (`SQUALL_EMAIL_USE_TLS`).
    pub use_tls: bool,
    /// TLS from the first byte, as on port 465 (`SQUALL_EMAIL_USE_SSL`).
    pub use_ssl: bool,
    /// Sender of notification emails (Zulip's NOREPLY_EMAIL_ADDRESS;
    /// `SQUALL_NOREPLY_EMAIL_ADDRESS`); empty = `noreply@<external host>`.
    pub noreply_address: String,
    /// Seconds missed messages are collected before one email tells of
    /// them, for users who have not chosen their own
    /// (`email_notifications_batching_period_seconds`). Zulip: 120
    /// (`SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS`).
    pub missed_message_delay_secs: u64,
    /// Longest an SMTP conversation may take.
    pub timeout_secs: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            host: String::new(),
            port: 25,
            host_user: String::new(),
            host_password: String::new(),
            use_tls: false,
            use_ssl: false,
            noreply_address: String::new(),
            missed_message_delay_secs: 120,
            timeout_secs: 30,
        }
    }
}

/// Zulip's push bouncer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// The bouncer (Zulip's PUSH_NOTIFICATION_BOUNCER_URL, e.g.
    /// `https://push.zulipchat.com`); empty = no mobile push
    /// (`SQUALL_PUSH_BOUNCER_URL`).
    pub bouncer_url: String,
    /// This server's registration with the bouncer (Zulip's
    /// `zulip_org_id`; `SQUALL_ZULIP_ORG_ID`).
    pub org_id: String,
    /// Its secret (`zulip_org_key`; `SQUALL_ZULIP_ORG_KEY`).
    pub org_key: String,
}

/// Link previews (Zulip's `embed_links` worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreviewConfig {
    /// Seconds a page has to answer in full.
    pub timeout_secs: u64,
    /// Bytes of a page read at most.
    pub max_bytes: usize,
    /// Fetch pages on loopback, private and link-local addresses too.
    /// Only for tests and closed networks: otherwise a message could make
    /// the server fetch internal hosts (`SQUALL_PREVIEW_ALLOW_PRIVATE`).
    pub allow_private_addresses: bool,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        PreviewConfig { timeout_secs: 15, max_bytes: 1 << 20, allow_private_addresses: false }
    }
}

impl WorkersConfig {
    /// Applies the `SQUALL_*` overrides read through `get`.
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), String> {
        fn parse<T: std::str::FromStr>(k: &str, v: String) -> Result<T, String> {
            v.trim().parse().map_err(|_| format!("{k}: cannot use {v:?}"))
        }
        fn flag(k: &str, v: String) -> Result<bool, String> {
            match v.trim() {
                "1" | "true" | "on" | "yes" | "True" => Ok(true),
                "0" | "false" | "off" | "no" | "False" | "" => Ok(false),
                _ => Err(format!("{k} must be true or false, not {v:?}")),
            }
        }
        if let Some(v) = get("SQUALL_WORKERS") {
            self.queues = v.split(',').map(|q| q.trim().to_owned()).filter(|q| !q.is_empty()).collect();
        }
        let e = &mut self.email;
        for (k, slot) in [
            ("SQUALL_EMAIL_HOST", &mut e.host),
            ("SQUALL_EMAIL_HOST_USER", &mut e.host_user),
            ("SQUALL_EMAIL_HOST_PASSWORD", &mut e.host_password),
            ("SQUALL_NOREPLY_EMAIL_ADDRESS", &mut e.noreply_address),
            ("SQUALL_PUSH_BOUNCER_URL", &mut self.push.bouncer_url),
            ("SQUALL_ZULIP_ORG_ID", &mut self.push.org_id),
            ("SQUALL_ZULIP_ORG_KEY", &mut self.push.org_key),
        ] {
            if let Some(v) = get(k) {
                *slot = v;
            }
        }
        if let Some(v) = get("SQUALL_EMAIL_PORT") {
            e.port = parse("SQUALL_EMAIL_PORT", v)?;
        }
        if let Some(v) = get("SQUALL_EMAIL_USE_TLS") {
            e.use_tls = flag("SQUALL_EMAIL_USE_TLS", v)?;
        }
        if let Some(v) = get("SQUALL_EMAIL_USE_SSL") {
            e.use_ssl = flag("SQUALL_EMAIL_USE_SSL", v)?;
        }
        if let Some(v) = get("SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS") {
            e.missed_message_delay_secs = parse("SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS", v)?;
        }
        if let Some(v) = get("SQUALL_PREVIEW_ALLOW_PRIVATE") {
            self.previews.allow_private_addresses = flag("SQUALL_PREVIEW_ALLOW_PRIVATE", v)?;
        }
        if let Some(v) = get("SQUALL_OUTGOING_WEBHOOK_ALLOW_PRIVATE") {
            self.outgoing_webhook_allow_private = flag("SQUALL_OUTGOING_WEBHOOK_ALLOW_PRIVATE", v)?;
        }
        if let Some(v) = get("SQUALL_WORKER_MAX_ATTEMPTS") {
            self.max_attempts = parse("SQUALL_WORKER_MAX_ATTEMPTS", v)?;
        }
        if let Some(v) = get("SQUALL_WORKER_RETRY_BASE_MS") {
            self.retry_base_ms = parse("SQUALL_WORKER_RETRY_BASE_MS", v)?;
        }
        Ok(())
    }

    /// The queues `names` stands for (`all`, `none`, or names), checked.
    pub fn resolve_queues(names: &[String]) -> Result<Vec<&'static str>, String> {
        let mut out = Vec::new();
        for n in names {
            match n.as_str() {
                "all" => out.extend(super::QUEUES),
                "none" => {}
                other => match super::QUEUES.iter().find(|q| **q == other) {
                    Some(q) => out.push(*q),
                    None => {
                        return Err(format!(
                            "unknown worker queue {other:?}; the queues are {}",
                            super::QUEUES.join(", ")
                        ))
                    }
                },
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_queue_names() {
        let mut cfg = WorkersConfig::default();
        cfg.apply_env(&|k| match k {
            "SQUALL_EMAIL_HOST" => Some("smtp.example.com".into()),
            "SQUALL_EMAIL_PORT" => Some("587".into()),
            "SQUALL_EMAIL_USE_TLS" => Some("true".into()),
            "SQUALL_MISSED_MESSAGE_EMAIL_DELAY_SECS" => Some("2".into()),
            "SQUALL_WORKERS" => Some("missedmessage_emails, embed_links".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((cfg.email.host.as_str(), cfg.email.port, cfg.email.use_tls), ("smtp.example.com", 587, true));
        assert_eq!(cfg.email.missed_message_delay_secs, 2);
        assert_eq!(WorkersConfig::resolve_queues(&cfg.queues).unwrap(), vec!["embed_links", "missedmessage_emails"]);
        assert_eq!(WorkersConfig::resolve_queues(&["all".into()]).unwrap().len(), super::super::QUEUES.len());
        assert!(WorkersConfig::resolve_queues(&["none".into()]).unwrap().is_empty());
        assert!(WorkersConfig::resolve_queues(&["emails".into()]).is_err());
        assert!(cfg.apply_env(&|k| (k == "SQUALL_EMAIL_PORT").then(|| "smtp".into())).is_err());
    }
}
