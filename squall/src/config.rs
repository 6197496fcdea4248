//! Configuration of the `squall` binary: one TOML file, then `SQUALL_*`
//! environment overrides, then command-line flags. Every knob has a default
//! that works on a laptop. The gateway and the backend each get their part
//! ([`Config::gateway`], `backend`); neither reads files or environment.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use squall_backend::config::BackendConfig;
use std::path::Path;

/// All of Squall's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`SQUALL_LISTEN`).
    pub listen: String,
    /// Host clients use to reach the server; empty = `listen`
    /// (`SQUALL_EXTERNAL_HOST`). Realm subdomains hang off it.
    pub external_host: String,
    /// Gateway cores per gateway process; 0 = the available CPUs shared
    /// out among the processes (`SQUALL_CORES`).
    pub cores: u16,
    /// Gateway processes on this host, all on the one port
    /// (`SO_REUSEPORT`); raised at start to as many as
    /// `expected_connections` needs under the per-process open-file limit
    /// (`SQUALL_GATEWAY_PROCESSES`).
    pub gateway_processes: u16,
    /// Use io_uring when the kernel allows it; false forces epoll
    /// (`SQUALL_IO_URING`).
    pub io_uring: bool,
    /// Capacity of each core's inbox.
    pub inbox_capacity: usize,
    /// Minimum seconds before a parked long-poll gets a heartbeat (Zulip:
    /// 45; up to 10 s of jitter is added). Lower it only for testing
    /// (`SQUALL_HEARTBEAT_MIN_SECS`).
    pub heartbeat_min_secs: u64,
    /// Upper bound of the random extra heartbeat delay (Zulip: 10)
    /// (`SQUALL_HEARTBEAT_JITTER_SECS`).
    pub heartbeat_jitter_secs: u64,
    /// API requests per minute per user (Zulip: 200); 0 disables
    /// (`SQUALL_RATE_LIMIT_PER_USER`).
    pub rate_limit_per_user: u32,
    /// Unauthenticated requests per minute per IP address (Zulip: 100); 0
    /// disables.
    pub rate_limit_per_ip: u32,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// RabbitMQ for missed-message notifications; empty disables them
    /// (`SQUALL_AMQP_URL`).
    pub amqp_url: String,
    /// Secret for the internal endpoints (`/api/internal/...`); empty = a
    /// random one per start, written to `<state_dir>/shared_secret`
    /// (`SQUALL_SHARED_SECRET`).
    pub shared_secret: String,
    /// Where event queues are saved at shutdown and restored at start
    /// (`SQUALL_STATE_DIR`).
    pub state_dir: String,
    /// Connections this host should hold; the start-up host check warns
    /// about every setting that falls short (`SQUALL_EXPECTED_CONNECTIONS`).
    pub expected_connections: u64,
    /// Deadlines and bounds on client connections (the gateway's edge).
    pub connections: ConnectionLimits,
    /// Bounds on event queues.
    pub queues: QueueBounds,
    /// The backend.
    pub backend: BackendConfig,
    /// The queue workers (emails, push, previews, outgoing webhooks).
    pub workers: squall_backend::workers::config::WorkersConfig,
    /// Several hosts: `squall gateway|backend|router` (empty for `serve`).
    pub cluster: ClusterConfig,
}

/// What a client connection may hold, and for how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after its first byte (for
    /// a connection's first request: after the accept).
    pub header_timeout_secs: u64,
    /// A request body must be complete this long after its head.
    pub body_timeout_secs: u64,
    /// A kept-alive connection may wait this long for its next request
    /// (counted from the previous answer). Parked long-polls are not idle.
    pub idle_timeout_secs: u64,
    /// Connections one gateway core may hold that have not completed a
    /// request; past it the oldest of them are closed.
    pub max_unserved_per_core: usize,
    /// Open files each gateway process keeps free for everything but client
    /// connections (database pool, logs, links): it holds at most its
    /// open-file limit minus this many connections, closing waiting ones to
    /// make room and turning new ones away with a 503 when none can go.
    pub reserved_files: u64,
    /// Request bodies longer than this are read only after the request's
    /// credentials were checked.
    pub auth_before_body_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        let d = squall_gateway::guard::Limits::default();
        ConnectionLimits {
            header_timeout_secs: d.header_timeout.as_secs(),
            body_timeout_secs: d.body_timeout.as_secs(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            max_unserved_per_core: d.max_unserved,
            reserved_files: 256,
            auth_before_body_bytes: d.auth_before_body,
        }
    }
}

