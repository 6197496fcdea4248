//! What a gateway needs to know to run. The `squall` binary fills this in
//! from its TOML file and environment; tests build it directly.

use crate::clock::Clock;
use crate::guard::Limits;
use crate::state::Timing;
use std::path::PathBuf;
use std::time::Duration;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Cores of this process (one pinned executor each); at least 1.
    pub cores: u16,
    /// Gateway processes on this node, all with `cores` cores; at least 1.
    pub processes: u16,
    /// Which of them this is (`0..processes`).
    pub process: u16,
    /// Gateway nodes (hosts) of the cluster, all shaped alike; at least 1.
    pub nodes: u16,
    /// Which of them this is (`0..nodes`).
    pub node: u16,
    /// Let the internal endpoints answer peers that are not on loopback
    /// (a cluster's backends on other hosts); the shared secret is then
    /// all that guards them.
    pub internal_remote: bool,
    /// Use io_uring when the kernel allows it; epoll otherwise.
    pub io_uring: bool,
    /// Capacity of each core's inbox (items).
    pub inbox_capacity: usize,
    /// Heartbeat delay and jitter.
    pub timing: Timing,
    /// How often each core checks heartbeat deadlines and queue expiry.
    pub tick: Duration,
    /// Where "now" comes from.
    pub clock: Clock,
    /// Where queues are saved at shutdown and restored at start; `None`
    /// keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// Secret the internal endpoints require.
    pub shared_secret: String,
    /// Server start time (unix seconds), carried by `restart` events; the
    /// backend reports the same value as `server_generation`.
    pub server_generation: i64,
    /// Pin each core's thread to a CPU.
    pub pin_cores: bool,
    /// Connection deadlines and admission bounds.
    pub limits: Limits,
    /// Bounds on queues (unread events, queues per user).
    pub queue_limits: crate::state::QueueLimits,
    /// Journal queues in `state_dir` so that they survive a crash (`None`:
    /// only a graceful stop saves them, as in Zulip).
    pub journal: Option<crate::journal::JournalOptions>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cores: 1,
            processes: 1,
            process: 0,
            nodes: 1,
            node: 0,
            internal_remote: false,
            io_uring: true,
            inbox_capacity: 65_536,
            timing: Timing::default(),
            tick: Duration::from_millis(250),
            clock: Clock::System,
            state_dir: None,
            shared_secret: String::new(),
            server_generation: 0,
            pin_cores: true,
            limits: Limits::default(),
            queue_limits: crate::state::QueueLimits::default(),
            journal: Some(crate::journal::JournalOptions::default()),
        }
    }
}