impl ConnectionLimits {
    /// The gateway's limits for a process allowed `open_files` files.
    pub fn gateway(&self, open_files: u64) -> squall_gateway::guard::Limits {
        use std::time::Duration;
        squall_gateway::guard::Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            body_timeout: Duration::from_secs(self.body_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            max_unserved: self.max_unserved_per_core.max(1),
            max_connections: open_files.saturating_sub(self.reserved_files).max(1) as usize,
            auth_before_body: self.auth_before_body_bytes,
        }
    }
}

/// Bounds on event queues (beyond Zulip, which has none): a queue past
/// them is dropped as if it had expired, and its client registers again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueBounds {
    /// Unread events one queue may hold.
    pub max_events_per_queue: usize,
    /// Queues one user may have (per gateway core: a user's queues all live
    /// on one core); a new one drops the least recently polled.
    pub max_queues_per_user: usize,
    /// Journal every change to the queues in `state_dir`, so that they
    /// survive a crash (`kill -9`), not only a graceful stop. Requests are
    /// acknowledged once their events are on disk (one `fdatasync`, shared
    /// by the requests of the moment). `SQUALL_JOURNAL`.
    pub journal: bool,
    /// Longest a journal record waits to be written and synced when no
    /// request waits for it (acknowledgements, deletions); requests that
    /// wait have theirs written at once. `SQUALL_JOURNAL_FLUSH_MS`.
    pub journal_flush_ms: u64,
    /// A core writes a new snapshot (and drops the journal before it) once
    /// its journal has grown past this many MiB, or past the size of the
    /// last snapshot if larger.
    pub journal_snapshot_mib: u64,
}

impl Default for QueueBounds {
    fn default() -> Self {
        let d = squall_gateway::state::QueueLimits::default();
        let j = squall_gateway::journal::JournalOptions::default();
        QueueBounds {
            max_events_per_queue: d.max_events_per_queue,
            max_queues_per_user: d.max_queues_per_user,
            journal: true,
            journal_flush_ms: j.flush_interval.as_millis() as u64,
            journal_snapshot_mib: j.snapshot_bytes >> 20,
        }
    }
}

/// The shape of a cluster: the same section on every host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Gateway nodes, `host:port` where backends and the router reach each.
    /// A node's place in this list is its index (`squall gateway --node
    /// N`); users are placed on nodes by hashing over its length, so
    /// appending a node moves ~1/n of them.
    pub gateways: Vec<String>,
    /// REST backends, `host:port` where the router reaches each (`squall
    /// backend --index N` listens there).
    pub backends: Vec<String>,
    /// Where `squall router` listens (the address clients use).
    pub router_listen: String,
}

impl ClusterConfig {
    /// Whether a cluster is configured.
    pub fn enabled(&self) -> bool {
        !self.gateways.is_empty()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9991".into(),
            external_host: String::new(),
            cores: 0,
            gateway_processes: 1,
            io_uring: true,
            inbox_capacity: 65_536,
            heartbeat_min_secs: 45,
            heartbeat_jitter_secs: 10,
            rate_limit_per_user: 200,
            rate_limit_per_ip: 100,
            migrate_on_start: true,
            state_dir: ".squall/state".into(),
            shared_secret: String::new(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5673/%2f".into(),
            expected_connections: 10_000,
            connections: ConnectionLimits::default(),
            queues: QueueBounds::default(),
            backend: BackendConfig::default(),
            workers: Default::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Config {
    /// Loads `path` (if given), then applies environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// Applies `SQUALL_*` overrides read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        self.workers.apply_env(&get).map_err(anyhow::Error::msg)?;
        for (key, slot) in [
            ("SQUALL_HEADER_TIMEOUT_SECS", &mut self.connections.header_timeout_secs),
            ("SQUALL_BODY_TIMEOUT_SECS", &mut self.connections.body_timeout_secs),
            ("SQUALL_IDLE_TIMEOUT_SECS", &mut self.connections.idle_timeout_secs),
        ] {
            if let Some(v) = get(key) {
                *slot = v.parse().with_context(|| format!("{key} must be a number of seconds"))?;
            }
        }
        if let Some(v) = get("SQUALL_JOURNAL") {
            self.queues.journal = match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => anyhow::bail!("SQUALL_JOURNAL must be on or off, not {v:?}"),
            };
        }
        if let Some(v) = get("SQUALL_JOURNAL_FLUSH_MS") {
            self.queues.journal_flush_ms =
                v.parse().context("SQUALL_JOURNAL_FLUSH_MS must be a number of milliseconds")?;
        }
        if let Some(v) = get("SQUALL_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("SQUALL_EXTERNAL_HOST") {
            self.external_host = v;
        }
        if let Some(v) = get("SQUALL_DATABASE_URL") {
            self.backend.database_url = v;
        }
        if let Some(v) = get("SQUALL_CORES") {
            self.cores = v.parse().context("SQUALL_CORES must be a number")?;
        }
        if let Some(v) = get("SQUALL_GATEWAY_PROCESSES") {
            self.gateway_processes = v.parse().context("SQUALL_GATEWAY_PROCESSES must be a number")?;
        }
        if let Some(v) = get("SQUALL_IO_URING") {
            self.io_uring = matches!(v.as_str(), "1" | "true" | "yes" | "on");
        }
        if let Some(v) = get("SQUALL_RATE_LIMIT_PER_USER") {
            self.rate_limit_per_user = v.parse().context("SQUALL_RATE_LIMIT_PER_USER must be a number")?;
        }
        if let Some(v) = get("SQUALL_RATE_LIMIT_PER_IP") {
            self.rate_limit_per_ip = v.parse().context("SQUALL_RATE_LIMIT_PER_IP must be a number")?;
        }
        if let Some(v) = get("SQUALL_AMQP_URL") {
            self.amqp_url = v;
        }
        if let Some(v) = get("SQUALL_SHARED_SECRET") {
            self.shared_secret = v;
        }
        if let Some(v) = get("SQUALL_STATE_DIR") {
            self.state_dir = v;
        }
        if let Some(v) = get("SQUALL_EXPECTED_CONNECTIONS") {
            self.expected_connections = v.parse().context("SQUALL_EXPECTED_CONNECTIONS must be a number")?;
        }
        if let Some(v) = get("SQUALL_HEARTBEAT_JITTER_SECS") {
            self.heartbeat_jitter_secs = v.parse().context("SQUALL_HEARTBEAT_JITTER_SECS must be a number")?;
        }
        if let Some(v) = get("SQUALL_HEARTBEAT_MIN_SECS") {
            self.heartbeat_min_secs = v.parse().context("SQUALL_HEARTBEAT_MIN_SECS must be a number")?;
        }
        Ok(())
    }

    /// The host clients reach us at.
    pub fn external_host(&self) -> String {
        if self.external_host.is_empty() {
            self.listen.clone()
        } else {
            self.external_host.clone()
        }
    }

    /// The gateway settings of process `process` of `processes`;
    /// `server_generation` and the resolved `shared_secret` are decided at
    /// start.
    pub fn gateway(
        &self,
        process: u16,
        processes: u16,
        server_generation: i64,
        shared_secret: String,
    ) -> squall_gateway::Config {
        squall_gateway::Config {
            cores: self.cores_per_process(processes),
            processes,
            process,
            io_uring: self.io_uring,
            inbox_capacity: self.inbox_capacity,
            timing: squall_gateway::state::Timing {
                heartbeat_min_secs: self.heartbeat_min_secs,
                heartbeat_jitter_secs: self.heartbeat_jitter_secs,
            },
            state_dir: Some(std::path::PathBuf::from(&self.state_dir)),
            shared_secret,
            server_generation,
            queue_limits: squall_gateway::state::QueueLimits {
                max_events_per_queue: self.queues.max_events_per_queue.max(1),
                max_queues_per_user: self.queues.max_queues_per_user.max(1),
            },
            journal: self.queues.journal.then(|| squall_gateway::journal::JournalOptions {
                snapshot_bytes: self.queues.journal_snapshot_mib.max(1) << 20,
                flush_interval: std::time::Duration::from_millis(self.queues.journal_flush_ms.max(1)),
            }),
            ..squall_gateway::Config::default()
        }
    }

    /// Checks what a cluster needs (every host must agree on the shape, so
    /// nothing in it may depend on the host): the `[cluster]` lists, fixed
    /// cores per process, one secret and a broker.
    pub fn check_cluster(&self) -> anyhow::Result<()> {
        let c = &self.cluster;
        anyhow::ensure!(c.enabled(), "no [cluster] section: list the gateway nodes in cluster.gateways");
        anyhow::ensure!(c.gateways.len() <= 1024, "at most 1024 gateway nodes");
        anyhow::ensure!(
            self.cores > 0,
            "a cluster needs `cores` set (cores per gateway process, the same on every node): placement depends on it"
        );
        anyhow::ensure!(
            !self.shared_secret.is_empty(),
            "a cluster needs `shared_secret` (the same on every host): backends use it to reach the gateways"
        );
        anyhow::ensure!(!self.amqp_url.is_empty(), "a cluster needs `amqp_url`: events travel through RabbitMQ");
        Ok(())
    }

    /// Gateway cores per process, for `processes` processes.
    pub fn cores_per_process(&self, processes: u16) -> u16 {
        if self.cores > 0 {
            return self.cores;
        }
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u16).unwrap_or(1);
        (cpus / processes.max(1)).max(1)
    }

    /// Gateway cores to run in a single process.
    pub fn core_count(&self) -> u16 {
        self.cores_per_process(1)
    }

    /// Gateway processes to run when one process may hold `open_files`
    /// files: the configured number, raised to what `expected_connections`
    /// needs (keeping 256 files per process in reserve) but, by itself, to
    /// no more than [`Config::auto_processes_max`].
    pub fn processes(&self, open_files: u64) -> u16 {
        self.gateway_processes.max(self.processes_needed(open_files).min(Self::auto_processes_max()))
    }

    /// The most processes `serve` starts unasked: 4 per CPU, at least 8.
    pub fn auto_processes_max() -> u16 {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u16).unwrap_or(1);
        cpus.saturating_mul(4).max(8)
    }

    /// Processes `expected_connections` needs under `open_files` per
    /// process. Users' queues are placed by hash, so processes are not
    /// evenly loaded (100,000 clients of 2,000 users over 6 processes: up to
    /// 7% above the mean); each is planned at 85% of its limit.
    pub fn processes_needed(&self, open_files: u64) -> u16 {
        let per_process = (open_files.saturating_sub(256) * 85 / 100).max(1);
        self.expected_connections.div_ceil(per_process).clamp(1, 256) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses_and_matches_defaults() {
        let text = include_str!("../../squall.example.toml");
        let cfg: Config = toml::from_str(text).expect("example config parses");
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn env_overrides() {
        let mut cfg = Config::default();
        cfg.apply_env(|k| match k {
            "SQUALL_LISTEN" => Some("0.0.0.0:1".into()),
            "SQUALL_DATABASE_URL" => Some("postgres://x/y".into()),
            "SQUALL_IO_URING" => Some("false".into()),
            "SQUALL_CORES" => Some("3".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:1");
        assert_eq!(cfg.external_host(), "0.0.0.0:1");
        assert_eq!(cfg.backend.database_url, "postgres://x/y");
        assert!(!cfg.io_uring);
        assert_eq!(cfg.core_count(), 3);
        assert_eq!(cfg.cores_per_process(4), 3, "set explicitly: per process");
        assert!(cfg.apply_env(|k| (k == "SQUALL_CORES").then(|| "many".into())).is_err());
    }

    #[test]
    fn the_journal_is_on_by_default_and_can_be_turned_off_or_tuned() {
        let mut cfg = Config::default();
        let gw = cfg.gateway(0, 1, 0, String::new());
        assert_eq!(gw.journal, Some(squall_gateway::journal::JournalOptions::default()));
        cfg.apply_env(|k| match k {
            "SQUALL_JOURNAL_FLUSH_MS" => Some("250".into()),
            _ => None,
        })
        .unwrap();
        let j = cfg.gateway(0, 1, 0, String::new()).journal.expect("still on");
        assert_eq!(j.flush_interval, std::time::Duration::from_millis(250));
        cfg.apply_env(|k| (k == "SQUALL_JOURNAL").then(|| "off".into())).unwrap();
        assert_eq!(cfg.gateway(0, 1, 0, String::new()).journal, None);
        assert!(cfg.apply_env(|k| (k == "SQUALL_JOURNAL").then(|| "maybe".into())).is_err());
    }

    #[test]
    fn processes_follow_the_open_file_limit_when_automatic() {
        let mut cfg = Config { gateway_processes: 1, expected_connections: 100_000, ..Config::default() };
        assert_eq!(cfg.processes(20_000), 6, "16,782 connections planned per process");
        cfg.expected_connections = 110_000;
        assert_eq!(cfg.processes(20_000), 7, "with room for uneven placement");
        cfg.expected_connections = 100_000;
        assert_eq!(cfg.processes(1_048_576), 1);
        cfg.gateway_processes = 8;
        assert_eq!(cfg.processes(20_000), 8, "more than needed is allowed");
        cfg.gateway_processes = 1;
        cfg.expected_connections = 50_000_000;
        assert_eq!(cfg.processes(20_000), Config::auto_processes_max(), "never hundreds unasked");
        let auto = Config { cores: 0, ..Config::default() };
        assert!(auto.cores_per_process(64) >= 1);
    }

    #[test]
    fn the_cluster_example_is_a_valid_cluster() {
        let text = include_str!("../../squall.cluster.example.toml");
        let cfg: Config = toml::from_str(text).expect("cluster example parses");
        cfg.check_cluster().expect("a complete cluster");
        assert_eq!(cfg.cluster.gateways.len(), 2);
        let mut auto = cfg.clone();
        auto.cores = 0;
        assert!(auto.check_cluster().is_err(), "cores per process must be fixed");
        assert!(Config::default().check_cluster().is_err(), "no [cluster] section");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }
}
